"""Bounded walkers over PNG, JPEG and WebP containers that find metadata and skip pixels.

These read untrusted files: every length is checked against the file and a named limit before
anything is allocated, decompression stops at ``MAX_TEXT_BYTES``, and a damaged or oversized
chunk is reported and skipped instead of ending the read. Pillow is not used here because it
refuses a whole PNG when one compressed text chunk inflates past 1 MiB.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A metadata chunk or segment larger than this is skipped: ComfyUI's largest workflows are a
#: few MB, so past this it is damage or an attack, and it would be held in memory whole.
MAX_CHUNK_BYTES = 64 << 20
#: Largest decompressed zTXt/compressed iTXt accepted (Pillow's own limit is 1 MiB).
MAX_TEXT_BYTES = 64 << 20
#: Text read per file, all text chunks together (as stored plus inflated): room for one chunk
#: at MAX_TEXT_BYTES and the rest of a file, but sixteen compressed chunks of a 1 MB file
#: must not inflate to a gigabyte each.
MAX_TEXT_TOTAL_BYTES = MAX_TEXT_BYTES + (16 << 20)
#: PNG chunk lengths are 31-bit by specification.
PNG_MAX_LENGTH = 0x7FFF_FFFF
#: PNG text chunks this walker decodes.
PNG_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
EXIF_HEADER = b"Exif\x00\x00"
XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"


@dataclass(frozen=True)
class PngText:
    """One PNG text chunk as found in the file."""

    key: str
    text: str
    chunk_type: str
    compressed: bool = False
    language: str = ""


@dataclass
class Found:
    """What a walk found: PNG text chunks, EXIF and XMP bytes, and the problems met."""

    texts: list[PngText] = field(default_factory=list)
    chunk_order: list[str] = field(default_factory=list)
    exif: bytes | None = None
    xmp: bytes | None = None
    problems: list[str] = field(default_factory=list)


def _inflate(data: bytes, budget: int) -> bytes:
    limit = min(MAX_TEXT_BYTES, budget)
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        if limit < MAX_TEXT_BYTES:
            raise ValueError(
                f"inflates past what is left of MAX_TEXT_TOTAL_BYTES ({MAX_TEXT_TOTAL_BYTES}) for the file"
            )
        raise ValueError(f"inflates past MAX_TEXT_BYTES ({MAX_TEXT_BYTES})")
    if not inflater.eof:
        raise ValueError("compressed text is truncated")
    return out


def _png_text(chunk_type: bytes, data: bytes, budget: int = MAX_TEXT_TOTAL_BYTES) -> tuple[PngText, int]:
    """The chunk's text and how many bytes inflating it produced (0 when stored plain)."""
    key_raw, sep, rest = data.partition(b"\x00")
    if not sep or not 1 <= len(key_raw) <= 79:
        raise ValueError("no valid keyword")
    key = key_raw.decode("latin-1")
    if chunk_type == b"tEXt":
        return PngText(key, rest.decode("latin-1"), "tEXt"), 0
    if chunk_type == b"zTXt":
        if rest[:1] != b"\x00":
            raise ValueError("unknown compression method")
        inflated = _inflate(rest[1:], budget)
        return PngText(key, inflated.decode("latin-1"), "zTXt", compressed=True), len(inflated)
    if len(rest) < 2:
        raise ValueError("iTXt too short")
    flag, method, rest = rest[0], rest[1], rest[2:]
    lang, sep1, rest = rest.partition(b"\x00")
    _tkey, sep2, body = rest.partition(b"\x00")
    if not sep1 or not sep2:
        raise ValueError("iTXt header is incomplete")
    if flag:
        if method != 0:
            raise ValueError("unknown compression method")
        body = _inflate(body, budget)
    text = PngText(key, body.decode("utf-8"), "iTXt", compressed=bool(flag), language=lang.decode("latin-1"))
    return text, len(body) if flag else 0


def walk_png(fh: BinaryIO, size: int, text_budget: int = MAX_TEXT_TOTAL_BYTES) -> Found:
    """Text chunks of a PNG, in file order, with every chunk type seen.

    At most ``text_budget`` bytes of text are read and inflated, all chunks together; chunks
    past it are reported and skipped.
    """
    found = Found()
    if fh.read(8) != PNG_SIGNATURE:
        found.problems.append("not a PNG (bad signature)")
        return found
    pos = 8
    while True:
        header = fh.read(8)
        if len(header) < 8:
            found.problems.append("PNG ends without IEND (truncated)")
            return found
        length, chunk_type = struct.unpack(">I4s", header)
        name = chunk_type.decode("latin-1")
        found.chunk_order.append(name)
        if length > PNG_MAX_LENGTH or pos + 12 + length > size:
            found.problems.append(f"PNG chunk {name!r} claims {length} bytes past the end of the file")
            return found
        if chunk_type == b"IEND":
            return found
        if chunk_type not in PNG_TEXT_TYPES:
            fh.seek(length + 4, 1)
            pos += 12 + length
            continue
        if length > MAX_CHUNK_BYTES or length > text_budget:
            limit = (
                "over MAX_CHUNK_BYTES" if length > MAX_CHUNK_BYTES else "the file's text passes MAX_TEXT_TOTAL_BYTES"
            )
            found.problems.append(f"PNG {name} chunk of {length} bytes skipped ({limit})")
            fh.seek(length + 4, 1)
            pos += 12 + length
            continue
        data = fh.read(length)
        (crc,) = struct.unpack(">I", fh.read(4))
        pos += 12 + length
        if zlib.crc32(chunk_type + data) != crc:
            found.problems.append(f"PNG {name} chunk damaged (CRC mismatch); skipped")
            continue
        text_budget -= length
        try:
            text, inflated = _png_text(chunk_type, data, text_budget)
        except (ValueError, UnicodeDecodeError, zlib.error) as exc:
            found.problems.append(f"PNG {name} chunk unreadable: {exc}")
            continue
        text_budget -= inflated
        found.texts.append(text)


def walk_jpeg(fh: BinaryIO, size: int) -> Found:
    """The first EXIF and XMP APP1 segments of a JPEG, and COM segments as problems."""
    found = Found()
    if fh.read(2) != b"\xff\xd8":
        found.problems.append("not a JPEG (no SOI marker)")
        return found
    pos = 2
    while True:
        byte = fh.read(1)
        if not byte:
            found.problems.append("JPEG ends before its image data (truncated)")
            return found
        pos += 1
        if byte != b"\xff":
            found.problems.append(f"JPEG marker expected at byte {pos - 1}")
            return found
        marker = fh.read(1)
        pos += 1
        while marker == b"\xff":  # fill bytes
            marker = fh.read(1)
            pos += 1
        if not marker:
            found.problems.append("JPEG ends inside a marker (truncated)")
            return found
        code = marker[0]
        if code in (0xD9, 0xDA):  # EOI, SOS: no metadata segments after the scan starts
            return found
        if code == 0x01 or 0xD0 <= code <= 0xD7:
            continue
        raw_length = fh.read(2)
        if len(raw_length) < 2:
            found.problems.append("JPEG segment length missing (truncated)")
            return found
        (length,) = struct.unpack(">H", raw_length)
        if length < 2 or pos + length > size:
            found.problems.append(f"JPEG segment 0x{code:02X} has an invalid length {length}")
            return found
        found.chunk_order.append(f"0x{code:02X}")
        body_length = length - 2
        pos += length
        if code == 0xE1 and (found.exif is None or found.xmp is None):
            body = fh.read(body_length)
            if body.startswith(EXIF_HEADER) and found.exif is None:
                found.exif = body
            elif body.startswith(XMP_HEADER) and found.xmp is None:
                found.xmp = body[len(XMP_HEADER) :]
            continue
        if code == 0xFE:
            found.problems.append("JPEG has a COM segment (sd-prompt-reader fails on it)")
        fh.seek(body_length, 1)


def walk_webp(fh: BinaryIO, size: int) -> Found:
    """The EXIF and XMP chunks of a WebP."""
    found = Found()
    header = fh.read(12)
    if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WEBP":
        found.problems.append("not a WebP (bad RIFF header)")
        return found
    pos = 12
    riff_end = 8 + struct.unpack("<I", header[4:8])[0]
    if riff_end > size:
        found.problems.append(f"WebP RIFF size claims {riff_end} bytes, the file has {size} (truncated)")
    end = min(size, riff_end)
    while pos + 8 <= end:
        chunk_header = fh.read(8)
        if len(chunk_header) < 8:
            break
        fourcc, length = chunk_header[:4], struct.unpack("<I", chunk_header[4:])[0]
        name = fourcc.decode("latin-1")
        found.chunk_order.append(name)
        padded = length + (length & 1)
        if pos + 8 + length > end:
            found.problems.append(f"WebP chunk {name!r} claims {length} bytes past the end of the file")
            return found
        pos += 8 + padded
        if fourcc in (b"EXIF", b"XMP ") and length > MAX_CHUNK_BYTES:
            found.problems.append(f"WebP {name} chunk of {length} bytes skipped (over MAX_CHUNK_BYTES)")
        elif fourcc == b"EXIF" and found.exif is None:
            found.exif = fh.read(length)
            fh.seek(padded - length, 1)
            continue
        elif fourcc == b"XMP " and found.xmp is None:
            found.xmp = fh.read(length)
            fh.seek(padded - length, 1)
            continue
        fh.seek(padded, 1)
    if pos < end:
        found.problems.append("WebP ends inside a chunk header (truncated)")
    if not found.chunk_order:
        found.problems.append("WebP has no chunks")
    return found
