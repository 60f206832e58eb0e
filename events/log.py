"""The per-prompt event log: a header, then records cut into checksummed fragments in fixed blocks.

Layout (version 4, LevelDB's log format)::

    header    = MAGIC (8 bytes) | version (u16 LE) | reserved (u16)
    file      = header, then fragments, in blocks of BLOCK_SIZE bytes counted from byte 0
    fragment  = crc32(type byte, payload) (u32 LE) | payload length (u16 LE) | type (u8) | payload

A record is a msgpack array of events (a batch: one node's events, or a few hundred when the
log is in memory). It is written as one FULL fragment when it fits in what is left of the
block, else as FIRST, MIDDLE..., LAST fragments, none crossing a block boundary. When fewer
than a fragment header's bytes are left in a block, they are zeros and the next fragment
starts the next block.

Reading never raises on damage and costs one pass: a fragment that fails its checksum is
skipped by its length, and one that claims more bytes than its block holds drops the rest of
the block; the reader only ever moves forward and resumes at the next block boundary at the
latest, so every byte is checksummed at most once, whatever the file holds. A damaged payload
loses its record; a damaged fragment header loses at most the rest of its block and the
records that touch it; a torn tail (a process killed while writing) loses the record being
written. Each stretch lost is reported.

Versions 1 to 3 (one length-prefixed frame per event, or per batch, anywhere in the file) are
still read. Their frames have no boundaries to resynchronise on, so after damage the reader
looks for the next frame byte by byte, checking only candidates that start like a frame of
events (and, when they claim more than a block, are followed by another such frame), and
checksums at most ``LEGACY_SCAN_FACTOR`` times the file's size in all; if that is spent, the
rest of the file is reported as not scanned instead of costing quadratic time.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import re
import stat
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from ..errors import LogFormatError, report_once
from .schema import SCHEMA_VERSION, AnyEvent

MAGIC = b"\x89RTMLOG\n"
_HEADER = struct.Struct("<8sHH")
HEADER_SIZE = _HEADER.size

#: Fragments never cross a multiple of this: after damage the reader resumes at the next one,
#: so damage costs at most the rest of its block (and the records that touch it).
BLOCK_SIZE = 32 * 1024
_FRAGMENT = struct.Struct("<IHB")
FRAGMENT_HEADER = _FRAGMENT.size
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
#: crc32 of each fragment type byte: a fragment's checksum starts from its type's.
_SEED = tuple(zlib.crc32(bytes((kind,))) for kind in range(256))
_SEED_FULL = _SEED[FULL]
_PAD = bytes(FRAGMENT_HEADER)
_ONE = b"\x91"  # msgpack: an array of one item

#: Versions this reader understands: 1 (a frame per event), 2 (a frame per batch), 3 (2 with
#: the run's client, worker and images; see ``schema.SCHEMA_VERSION``), 4 (blocks).
READABLE_VERSIONS = (1, 2, 3, 4)
#: The first version written in blocks; earlier ones are read by ``_read_legacy``.
BLOCKS_VERSION = 4
#: Most bytes read from one log: a bound for special files (/dev/zero, a FIFO) that never end.
#: A run of a million nodes writes about 100 MB.
MAX_LOG_BYTES = 1 << 30
#: Bytes read and scanned at a time from a file or stream (whole blocks).
READ_CHUNK = 32 * BLOCK_SIZE

# Versions 1 to 3: frame = payload length (u32 LE) | crc32(payload) (u32 LE) | payload.
_LEGACY_FRAME = struct.Struct("<II")
LEGACY_FRAME_OVERHEAD = _LEGACY_FRAME.size
#: A single legacy frame larger than this is treated as damage (a prompt JSON is far smaller).
LEGACY_MAX_FRAME = 256 * 1024 * 1024
#: Recovery of a damaged version 1-3 log checksums at most this many times the file's size.
LEGACY_SCAN_FACTOR = 4

_decoder = msgspec.msgpack.Decoder(AnyEvent)
_batch_decoder = msgspec.msgpack.Decoder(list[AnyEvent])


def header(version: int = SCHEMA_VERSION) -> bytes:
    """The bytes every log starts with."""
    return _HEADER.pack(MAGIC, version, 0)


_INT_MIN, _INT_MAX = -(1 << 63), (1 << 64) - 1


def encodable(value: Any) -> Any:
    """``value`` with what msgpack cannot hold turned into text.

    That is ints beyond 64 bits (ComfyUI's INT widgets allow them) and strings with lone
    surrogates (half an emoji in a title passes JSON). Only called after the encoder refused
    an event, so ordinary events cost nothing.
    """
    if isinstance(value, msgspec.Struct):
        fields = {f: encodable(getattr(value, f)) for f in value.__struct_fields__}
        return msgspec.structs.replace(value, **fields)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else str(int(value))
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    if isinstance(value, dict):
        return {encodable(k): encodable(v) for k, v in value.items()}
    return value


class Framer:
    """Cuts records into fragments at the log's block boundaries (the writing side of the format).

    ``position`` is the offset in the file where the next byte goes; ``frame`` returns the
    pieces to append, in order, for one record, and advances it.
    """

    __slots__ = ("position",)

    def __init__(self, position: int = HEADER_SIZE) -> None:
        self.position = position

    def frame(self, payload: bytes) -> list[bytes]:
        """The fragments of one record (headers and payload pieces) and any block padding."""
        size = len(payload)
        left = BLOCK_SIZE - self.position % BLOCK_SIZE
        if size + FRAGMENT_HEADER <= left:  # the usual case: one FULL fragment
            self.position += size + FRAGMENT_HEADER
            return [_FRAGMENT.pack(zlib.crc32(payload, _SEED[FULL]), size, FULL), payload]
        pieces: list[bytes] = []
        view = memoryview(payload)
        done = 0
        first = True
        while True:
            if left < FRAGMENT_HEADER:  # too small for a fragment: zeros, then the next block
                pieces.append(_PAD[:left])
                self.position += left
                left = BLOCK_SIZE
            take = min(size - done, left - FRAGMENT_HEADER)
            last = done + take == size
            kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            piece = bytes(view[done : done + take])
            pieces += (_FRAGMENT.pack(zlib.crc32(piece, _SEED[kind]), take, kind), piece)
            self.position += FRAGMENT_HEADER + take
            left -= FRAGMENT_HEADER + take
            done += take
            first = False
            if last:
                return pieces


def _encode(encoder: msgspec.msgpack.Encoder, events: Sequence[Any]) -> bytes:
    try:
        return encoder.encode(events)
    except (OverflowError, UnicodeEncodeError):
        return encoder.encode([encodable(e) for e in events])


class MemoryLog:
    """An append-only log held in one growing bytearray."""

    def __init__(self) -> None:
        self._buf = bytearray(header())
        self._framer = Framer(len(self._buf))
        self._encoder = msgspec.msgpack.Encoder()
        self.count = 0

    def append(self, event: AnyEvent) -> None:
        """Add one event as a record of its own."""
        self.extend((event,))

    def extend(self, events: Sequence[Any]) -> None:
        """Encode ``events`` (in order) as one record and add it to the buffer.

        Each item is an event Struct or the tuple ``(tag, *fields)`` with every field: an
        array-like tagged Struct encodes as exactly that msgpack array, so both give the same
        bytes and read back as the same event (the capture hot path builds the tuples).
        """
        if events:
            self.add_record(_encode(self._encoder, events), len(events))

    def append_encoded(self, payload: bytes) -> None:
        """Add one event already encoded (msgpack of the event) as a record of its own."""
        self.add_record(_ONE + payload, 1)  # a batch of one: the array header, then the event

    def add_record(self, payload: bytes, events: int) -> None:
        """Add one encoded record (a msgpack array of ``events`` events)."""
        buf = self._buf
        framer = self._framer
        size = len(payload)
        if size + FRAGMENT_HEADER <= BLOCK_SIZE - framer.position % BLOCK_SIZE:  # Framer.frame, inline
            framer.position += size + FRAGMENT_HEADER
            buf += _FRAGMENT.pack(zlib.crc32(payload, _SEED_FULL), size, FULL)
            buf += payload
        else:
            for piece in framer.frame(payload):
                buf += piece
        self.count += events

    def to_bytes(self) -> bytes:
        """The whole log as it would be stored on disk."""
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def events(self) -> list[AnyEvent]:
        """Decode every event appended so far."""
        return read_log(self._buf).events


class FileLog:
    """An append-only log written through to a file, holding none of it in memory.

    Durability: each ``extend`` (one record) reaches the file with one ``os.write`` before it
    returns, so once it returns a killed process loses none of it (the kernel has it); what a
    crash can lose is what the caller has not handed over yet (the recorder hands over each
    node's events when the node ends). ``sync`` and ``close`` also ``fsync`` the file, for a
    machine that loses power. An append costs its record: nothing is kept but the file offset.

    A write that fails (a full disk, a vanished network folder) is reported once through
    ``on_error`` and from then on the records are kept in memory, after the bytes the file
    holds, so the run can still be read back whole (``to_bytes``).
    """

    def __init__(self, path: str | os.PathLike[str], on_error: Callable[[OSError], None] | None = None) -> None:
        self.path = Path(path)
        self.count = 0
        self._framer = Framer(0)
        self._encoder = msgspec.msgpack.Encoder()
        self._on_error = on_error
        #: Bytes the file holds (every byte before this offset reached the kernel).
        self._written = 0
        #: Records that could not be written, after a write error: kept to read the run back.
        self._unwritten: bytearray | None = None
        self._fd: int | None = os.open(
            self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644
        )
        head = header()
        self._framer.position = len(head)
        self._write(head)

    def append(self, event: AnyEvent) -> None:
        """Add one event as a record of its own (see ``extend``)."""
        self.extend((event,))

    def extend(self, events: Sequence[Any]) -> None:
        """Add ``events`` as one record, written to the file before this returns.

        With a log folder the recorder calls this at every node's end: the usual case (a
        record that fits in its block, a file that takes it) is one encode, one checksum and
        one ``os.write``, inline.
        """
        if not events:
            return
        try:
            payload = self._encoder.encode(events)
        except (OverflowError, UnicodeEncodeError):
            payload = self._encoder.encode([encodable(e) for e in events])
        framer = self._framer
        size = len(payload)
        fd = self._fd
        if (
            size + FRAGMENT_HEADER > BLOCK_SIZE - framer.position % BLOCK_SIZE
            or fd is None
            or self._unwritten is not None
        ):
            self.add_record(payload, len(events))
            return
        # Measured: pack + concatenate + os.write beats encode_into a reused buffer with a
        # memoryview for the checksum, and os.writev of the two pieces.
        data = _FRAGMENT.pack(zlib.crc32(payload, _SEED_FULL), size, FULL) + payload
        try:
            done = os.write(fd, data)
        except OSError:
            done = 0  # _write below meets the error again and reports it
        framer.position += len(data)
        self._written += done
        self.count += len(events)
        if done < len(data):
            self._write(data[done:])

    def append_encoded(self, payload: bytes) -> None:
        """Add one event already encoded as a record of its own (see ``MemoryLog``)."""
        self.add_record(_ONE + payload, 1)

    def add_record(self, payload: bytes, events: int) -> None:
        """Write one encoded record (a msgpack array of ``events`` events) to the file."""
        framer = self._framer
        size = len(payload)
        if size + FRAGMENT_HEADER <= BLOCK_SIZE - framer.position % BLOCK_SIZE:  # Framer.frame, inline
            framer.position += size + FRAGMENT_HEADER
            self._write(_FRAGMENT.pack(zlib.crc32(payload, _SEED_FULL), size, FULL) + payload)
        else:
            self._write(b"".join(framer.frame(payload)))
        self.count += events

    def _write(self, data: bytes) -> None:
        if self._unwritten is not None or self._fd is None:
            self._keep(data)
            return
        done = 0
        try:
            done = os.write(self._fd, data)
            while done < len(data):  # a short write (rare on a file): the rest
                done += os.write(self._fd, memoryview(data)[done:])
        except OSError as exc:
            # What reached the file stays readable; the rest of the run is kept in memory.
            self._keep(data[done:])
            if self._on_error is not None:
                self._on_error(exc)
        finally:
            self._written += done

    def _keep(self, data: bytes) -> None:
        if self._unwritten is None:
            self._unwritten = bytearray()
        self._unwritten += data

    @property
    def size(self) -> int:
        """Bytes of log so far (on disk, and in memory after a write error)."""
        return self._framer.position

    def __len__(self) -> int:
        return self._framer.position

    def flush(self) -> None:
        """Nothing to do: every record is written as it is added (kept for the log protocol)."""

    def sync(self) -> None:
        """fsync the file: what it holds survives a power loss too."""
        if self._fd is not None and self._unwritten is None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                if self._on_error is not None:
                    self._on_error(exc)

    def close(self, sync: bool = True) -> None:
        """fsync (unless ``sync`` is false) and close the file; ``to_bytes`` still works after."""
        if self._fd is not None:
            if sync:
                self.sync()
            os.close(self._fd)
            self._fd = None

    def close_later(self) -> None:
        """Close the file for this log now; its fsync and close happen on the syncer thread.

        Every byte has reached the kernel already (a killed process loses nothing); the fsync
        is for a power cut, and on a slow or network disk it can take from milliseconds to
        seconds, which ComfyUI's thread must not wait for. ``to_bytes`` still works after.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._unwritten is not None or not _SYNCER.submit(fd, self._on_error):
            os.close(fd)  # a failed write has been reported; a full backlog is reported by the syncer

    @property
    def error(self) -> bool:
        """Whether a write failed (the rest of the run is then in memory only)."""
        return self._unwritten is not None

    def to_bytes(self) -> bytes:
        """The whole log, read back from the file (plus what could not be written)."""
        if self._fd is not None:
            data = _pread_all(self._fd, self._written)
        else:
            with open(self.path, "rb") as f:
                data = f.read(self._written)
        if len(data) < self._written:  # the file was cut short by someone else
            data += bytes(self._written - len(data))
        return data + bytes(self._unwritten) if self._unwritten else data

    def events(self) -> list[AnyEvent]:
        """Decode every event appended so far."""
        return read_log(self.to_bytes()).events

    def __enter__(self) -> FileLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Closed logs waiting for their fsync at most. Past it the disk is far behind: a log is then
#: closed without one (only a power cut could lose it), which is reported once.
SYNC_BACKLOG = 64


class _Syncer:
    """One daemon thread that fsyncs and closes the file descriptors of finished logs, in order."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[int, Callable[[OSError], None] | None]] = queue.Queue(SYNC_BACKLOG)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, fd: int, on_error: Callable[[OSError], None] | None) -> bool:
        """Queue ``fd`` for fsync and close; False (reported once) when the backlog is full."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="runtime-metadata-fsync", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait((fd, on_error))
        except queue.Full:
            report_once(
                f"the disk is {SYNC_BACKLOG} event logs behind on fsync: logs are closed without it "
                "until it catches up (a killed ComfyUI still loses nothing; a power cut could)"
            )
            return False
        return True

    def wait(self, timeout: float = 10.0) -> bool:
        """Whether every queued log was synced and closed within ``timeout`` seconds (tests)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def _run(self) -> None:
        while True:
            fd, on_error = self._queue.get()
            try:
                os.fsync(fd)
            except OSError as exc:
                if on_error is not None:
                    on_error(exc)
            finally:
                with contextlib.suppress(OSError):
                    os.close(fd)
                self._queue.task_done()


_SYNCER = _Syncer()


def wait_for_fsync(timeout: float = 10.0) -> bool:
    """Whether every log closed with ``close_later`` is synced and closed (within ``timeout`` s)."""
    return _SYNCER.wait(timeout)


def _pread_all(fd: int, size: int) -> bytes:
    chunks = []
    offset = 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class Damage:
    """A stretch of the log that could not be read."""

    offset: int
    length: int
    reason: str


@dataclass
class ReadResult:
    """The events that could be read, and what could not."""

    events: list[AnyEvent]
    version: int
    damage: list[Damage] = field(default_factory=list)
    #: Bytes of log read (at most ``MAX_LOG_BYTES``, or the limit the caller gave).
    size: int = 0

    @property
    def ok(self) -> bool:
        return not self.damage

    def describe_damage(self) -> str:
        """One line per damaged stretch, for users."""
        return "\n".join(f"bytes {d.offset}..{d.offset + d.length}: {d.reason}" for d in self.damage)


#: Logs larger than this are read with the cyclic garbage collector paused (see paused_gc).
GC_PAUSE_BYTES = 1 << 20


@contextlib.contextmanager
def paused_gc(pause: bool = True) -> Iterator[None]:
    """Pause the cyclic GC while building many acyclic objects (events, documents).

    Decoding a million events allocates millions of containers; each allocation burst
    triggers full collections that find nothing (events cannot form cycles). Measured on a
    1M-event log: read + fold + document 4.3 s with the GC running, 2.0 s with it paused.
    """
    was_enabled = gc.isenabled()
    if pause and was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if pause and was_enabled:
            gc.enable()


class _Damages:
    """Damage found so far; a stretch that starts where the last one ended extends it."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[Damage] = []

    def mark(self) -> tuple[int, Damage | None]:
        """Where the list stands, for ``reset``."""
        return len(self.items), self.items[-1] if self.items else None

    def reset(self, mark: tuple[int, Damage | None]) -> None:
        """Forget what was added (or extended) since ``mark``."""
        del self.items[mark[0] :]
        if mark[1] is not None:
            self.items[-1] = mark[1]

    def add(self, offset: int, length: int, reason: str) -> None:
        items = self.items
        if items and items[-1].offset + items[-1].length == offset and items[-1].reason == reason:
            last = items.pop()
            items.append(Damage(last.offset, last.length + length, reason))
        else:
            items.append(Damage(offset, length, reason))


_ARRAY32 = struct.Struct(">BI")
TORN_RECORD = "torn tail: the last record is incomplete"


class _BlockReader:
    """Reads version 4 fragments, a buffer of whole blocks at a time; keeps a record that spans them.

    Complete records are decoded together, once per buffer: each record is a msgpack array of
    events, so their events (each record's array header dropped) joined under one array header
    of their total count decode in one call, instead of one call per record (a record is often
    one node's three events; decoding the records as a list of lists and flattening it measured
    about the same). If that fails (a record that checks out but does not decode), the
    buffer is read again decoding record by record, to lose only the records that fail.
    """

    def __init__(self, damage: _Damages) -> None:
        self.events: list[AnyEvent] = []
        self.damage = damage
        self._parts: list[bytes] = []  # fragments of the record being assembled
        self._start = -1  # its offset, or -1 when no record is open
        # The current buffer's complete records' events, not decoded yet, after one array
        # header (its count filled in at the end), and how many events there are.
        self._merged = bytearray(5)
        self._count = 0
        self._merging = True

    def scan(self, buf: bytes | bytearray | memoryview, base: int, skip: int = 0) -> None:
        """Read the fragments in ``buf``, which holds the file from offset ``base`` (block-aligned,
        or the end of the header); ``skip`` bytes at its start are not fragments (the header)."""
        view = memoryview(buf)
        state = (self._start, self._parts, self.damage.mark())
        self._scan(view, base, skip)
        if not self._count and len(self._merged) == 5:
            return
        merged = self._merged
        merged[:5] = _ARRAY32.pack(0xDD, self._count)
        self._merged, self._count = bytearray(5), 0
        try:
            self.events += _batch_decoder.decode(merged)
            return
        except msgspec.DecodeError:
            pass
        # The slow path: read the buffer again from the same state, a record at a time.
        self._start, self._parts = state[0], list(state[1])
        self.damage.reset(state[2])
        self._merging = False
        try:
            self._scan(view, base, skip)
        finally:
            self._merging = True

    def _scan(self, view: memoryview, base: int, skip: int) -> None:
        size = len(view)
        unpack = _FRAGMENT.unpack_from
        crc32 = zlib.crc32  # looked up once per buffer, not per fragment
        seed = _SEED
        head, full = FRAGMENT_HEADER, FULL  # locals: this loop runs once per record
        merged = self._merged
        fast = self._merging and self._start < 0
        count = 0
        pos = skip
        while pos < size:
            block_end = pos - (base + pos) % BLOCK_SIZE + BLOCK_SIZE
            limit = min(block_end, size)
            while pos + head <= limit:
                crc, length, kind = unpack(view, pos)
                body = pos + head
                end = body + length
                if end > limit:
                    if end > block_end:
                        self._lose(base + pos, limit - pos, "fragment longer than its block (damaged)")
                    else:
                        self._lose(base + pos, limit - pos, f"torn tail: a fragment of {length} bytes cut short")
                    pos = limit
                    fast = self._merging
                    break
                piece = view[body:end]
                if crc32(piece, seed[kind]) != crc:
                    # Most damage is in a payload: its length still leads to the next fragment.
                    # If the length was hit instead, what follows fails too, until the block
                    # ends. Either way the reader only moves forward: each byte is checksummed once.
                    self._lose(base + pos, end - pos, "checksum mismatch")
                    fast = self._merging
                elif fast and kind == full and length and 0x90 <= piece[0] <= 0x9F:
                    # The usual record, alone in its fragment and a short array (a node's
                    # events): its events join the buffer's array, its own header dropped.
                    merged += view[body + 1 : end]
                    count += piece[0] - 0x90
                else:
                    self._fragment(kind, piece, base + pos, base + end)
                    fast = self._merging and self._start < 0
                pos = end
            if limit < block_end:  # the data ends inside this block
                if pos < size:
                    self._lose(base + pos, size - pos, "torn tail: a fragment header cut short")
                break
            pos = block_end  # past the block's zero trailer, if any
        self._count += count

    def _fragment(self, kind: int, piece: memoryview, offset: int, end: int) -> None:
        if kind == FULL:
            if self._start >= 0:
                self._drop(offset, "record cut short by the next one")
            self._record(piece, offset, end)
        elif kind == FIRST:
            if self._start >= 0:
                self._drop(offset, "record cut short by the next one")
            self._start, self._parts = offset, [bytes(piece)]
        elif kind in (MIDDLE, LAST):
            if self._start < 0:
                self.damage.add(offset, end - offset, "fragment of a record whose start was lost")
            else:
                self._parts.append(bytes(piece))
                if kind == LAST:
                    start, payload = self._start, b"".join(self._parts)
                    self._start, self._parts = -1, []
                    self._record(payload, start, end)
        else:
            self.damage.add(offset, end - offset, f"unknown fragment type {kind}")

    def _record(self, payload: bytes | memoryview, offset: int, end: int) -> None:
        """A complete record: queued for the buffer's one decode, or decoded now (slow path)."""
        if not self._merging:
            try:
                self.events += _batch_decoder.decode(payload)
            except msgspec.DecodeError as exc:
                self.damage.add(offset, end - offset, f"undecodable events ({exc})")
            return
        first = payload[0] if len(payload) else 0
        if 0x90 <= first <= 0x9F:  # msgpack array headers: fixarray, array16, array32
            count, skip = first - 0x90, 1
        elif first == 0xDC and len(payload) >= 3:
            count, skip = int.from_bytes(payload[1:3], "big"), 3
        elif first == 0xDD and len(payload) >= 5:
            count, skip = int.from_bytes(payload[1:5], "big"), 5
        else:
            self.damage.add(offset, end - offset, "undecodable events (not an array of events)")
            return
        self._merged += payload[skip:]
        self._count += count

    def _drop(self, end: int, reason: str) -> None:
        self.damage.add(self._start, end - self._start, reason)
        self._start, self._parts = -1, []

    def _lose(self, offset: int, length: int, reason: str) -> None:
        if self._start >= 0:  # the open record loses a fragment: all of it is lost
            torn = reason.startswith("torn tail")
            self._drop(offset, TORN_RECORD if torn else "record lost with a damaged fragment")
        self.damage.add(offset, length, reason)

    def close(self, end: int) -> None:
        """The log ends at ``end``: a record still open is a torn tail."""
        if self._start >= 0:
            self._drop(end, TORN_RECORD)


def _check_header(data: bytes) -> int:
    if len(data) < HEADER_SIZE:
        raise LogFormatError(f"not a runtime-metadata log: {len(data)} bytes, shorter than its header")
    magic, version, _ = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise LogFormatError("not a runtime-metadata log: bad magic bytes")
    if version not in READABLE_VERSIONS:
        raise LogFormatError(
            f"log schema version {version} is not one this plugin understands "
            f"({', '.join(map(str, READABLE_VERSIONS))})"
        )
    return int(version)


def read_log(data: bytes | bytearray | memoryview) -> ReadResult:
    """Read a whole log held in memory; damage is reported in the result, never raised."""
    version = _check_header(bytes(data[:HEADER_SIZE]))
    damage = _Damages()
    with paused_gc(len(data) > GC_PAUSE_BYTES):
        if version < BLOCKS_VERSION:
            events = _read_legacy(data, version, damage)
        else:
            reader = _BlockReader(damage)
            reader.scan(data, 0, HEADER_SIZE)
            reader.close(len(data))
            events = reader.events
    return ReadResult(events, version, damage.items, len(data))


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the stream (pipes return what they have)."""
    parts = []
    got = 0
    while got < size:
        chunk = stream.read(min(size - got, READ_CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_log_stream(stream: BinaryIO, max_bytes: int = MAX_LOG_BYTES) -> ReadResult:
    """Read a log from a binary stream, a buffer of blocks at a time, at most ``max_bytes`` of it.

    A stream that is not a log fails at its first bytes (``LogFormatError``); one that goes on
    beyond ``max_bytes`` (a device, a FIFO fed forever) is read up to there and the result says
    so. Version 4 is scanned as it arrives; versions 1 to 3 are read whole, then scanned.
    """
    head = _read_up_to(stream, HEADER_SIZE)
    version = _check_header(head)
    damage = _Damages()
    limit = max(max_bytes, HEADER_SIZE)
    with paused_gc():
        if version < BLOCKS_VERSION:
            data = head + _read_up_to(stream, limit - HEADER_SIZE)
            events = _read_legacy(data, version, damage)
            size = len(data)
        else:
            reader = _BlockReader(damage)
            size = HEADER_SIZE
            want = READ_CHUNK - HEADER_SIZE  # so that every buffer after the first is whole blocks
            while size < limit:
                chunk = _read_up_to(stream, min(want, limit - size))
                if not chunk:
                    break
                reader.scan(chunk, size)
                size += len(chunk)
                want = READ_CHUNK
            reader.close(size)
            events = reader.events
    if size >= limit:
        damage.add(size, 0, f"reading stopped at the {limit}-byte limit")
    return ReadResult(events, version, damage.items, size)


def read_log_file(path: str | os.PathLike[str], max_bytes: int = MAX_LOG_BYTES) -> ReadResult:
    """Read a log file (a regular file: a FIFO or a device is refused before any read blocks).

    At most ``max_bytes`` are read (see ``read_log_stream``); ``OSError`` when it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with open(fd, "rb", buffering=0) as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LogFormatError("not a runtime-metadata log: not a regular file")
        os.set_blocking(fd, True)
        return read_log_stream(f, max_bytes)


def iter_log(data: bytes) -> Iterator[AnyEvent | Damage]:
    """Every event of a log held in memory, then a ``Damage`` for each stretch that could not be read."""
    result = read_log(data)
    yield from result.events
    yield from result.damage


# --- versions 1 to 3 -------------------------------------------------------------------------

#: msgpack array headers (fixarray, array16, array32) and fixstr: how a frame of events starts.
_ARRAY_STARTS = frozenset([*range(0x91, 0xA0), 0xDC, 0xDD])
_FIXSTR = range(0xA1, 0xC0)
# The same, as patterns (what ``_plausible`` accepts): an event (its array header, then its
# tag, a short string); in versions 2 and 3, after the batch's array header.
_EVENT = rb"[\x91-\x9f\xdc\xdd][\xa1-\xbf]"
_EVENT_START = re.compile(_EVENT)
_BATCH_START = re.compile(rb"(?:[\x91-\x9f]|\xdc[\s\S]{2}|\xdd[\s\S]{4})" + _EVENT)


def _plausible(data: bytes | bytearray | memoryview, body: int, batched: bool) -> bool:
    """Whether a legacy frame's payload starts like events: [batch array,] event array, tag string."""
    try:
        if batched:
            if data[body] not in _ARRAY_STARTS:
                return False
            body += 1 if data[body] < 0xA0 else (3 if data[body] == 0xDC else 5)
        return data[body] in _ARRAY_STARTS and data[body + 1] in _FIXSTR
    except IndexError:
        return False


def _plausible_next(data: bytes | bytearray | memoryview, at: int, batched: bool) -> bool:
    """Whether a legacy frame plausibly starts at ``at``: a length that fits, a payload of events."""
    if at + LEGACY_FRAME_OVERHEAD > len(data):
        return False
    length = _LEGACY_FRAME.unpack_from(data, at)[0]
    return at + LEGACY_FRAME_OVERHEAD + length <= len(data) and _plausible(data, at + LEGACY_FRAME_OVERHEAD, batched)


def _read_legacy(data: bytes | bytearray | memoryview, version: int, damage: _Damages) -> list[AnyEvent]:
    """Versions 1 to 3: frames one after another; after damage, a bounded byte-by-byte search."""
    view = memoryview(data)
    size = len(view)
    batched = version >= 2
    crc32 = zlib.crc32
    unpack = _LEGACY_FRAME.unpack_from
    budget = LEGACY_SCAN_FACTOR * size + BLOCK_SIZE  # bytes the search may checksum in all
    starts = _BATCH_START if batched else _EVENT_START
    events: list[AnyEvent] = []
    offset = HEADER_SIZE

    def frame_at(at: int, searching: bool) -> tuple[list[AnyEvent], int] | str:
        nonlocal budget
        if at + LEGACY_FRAME_OVERHEAD > size:
            return "truncated frame header"
        length, crc = unpack(view, at)
        end = at + LEGACY_FRAME_OVERHEAD + length
        if length > LEGACY_MAX_FRAME:
            return f"frame length {length} is implausible"
        if end > size:
            return f"frame of {length} bytes truncated after {size - at - LEGACY_FRAME_OVERHEAD}"
        body = at + LEGACY_FRAME_OVERHEAD
        if not _plausible(view, body, batched):
            return "not a frame" if searching else "frame does not hold events"
        if length > BLOCK_SIZE and end < size and not _plausible_next(view, end, batched):
            # A long frame is believed only if another starts where it ends: a damaged length
            # prefix claiming megabytes would otherwise cost a checksum of megabytes each time.
            return f"frame length {length} does not lead to the next frame"
        budget -= length
        if crc32(view[body:end]) != crc:
            return "checksum mismatch"
        try:
            if batched:
                return _batch_decoder.decode(view[body:end]), end
            return [_decoder.decode(view[body:end])], end
        except msgspec.DecodeError as exc:
            return f"undecodable event ({exc})"

    while offset < size:
        got = frame_at(offset, False)
        if not isinstance(got, str):
            events += got[0]
            offset = got[1]
            continue
        start, reason = offset, got
        probe = offset + 1
        while probe < size and budget > 0:
            # Jump to the next place whose payload starts like events (a C-level scan), then
            # check the frame there; most bytes of a damaged stretch are never looked at twice.
            found = starts.search(view, probe + LEGACY_FRAME_OVERHEAD)
            if found is None:
                probe = size
                break
            probe = found.start() - LEGACY_FRAME_OVERHEAD
            if not isinstance(frame_at(probe, True), str):
                break
            probe += 1
        if budget <= 0 and probe < size:
            damage.add(start, probe - start, reason)
            damage.add(
                probe,
                size - probe,
                "not scanned: damage too dense to search further in linear time (version "
                f"{version} log; logs written since version {BLOCKS_VERSION} do not have this limit)",
            )
            break
        damage.add(start, probe - start, reason)
        offset = probe
    return events


def write_log_file(path: str | os.PathLike[str], events: Iterable[AnyEvent], batch: int = 1) -> None:
    """Write ``events`` as a complete log file, ``batch`` events to a record (damage then costs one)."""
    with FileLog(path) as log:
        pending: list[AnyEvent] = []
        for event in events:
            pending.append(event)
            if len(pending) >= batch:
                log.extend(pending)
                pending = []
        log.extend(pending)
