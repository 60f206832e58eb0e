"""EXIF building blocks: piexif's missing next-IFD offset repaired, UserComment encodings, drops."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import piexif
import pytest
from PIL import Image

from runtime_metadata.writers.atomic import atomic_write_bytes
from runtime_metadata.writers.exif import (
    DROP_ORDER,
    add_exif_next_ifd,
    build_exif,
    decode_user_comment,
    read_exif,
    user_comment,
)

INFOTEXT = "a cat\nNegative prompt: blurry\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1"


def exif_ifd_next_offset(data: bytes) -> tuple[int, int]:
    """(offset of the Exif IFD's next-IFD field, offset of its first out-of-line value)."""
    tiff = data[6:]
    (ifd0,) = struct.unpack_from(">I", tiff, 4)
    (count,) = struct.unpack_from(">H", tiff, ifd0)
    entries = [struct.unpack_from(">HHII", tiff, ifd0 + 2 + 12 * i) for i in range(count)]
    exif_ifd = next(value for tag, _, _, value in entries if tag == 0x8769)
    (count,) = struct.unpack_from(">H", tiff, exif_ifd)
    values = [
        struct.unpack_from(">HHII", tiff, exif_ifd + 2 + 12 * i)[3]
        for i in range(count)
        if struct.unpack_from(">HHII", tiff, exif_ifd + 2 + 12 * i)[2] > 4
    ]
    return exif_ifd + 2 + 12 * count, min(values)


def test_piexif_still_omits_the_exif_next_ifd_offset() -> None:
    """The defect being repaired (piexif issue #116): the first value starts where the offset belongs."""
    raw = piexif.dump({"0th": {}, "Exif": {piexif.ExifIFD.UserComment: user_comment(INFOTEXT)}})
    next_field, first_value = exif_ifd_next_offset(raw)
    assert first_value == next_field


def test_next_ifd_offset_is_added_and_values_move_with_it() -> None:
    raw = piexif.dump(
        {
            "0th": {piexif.ImageIFD.Make: "workflow:{}"},
            "Exif": {piexif.ExifIFD.UserComment: user_comment(INFOTEXT)},
        }
    )
    fixed = add_exif_next_ifd(raw)
    assert len(fixed) == len(raw) + 4
    next_field, first_value = exif_ifd_next_offset(fixed)
    assert fixed[6 + next_field : 6 + next_field + 4] == b"\x00\x00\x00\x00"
    assert first_value == next_field + 4
    assert piexif.load(fixed)["Exif"] == piexif.load(raw)["Exif"]
    assert add_exif_next_ifd(fixed) == fixed  # already repaired: unchanged


@pytest.mark.parametrize("data", [b"", b"Exif\x00\x00", b"Exif\x00\x00XX\x00*", b"not exif at all"])
def test_repair_leaves_what_it_does_not_understand(data: bytes) -> None:
    assert add_exif_next_ifd(data) == data


def test_pillow_reads_the_repaired_exif_in_jpeg_and_webp() -> None:
    payload = build_exif({"1": {}}, {"workflow": {"nodes": []}}, INFOTEXT, jpeg_size=(8, 8))
    for fmt in ("JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buf, format=fmt, exif=payload.data)
        buf.seek(0)
        exif = Image.open(buf).getexif()
        assert exif[0x010E] == 'prompt:{"1": {}}' and exif[0x010F] == 'workflow:{"nodes": []}'
        assert exif.get_ifd(0x8769)[0x9286] == user_comment(INFOTEXT)


def test_user_comment_is_unicode_prefix_and_utf16_big_endian() -> None:
    assert user_comment("a猫") == b"UNICODE\x00\x00a\x73\x2b"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"UNICODE\x00" + "a猫 b".encode("utf-16-be"), "a猫 b"),
        (b"UNICODE\x00" + "abc".encode("utf-16-le"), "abc"),
        (b"UNICODE\x00\xff\xfe" + "abc".encode("utf-16-le"), "abc"),
        (b"ASCII\x00\x00\x00plain", "plain"),
        (b"\x00" * 8 + b"undefined code", "undefined code"),
        (b"UNICODE\x00", ""),
        # CJK first characters have a zero low byte in big-endian (U+4E00): still big-endian.
        (b"UNICODE\x00" + "一只猫\nSteps: 20".encode("utf-16-be"), "一只猫\nSteps: 20"),
        (b"UNICODE\x00" + "一只猫\nSteps: 20".encode("utf-16-le"), "一只猫\nSteps: 20"),
    ],
)
def test_user_comment_decoding(raw: bytes, text: str) -> None:
    assert (decode_user_comment(raw) or "") == text


def test_drop_order_and_reporting() -> None:
    assert DROP_ORDER == ("prompt", "extra", "workflow", "parameters")
    big = {"t": "x" * 70_000}
    payload = build_exif(big, {"workflow": big, "a": 1}, INFOTEXT, limit=65_533)
    assert payload.dropped == ("prompt", "extra:a", "workflow")
    values = read_exif(payload.data)
    assert (values.prompt, values.workflow, values.extra, values.parameters) == (
        None,
        None,
        None,
        INFOTEXT,
    )


def test_no_limit_keeps_everything() -> None:
    big = {"t": "x" * 200_000}
    payload = build_exif(big, {"workflow": big}, INFOTEXT)
    assert payload.dropped == ()
    values = read_exif(payload.data)
    assert json.loads(values.prompt or "") == big and json.loads(values.workflow or "") == big


def test_atomic_write_gives_new_files_the_umask_permissions(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write_bytes(tmp_path / "f.bin", b"data")
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o666 & ~mask
