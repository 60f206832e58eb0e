"""zstd sidecars: a document too large to embed goes to ``<image name>.<digest>.runtime.json.zst``.

The name is the image's whole file name (``a.png`` and ``a.jpg`` never share a sidecar) and
the first 16 hex digits of the sidecar's own sha256: two processes saving the same image name
at once write two different sidecars, so whichever image survives points at its own, never
at a file another writer replaced. Images saved before this scheme point at
``<image stem>.runtime.json.zst``; the reader follows whatever name a pointer holds.

The image keeps a pointer ``{"file", "codec", "bytes", "sha256", "schema", "content_bytes"}``.
``bytes`` and ``sha256`` describe the sidecar **file as stored** (compressed): the reader
checks them before it decompresses anything, so a truncated or altered file is refused
without running the decoder on it, and a file that matches was written by whoever wrote the
pointer. ``content_bytes`` is the length of the canonical JSON inside; decompression stops at
``min(content_bytes, MAX_SIDECAR_BYTES)`` so a zstd bomb cannot allocate more than that.

The pointer names a file in the image's own folder and nothing else: no folders, no ``..``,
no absolute paths, and a symlink is followed only if it stays in that folder.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

import msgspec
import zstandard

from ..errors import SidecarError
from .atomic import atomic_write_bytes
from .files import NotARegularFile, open_regular

#: Top-level key of what an image embeds in place of a document that went to a sidecar (the
#: pointer), written by ``save`` and recognised by ``read``.
SIDECAR_KEY = "sidecar"
#: Every sidecar ends with this; the reader opens no other name, whatever a pointer says.
SIDECAR_SUFFIX = ".runtime.json.zst"
#: Hex digits of the sidecar's sha256 in its name: 64 bits, so two documents never share one.
SIDECAR_DIGEST_CHARS = 16
#: Longest file name most filesystems take (NAME_MAX, in bytes); a long image name is cut to fit.
MAX_NAME_BYTES = 255
#: The only codec written or read.
CODEC = "zstd"
#: Upper bound of a decompressed document (and of a sidecar file): a 200-node run is ~100 KB
#: and a huge workflow a few MB, so anything past this is damage or an attack.
MAX_SIDECAR_BYTES = 64 << 20
#: zstd level: measured (bench/test_bench_writers.py) as the best ratio per millisecond for
#: runtime documents; higher levels gain a few percent for several times the time.
ZSTD_LEVEL = 10
#: Largest zstd window the reader accepts; bounds decoder memory whatever a frame header claims.
MAX_WINDOW_BYTES = 1 << 25
#: Decompression step; output is checked against the limit after every step.
READ_CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class SidecarPointer:
    """Where the full document is and how to check it before trusting it."""

    file: str
    codec: str
    bytes: int
    sha256: str
    schema: Any
    content_bytes: int

    def to_dict(self) -> dict[str, Any]:
        """The pointer as embedded in the image."""
        return {
            "file": self.file,
            "codec": self.codec,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "schema": self.schema,
            "content_bytes": self.content_bytes,
        }

    @classmethod
    def from_dict(cls, value: Any) -> SidecarPointer:
        """A pointer read from an image; raises SidecarError when it is malformed or unsafe."""
        if not isinstance(value, dict):
            raise SidecarError(f"sidecar pointer is not an object: {type(value).__name__}")
        file, codec, size = value.get("file"), value.get("codec"), value.get("bytes")
        digest = value.get("sha256")
        content = value.get("content_bytes", MAX_SIDECAR_BYTES)
        if not isinstance(file, str):
            raise SidecarError("sidecar pointer has no file name")
        check_file_name(file)
        if codec != CODEC:
            raise SidecarError(f"sidecar codec {codec!r} is not supported (only {CODEC!r})")
        if not (_is_count(size) and _is_count(content)):
            raise SidecarError("sidecar pointer has no valid byte counts")
        if not isinstance(digest, str) or len(digest) != 64 or not _is_hex(digest):
            raise SidecarError("sidecar pointer has no valid sha256")
        return cls(file, codec, size, digest.lower(), value.get("schema"), content)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def sidecar_name(image_path: str | os.PathLike[str], data: bytes) -> str:
    """The name of the sidecar holding ``data`` (compressed) for an image: unique to both."""
    return _named(image_path, hashlib.sha256(data).hexdigest()[:SIDECAR_DIGEST_CHARS])


def _named(image_path: str | os.PathLike[str], digest: str) -> str:
    tail = f".{digest}{SIDECAR_SUFFIX}"
    base = Path(image_path).name.encode("utf-8", "surrogateescape")[: MAX_NAME_BYTES - len(tail)]
    return base.decode("utf-8", "ignore") + tail


def own_sidecar(image_path: str | os.PathLike[str], name: str) -> bool:
    """Whether ``name`` is a sidecar named for this image (never one of the older, shared names)."""
    if not name.endswith(SIDECAR_SUFFIX):
        return False
    digest = name[: -len(SIDECAR_SUFFIX)].rpartition(".")[2]
    return len(digest) == SIDECAR_DIGEST_CHARS and _is_hex(digest) and name == _named(image_path, digest)


def check_file_name(name: str) -> None:
    """Raise SidecarError unless ``name`` is a plain sidecar file name (no folder, no ``..``)."""
    if not name or name in (".", ".."):
        raise SidecarError(f"sidecar pointer {name!r} is not a file name")
    if "\x00" in name or "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        raise SidecarError(f"sidecar pointer {name!r} contains a path separator")
    if os.path.isabs(name) or Path(name).drive:
        raise SidecarError(f"sidecar pointer {name!r} is an absolute path")
    if not name.endswith(SIDECAR_SUFFIX):
        raise SidecarError(f"sidecar pointer {name!r} does not end with {SIDECAR_SUFFIX}")


class ZstdCodec:
    """zstd with a content checksum; decompression that stops at a limit."""

    def __init__(self, level: int = ZSTD_LEVEL) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)

    def compress(self, content: bytes) -> bytes:
        """One zstd frame holding ``content``."""
        return self._compressor.compress(content)

    def decompress(self, data: bytes, limit: int = MAX_SIDECAR_BYTES) -> bytes:
        """The content of ``data``; raises SidecarError once the output would pass ``limit``."""
        decompressor = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW_BYTES)
        out = bytearray()
        try:
            with decompressor.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                while True:
                    chunk = reader.read(min(READ_CHUNK_BYTES, limit + 1 - len(out)))
                    if not chunk:
                        break
                    out += chunk
                    if len(out) > limit:
                        raise SidecarError(f"sidecar inflates past {limit} bytes; refused")
        except zstandard.ZstdError as exc:
            raise SidecarError(f"sidecar is not valid zstd: {exc}") from exc
        return bytes(out)


def write_sidecar(image_path: str | os.PathLike[str], content: bytes, schema: Any = None) -> SidecarPointer:
    """Compress ``content`` into the image's sidecar (atomically, durably); return its pointer."""
    if len(content) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"document of {len(content)} bytes exceeds MAX_SIDECAR_BYTES")
    data = ZstdCodec().compress(content)
    name = sidecar_name(image_path, data)
    # Durable, because the image written next points here: after a crash the pointer must
    # not outlive its target.
    atomic_write_bytes(Path(image_path).parent / name, data, durable=True)
    return SidecarPointer(name, CODEC, len(data), hashlib.sha256(data).hexdigest(), schema, len(content))


def resolve_sidecar(image_path: str | os.PathLike[str], pointer: SidecarPointer) -> Path:
    """The sidecar's real path, which must be a file directly in the image's real folder."""
    folder = Path(image_path).resolve().parent
    candidate = folder / pointer.file
    real = candidate.resolve()
    if real.parent != folder:
        raise SidecarError(f"sidecar {pointer.file!r} resolves outside the image's folder: {real}")
    return real


def read_sidecar_bytes(image_path: str | os.PathLike[str], pointer: SidecarPointer) -> bytes:
    """The canonical JSON a pointer refers to, after every check; raises SidecarError."""
    path = resolve_sidecar(image_path, pointer)
    try:
        fh = open_regular(path, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise SidecarError(f"sidecar missing: {pointer.file}") from exc
    except NotARegularFile as exc:
        # A FIFO or device under a sidecar's name would block or never end; a directory fails later.
        raise SidecarError(f"sidecar is not a regular file: {pointer.file} is {exc.kind}") from exc
    except OSError as exc:
        raise SidecarError(f"sidecar cannot be opened: {pointer.file}: {exc}") from exc
    with fh:
        st = os.fstat(fh.fileno())
        if st.st_size < pointer.bytes:
            raise SidecarError(
                f"sidecar truncated: {pointer.file} has {st.st_size} bytes, the image says {pointer.bytes}"
            )
        if st.st_size > pointer.bytes:
            raise SidecarError(
                f"sidecar altered: {pointer.file} has {st.st_size} bytes, the image says {pointer.bytes}"
            )
        if st.st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"sidecar of {st.st_size} bytes exceeds MAX_SIDECAR_BYTES")
        data = fh.read(pointer.bytes + 1)
    if len(data) != pointer.bytes:
        raise SidecarError(f"sidecar changed while being read: {pointer.file}")
    if hashlib.sha256(data).hexdigest() != pointer.sha256:
        raise SidecarError(f"sidecar altered: sha256 of {pointer.file} does not match the image's pointer")
    limit = min(pointer.content_bytes, MAX_SIDECAR_BYTES)
    content = ZstdCodec().decompress(data, limit)
    if len(content) != pointer.content_bytes:
        raise SidecarError(f"sidecar holds {len(content)} bytes of JSON, the image says {pointer.content_bytes}")
    return content


def read_sidecar(image_path: str | os.PathLike[str], pointer: Any) -> dict[str, Any]:
    """The document a pointer (as read from an image) refers to; raises SidecarError."""
    checked = pointer if isinstance(pointer, SidecarPointer) else SidecarPointer.from_dict(pointer)
    return decode_document(read_sidecar_bytes(image_path, checked), checked.file)


def decode_document(content: bytes, name: str) -> dict[str, Any]:
    """A sidecar's content as a JSON object; raises SidecarError naming ``name``."""
    try:
        document = msgspec.json.decode(content)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise SidecarError(f"sidecar {name} is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise SidecarError(f"sidecar {name} does not hold a JSON object")
    return document
