"""The sidecar reader against hostile pointers and files: each refusal is a clear SidecarError.

The attacker here controls both the image (so the pointer) and the files next to it, so a
matching size and sha256 prove nothing about safety: path checks and the decompression bound
must hold on their own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import zstandard
from PIL import Image

from runtime_metadata.errors import RuntimeMetadataError, SidecarError
from runtime_metadata.writers.png import TextChunk, png_chunks, write_png
from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import encode_document, save_image
from runtime_metadata.writers.sidecar import (
    MAX_SIDECAR_BYTES,
    SIDECAR_SUFFIX,
    ZstdCodec,
    own_sidecar,
    read_sidecar,
    write_sidecar,
)

DOCUMENT = {
    "schema": 1,
    "runtime": {"nodes": [{"id": str(i), "class_type": "KSampler"} for i in range(2000)]},
}
CONTENT = encode_document(DOCUMENT)


def pointer_for(name: str, data: bytes, content_bytes: int) -> dict[str, Any]:
    """A pointer whose size and hash match ``data``, as an attacker would forge it."""
    return {
        "file": name,
        "codec": "zstd",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "schema": 1,
        "content_bytes": content_bytes,
    }


def image_with_pointer(path: Path, pointer: Any) -> Path:
    """A PNG that embeds ``pointer`` exactly as save_image would."""
    envelope = json.dumps({"schema": 1, "sidecar": pointer, "summary": {"schema": 1}})
    write_png(Image.new("RGB", (8, 8)), str(path), png_chunks({"1": {}}, None, envelope))
    return path


def refused(image: Path, pointer: Any, match: str) -> None:
    """read_sidecar raises SidecarError matching ``match``; read_metadata reports the same."""
    with pytest.raises(SidecarError, match=match):
        read_sidecar(image, pointer)
    meta = read_metadata(image)
    assert meta.document is None
    assert meta.pointer == pointer
    assert len(meta.problems) == 1 and re.search(match, meta.problems[0]), meta.problems
    assert meta.prompt == {"1": {}}  # the rest of the image is still read


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    """An image saved with its document in a sidecar: (image, sidecar)."""
    path = tmp_path / "img.png"
    result = save_image(
        Image.new("RGB", (8, 8)),
        path,
        "png",
        prompt={"1": {}},
        document=DOCUMENT,
        inline_size_limit_kb=1,
    )
    assert result.sidecar is not None
    return path, result.sidecar


def test_a_good_sidecar_is_read(saved: tuple[Path, Path]) -> None:
    image, _ = saved
    meta = read_metadata(image)
    assert meta.document == DOCUMENT and meta.problems == []
    assert SidecarError.__mro__[1] is RuntimeMetadataError


def test_pointer_with_parent_folder_is_refused(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    data = ZstdCodec().compress(CONTENT)
    (tmp_path / ("x" + SIDECAR_SUFFIX)).write_bytes(data)  # a real, matching file one level up
    image = image_with_pointer(inner / "a.png", pointer_for("../x" + SIDECAR_SUFFIX, data, len(CONTENT)))
    refused(image, pointer_for("../x" + SIDECAR_SUFFIX, data, len(CONTENT)), "path separator")


def test_pointer_dot_dot_alone_is_refused(tmp_path: Path) -> None:
    data = ZstdCodec().compress(CONTENT)
    refused(
        image_with_pointer(tmp_path / "a.png", pointer_for("..", data, 1)),
        pointer_for("..", data, 1),
        "not a file name",
    )


def test_absolute_pointer_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / ("x" + SIDECAR_SUFFIX)
    data = ZstdCodec().compress(CONTENT)
    target.write_bytes(data)
    pointer = pointer_for(str(target), data, len(CONTENT))
    refused(image_with_pointer(tmp_path / "a.png", pointer), pointer, "path separator|absolute")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("sub/x" + SIDECAR_SUFFIX, "path separator"),
        ("sub\\x" + SIDECAR_SUFFIX, "path separator"),
        ("x" + SIDECAR_SUFFIX + "\x00.png", "path separator"),
        ("C:x" + SIDECAR_SUFFIX, None),
        ("secrets.txt", "does not end with"),
        ("", "not a file name"),
    ],
)
def test_pointer_names_other_than_a_plain_sidecar_name_are_refused(
    tmp_path: Path, name: str, match: str | None
) -> None:
    data = ZstdCodec().compress(CONTENT)
    pointer = pointer_for(name, data, len(CONTENT))
    image = image_with_pointer(tmp_path / "a.png", pointer)
    if match is None:
        # On POSIX "C:x..." is an ordinary file name in the folder; it is simply missing.
        refused(image, pointer, "missing" if os.name != "nt" else "absolute")
    else:
        refused(image, pointer, match)


def test_symlink_pointing_outside_the_folder_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    folder = tmp_path / "images"
    folder.mkdir()
    data = ZstdCodec().compress(CONTENT)
    (outside / ("x" + SIDECAR_SUFFIX)).write_bytes(data)
    (folder / ("x" + SIDECAR_SUFFIX)).symlink_to(outside / ("x" + SIDECAR_SUFFIX))
    pointer = pointer_for("x" + SIDECAR_SUFFIX, data, len(CONTENT))
    refused(image_with_pointer(folder / "a.png", pointer), pointer, "outside the image's folder")


def test_symlink_staying_in_the_folder_is_followed(saved: tuple[Path, Path]) -> None:
    image, sidecar = saved
    link = image.parent / ("link" + SIDECAR_SUFFIX)
    link.symlink_to(sidecar.name)
    pointer = {**read_metadata(image).pointer, "file": link.name}  # type: ignore[dict-item]
    assert read_sidecar(image, pointer) == DOCUMENT


def test_missing_sidecar(saved: tuple[Path, Path]) -> None:
    image, sidecar = saved
    pointer = read_metadata(image).pointer
    sidecar.unlink()
    refused(image, pointer, "sidecar missing: " + re.escape(sidecar.name))


def test_truncated_sidecar(saved: tuple[Path, Path]) -> None:
    image, sidecar = saved
    pointer = read_metadata(image).pointer
    sidecar.write_bytes(sidecar.read_bytes()[:-10])
    refused(image, pointer, "sidecar truncated")


def test_sidecar_whose_hash_does_not_match(saved: tuple[Path, Path]) -> None:
    image, sidecar = saved
    pointer = read_metadata(image).pointer
    data = bytearray(sidecar.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sidecar.write_bytes(bytes(data))
    refused(image, pointer, "sidecar altered: sha256")


def test_sidecar_replaced_by_a_larger_file(saved: tuple[Path, Path]) -> None:
    image, sidecar = saved
    pointer = read_metadata(image).pointer
    sidecar.write_bytes(sidecar.read_bytes() + b"\x00")
    refused(image, pointer, "sidecar altered: .* bytes")


def rle_bomb(total: int) -> bytes:
    """A zstd frame of RLE blocks: 4 bytes of file per 128 KiB of output, no content size."""
    block = 128 * 1024
    frame = bytearray(b"\x28\xb5\x2f\xfd")  # magic
    frame += bytes([0x00, 7 << 3])  # no content size, no checksum; window 2**17
    count = total // block
    for i in range(count):
        last = 1 if i == count - 1 else 0
        frame += struct.pack("<I", (block << 3) | (1 << 1) | last)[:3] + b"\x00"
    return bytes(frame)


def test_the_bomb_is_real() -> None:
    """Check the test's own bomb: it does inflate (here to 1 MiB) with stock zstd."""
    assert zstandard.ZstdDecompressor().stream_reader(rle_bomb(1 << 20)).read(2 << 20) == bytes(1 << 20)


@pytest.mark.parametrize("claimed", [MAX_SIDECAR_BYTES * 64, 1000])
def test_zstd_bomb_stops_at_the_limit_without_allocating_gigabytes(tmp_path: Path, claimed: int) -> None:
    data = rle_bomb(4 << 30)  # inflates to 4 GiB from ~128 KiB
    assert len(data) < 200_000
    name = "bomb" + SIDECAR_SUFFIX
    (tmp_path / name).write_bytes(data)
    pointer = pointer_for(name, data, claimed)
    image = image_with_pointer(tmp_path / "a.png", pointer)
    tracemalloc.start()
    try:
        with pytest.raises(SidecarError, match="inflates past"):
            read_sidecar(image, pointer)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * min(claimed, MAX_SIDECAR_BYTES) + (16 << 20)
    refused(image, pointer, "inflates past")


def test_not_zstd_is_refused(tmp_path: Path) -> None:
    data = b"this is not zstd at all"
    name = "x" + SIDECAR_SUFFIX
    (tmp_path / name).write_bytes(data)
    pointer = pointer_for(name, data, 10)
    refused(image_with_pointer(tmp_path / "a.png", pointer), pointer, "not valid zstd")


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "does not hold a JSON object")],
)
def test_sidecar_content_must_be_a_json_object(tmp_path: Path, content: bytes, match: str) -> None:
    data = ZstdCodec().compress(content)
    name = "x" + SIDECAR_SUFFIX
    (tmp_path / name).write_bytes(data)
    pointer = pointer_for(name, data, len(content))
    refused(image_with_pointer(tmp_path / "a.png", pointer), pointer, match)


def test_content_length_must_match_the_pointer(tmp_path: Path) -> None:
    data = ZstdCodec().compress(CONTENT)
    name = "x" + SIDECAR_SUFFIX
    (tmp_path / name).write_bytes(data)
    pointer = pointer_for(name, data, len(CONTENT) + 5)
    refused(image_with_pointer(tmp_path / "a.png", pointer), pointer, "holds .* bytes of JSON")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_like_a_sidecar_does_not_block(tmp_path: Path) -> None:
    name = "x" + SIDECAR_SUFFIX
    os.mkfifo(tmp_path / name)
    pointer = pointer_for(name, b"", 0)
    refused(image_with_pointer(tmp_path / "a.png", pointer), pointer, "not a regular file")


@pytest.mark.parametrize(
    ("pointer", "match"),
    [
        ("x.runtime.json.zst", "not an object"),
        ({"codec": "zstd"}, "no file name"),
        ({"file": "x" + SIDECAR_SUFFIX, "codec": "gzip", "bytes": 1, "sha256": "0" * 64}, "codec"),
        (
            {"file": "x" + SIDECAR_SUFFIX, "codec": "zstd", "bytes": -1, "sha256": "0" * 64},
            "byte counts",
        ),
        (
            {"file": "x" + SIDECAR_SUFFIX, "codec": "zstd", "bytes": True, "sha256": "0" * 64},
            "byte counts",
        ),
        ({"file": "x" + SIDECAR_SUFFIX, "codec": "zstd", "bytes": 1, "sha256": "zz"}, "sha256"),
    ],
)
def test_malformed_pointers(tmp_path: Path, pointer: Any, match: str) -> None:
    image = tmp_path / "a.png"
    write_png(
        Image.new("RGB", (4, 4)),
        str(image),
        [TextChunk("runtime_metadata", json.dumps({"sidecar": pointer}), itxt=True)],
    )
    with pytest.raises(SidecarError, match=match):
        read_sidecar(image, pointer)
    meta = read_metadata(image)
    if isinstance(pointer, dict):
        assert meta.document is None and any(match in p for p in meta.problems)
    else:
        # A string under "sidecar" is not a pointer: the object is taken as the document.
        assert meta.document == {"sidecar": pointer}


def test_write_sidecar_is_atomic_and_returns_a_checked_pointer(tmp_path: Path) -> None:
    pointer = write_sidecar(tmp_path / "a.png", CONTENT, schema=1)
    data = (tmp_path / pointer.file).read_bytes()
    assert pointer.file == f"a.png.{hashlib.sha256(data).hexdigest()[:16]}{SIDECAR_SUFFIX}"
    assert pointer.bytes == len(data) and pointer.sha256 == hashlib.sha256(data).hexdigest()
    assert pointer.content_bytes == len(CONTENT)
    assert read_sidecar(tmp_path / "a.png", pointer.to_dict()) == DOCUMENT
    assert sorted(p.name for p in tmp_path.iterdir()) == [pointer.file]


def test_a_long_image_name_gives_a_sidecar_name_within_name_max(tmp_path: Path) -> None:
    image = tmp_path / ("é" * 120 + ".png")  # 245 bytes of UTF-8
    pointer = write_sidecar(image, CONTENT, schema=1)
    assert len(pointer.file.encode()) <= 255 and pointer.file.endswith(SIDECAR_SUFFIX)
    assert own_sidecar(image, pointer.file) and not own_sidecar(tmp_path / "other.png", pointer.file)
    assert read_sidecar(image, pointer.to_dict()) == DOCUMENT
