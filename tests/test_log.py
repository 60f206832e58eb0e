"""The event log: schema round trip, framing, and damage that loses only what is damaged.

Written as a contract suite: every check runs against the in-memory log and the file log.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from runtime_metadata.errors import LogFormatError
from runtime_metadata.events.log import (
    FRAME_OVERHEAD,
    HEADER_SIZE,
    MAGIC,
    FileLog,
    MemoryLog,
    read_log,
    read_log_file,
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
    assert result.version == SCHEMA_VERSION == 3


def test_the_header_carries_magic_and_version(make_log):
    log, stored = make_log()
    data = stored()
    assert data[:8] == MAGIC
    assert len(data) == HEADER_SIZE
    assert read_log(data).events == []


def test_a_torn_tail_loses_only_the_last_frame_and_says_so(make_log, events):
    log, stored = make_log()
    for event in events:
        log.append(event)
    data = stored()
    result = read_log(data[:-3])
    assert result.events == events[:-1]
    assert len(result.damage) == 1
    assert "truncated" in result.damage[0].reason


def test_a_flipped_bit_loses_only_the_damaged_frame(make_log, events):
    log, stored = make_log()
    for event in events:
        log.append(event)
    data = bytearray(stored())
    # Find the 5th frame and flip a bit in its payload.
    offset = HEADER_SIZE
    for _ in range(4):
        length = int.from_bytes(data[offset : offset + 4], "little")
        offset += FRAME_OVERHEAD + length
    data[offset + FRAME_OVERHEAD + 1] ^= 0x10
    result = read_log(bytes(data))
    assert result.events == events[:4] + events[5:]
    assert [d.reason for d in result.damage] == ["checksum mismatch"]
    assert result.damage[0].offset == offset


def test_a_damaged_length_prefix_resynchronises_on_the_next_frame(events):
    log = MemoryLog()
    for event in events:
        log.append(event)
    data = bytearray(log.to_bytes())
    data[HEADER_SIZE + 2] = 0x7F  # the first frame's length becomes huge
    result = read_log(bytes(data))
    assert result.events == events[1:]
    assert len(result.damage) == 1


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


def test_file_log_flushes_so_a_crash_keeps_what_was_flushed(tmp_path: Path, events):
    path = tmp_path / "crash.rtlog"
    log = FileLog(path)
    for event in events[:5]:
        log.append(event)
    log.flush()
    for event in events[5:]:
        log.append(event)  # never flushed: the process "dies" here
    assert read_log_file(path).events == events[:5]
    log.close()


def test_write_log_file_round_trip(tmp_path: Path, events):
    path = tmp_path / "x.rtlog"
    write_log_file(path, events)
    assert read_log_file(path).events == events


def test_schema_evolution_old_frames_decode_with_new_defaults():
    """A RunStarted written before `environment` existed decodes with the default."""
    old = msgspec.msgpack.encode(["RunStarted", "p", 1, 2, {}, None, "c", "v"])
    event = msgspec.msgpack.decode(old, type=AnyEvent)
    assert isinstance(event, RunStarted) and event.environment == {}
    assert isinstance(
        msgspec.msgpack.decode(msgspec.msgpack.encode(NodeFinished("1", 5, "executed")), type=AnyEvent), NodeFinished
    )


def test_a_file_log_reaches_the_disk_as_it_grows_not_only_at_the_end(tmp_path: Path):
    """A process killed mid-run leaves the header and all but the last < 64 KiB of frames."""
    path = tmp_path / "killed.rtlog"
    log = FileLog(path)
    assert read_log_file(path).events == []  # the header is there from the start
    big = NodeFinished("1", 0, "failed", "E", "x" * 1000)
    for _ in range(200):  # ~200 KB
        log.append(big)
    on_disk = read_log_file(path)  # no flush, no close: as after a crash
    assert len(on_disk.events) >= 200 - FileLog.FLUSH_BYTES // 1000 - 1
    assert all(e == big for e in on_disk.events)
    log.close()
    assert len(read_log_file(path).events) == 200


def test_a_batch_is_one_frame_and_reads_back_in_order(make_log, events):
    log, stored = make_log()
    log.append(events[0])
    log.extend(events[1:6])
    log.extend(events[6:])
    log.extend([])  # nothing to write: no frame
    data = stored()
    assert read_log(data).events == events
    frames, offset = 0, HEADER_SIZE
    while offset < len(data):
        offset += FRAME_OVERHEAD + int.from_bytes(data[offset : offset + 4], "little")
        frames += 1
    assert frames == 3


def test_damage_in_a_batch_loses_that_batch_only(events):
    log = MemoryLog()
    log.extend(events[:3])
    log.extend(events[3:6])
    log.extend(events[6:])
    data = bytearray(log.to_bytes())
    first = int.from_bytes(data[HEADER_SIZE : HEADER_SIZE + 4], "little")
    data[HEADER_SIZE + FRAME_OVERHEAD + first + FRAME_OVERHEAD + 2] ^= 0x01  # inside batch 2
    result = read_log(bytes(data))
    assert result.events == events[:3] + events[6:]
    assert [d.reason for d in result.damage] == ["checksum mismatch"]


TUPLE_FORMS = [
    (NodeStarted("7", "KSampler", 5), ("NodeStarted", "7", "KSampler", 5, None, None)),
    (NodeStarted("7.0.1", "K", 5, "7", "7"), ("NodeStarted", "7.0.1", "K", 5, "7", "7")),
    (
        NodeInputs("98:17", 6, {"seed": [1, 2], "cfg": [7.5]}, 2),
        ("NodeInputs", "98:17", 6, {"seed": [1, 2], "cfg": [7.5]}, 2),
    ),
    (NodeFinished("7", 9, "executed"), ("NodeFinished", "7", 9, "executed", None, None)),
]


@pytest.mark.parametrize(("event", "form"), TUPLE_FORMS, ids=lambda x: type(x).__name__)
def test_an_events_tuple_form_encodes_to_the_same_bytes(event, form):
    """The capture hot path appends tuples; they must be the very events the log holds."""
    assert msgspec.msgpack.encode(form) == msgspec.msgpack.encode(event)
    log = MemoryLog()
    log.extend([form])
    assert read_log(log.to_bytes()).events == [event]


def test_version_1_logs_one_event_per_frame_still_read(events):
    """Logs written before batches (schema 1) keep replaying."""
    import struct
    import zlib

    data = bytearray(MAGIC + struct.pack("<HH", 1, 0))
    for event in events:
        payload = msgspec.msgpack.encode(event)
        data += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    result = read_log(bytes(data))
    assert result.version == 1 and result.ok
    assert result.events == events
    torn = read_log(bytes(data[:-2]))
    assert torn.events == events[:-1] and len(torn.damage) == 1


def test_a_batch_with_an_int_msgpack_cannot_hold_is_still_written():
    big = NodeInputs("1", 0, {"seed": [1 << 70], "ok": [1]}, 1)
    log = MemoryLog()
    log.extend([NodeStarted("1", "X", 0), ("NodeInputs", "2", 0, {"seed": [1 << 80]}, 1), big])
    events = read_log(log.to_bytes()).events
    assert events[1] == NodeInputs("2", 0, {"seed": [str(1 << 80)]}, 1)
    assert events[2].inputs == {"seed": [str(1 << 70)], "ok": [1]}


def test_version_2_logs_read_with_the_fields_version_3_added_left_at_their_defaults():
    """Schema 3 only added fields at the ends of RunStarted and RunFinished."""
    import struct
    import zlib

    from runtime_metadata.events.schema import RunFinished, RunStarted

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
