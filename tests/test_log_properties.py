"""Properties of the log's framing and recovery, over logs and damage that hypothesis makes up.

- Any sequence of records reads back exactly, from memory, from a file and from a stream cut
  into arbitrary pieces; fragments never cross a block boundary.
- A log cut anywhere gives exactly the records that end before the cut.
- Whatever bytes are flipped or overwritten, reading never raises, checksums each byte at most
  once, returns only whole records in their order, and returns every record whose fragments
  all lie in blocks the damage did not touch.
- Old logs (frames, versions 1 to 3) under the same damage: never raise, bounded work.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from runtime_metadata.events.log import (
    BLOCK_SIZE,
    FRAGMENT_HEADER,
    HEADER_SIZE,
    LAST,
    LEGACY_SCAN_FACTOR,
    MAGIC,
    FileLog,
    MemoryLog,
    read_log,
    read_log_stream,
)
from runtime_metadata.events.schema import NodeFinished, NodeInputs, NodeStarted

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Record sizes around what matters: tiny, a block's room, just over it, several blocks.
SIZES = st.one_of(
    st.integers(0, 300),
    st.integers(BLOCK_SIZE - 2 * FRAGMENT_HEADER - 64, BLOCK_SIZE + 64),
    st.integers(300, 3 * BLOCK_SIZE),
)


@st.composite
def records(draw: st.DrawFn, max_records: int = 40) -> list[list[object]]:
    """Records of 1 to 3 events each; the text input sets each record's size."""
    out = []
    for i, size in enumerate(draw(st.lists(SIZES, min_size=0, max_size=max_records))):
        nid = str(i)
        record: list[object] = [NodeInputs(nid, i, {"t": ["x" * size]}, 1)]
        if draw(st.booleans()):
            record.insert(0, NodeStarted(nid, "X", i))
            record.append(NodeFinished(nid, i + 1, "executed"))
        out.append(record)
    return out


def write(recs: list[list[object]]) -> tuple[bytes, list[tuple[int, int]]]:
    """The log of ``recs`` (a MemoryLog) and (start, end) of each record in it."""
    log = MemoryLog()
    spans = []
    for record in recs:
        start = len(log)
        log.extend(record)
        spans.append((start, len(log)))
    return log.to_bytes(), spans


def fragments(data: bytes) -> list[tuple[int, int, int]]:
    out, pos = [], HEADER_SIZE
    while pos < len(data):
        left = BLOCK_SIZE - pos % BLOCK_SIZE
        if left < FRAGMENT_HEADER:
            assert data[pos : pos + left] == bytes(left)
            pos += left
            continue
        _, length, kind = struct.unpack_from("<IHB", data, pos)
        out.append((pos, kind, length))
        pos += FRAGMENT_HEADER + length
    return out


def flat(recs: list[list[object]]) -> list[object]:
    return [event for record in recs for event in record]


class Trickle(io.RawIOBase):
    """A stream returning the data in the pieces given (cycled), like a pipe."""

    def __init__(self, data: bytes, pieces: list[int]) -> None:
        self.data, self.pieces, self.pos, self.i = data, pieces, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def]
        n = min(len(b), self.pieces[self.i % len(self.pieces)], len(self.data) - self.pos)
        self.i += 1
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


class CrcSpy:
    """Counts the bytes handed to the real zlib.crc32 while in its ``with`` block."""

    def __enter__(self) -> CrcSpy:
        self.bytes = 0
        self._patch = pytest.MonkeyPatch()
        real = zlib.crc32

        def crc32(data, value=0):  # type: ignore[no-untyped-def]
            self.bytes += len(data)
            return real(data, value)

        self._patch.setattr(zlib, "crc32", crc32)
        return self

    def __exit__(self, *exc: object) -> None:
        self._patch.undo()


@SETTINGS
@given(records(), st.lists(st.integers(1, 70_000), min_size=1, max_size=5))
def test_any_records_read_back_exactly_from_memory_a_file_and_a_stream(tmp_path_factory, recs, pieces):
    data, spans = write(recs)
    assert read_log(data).events == flat(recs) and read_log(data).ok
    for offset, _, length in fragments(data):  # no fragment crosses a block boundary
        assert offset // BLOCK_SIZE == (offset + FRAGMENT_HEADER + length - 1) // BLOCK_SIZE
    path = Path(tmp_path_factory.mktemp("log")) / "x.rtlog"
    with FileLog(path) as log:
        for record in recs:
            log.extend(record)
    assert path.read_bytes() == data  # both backends write the same bytes
    streamed = read_log_stream(Trickle(data, pieces))
    assert streamed.ok and streamed.events == flat(recs) and streamed.size == len(data)


@SETTINGS
@given(records(), st.data())
def test_a_log_cut_anywhere_gives_the_records_that_end_before_the_cut(recs, data_strategy):
    data, spans = write(recs)
    cut = data_strategy.draw(st.integers(HEADER_SIZE, len(data)))
    result = read_log(data[:cut])
    whole = [record for record, (_, end) in zip(recs, spans, strict=True) if end <= cut]
    # A cut at a block's zero trailer, or right after a record, is no damage at all.
    assert result.events == flat(whole)
    last_end = max([end for _, end in spans if end <= cut], default=HEADER_SIZE)
    for damage in result.damage:
        assert damage.offset >= last_end and damage.offset + damage.length <= cut and "torn" in damage.reason
    if result.damage:
        assert result.damage[-1].offset + result.damage[-1].length == cut


DAMAGE = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(st.just("zeros"), st.integers(0, 1 << 30), st.integers(1, 3 * BLOCK_SIZE)),
    st.tuples(st.just("bytes"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=600)),
)


def damaged(data: bytes, hits: list[tuple]) -> tuple[bytes, set[int]]:
    """``data`` with ``hits`` applied after its header; the indexes of the blocks they touched."""
    out = bytearray(data)
    room = len(out) - HEADER_SIZE
    touched: set[int] = set()
    for kind, where, what in hits:
        at = HEADER_SIZE + where % room
        if kind == "flip":
            out[at] ^= 1 << what
            end = at + 1
        else:
            fill = bytes(what) if kind == "zeros" else what
            end = min(len(out), at + len(fill))
            if out[at:end] == fill[: end - at]:
                continue  # no change at all: not damage
            out[at:end] = fill[: end - at]
        touched.update(range(at // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1))
    return bytes(out), touched


@SETTINGS
@given(records(max_records=30), st.lists(DAMAGE, min_size=1, max_size=6))
def test_damage_loses_only_records_in_damaged_blocks_in_one_pass(recs, hits):
    data, spans = write(recs)
    assume(len(data) > HEADER_SIZE)
    bad, touched = damaged(data, hits)
    with CrcSpy() as spy:
        result = read_log(bad)
    assert spy.bytes <= len(bad)  # every byte checksummed at most once
    # Only whole records, in order: the events are the concatenation of a subsequence of them.
    kept = iter(recs)
    events = result.events
    at = 0
    while at < len(events):
        record = next(kept)  # StopIteration here: an event that is not an original record's
        if events[at : at + len(record)] == record:
            at += len(record)
    # Every record outside the damaged blocks is there.
    got = {id(record) for record in recs if _contains(events, record)}
    for record, (start, end) in zip(recs, spans, strict=True):
        blocks = set(range(start // BLOCK_SIZE, (end - 1) // BLOCK_SIZE + 1))
        if not blocks & touched:
            assert id(record) in got, (start, end, touched)
    if bad != data:
        assert result.damage or result.events == flat(recs)


def _contains(events: list[object], record: list[object]) -> bool:
    n = len(record)
    return any(events[i : i + n] == record for i in range(len(events) - n + 1))


@SETTINGS
@given(records(max_records=25), st.lists(DAMAGE, min_size=1, max_size=4), st.integers(1, 9000))
def test_a_damaged_stream_reads_as_the_same_bytes_in_memory(recs, hits, piece):
    data, _ = write(recs)
    assume(len(data) > HEADER_SIZE)
    bad, _ = damaged(data, hits)
    in_memory = read_log(bad)
    streamed = read_log_stream(Trickle(bad, [piece]))
    assert streamed.events == in_memory.events
    assert streamed.damage == in_memory.damage


def legacy(version: int, recs: list[list[object]]) -> bytes:
    data = bytearray(MAGIC + struct.pack("<HH", version, 0))
    for record in recs:
        for payload in (
            [msgspec.msgpack.encode(e) for e in record] if version == 1 else [msgspec.msgpack.encode(record)]
        ):
            data += struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    return bytes(data)


@SETTINGS
@given(st.sampled_from([1, 2, 3]), records(max_records=25), st.lists(DAMAGE, min_size=1, max_size=6))
def test_old_logs_under_damage_never_raise_and_cost_linear_work(version, recs, hits):
    data = legacy(version, recs)
    assume(len(data) > HEADER_SIZE)
    bad, _ = damaged(data, hits)
    with CrcSpy() as spy:
        result = read_log(bad)
    assert spy.bytes <= (LEGACY_SCAN_FACTOR + 1) * len(bad) + BLOCK_SIZE
    originals = flat(recs)
    for event in result.events:  # nothing made up
        assert event in originals


def test_the_last_fragment_of_a_record_is_last():
    """A record over several blocks: FIRST, MIDDLEs, LAST, in that order, once."""
    data, _ = write([[NodeInputs("1", 0, {"t": ["y" * (3 * BLOCK_SIZE)]}, 1)]])
    kinds = [kind for _, kind, _ in fragments(data)]
    assert kinds[0] == 2 and kinds[-1] == LAST and set(kinds[1:-1]) == {3}
