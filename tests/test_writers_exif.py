"""EXIF building blocks: piexif's missing next-IFD offset repaired, UserComment encodings, drops."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import piexif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
from runtime_metadata.writers.read import read_metadata

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


# --- Properties over structured values ------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
extra_keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"), min_size=1, max_size=10
)


@settings(max_examples=200, deadline=None)
@given(
    prompt=json_values,
    workflow=st.none() | json_values,
    extra=st.dictionaries(extra_keys.filter(lambda k: k not in ("prompt", "workflow")), json_values, max_size=2),
    # An A1111 infotext: any prompt text, then its settings line.
    parameters=st.none() | st.text(max_size=200).map(lambda text: f"{text}\nSteps: 20, Sampler: Euler"),
)
def test_what_build_exif_writes_read_exif_reads_back(prompt, workflow, extra, parameters) -> None:
    extra_pnginfo = {**({"workflow": workflow} if workflow is not None else {}), **extra}
    payload = build_exif(prompt, extra_pnginfo, parameters)
    assert payload.dropped == ()
    values = read_exif(payload.data)
    assert (json.loads(values.prompt) if values.prompt is not None else None) == prompt
    assert (json.loads(values.workflow) if values.workflow is not None else None) == workflow
    assert {k: json.loads(v) for k, v in (values.extra or {}).items()} == extra
    assert values.parameters == parameters


@settings(max_examples=200, deadline=None)
@given(
    prompt=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    parameters=st.text(max_size=3000).map(lambda text: f"{text}\nSteps: 20"),
    limit=st.integers(200, 65_533),
)
def test_build_exif_never_exceeds_its_limit_and_names_what_it_dropped(prompt, parameters, limit) -> None:
    payload = build_exif(prompt, {"workflow": {"nodes": ["w" * 500]}}, parameters, limit=limit)
    kept = read_exif(payload.data)
    assert len(payload.data) <= limit or set(payload.dropped) == {"prompt", "workflow", "parameters"}
    assert ("prompt" in payload.dropped) == (kept.prompt is None)
    assert ("workflow" in payload.dropped) == (kept.workflow is None)
    assert ("parameters" in payload.dropped) == (kept.parameters is None)
    # Dropped in DROP_ORDER: never a later group while an earlier one is kept.
    order = [g for g in DROP_ORDER if g != "extra"]
    dropped = [g for g in order if g in payload.dropped]
    assert dropped == order[: len(dropped)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), fmt=st.sampled_from(["jpeg", "webp"]))
def test_damaged_exif_is_a_problem_never_an_exception(tmp_path: Path, data, fmt: str) -> None:
    exif = bytearray(build_exif({"1": {"class_type": "K"}}, {"workflow": {"n": 1}}, INFOTEXT).data)
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(6, len(exif) - 1))
        exif[at] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        exif = exif[: data.draw(st.integers(6, len(exif)))]
    path = tmp_path / f"damaged.{fmt}"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format=fmt.upper(), exif=bytes(exif))
    path.write_bytes(buf.getvalue())
    meta = read_metadata(path)
    assert meta.format == fmt and meta.unreadable is None
    assert all(isinstance(problem, str) and "\n" not in problem for problem in meta.problems)


@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_an_infotext_of_characters_whose_low_byte_is_zero_keeps_its_byte_order(encoding: str) -> None:
    # U+4E00 and friends put a zero byte where little-endian ASCII would: only the settings
    # line tells the order.
    text = "一" * 40 + "\nSteps: 20, Sampler: Euler"
    assert decode_user_comment(b"UNICODE\x00" + text.encode(encoding)) == text


def exif_claiming(count: int) -> bytes:
    """EXIF whose IFD0 ImageWidth (a LONG) claims ``count`` values."""
    data = bytearray(piexif.dump({"0th": {piexif.ImageIFD.ImageWidth: 8, piexif.ImageIFD.Make: b"x"}}))
    tiff = 6
    (ifd0,) = struct.unpack_from(">I", data, tiff + 4)
    (entries,) = struct.unpack_from(">H", data, tiff + ifd0)
    for i in range(entries):
        at = tiff + ifd0 + 2 + 12 * i
        if struct.unpack_from(">H", data, at)[0] == piexif.ImageIFD.ImageWidth:
            struct.pack_into(">HI", data, at + 2, 4, count)
    return bytes(data)


EXIF_RSS_PROBE = """
import json, resource, sys
from runtime_metadata.writers.read import read_metadata
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
meta = read_metadata(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps([(after - before) * 1024, meta.problems]))
"""


def test_an_exif_entry_claiming_billions_of_values_is_refused_before_piexif_allocates(tmp_path: Path) -> None:
    # piexif builds a struct format of one letter per claimed value: 4 GB for this entry.
    path = tmp_path / "claims.jpg"
    Image.new("RGB", (8, 8)).save(path, format="JPEG", exif=exif_claiming(0xFFFF_FFF0))
    out = subprocess.run([sys.executable, "-c", EXIF_RSS_PROBE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    growth, problems = json.loads(out.stdout)
    assert problems == [
        "EXIF unreadable: ValueError: tag 0x0100 claims 4294967280 values, more than the EXIF's 38 bytes hold"
    ]
    assert growth < 64 << 20, f"reading took {growth >> 20} MiB more"
