"""Read back what any image holds (PNG, JPEG, WebP), following a sidecar pointer.

Tolerant of hostile input: nothing here raises for a bad file; every damaged chunk, value
that is not JSON, oversized chunk or rejected sidecar becomes a line in ``problems`` and the
rest is still read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from PIL.PngImagePlugin import MAX_TEXT_CHUNK as PIL_MAX_TEXT_CHUNK

from ..errors import SidecarError
from .containers import PNG_SIGNATURE, Found, walk_jpeg, walk_png, walk_webp
from .exif import read_exif
from .files import describe_os_error, open_regular
from .png import DOCUMENT_KEY
from .sidecar import SIDECAR_KEY, SidecarPointer, decode_document, read_sidecar_bytes
from .xmp import parse_xmp

#: PNG keys that are not ComfyUI extra_pnginfo values.
_NOT_EXTRA = ("prompt", "parameters", DOCUMENT_KEY)


@dataclass
class ImageMetadata:
    """Everything this package knows how to read from one image."""

    path: Path
    format: str | None = None
    prompt: Any = None
    workflow: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    parameters: str | None = None
    document: dict[str, Any] | None = None
    #: The document exactly as stored (the inline text, or the sidecar's content), for
    #: byte-for-byte comparisons.
    document_text: str | None = None
    pointer: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    dropped: tuple[str, ...] = ()
    chunks: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: Set when the file itself could not be read (missing, a directory, a FIFO...): the one
    #: line to say, also the first of ``problems``.
    unreadable: str | None = None


def sniff(head: bytes) -> str | None:
    """``png``, ``jpeg`` or ``webp`` from a file's first 12 bytes; None for anything else."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(b"\xff\xd8"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def _json(meta: ImageMetadata, label: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        meta.problems.append(f"{label} is not valid JSON: {exc}")
        return None


def read_metadata(path: str | os.PathLike[str], *, follow_sidecar: bool = True) -> ImageMetadata:
    """Prompt, workflow, parameters and document of an image, and every problem met."""
    meta = ImageMetadata(Path(path))
    try:
        with open_regular(path) as fh:
            size = os.fstat(fh.fileno()).st_size
            meta.format = sniff(fh.read(12))
            fh.seek(0)
            if meta.format == "png":
                found = walk_png(fh, size)
            elif meta.format == "jpeg":
                found = walk_jpeg(fh, size)
            elif meta.format == "webp":
                found = walk_webp(fh, size)
            else:
                meta.problems.append("not a PNG, JPEG or WebP file")
                return meta
    except OSError as exc:
        meta.unreadable = describe_os_error(path, exc)
        meta.problems.append(meta.unreadable)
        return meta
    meta.chunks = found.chunk_order
    meta.problems += found.problems
    document_text = _read_png(meta, found) if meta.format == "png" else _read_exif_xmp(meta, found)
    if document_text is not None:
        _read_document(meta, document_text, follow_sidecar)
    # One line per problem: messages of piexif and the JSON decoders can span several.
    meta.problems = [" ".join(problem.split()) for problem in meta.problems]
    return meta


def _read_png(meta: ImageMetadata, found: Found) -> str | None:
    texts: dict[str, str] = {}
    for chunk in found.texts:
        if chunk.key in texts:
            meta.problems.append(f"PNG has more than one {chunk.key!r} chunk; the first is used")
            continue
        texts[chunk.key] = chunk.text
        if chunk.key in ("prompt", "workflow", "parameters") and chunk.chunk_type != "tEXt":
            # Not a problem for this reader, but ComfyUI's frontend and Civitai miss these.
            meta.problems.append(f"PNG {chunk.key!r} is {chunk.chunk_type}, not tEXt: other readers may miss it")
        if chunk.compressed and len(chunk.text.encode("utf-8")) > PIL_MAX_TEXT_CHUNK:
            meta.problems.append(
                f"PNG {chunk.key!r} inflates past Pillow's MAX_TEXT_CHUNK: Pillow (and ComfyUI) refuse this file"
            )
        if chunk.language:
            meta.problems.append(f"PNG {chunk.key!r} has language tag {chunk.language!r}")
    meta.prompt = _json(meta, "prompt", texts.get("prompt"))
    meta.workflow = _json(meta, "workflow", texts.get("workflow"))
    meta.parameters = texts.get("parameters")
    for key, text in texts.items():
        if key not in _NOT_EXTRA and key != "workflow":
            try:
                meta.extra[key] = json.loads(text)
            except (ValueError, RecursionError):
                continue  # Not a ComfyUI value (e.g. a Software or Comment chunk).
    return texts.get(DOCUMENT_KEY)


def _read_exif_xmp(meta: ImageMetadata, found: Found) -> str | None:
    if found.exif is not None:
        try:
            values = read_exif(found.exif)
        except Exception as exc:  # piexif raises many types on damaged EXIF
            meta.problems.append(f"EXIF unreadable: {type(exc).__name__}: {exc}")
        else:
            meta.prompt = _json(meta, "prompt", values.prompt)
            meta.workflow = _json(meta, "workflow", values.workflow)
            meta.parameters = values.parameters
            for key, text in (values.extra or {}).items():
                value = _json(meta, key, text)
                if value is not None:
                    meta.extra[key] = value
    if found.xmp is None:
        return None
    try:
        fields = parse_xmp(found.xmp)
    except ValueError as exc:
        meta.problems.append(f"XMP unreadable: {exc}")
        return None
    meta.dropped = fields.dropped
    return fields.document


def _read_document(meta: ImageMetadata, text: str, follow_sidecar: bool) -> None:
    try:
        value = msgspec.json.decode(text.encode("utf-8"))
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError) as exc:
        meta.problems.append(f"{DOCUMENT_KEY} is not valid JSON: {exc}")
        return
    if not isinstance(value, dict):
        meta.problems.append(f"{DOCUMENT_KEY} is not a JSON object")
        return
    pointer = value.get(SIDECAR_KEY)
    if not isinstance(pointer, dict):
        meta.document = value
        meta.document_text = text
        return
    meta.pointer = pointer
    summary = value.get("summary")
    meta.summary = summary if isinstance(summary, dict) else None
    if not follow_sidecar:
        return
    try:
        checked = SidecarPointer.from_dict(pointer)
    except SidecarError as exc:
        meta.problems.append(str(exc))
        return
    try:
        content = read_sidecar_bytes(meta.path, checked)
        meta.document = decode_document(content, checked.file)
        meta.document_text = content.decode("utf-8")
    except (SidecarError, UnicodeDecodeError) as exc:
        meta.problems.append(str(exc))
    except OSError as exc:  # e.g. the image's folder went away while being checked
        meta.problems.append(f"sidecar {checked.file} cannot be read: {exc.strerror or exc}")
