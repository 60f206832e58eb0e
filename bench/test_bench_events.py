"""Event append, fold, the file log and recovery, each beside a baseline measured in the same run.

- append: beside the raw msgspec encode of the same event;
- read and fold of a 500-node run: beside the raw msgspec decode of the same events;
- the file log: 200 MB written through ``FileLog`` beside the same records through ``MemoryLog``
  (goal: at most 2x), framed as the recorder frames them with a log folder (a record per node)
  and in batches of 512 events; the fsync of the whole file is reported on its own;
- recovery: MB/s reading a log in which every other record is damaged, beside the same log
  undamaged; and a version 2 log (frames) damaged the same way, read by the old format's path.

Run: ``pytest bench --benchmark-only``; the ratio to the baseline is printed and stored in
``extra_info`` so ``--benchmark-json`` keeps it for regression comparison. ``LOG_BENCH_MB``
sets the size written by the file-log benchmarks (default 200).
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from runtime_metadata.events.log import FRAGMENT_HEADER, MAGIC, FileLog, MemoryLog, read_log
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


# --- the file log against the in-memory log ---------------------------------------------------

WRITE_BYTES = int(os.environ.get("LOG_BENCH_MB", "200")) << 20


def _node_records(count: int) -> list[list[tuple[Any, ...]]]:
    """One node's events in the tuple form the capture hot path appends, ``count`` nodes."""
    return [
        [
            ("NodeStarted", str(i), "KSampler", i * 10, None, None),
            ("NodeInputs", str(i), i * 10 + 1, INPUTS, 1),
            ("NodeFinished", str(i), i * 10 + 5, "executed", None, None),
        ]
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def write_plan() -> dict[str, list[list[tuple[Any, ...]]]]:
    """Records adding up to WRITE_BYTES: one per node, and the same events 512 to a record."""
    distinct = _node_records(1000)
    size = len(msgspec.msgpack.encode(distinct[0])) + FRAGMENT_HEADER
    per_node = [distinct[i % 1000] for i in range(WRITE_BYTES // size)]
    flat = [event for record in per_node for event in record]
    batched = [flat[i : i + BATCH] for i in range(0, len(flat), BATCH)]
    return {"per_node": per_node, "batched": batched}


def _write(log: MemoryLog | FileLog, records: list[list[tuple[Any, ...]]]) -> None:
    extend = log.extend
    for record in records:
        extend(record)


@pytest.mark.parametrize("framing", ["per_node", "batched"])
def test_memory_log_200mb(benchmark, write_plan, framing):
    """Baseline: the same records into the in-memory log."""
    records = write_plan[framing]

    def write() -> int:
        log = MemoryLog()
        _write(log, records)
        return len(log)

    size = benchmark.pedantic(write, rounds=3, iterations=1)
    assert size > WRITE_BYTES * 0.95
    benchmark.extra_info["mb_per_second"] = round(size / benchmark.stats.stats.median / 2**20, 1)
    _ratio(benchmark, f"memory_{framing}", f"memory_{framing}")


@pytest.mark.parametrize("framing", ["per_node", "batched"])
def test_file_log_200mb(benchmark, write_plan, framing, tmp_path: Path):
    """The file log: one os.write per record, nothing kept; ratio to the in-memory log."""
    records = write_plan[framing]
    path = tmp_path / "bench.rtlog"
    syncs: list[float] = []

    def write() -> int:
        log = FileLog(path)
        _write(log, records)
        t0 = time.perf_counter()
        log.sync()  # timed apart: what the run's end adds, for the whole file at once
        syncs.append(time.perf_counter() - t0)
        log.close(sync=False)
        return log.size

    size = benchmark.pedantic(write, rounds=3, iterations=1)
    assert path.stat().st_size == size > WRITE_BYTES * 0.95
    path.unlink()
    benchmark.extra_info["mb_per_second"] = round(size / benchmark.stats.stats.median / 2**20, 1)
    benchmark.extra_info["fsync_seconds_median"] = round(sorted(syncs)[len(syncs) // 2], 3)
    _ratio(benchmark, f"file_{framing}", f"memory_{framing}")


# --- recovery -------------------------------------------------------------------------------

RECOVERY_NODES = 200_000  # about 40 MB of log


@pytest.fixture(scope="module")
def damaged_logs() -> dict[str, bytes]:
    """A record-per-node log undamaged, with every other record damaged, and a version 2 log
    (a frame per node) with every other frame damaged."""
    log = MemoryLog()
    ends = []
    for record in _node_records(RECOVERY_NODES):
        log.extend(record)
        ends.append(len(log))
    clean = log.to_bytes()
    bad = bytearray(clean)
    for end in ends[1::2]:
        bad[end - 1] ^= 0x20  # the record's last payload byte: it fails its checksum
    legacy = bytearray(MAGIC + struct.pack("<HH", 2, 0))
    for i, record in enumerate(_node_records(RECOVERY_NODES)):
        payload = msgspec.msgpack.encode(record)
        frame = bytearray(struct.pack("<II", len(payload), zlib.crc32(payload)) + payload)
        if i % 2:
            frame[2] = 0x7F  # a length that runs past the end: the reader must search
        legacy += frame
    return {"clean": clean, "damaged": bytes(bad), "legacy": bytes(legacy)}


def test_read_undamaged_log(benchmark, damaged_logs):
    """Baseline: the same log read whole, no damage."""
    data = damaged_logs["clean"]
    result = benchmark.pedantic(read_log, args=(data,), rounds=3, iterations=1)
    assert result.ok and len(result.events) == 3 * RECOVERY_NODES
    benchmark.extra_info["mb_per_second"] = round(len(data) / benchmark.stats.stats.median / 2**20, 1)
    _ratio(benchmark, "read_clean", "read_clean")


def test_recover_every_other_record_damaged(benchmark, damaged_logs):
    data = damaged_logs["damaged"]
    result = benchmark.pedantic(read_log, args=(data,), rounds=3, iterations=1)
    assert len(result.events) == 3 * (RECOVERY_NODES // 2)
    assert sum(d.reason == "checksum mismatch" for d in result.damage) == RECOVERY_NODES // 2
    benchmark.extra_info["mb_per_second"] = round(len(data) / benchmark.stats.stats.median / 2**20, 1)
    _ratio(benchmark, "recover_damaged", "read_clean")


def test_recover_version_2_every_other_frame_damaged(benchmark, damaged_logs):
    """An old log (frames anywhere): after each damaged frame the reader searches byte by byte."""
    data = damaged_logs["legacy"]
    result = benchmark.pedantic(read_log, args=(data,), rounds=3, iterations=1)
    assert result.version == 2 and len(result.events) == 3 * (RECOVERY_NODES // 2)
    benchmark.extra_info["mb_per_second"] = round(len(data) / benchmark.stats.stats.median / 2**20, 1)
    _ratio(benchmark, "recover_legacy", "read_clean")
