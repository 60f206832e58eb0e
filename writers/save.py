"""The save node's one entry point: an image with all its metadata, written atomically.

Per format:

* PNG: tEXt ``prompt`` and one tEXt per ``extra_pnginfo`` key, exactly as ComfyUI's SaveImage
  writes them; tEXt ``parameters`` (A1111 infotext); the document in uncompressed iTXt
  ``runtime_metadata``. Nothing is ever dropped.
* JPEG / WebP: EXIF (see ``exif.py``) plus an XMP packet carrying the document (see
  ``xmp.py``). JPEG's EXIF segment holds 65,533 bytes, so prompt, extra keys, workflow and
  last the infotext are dropped until it fits; the XMP packet (document or pointer) is never
  dropped, and records what was.

The document goes inline when its canonical JSON is at most ``inline_size_limit_kb`` KiB (and,
for JPEG, when its XMP packet fits one segment; for WebP, MAX_XMP_BYTES); otherwise into a zstd sidecar written, durably
and atomically, before the image that points to it, under a name unique to the image and
the sidecar's content (see ``sidecar.py``). Saving over an image removes the sidecar it
pointed to, when that one was named for it. What the image embeds then is
``{"schema", "sidecar": <pointer>, "summary"}``; readers tell the two apart by the top-level
``"sidecar"`` key, so a document must not use that key itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec
from PIL import Image

from ..canonical import encode_document
from ..errors import RuntimeMetadataError
from .atomic import atomic_open
from .exif import JPEG_EXIF_MAX, build_exif
from .png import png_chunks, write_png
from .read import read_metadata
from .sidecar import SIDECAR_KEY, SidecarPointer, own_sidecar, write_sidecar
from .xmp import JPEG_XMP_MAX, MAX_XMP_BYTES, XmpFields, build_xmp

log = logging.getLogger("runtime_metadata")

ImageFormat = Literal["png", "jpeg", "webp"]
FORMATS: tuple[ImageFormat, ...] = ("png", "jpeg", "webp")
#: The summary an image keeps beside a sidecar pointer: a glance for viewers, not a copy.
SUMMARY_MAX_BYTES = 2048
#: Longest string kept in a summary.
SUMMARY_STRING_MAX = 200
#: libwebp's default effort, which ComfyUI's SaveAnimatedWEBP also uses.
WEBP_METHOD = 4
#: Modes the JPEG encoder takes as they are; anything else is converted to RGB first.
_JPEG_MODES = ("RGB", "L", "CMYK")


@dataclass(frozen=True)
class SaveResult:
    """What a save wrote: the image, its sidecar (or None) and what did not fit."""

    path: Path
    sidecar: Path | None
    dropped: tuple[str, ...]
    document_bytes: int


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _cut(value: Any) -> Any:
    if isinstance(value, str) and len(value) > SUMMARY_STRING_MAX:
        return value[: SUMMARY_STRING_MAX - 1] + "…"
    return value


def summarize(document: Mapping[str, Any]) -> dict[str, Any]:
    """The scalars of a document's first two levels, cut to SUMMARY_MAX_BYTES."""
    top = {k: _cut(v) for k, v in document.items() if _is_scalar(v)}
    nested = {
        k: {kk: _cut(vv) for kk, vv in v.items() if _is_scalar(vv)}
        for k, v in document.items()
        if isinstance(v, Mapping) and k != SIDECAR_KEY
    }
    summary = {**top, **{k: v for k, v in nested.items() if v}}
    if len(encode_document(summary)) <= SUMMARY_MAX_BYTES:
        return summary
    if len(encode_document(top)) <= SUMMARY_MAX_BYTES:
        return top
    return {"schema": document.get("schema")} if _is_scalar(document.get("schema")) else {}


def pointer_envelope(pointer: SidecarPointer, summary: Mapping[str, Any]) -> bytes:
    """What the image embeds in place of a document that went to a sidecar."""
    return encode_document({"schema": pointer.schema, SIDECAR_KEY: pointer.to_dict(), "summary": dict(summary)})


def _jpeg_image(image: Image.Image) -> Image.Image:
    return image if image.mode in _JPEG_MODES else image.convert("RGB")


def _webp_image(image: Image.Image) -> Image.Image:
    if image.mode == "RGBA":
        # sd-prompt-reader takes any RGBA WebP for NovelAI's alpha-channel format and then
        # never reads the EXIF; an alpha that is opaque everywhere carries nothing to keep.
        if image.getchannel("A").getextrema() == (255, 255):
            return image.convert("RGB")
        return image
    if image.mode == "RGB":
        return image
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


def save_image(
    image: Image.Image,
    path: str | os.PathLike[str],
    fmt: ImageFormat,
    *,
    prompt: Any = None,
    extra_pnginfo: Mapping[str, Any] | None = None,
    document: Mapping[str, Any] | msgspec.Struct | None = None,
    parameters: str | None = None,
    inline_size_limit_kb: int = 32,
    quality: int = 95,
    lossless: bool = False,
    metadata: bool = True,
    summary: Mapping[str, Any] | None = None,
) -> SaveResult:
    """Save ``image`` to ``path`` with ComfyUI's, A1111's and the plugin's metadata.

    ``document``: JSON data, or the typed document (``projections.document.Document``), which
    becomes JSON data here, where it is encoded.
    """
    data: Mapping[str, Any] | None = msgspec.to_builtins(document) if isinstance(document, msgspec.Struct) else document
    if fmt not in FORMATS:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {FORMATS}")
    target = Path(path)
    if not metadata:
        # ComfyUI's --disable-metadata: no prompt, no workflow, no document.
        _write_image(image, target, fmt, quality=quality, lossless=lossless)
        return SaveResult(target, None, (), 0)

    dropped: list[str] = []
    content: bytes | None = None
    if data is not None:
        try:
            content = encode_document(data)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:
            # The image is always saved; a document that cannot be encoded is reported.
            log.error("[runtime-metadata] document is not JSON-able, saved without it: %s", exc)
            dropped.append("document")

    exif_data: bytes | None = None
    if fmt in ("jpeg", "webp"):
        jpeg = fmt == "jpeg"
        payload = build_exif(
            prompt,
            extra_pnginfo,
            parameters,
            limit=JPEG_EXIF_MAX if jpeg else None,
            jpeg_size=image.size if jpeg else None,
        )
        exif_data = payload.data
        dropped += payload.dropped

    embedded: bytes | None = content
    sidecar: Path | None = None
    if content is not None:
        inline = len(content) <= inline_size_limit_kb * 1024
        if inline and fmt != "png":
            # The packet must fit one JPEG segment, and stay within what our reader parses.
            xmp_limit = JPEG_XMP_MAX if fmt == "jpeg" else MAX_XMP_BYTES
            inline = len(build_xmp(XmpFields(content.decode(), tuple(dropped)))) <= xmp_limit
        if not inline:
            try:
                pointer = write_sidecar(target, content, schema=(data or {}).get("schema"))
            except (OSError, RuntimeMetadataError) as exc:
                log.error("[runtime-metadata] sidecar not written, image saved without document: %s", exc)
                dropped.append("document")
                embedded = None
            else:
                sidecar = target.parent / pointer.file
                embedded = pointer_envelope(pointer, summary if summary is not None else summarize(data or {}))

    text = embedded.decode("utf-8") if embedded is not None else None
    replaced = _sidecar_of(target)
    try:
        if fmt == "png":
            chunks = png_chunks(prompt, dict(extra_pnginfo) if extra_pnginfo else None, text, parameters)
            with atomic_open(target) as fh:
                write_png(image, fh, chunks)
        else:
            xmp = build_xmp(XmpFields(text, tuple(dropped))) if text is not None or dropped else None
            _write_image(image, target, fmt, quality=quality, lossless=lossless, exif=exif_data, xmp=xmp)
    except BaseException:
        if sidecar is not None:
            # A sidecar nobody points to is clutter; the failure itself is the caller's.
            with contextlib.suppress(OSError):
                sidecar.unlink()
        raise
    if replaced is not None and (sidecar is None or replaced != sidecar.name):
        # The image this one replaced pointed at a sidecar named for it alone: now no image does.
        with contextlib.suppress(OSError):
            (target.parent / replaced).unlink()
    return SaveResult(target, sidecar, tuple(dropped), len(content) if content is not None else 0)


def _sidecar_of(image: Path) -> str | None:
    """The sidecar an existing image at ``image`` points to, if it is one named for that image."""
    if not image.exists():
        return None
    pointer = read_metadata(image, follow_sidecar=False).pointer
    name = pointer.get("file") if pointer is not None else None
    return name if isinstance(name, str) and own_sidecar(image, name) else None


def _write_image(
    image: Image.Image,
    target: Path,
    fmt: ImageFormat,
    *,
    quality: int,
    lossless: bool,
    exif: bytes | None = None,
    xmp: bytes | None = None,
) -> None:
    extra: dict[str, Any] = {}
    if exif and fmt == "webp" and len(exif) % 2:
        # RIFF pads an odd chunk with a byte that ComfyUI's 2024 frontend does not skip (it
        # then misreads the chunk after); TIFF readers ignore a byte after the last IFD.
        exif += b"\0"
    if exif:
        extra["exif"] = exif
    if xmp:
        extra["xmp"] = xmp
    with atomic_open(target) as fh:
        if fmt == "png":
            write_png(image, fh, None)
        elif fmt == "jpeg":
            _jpeg_image(image).save(fh, format="JPEG", quality=quality, **extra)
        else:
            _webp_image(image).save(fh, format="WEBP", quality=quality, lossless=lossless, method=WEBP_METHOD, **extra)
