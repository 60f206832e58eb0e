"""Replay of a 1,000,000-event log, beside the raw msgspec decode of the same events.

Replay is what ``runtime-metadata replay`` does: read the log (a CRC-32 per fragment), fold it
and build the runtime document, with the cyclic GC paused. The log is framed as the recorder
frames it: one record per node (what a log folder holds: each node's events are written when it
ends) or batches of 512 events (the in-memory log). The baseline decodes the same events from
one msgpack array with a typed decoder, measured in the same run; the goal is replay at a
million events a second, which on a machine that decodes 2.25 million a second is a ratio of
2.25. The phases (read, fold, document) are reported on their own for the record-per-node log.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest

from runtime_metadata.events.log import MemoryLog, paused_gc, read_log
from runtime_metadata.events.schema import AnyEvent, NodeFinished, NodeInputs, NodeStarted, RunFinished, RunStarted
from runtime_metadata.projections.runtime import project, runtime_document

N_NODES = 333_333  # three events per node: 999,999 + run start and end = 1,000,001 events
INPUTS = {"seed": [42], "steps": [20], "cfg": [7.0], "sampler_name": ["euler"]}
BATCH = 512


def _events() -> list[Any]:
    events: list[Any] = [RunStarted("p", 1, 0, {})]
    for i in range(N_NODES):
        nid = str(i)
        events += [
            NodeStarted(nid, "KSampler", i * 10),
            NodeInputs(nid, i * 10 + 1, dict(INPUTS, seed=[i]), 1),
            NodeFinished(nid, i * 10 + 5 + i % 7, "executed"),
        ]
    events.append(RunFinished(N_NODES * 10, "success"))
    return events


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    events = _events()
    per_node, batched = MemoryLog(), MemoryLog()
    per_node.append(events[0])
    for i in range(1, len(events) - 1, 3):
        per_node.extend(events[i : i + 3])
    per_node.append(events[-1])
    for i in range(0, len(events), BATCH):
        batched.extend(events[i : i + BATCH])
    return {
        "events": events,
        "blob": msgspec.msgpack.encode(events),
        "logs": {"per_node": per_node.to_bytes(), "batched": batched.to_bytes()},
    }


def _raw_decode_median(blob: bytes, rounds: int = 3) -> float:
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])
    times = []
    for _ in range(rounds):
        with paused_gc():
            t0 = time.perf_counter()
            decoder.decode(blob)
            times.append(time.perf_counter() - t0)
    return sorted(times)[rounds // 2]


def _report(benchmark: Any, name: str, count: int, blob: bytes) -> None:
    """Events per second, and the ratio to the raw decode measured right after, in this run."""
    median = benchmark.stats.stats.median
    baseline = _raw_decode_median(blob)
    benchmark.extra_info["events_per_second"] = round(count / median)
    benchmark.extra_info["raw_decode_events_per_second"] = round(count / baseline)
    benchmark.extra_info["ratio_to_raw_decode"] = round(median / baseline, 2)
    print(
        f"\n{name}: {count / median:,.0f} events/s; raw decode {count / baseline:,.0f} events/s; "
        f"ratio {median / baseline:.2f}x"
    )


def test_baseline_decode_1m(benchmark, run) -> None:
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])

    def decode() -> list[Any]:
        with paused_gc():  # the same conditions as the replay it is compared with
            return decoder.decode(run["blob"])

    events = benchmark.pedantic(decode, rounds=3, iterations=1)
    assert len(events) == len(run["events"])
    benchmark.extra_info["events_per_second"] = round(len(events) / benchmark.stats.stats.median)


@pytest.mark.parametrize("framing", ["per_node", "batched"])
def test_replay_1m(benchmark, run, framing) -> None:
    data = run["logs"][framing]

    def replay() -> dict[str, Any]:
        with paused_gc():  # as `runtime-metadata replay` does for a big log
            return runtime_document(project(None, read_log(data).events))

    doc = benchmark.pedantic(replay, rounds=3, iterations=1)
    assert len(doc["nodes"]) == N_NODES and doc["status"] == "success"
    assert doc["nodes"][7]["inputs"] == {"seed": 7, "steps": 20, "cfg": 7.0, "sampler_name": "euler"}
    _report(benchmark, f"replay ({framing})", len(run["events"]), run["blob"])


def test_replay_phase_read(benchmark, run) -> None:
    """Reading the record-per-node log: checksums, record assembly, one decode per buffer."""
    data = run["logs"]["per_node"]

    def read() -> list[Any]:
        with paused_gc():
            return read_log(data).events

    events = benchmark.pedantic(read, rounds=3, iterations=1)
    assert events == run["events"]
    _report(benchmark, "read", len(events), run["blob"])


def test_replay_phase_fold(benchmark, run) -> None:
    events = run["events"]

    def fold() -> Any:
        with paused_gc():
            return project(None, events)

    state = benchmark.pedantic(fold, rounds=3, iterations=1)
    assert len(state.nodes) == N_NODES
    _report(benchmark, "fold", len(events), run["blob"])


def test_replay_phase_document(benchmark, run) -> None:
    with paused_gc():
        state = project(None, run["events"])

    def document() -> dict[str, Any]:
        with paused_gc():
            return runtime_document(state)

    doc = benchmark.pedantic(document, rounds=3, iterations=1)
    assert doc["timing"]["nodes_executed"] == N_NODES
    _report(benchmark, "document", len(run["events"]), run["blob"])
