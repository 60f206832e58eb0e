"""The event log: schema round trip, framing in blocks, and damage that loses only what is damaged.

Written as a contract suite: every check of the format runs against the in-memory log and the
file log. Recovery is checked for its cost too (bytes checksummed, counted by a spy around the
real ``zlib.crc32``), since a reader that is right but quadratic stalls on a damaged file.
"""

from __future__ import annotations

import os
import struct
import threading
import time
import tracemalloc
import zlib
from pathlib import Path

import msgspec
import pytest

from runtime_metadata.errors import LogFormatError
from runtime_metadata.events.log import (
    BLOCK_SIZE,
    FIRST,
    FRAGMENT_HEADER,
    FULL,
    HEADER_SIZE,
    LAST,
    LEGACY_SCAN_FACTOR,
    MAGIC,
    MIDDLE,
    FileLog,
    MemoryLog,
    read_log,
    read_log_file,
    read_log_stream,
    write_log_file,
)
from runtime_metadata.events.schema import (
    SCHEMA_VERSION,
    AnyEvent,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunStarted,
)

from .conftest import run_events


@pytest.fixture(params=["memory", "file"])
def make_log(request, tmp_path: Path):
    """Build a log of either backend; ``stored()`` gives the bytes as a reader would see them."""

    def factory():
        if request.param == "memory":
            log = MemoryLog()
            return log, log.to_bytes
        log = FileLog(tmp_path / "run.rtlog")

        def stored() -> bytes:
            log.close()
            return (tmp_path / "run.rtlog").read_bytes()

        return log, stored

    return factory


def fragments(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, payload length) of every fragment of an undamaged version 4 log."""
    out, pos = [], HEADER_SIZE
    while pos < len(data):
        left = BLOCK_SIZE - pos % BLOCK_SIZE
        if left < FRAGMENT_HEADER:
            assert data[pos : pos + left] == bytes(left)  # a block's trailer is zeros
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        out.append((pos, kind, length))
        pos += FRAGMENT_HEADER + length
    return out


def node_events(n: int, text: int = 0) -> list[AnyEvent]:
    """A run of ``n`` nodes, three events each; ``text`` characters of input per node."""
    events: list[AnyEvent] = [RunStarted("p", 1, 0, {"1": {"class_type": "X", "inputs": {}}})]
    for i in range(n):
        nid = str(i)
        events += [
            NodeStarted(nid, "X", i),
            NodeInputs(nid, i, {"v": [i], "s": ["x" * text]}, 1),
            NodeFinished(nid, i, "executed"),
        ]
    return events


def write_per_node(log, events: list[AnyEvent]) -> list[int]:
    """Frame ``events`` as the recorder does with a log folder: one record per node; returns the
    offset where each record starts."""
    starts = [len(log.to_bytes()) if isinstance(log, MemoryLog) else log.size]
    log.append(events[0])
    for i in range(1, len(events), 3):
        starts.append(len(log.to_bytes()) if isinstance(log, MemoryLog) else log.size)
        log.extend(events[i : i + 3])
    return starts


class CrcSpy:
    """Counts the bytes handed to the real zlib.crc32 (the reader's work, measured exactly)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.bytes = 0
        real = zlib.crc32

        def crc32(data, value=0):
            self.bytes += len(data)
            return real(data, value)

        monkeypatch.setattr(zlib, "crc32", crc32)


# --- the contract, on both backends ---------------------------------------------------------


def test_every_event_type_round_trips_through_msgpack(events):
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(AnyEvent)
    for event in events:
        assert decoder.decode(encoder.encode(event)) == event


def test_events_are_frozen(events):
    with pytest.raises(AttributeError):
        events[0].prompt_id = "other"  # type: ignore[misc]


def test_a_log_reads_back_exactly_what_was_appended(make_log, events):
    log, stored = make_log()
    for event in events:
        log.append(event)
    result = read_log(stored())
    assert result.ok
    assert result.events == events
    assert result.version == SCHEMA_VERSION == 4


def test_the_header_carries_magic_and_version(make_log):
    log, stored = make_log()
    data = stored()
    assert data[:8] == MAGIC
    assert struct.unpack_from("<H", data, 8)[0] == 4
    assert len(data) == HEADER_SIZE
    assert read_log(data).events == []


def test_a_torn_tail_loses_only_the_last_record_and_says_so(make_log, events):
    log, stored = make_log()
    for event in events:
        log.append(event)
    data = stored()
    for cut in (1, 3, FRAGMENT_HEADER + 1):
        result = read_log(data[:-cut])
        assert result.events == events[:-1]
        assert len(result.damage) == 1
        assert "torn tail" in result.damage[0].reason


def test_a_flipped_bit_in_a_payload_loses_only_that_record(make_log, events):
    log, stored = make_log()
    for event in events:
        log.append(event)
    data = bytearray(stored())
    offset, kind, _ = fragments(bytes(data))[4]
    assert kind == FULL
    data[offset + FRAGMENT_HEADER + 1] ^= 0x10
    result = read_log(bytes(data))
    assert result.events == events[:4] + events[5:]
    assert [(d.offset, d.reason) for d in result.damage] == [(offset, "checksum mismatch")]


def test_a_batch_is_one_record_and_reads_back_in_order(make_log, events):
    log, stored = make_log()
    log.append(events[0])
    log.extend(events[1:6])
    log.extend(events[6:])
    log.extend([])  # nothing to write: no record
    data = stored()
    assert read_log(data).events == events
    assert [kind for _, kind, _ in fragments(data)] == [FULL, FULL, FULL]


def test_a_record_larger_than_a_block_is_cut_at_block_boundaries(make_log):
    log, stored = make_log()
    big = [NodeInputs("1", 0, {"text": ["y" * 3000]}, 1)] * 40  # ~120 KB: four blocks
    log.append(NodeStarted("1", "X", 0))
    log.extend(big)
    log.append(NodeFinished("1", 9, "executed"))
    data = stored()
    frags = fragments(data)
    assert [kind for _, kind, _ in frags] == [FULL, FIRST, MIDDLE, MIDDLE, LAST, FULL]
    for offset, _, length in frags:  # none crosses a block boundary
        assert offset // BLOCK_SIZE == (offset + FRAGMENT_HEADER + length - 1) // BLOCK_SIZE
    assert read_log(data).events == [NodeStarted("1", "X", 0), *big, NodeFinished("1", 9, "executed")]


def test_a_block_with_less_room_than_a_fragment_header_ends_in_zeros(make_log):
    log, stored = make_log()
    # A first record that ends 3 bytes before block 0 does: the next one starts block 1.
    target = BLOCK_SIZE - 3 - HEADER_SIZE - FRAGMENT_HEADER
    text = "z" * (target - len(msgspec.msgpack.encode([NodeInputs("1", 0, {"t": [""]}, 1)])) - 2)
    record = [NodeInputs("1", 0, {"t": [text]}, 1)]
    assert len(msgspec.msgpack.encode(record)) == target
    log.extend(record)
    log.append(NodeFinished("1", 1, "executed"))
    data = stored()
    assert data[BLOCK_SIZE - 3 : BLOCK_SIZE] == b"\0\0\0"
    assert [offset for offset, _, _ in fragments(data)] == [HEADER_SIZE, BLOCK_SIZE]
    assert read_log(data).events == [*record, NodeFinished("1", 1, "executed")]


@pytest.mark.parametrize(
    ("event", "form"),
    [
        (NodeStarted("7", "KSampler", 5), ("NodeStarted", "7", "KSampler", 5, None, None)),
        (NodeStarted("7.0.1", "K", 5, "7", "7"), ("NodeStarted", "7.0.1", "K", 5, "7", "7")),
        (
            NodeInputs("98:17", 6, {"seed": [1, 2], "cfg": [7.5]}, 2),
            ("NodeInputs", "98:17", 6, {"seed": [1, 2], "cfg": [7.5]}, 2),
        ),
        (NodeFinished("7", 9, "executed"), ("NodeFinished", "7", 9, "executed", None, None)),
    ],
    ids=lambda x: type(x).__name__,
)
def test_an_events_tuple_form_encodes_to_the_same_bytes(event, form):
    """The capture hot path appends tuples; they must be the very events the log holds."""
    assert msgspec.msgpack.encode(form) == msgspec.msgpack.encode(event)
    log = MemoryLog()
    log.extend([form])
    assert read_log(log.to_bytes()).events == [event]


def test_a_batch_with_an_int_msgpack_cannot_hold_is_still_written():
    big = NodeInputs("1", 0, {"seed": [1 << 70], "ok": [1]}, 1)
    log = MemoryLog()
    log.extend([NodeStarted("1", "X", 0), ("NodeInputs", "2", 0, {"seed": [1 << 80]}, 1), big])
    events = read_log(log.to_bytes()).events
    assert events[1] == NodeInputs("2", 0, {"seed": [str(1 << 80)]}, 1)
    assert events[2].inputs == {"seed": [str(1 << 70)], "ok": [1]}


def test_not_a_log_is_a_clear_error():
    with pytest.raises(LogFormatError, match="bad magic"):
        read_log(b"\x89PNG\r\n\x1a\n" + b"\0" * 32)
    with pytest.raises(LogFormatError, match="shorter than its header"):
        read_log(b"")


def test_a_newer_schema_is_refused_with_its_version():
    data = bytearray(MemoryLog().to_bytes())
    data[8] = 99
    with pytest.raises(LogFormatError, match="99"):
        read_log(bytes(data))


def test_schema_evolution_old_frames_decode_with_new_defaults():
    """A RunStarted written before `environment` existed decodes with the default."""
    old = msgspec.msgpack.encode(["RunStarted", "p", 1, 2, {}, None, "c", "v"])
    event = msgspec.msgpack.decode(old, type=AnyEvent)
    assert isinstance(event, RunStarted) and event.environment == {}
    assert isinstance(
        msgspec.msgpack.decode(msgspec.msgpack.encode(NodeFinished("1", 5, "executed")), type=AnyEvent), NodeFinished
    )


def test_write_log_file_round_trip(tmp_path: Path, events):
    path = tmp_path / "x.rtlog"
    write_log_file(path, events)
    assert read_log_file(path).events == events


# --- damage: what is lost, and what it costs ------------------------------------------------


def test_a_damaged_fragment_header_loses_at_most_the_rest_of_its_block():
    log = MemoryLog()
    events = node_events(600, text=40)  # ~60 KB: records in blocks 0 and 1
    starts = write_per_node(log, events)
    data = bytearray(log.to_bytes())
    record = 10
    data[starts[record] + 5] = 0x7F  # its length becomes larger than any block
    result = read_log(bytes(data))
    assert [d.reason for d in result.damage][0] == "fragment longer than its block (damaged)"
    assert result.damage[0].offset == starts[record]
    # Records 0..9 and every record that starts in block 1 are read; those in between are lost.
    first_in_block_1 = next(i for i, s in enumerate(starts) if s >= BLOCK_SIZE)
    kept = events[: 1 + 3 * (record - 1)]
    assert result.events[: len(kept)] == kept
    tail = events[1 + 3 * (first_in_block_1 - 1) :]
    assert result.events[-len(tail) :] == tail
    assert len(result.events) == len(kept) + len(tail)


def test_a_record_across_blocks_is_lost_whole_when_one_of_its_fragments_is(make_log):
    log, stored = make_log()
    log.append(NodeStarted("0", "X", 0))
    log.extend([NodeInputs("1", 0, {"text": ["y" * 3000]}, 1)] * 40)
    log.append(NodeFinished("2", 9, "executed"))
    data = bytearray(stored())
    middle = fragments(bytes(data))[2]
    assert middle[1] == MIDDLE
    data[middle[0] + FRAGMENT_HEADER + 100] ^= 1
    result = read_log(bytes(data))
    assert result.events == [NodeStarted("0", "X", 0), NodeFinished("2", 9, "executed")]
    reasons = [d.reason for d in result.damage]
    assert reasons[:2] == ["record lost with a damaged fragment", "checksum mismatch"]
    assert set(reasons[2:]) == {"fragment of a record whose start was lost"}


def test_a_record_that_checks_out_but_does_not_decode_loses_only_itself(make_log):
    """Records are decoded together; one that fails sends the reader back to decode one by one."""
    log, stored = make_log()
    events = node_events(40)
    for i in range(0, 63, 3):
        log.extend(events[i : i + 3])
    log.add_record(msgspec.msgpack.encode([["NodeFromTheFuture", 1]]), 1)  # a valid crc
    for i in range(63, len(events), 3):
        log.extend(events[i : i + 3])
    result = read_log(stored())
    assert result.events == events
    assert len(result.damage) == 1 and "undecodable" in result.damage[0].reason


ADVERSARIAL_UNITS = {
    # Fake version-2 frame headers claiming 20,000-byte frames, every 8 bytes: the old
    # byte-by-byte resynchronisation checksummed up to 20 KB at each of them.
    "v2 frame headers": struct.pack("<I", 20000) + b"\x11\x22\x33\x44",
    # Fake version-4 fragment headers claiming the longest fragment a block can hold.
    "v4 fragment headers": struct.pack("<IHB", 0xDEADBEEF, BLOCK_SIZE - FRAGMENT_HEADER, FULL) + b"\x01",
    "zeros": bytes(8),
}


@pytest.mark.parametrize("unit", ADVERSARIAL_UNITS.values(), ids=ADVERSARIAL_UNITS.keys())
def test_damage_costs_at_most_one_checksum_pass(monkeypatch, unit):
    """Whatever fills a damaged stretch, no byte of the log is checksummed twice."""
    log = MemoryLog()
    events = node_events(2000, text=100)
    for i in range(0, len(events), 30):
        log.extend(events[i : i + 30])
    data = bytearray(log.to_bytes())
    mid = len(data) // 3
    data[mid : mid + 4 * BLOCK_SIZE] = unit * (4 * BLOCK_SIZE // len(unit))
    spy = CrcSpy(monkeypatch)
    result = read_log(bytes(data))
    assert result.damage
    assert spy.bytes <= len(data)
    assert len(result.events) > len(events) // 2  # what lies outside the damage is read


def test_every_other_damaged_fragment_is_read_in_one_pass(monkeypatch):
    log = MemoryLog()
    events = node_events(3000, text=20)
    starts = write_per_node(log, events)
    data = bytearray(log.to_bytes())
    for i in range(1, len(starts), 2):  # every other record: a payload bit flipped
        data[starts[i] + FRAGMENT_HEADER + 2] ^= 0x40
    spy = CrcSpy(monkeypatch)
    result = read_log(bytes(data))
    assert spy.bytes <= len(data)
    expected = [events[0]]
    for node in range(1, len(starts) - 1, 2):
        expected += events[1 + 3 * node : 4 + 3 * node]
    assert result.events == expected
    # One mismatch per damaged record (a record across a block boundary adds its orphan tail).
    assert sum(d.reason == "checksum mismatch" for d in result.damage) == len(starts) // 2


# --- versions 1 to 3, written before blocks ------------------------------------------------


def legacy_log(version: int, events: list[AnyEvent], per_frame: int = 1) -> tuple[bytearray, list[int]]:
    """A version 1 (an event per frame), 2 or 3 (a batch per frame) log; returns it and frame offsets."""
    data = bytearray(MAGIC + struct.pack("<HH", version, 0))
    offsets = []
    for i in range(0, len(events), per_frame):
        chunk = events[i : i + per_frame]
        payload = msgspec.msgpack.encode(chunk[0] if version == 1 else chunk)
        offsets.append(len(data))
        data += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    return data, offsets


@pytest.mark.parametrize("version", [1, 2, 3])
def test_version_1_to_3_logs_still_read(version, events):
    """Logs on users' disks, written before blocks, keep replaying; a torn tail is reported."""
    data, _ = legacy_log(version, events)
    result = read_log(bytes(data))
    assert result.version == version and result.ok
    assert result.events == events
    torn = read_log(bytes(data[:-2]))
    assert torn.events == events[:-1] and len(torn.damage) == 1


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_damaged_legacy_frame_is_skipped_and_the_next_found(version):
    events = node_events(50)
    data, offsets = legacy_log(version, events)
    data[offsets[7] + 2] = 0x7F  # frame 7's length becomes huge
    result = read_log(bytes(data))
    assert result.events == events[:7] + events[8:]
    assert len(result.damage) == 1 and result.damage[0].offset == offsets[7]


def test_legacy_damaged_lengths_claiming_megabytes_cost_no_checksum_of_them(monkeypatch):
    """Every other frame's length prefix hit, each now claiming 128 KB more, inside the file: the
    frames between are all found within the search budget (a frame claiming more than a block
    is checksummed only if another frame starts where it ends)."""
    events = node_events(3000, text=20)
    data, offsets = legacy_log(2, events, per_frame=3)
    assert len(data) > 300_000
    for offset in offsets[1::2]:
        data[offset + 2] = 0x02  # + 131,072 bytes: inside the file for most of them
    spy = CrcSpy(monkeypatch)
    result = read_log(bytes(data))
    kept = [e for i in range(0, len(offsets), 2) for e in events[3 * i : 3 * i + 3]]
    assert result.events == kept
    assert spy.bytes <= LEGACY_SCAN_FACTOR * len(data)


def test_legacy_recovery_is_bounded_even_against_fake_frames(monkeypatch):
    """Fake frames that start like events and claim long lengths: the search stops at its budget
    and says what it did not scan, instead of checksumming the file once per byte."""
    events = node_events(400, text=50)
    data, _ = legacy_log(3, events, per_frame=30)
    fake_payload_start = b"\x91\x96\xabNodeStarted"
    mid = len(data) // 4
    span = len(data) // 2
    fake = b""
    while len(fake) < span:  # each fake claims the rest of the file, minus a little
        fake += struct.pack("<II", len(data) - mid - len(fake) - 64, 0) + fake_payload_start
    data[mid : mid + span] = fake[:span]
    spy = CrcSpy(monkeypatch)
    result = read_log(bytes(data))
    assert spy.bytes <= LEGACY_SCAN_FACTOR * len(data) + BLOCK_SIZE + len(data)
    assert "not scanned" in result.damage[-1].reason
    assert result.damage[-1].offset + result.damage[-1].length == len(data)
    assert result.events[:30] == events[:30]


def test_legacy_recovery_of_random_garbage_finds_every_frame_after_it(monkeypatch):
    """Bytes that do not start like events cost nothing to skip: no budget is spent on them."""
    events = node_events(300)
    data, offsets = legacy_log(2, events, per_frame=10)
    garbage = bytes((i * 7919 + 13) % 251 for i in range(64 * 1024))
    data[offsets[3] : offsets[3]] = garbage  # inserted before frame 3
    spy = CrcSpy(monkeypatch)
    result = read_log(bytes(data))
    assert result.events == events
    assert spy.bytes <= 2 * len(data)
    assert [(d.offset, d.length) for d in result.damage] == [(offsets[3], len(garbage))]


# --- the file log: cost, memory, durability, failure ------------------------------------------


def test_a_file_log_holds_no_copy_of_the_log_in_memory(tmp_path: Path):
    """Memory stays within one record whatever the log's size (it used to keep, and copy, it all)."""
    payload = NodeInputs("1", 0, {"text": ["y" * 3000]}, 1)
    tracemalloc.start()
    try:
        log = FileLog(tmp_path / "big.rtlog")
        for _ in range(3000):  # ~9 MB
            log.extend([payload])
        _, peak = tracemalloc.get_traced_memory()
        log.close()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 1024
    result = read_log_file(tmp_path / "big.rtlog")
    assert result.ok and len(result.events) == 3000


def test_every_record_is_in_the_file_when_extend_returns(tmp_path: Path):
    """What a process kill can lose is only what was not handed to the log yet."""
    path = tmp_path / "killed.rtlog"
    log = FileLog(path)
    assert read_log_file(path).events == []  # the header is there from the start
    events = node_events(30)
    log.append(events[0])
    for i in range(1, len(events), 3):
        log.extend(events[i : i + 3])
        on_disk = read_log_file(path)  # no flush, no close: as after a kill
        assert on_disk.ok and on_disk.events == events[: i + 3]
    log.close()


def test_a_file_log_reads_itself_back_before_and_after_close(tmp_path: Path, events):
    log = FileLog(tmp_path / "r.rtlog")
    for event in events:
        log.append(event)
    assert read_log(log.to_bytes()).events == events == log.events()
    assert len(log) == log.size == (tmp_path / "r.rtlog").stat().st_size
    log.close()
    assert read_log(log.to_bytes()).events == events


def test_a_failing_disk_keeps_the_run_in_memory_and_says_so_once():
    """/dev/full refuses every write (ENOSPC): the run stays whole in memory, one report."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    errors: list[OSError] = []
    log = FileLog("/dev/full", on_error=errors.append)
    events = node_events(20)
    for i in range(0, len(events), 3):
        log.extend(events[i : i + 3])
    assert log.error and len(errors) == 1 and "No space" in str(errors[0])
    assert read_log(log.to_bytes()).events == events
    log.close()


def test_a_file_that_stops_growing_mid_run_keeps_the_rest_in_memory(tmp_path: Path):
    """RLIMIT_FSIZE makes the kernel cut a write short, then refuse the next ones (EFBIG), as a
    full disk does: what reached the file stays readable, the rest is kept, one report."""
    import subprocess
    import sys
    import textwrap

    child = textwrap.dedent(
        """
        import resource, signal, sys
        from runtime_metadata.events.log import FileLog, read_log, read_log_file
        from runtime_metadata.events.schema import NodeFinished, NodeInputs, NodeStarted

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, resource.RLIM_INFINITY))
        errors = []
        log = FileLog(sys.argv[1], on_error=errors.append)
        events = []
        for i in range(300):
            node = [NodeStarted(str(i), "X", i), NodeInputs(str(i), i, {"v": [i]}, 1), NodeFinished(str(i), i, "executed")]
            log.extend(node)
            events += node
        assert log.error and len(errors) == 1, errors
        assert read_log(log.to_bytes()).events == events  # the whole run, file + memory
        on_disk = read_log_file(sys.argv[1])
        assert on_disk.events == events[: len(on_disk.events)] and len(on_disk.events) > 30
        assert on_disk.damage and "torn" in on_disk.damage[-1].reason  # the write cut short
        log.close()
        print("ok", len(on_disk.events), errors[0].errno)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "capped.rtlog")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ") and out.stdout.split()[2] == "27"  # EFBIG


# --- bounded and streamed reading -----------------------------------------------------------


def test_a_stream_is_read_a_buffer_at_a_time_and_gives_the_same_events(tmp_path: Path):
    import io

    log = MemoryLog()
    events = node_events(20_000, text=10)  # ~1.5 MB: several read buffers
    write_per_node(log, events)
    data = log.to_bytes()

    class Trickle(io.RawIOBase):
        """A pipe-like stream: returns at most 1000 bytes per read."""

        def __init__(self) -> None:
            self.pos = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            n = min(len(b), 1000, len(data) - self.pos)
            b[:n] = data[self.pos : self.pos + n]
            self.pos += n
            return n

    result = read_log_stream(Trickle())
    assert result.ok and result.events == events and result.size == len(data)
    cut = read_log_stream(io.BytesIO(data), max_bytes=300_000)
    assert cut.size == 300_000 and cut.events == events[: len(cut.events)]
    assert "reading stopped at the 300000-byte limit" in cut.describe_damage()


def test_dev_zero_is_refused_without_reading_it():
    with pytest.raises(LogFormatError):
        read_log_file("/dev/zero")
    with open("/dev/zero", "rb") as zero, pytest.raises(LogFormatError, match="bad magic"):
        read_log_stream(zero)


def test_a_fifo_is_refused_before_any_read_blocks(tmp_path: Path):
    fifo = tmp_path / "pipe.rtlog"
    os.mkfifo(fifo)
    outcome: list[object] = []
    thread = threading.Thread(target=lambda: outcome.append(_read_or_error(fifo)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "reading a FIFO with no writer blocked"
    assert isinstance(outcome[0], LogFormatError) and "not a regular file" in str(outcome[0])


def _read_or_error(path: Path) -> object:
    try:
        return read_log_file(path)
    except LogFormatError as exc:
        return exc


def test_an_endless_stream_stops_at_the_limit():
    """A valid header followed by endless garbage (a FIFO fed forever) ends at ``max_bytes``."""

    class Endless:
        def __init__(self) -> None:
            self.head = MemoryLog().to_bytes()

        def read(self, n: int) -> bytes:
            if self.head:
                out, self.head = self.head[:n], self.head[n:]
                return out
            return b"\x5a" * n

    result = read_log_stream(Endless(), max_bytes=5 * BLOCK_SIZE)  # type: ignore[arg-type]
    assert result.size == 5 * BLOCK_SIZE and result.events == []
    assert "limit" in result.damage[-1].reason


def test_version_2_logs_read_with_the_fields_version_3_added_left_at_their_defaults():
    """Schema 3 only added fields at the ends of RunStarted and RunFinished."""
    from runtime_metadata.events.schema import RunFinished

    # Version 2's RunStarted and RunFinished, as msgpack arrays of their fields then.
    v2 = [["RunStarted", "p", 1, 2, {}, None, "c", "0.1", {}], ["RunFinished", 9, "success", None, None]]
    payload = msgspec.msgpack.encode(v2)
    data = MAGIC + struct.pack("<HH", 2, 0) + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    result = read_log(data)
    assert result.ok and result.version == 2
    started, finished = result.events
    assert started == RunStarted("p", 1, 2, {}, None, "c", "0.1", {})
    assert started.client_id is None and started.worker_id is None
    assert finished == RunFinished(9, "success") and finished.images == []


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_finished_log_is_fsynced_on_the_syncer_thread_not_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow disk (here: an fsync that takes 0.5 s) never holds up the thread closing the log."""
    from runtime_metadata.events import log as log_module

    real_fsync = os.fsync
    synced: list[tuple[int, str]] = []

    def slow_fsync(fd: int) -> None:
        time.sleep(0.5)
        real_fsync(fd)
        synced.append((fd, threading.current_thread().name))

    monkeypatch.setattr(os, "fsync", slow_fsync)
    before = _open_fds()
    log = FileLog(tmp_path / "run.rtlog")
    log.extend(run_events())
    started = time.monotonic()
    log.close_later()
    assert time.monotonic() - started < 0.25  # did not wait for the fsync
    assert read_log_file(tmp_path / "run.rtlog").events == run_events()  # every byte is there already
    assert log_module.wait_for_fsync(timeout=5)
    assert [name for _, name in synced] == ["runtime-metadata-fsync"]
    assert _open_fds() == before  # and the syncer closed it


def test_past_the_fsync_backlog_logs_are_closed_without_one_and_it_is_said_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from runtime_metadata.errors import forget_reports
    from runtime_metadata.events import log as log_module

    release = threading.Event()
    real_fsync = os.fsync

    def stuck_fsync(fd: int) -> None:  # a disk that stopped answering
        release.wait(10)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", stuck_fsync)
    forget_reports()
    before = _open_fds()
    n = log_module.SYNC_BACKLOG + 5  # one is being synced, SYNC_BACKLOG wait, the rest are refused
    for i in range(n):
        log = FileLog(tmp_path / f"{i}.rtlog")
        log.extend(run_events())
        log.close_later()
    assert _open_fds() - before == log_module.SYNC_BACKLOG + 1  # the others were closed at once
    assert sum("behind on fsync" in r.getMessage() for r in caplog.records) == 1
    release.set()
    assert log_module.wait_for_fsync(timeout=10)
    assert _open_fds() == before
    assert all(read_log_file(tmp_path / f"{i}.rtlog").events == run_events() for i in range(n))
