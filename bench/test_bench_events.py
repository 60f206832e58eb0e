"""Event append and fold, each beside the raw msgspec cost of the same work.

Run: ``pytest bench --benchmark-only``; the ratio to the baseline is printed and stored in
``extra_info`` so ``--benchmark-json`` keeps it for regression comparison.
"""

from __future__ import annotations

import msgspec
import pytest

from runtime_metadata.events.log import MemoryLog, read_log
from runtime_metadata.events.schema import AnyEvent, NodeFinished, NodeInputs, NodeStarted, RunStarted
from runtime_metadata.projections.runtime import project, runtime_document

INPUTS = {
    "seed": [123456789],
    "steps": [25],
    "cfg": [7.5],
    "sampler_name": ["dpmpp_2m"],
    "scheduler": ["karras"],
    "denoise": [1.0],
    "model": [{"type": "comfy.model_patcher.ModelPatcher"}],
    "positive": [{"type": "list", "len": 1, "head": []}],
}
EVENT = NodeInputs("17", 123_456_789, INPUTS, 1)
_medians: dict[str, float] = {}


def _ratio(benchmark, name: str, baseline: str) -> None:
    _medians[name] = benchmark.stats.stats.median
    if baseline in _medians:
        ratio = _medians[name] / _medians[baseline]
        benchmark.extra_info["ratio_to_" + baseline] = round(ratio, 3)
        print(f"\n{name}: {ratio:.2f}x {baseline}")


def test_baseline_msgspec_encode(benchmark):
    """Baseline: msgspec encoding the same event into a reused buffer, no framing."""
    encoder = msgspec.msgpack.Encoder()
    buf = bytearray()

    def encode() -> None:
        encoder.encode_into(EVENT, buf, len(buf))
        if len(buf) > 1 << 20:
            buf.clear()

    benchmark(encode)
    _ratio(benchmark, "baseline_encode", "baseline_encode")


def test_log_append(benchmark):
    """One event as a frame of its own: encode into the log buffer, length prefix, crc32."""
    holder = [MemoryLog()]

    def append() -> None:
        log = holder[0]
        log.append(EVENT)
        if log.count > 5000:
            holder[0] = MemoryLog()

    benchmark(append)
    benchmark.extra_info["events_per_second"] = round(1 / benchmark.stats.stats.median)
    _ratio(benchmark, "append", "baseline_encode")


BATCH = 512


def test_log_batch_append_per_event(benchmark):
    """The capture path: 512 events (their tuple form, as the call hook appends them) as one frame.

    Reported per event (the median of a batch divided by 512), beside the single-event encode.
    """
    batch = [("NodeInputs", "17", 123_456_789, INPUTS, 1)] * BATCH
    holder = [MemoryLog()]

    def extend() -> None:
        log = holder[0]
        log.extend(batch)
        if log.count > 50_000:
            holder[0] = MemoryLog()

    benchmark(extend)
    per_event = benchmark.stats.stats.median / BATCH
    benchmark.extra_info["ns_per_event"] = round(per_event * 1e9, 1)
    benchmark.extra_info["events_per_second"] = round(1 / per_event)
    assert read_log(holder[0].to_bytes()).events[-1] == EVENT
    if "baseline_encode" in _medians:
        ratio = per_event / _medians["baseline_encode"]
        benchmark.extra_info["ratio_to_baseline_encode"] = round(ratio, 3)
        print(f"\nbatched append: {per_event * 1e9:.0f} ns per event, {ratio:.2f}x baseline_encode")


def _run_events(n_nodes: int) -> list[AnyEvent]:
    prompt = {str(i): {"class_type": "KSampler", "inputs": {"seed": 1}} for i in range(n_nodes)}
    events: list[AnyEvent] = [RunStarted("p", 1, 0, prompt)]
    for i in range(n_nodes):
        nid = str(i)
        events += [
            NodeStarted(nid, "KSampler", i * 10),
            NodeInputs(nid, i * 10 + 1, INPUTS, 1),
            NodeFinished(nid, i * 10 + 5, "executed"),
        ]
    return events


@pytest.fixture(scope="module")
def log_bytes() -> bytes:
    log = MemoryLog()
    events = _run_events(500)
    log.append(events[0])
    for start in range(1, len(events), BATCH):  # framed as the recorder frames a run
        log.extend(events[start : start + BATCH])
    return log.to_bytes()


def test_baseline_msgspec_decode(benchmark, log_bytes):
    """Baseline: msgspec decoding the same 1501 events from one msgpack array."""
    events = read_log(log_bytes).events
    blob = msgspec.msgpack.encode(events)
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])
    benchmark(decoder.decode, blob)
    benchmark.extra_info["events_per_second"] = round(len(events) / benchmark.stats.stats.median)
    _ratio(benchmark, "baseline_decode", "baseline_decode")


def test_read_and_fold(benchmark, log_bytes):
    """Production replay path: read the framed log (crc per frame) and fold it to the document."""

    def replay() -> dict:
        return runtime_document(project(None, read_log(log_bytes).events))

    doc = benchmark(replay)
    assert len(doc["nodes"]) == 500
    benchmark.extra_info["events_per_second"] = round(1501 / benchmark.stats.stats.median)
    _ratio(benchmark, "read_and_fold", "baseline_decode")
