"""PNG text chunks: ComfyUI's own ``prompt``/``workflow`` and this plugin's document.

ComfyUI's frontend reads only tEXt for ``prompt`` and ``workflow`` (never zTXt, and builds
before February 2026 not even iTXt), so those are written exactly as ComfyUI's SaveImage
writes them. The plugin's document goes into its own uncompressed iTXt chunk with no
language tag (a language tag renames the key for some readers).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .containers import walk_png
from .files import open_regular

#: The key of the plugin's own chunk.
DOCUMENT_KEY = "runtime_metadata"
#: ComfyUI's SaveImage compression level; matching it keeps file sizes comparable.
COMPRESS_LEVEL = 4


@dataclass(frozen=True)
class TextChunk:
    """One text chunk: ``itxt`` is False for plain Latin-1 tEXt."""

    key: str
    text: str
    itxt: bool = False


def comfy_chunks(prompt: Any, extra_pnginfo: dict[str, Any] | None) -> list[TextChunk]:
    """ComfyUI's own chunks, byte for byte as its SaveImage writes them."""
    chunks: list[TextChunk] = []
    if prompt is not None:
        chunks.append(TextChunk("prompt", json.dumps(prompt)))
    for key, value in (extra_pnginfo or {}).items():
        chunks.append(TextChunk(str(key), json.dumps(value)))
    return chunks


def png_chunks(
    prompt: Any,
    extra_pnginfo: dict[str, Any] | None,
    document: str | None = None,
    parameters: str | None = None,
) -> list[TextChunk]:
    """Every chunk of a saved PNG, in the order they are written."""
    chunks = comfy_chunks(prompt, extra_pnginfo)
    if parameters is not None:
        chunks.append(TextChunk("parameters", parameters))
    if document is not None:
        chunks.append(TextChunk(DOCUMENT_KEY, document, itxt=True))
    return chunks


def pnginfo(chunks: list[TextChunk]) -> PngInfo:
    """Pillow's PngInfo holding ``chunks``."""
    info = PngInfo()
    for chunk in chunks:
        if chunk.itxt:
            info.add_itxt(chunk.key, chunk.text, lang="", tkey="", zip=False)
        else:
            # add_text writes tEXt for Latin-1 text and falls back to uncompressed iTXt.
            info.add_text(chunk.key, chunk.text)
    return info


def write_png(image: Image.Image, target: str | BinaryIO, chunks: list[TextChunk] | None) -> None:
    """Save ``image`` as PNG with ``chunks`` (None: no metadata at all)."""
    info = pnginfo(chunks) if chunks is not None else None
    image.save(target, format="PNG", pnginfo=info, compress_level=COMPRESS_LEVEL)


def read_text_chunks(source: str | os.PathLike[str] | BinaryIO) -> dict[str, str]:
    """Every readable text chunk of a PNG by key (tEXt, zTXt and iTXt alike; first one wins)."""
    if isinstance(source, (str, os.PathLike)):
        with open_regular(source) as fh:
            return read_text_chunks(fh)
    start = source.tell()
    size = source.seek(0, io.SEEK_END) - start
    source.seek(start)
    texts: dict[str, str] = {}
    # The walker, not Pillow: one oversized or damaged chunk must not hide the others.
    for chunk in walk_png(source, size).texts:
        texts.setdefault(chunk.key, chunk.text)
    return texts
