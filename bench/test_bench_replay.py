"""Replay of a 1,000,000-event log, beside the raw msgspec decode of the same events.

Replay is what ``runtime-metadata replay`` does: read the framed log (crc32 per frame),
fold it, and build the runtime document. The baseline decodes the same events from one
msgpack array with a typed decoder, measured in the same run.
"""

from __future__ import annotations

import msgspec
import pytest

from runtime_metadata.events.log import MemoryLog, paused_gc, read_log
from runtime_metadata.events.schema import AnyEvent, NodeFinished, NodeInputs, NodeStarted, RunFinished, RunStarted
from runtime_metadata.projections.runtime import project, runtime_document

N_NODES = 333_333  # three events per node: 999,999 + run start and end = 1,000,001 events
INPUTS = {"seed": [42], "steps": [20], "cfg": [7.0], "sampler_name": ["euler"]}


@pytest.fixture(scope="module")
def big_log() -> tuple[bytes, bytes, int]:
    log = MemoryLog()
    log.append(RunStarted("p", 1, 0, {}))
    for i in range(N_NODES):
        nid = str(i)
        log.append(NodeStarted(nid, "KSampler", i * 10))
        log.append(NodeInputs(nid, i * 10 + 1, INPUTS, 1))
        log.append(NodeFinished(nid, i * 10 + 5, "executed"))
    log.append(RunFinished(N_NODES * 10, "success"))
    data = log.to_bytes()
    events = read_log(data).events
    return data, msgspec.msgpack.encode(events), len(events)


def test_baseline_decode_1m(benchmark, big_log) -> None:
    _, blob, count = big_log
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])

    def decode() -> list:
        with paused_gc():  # the same conditions as the replay it is compared with
            return decoder.decode(blob)

    events = benchmark.pedantic(decode, rounds=3, iterations=1)
    assert len(events) == count
    benchmark.extra_info["events_per_second"] = round(count / benchmark.stats.stats.median)


def test_replay_1m(benchmark, big_log) -> None:
    data, blob, count = big_log

    def replay() -> dict:
        # As `runtime-metadata replay` does it: the GC paused while folding a big log.
        events = read_log(data).events
        with paused_gc():
            return runtime_document(project(None, events))

    doc = benchmark.pedantic(replay, rounds=3, iterations=1)
    assert len(doc["nodes"]) == N_NODES and doc["status"] == "success"
    per_second = count / benchmark.stats.stats.median
    benchmark.extra_info["events_per_second"] = round(per_second)
    # Baseline measured in this same run, right after.
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])
    import time

    times = []
    for _ in range(3):
        with paused_gc():
            t0 = time.perf_counter()
            decoder.decode(blob)
            times.append(time.perf_counter() - t0)
    baseline = sorted(times)[1]
    benchmark.extra_info["ratio_to_raw_decode"] = round(benchmark.stats.stats.median / baseline, 2)
    print(
        f"\nreplay: {per_second:,.0f} events/s; raw decode {count / baseline:,.0f} events/s; ratio {benchmark.stats.stats.median / baseline:.2f}x"
    )
