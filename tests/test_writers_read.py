"""read_metadata on hostile and foreign files: it never raises, reports each problem, reads the rest."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import piexif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime_metadata.writers.containers import MAX_TEXT_BYTES, MAX_TEXT_TOTAL_BYTES, walk_png
from runtime_metadata.writers.png import read_text_chunks
from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import save_image
from runtime_metadata.writers.xmp import NAMESPACE, XmpFields, build_xmp, parse_xmp

PROMPT = {"1": {"class_type": "KSampler", "inputs": {"seed": 7}}}
WORKFLOW = {"nodes": [{"id": 1}], "links": []}


def chunk(kind: bytes, data: bytes, *, crc: int | None = None) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) if crc is None else crc)
    )


def png_with(*extra: bytes, tail: bytes | None = None) -> bytes:
    """A valid 4x4 PNG with ``extra`` chunks inserted after IHDR."""
    buf = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buf, format="PNG")
    raw = buf.getvalue()
    ihdr_end = 8 + 8 + 13 + 4
    body = raw[:ihdr_end] + b"".join(extra) + raw[ihdr_end:]
    return body if tail is None else body[: len(body) - len(tail)]


def text(key: str, value: str) -> bytes:
    return chunk(b"tEXt", key.encode("latin-1") + b"\x00" + value.encode("latin-1"))


def ztxt(key: str, raw: bytes) -> bytes:
    return chunk(b"zTXt", key.encode() + b"\x00\x00" + zlib.compress(raw, 9))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_damaged_chunk_is_reported_and_the_others_are_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.png",
        png_with(chunk(b"tEXt", b"prompt\x00{broken", crc=0), text("workflow", json.dumps(WORKFLOW))),
    )
    meta = read_metadata(path)
    assert meta.workflow == WORKFLOW and meta.prompt is None
    assert meta.problems == ["PNG tEXt chunk damaged (CRC mismatch); skipped"]


def test_text_chunk_pillow_refuses_is_still_read_and_reported(tmp_path: Path) -> None:
    big = json.dumps({"nodes": [{"id": i, "text": "x" * 100} for i in range(12_000)]})
    assert len(big) > 1 << 20
    path = write(
        tmp_path,
        "a.png",
        png_with(text("prompt", json.dumps(PROMPT)), ztxt("workflow", big.encode())),
    )
    with pytest.raises(ValueError, match="Decompressed data too large"):
        Image.open(path)  # the fact FORMATS.md records: Pillow refuses the whole file
    meta = read_metadata(path)
    assert meta.prompt == PROMPT and meta.workflow == json.loads(big)
    assert meta.problems == [
        "PNG 'workflow' is zTXt, not tEXt: other readers may miss it",
        "PNG 'workflow' inflates past Pillow's MAX_TEXT_CHUNK: Pillow (and ComfyUI) refuse this file",
    ]


def test_compressed_text_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "a.png",
        png_with(ztxt("workflow", bytes(MAX_TEXT_BYTES + 1)), text("prompt", json.dumps(PROMPT))),
    )
    started = time.perf_counter()
    meta = read_metadata(path)
    assert time.perf_counter() - started < 5
    assert meta.prompt == PROMPT and meta.workflow is None
    assert meta.problems == [f"PNG zTXt chunk unreadable: inflates past MAX_TEXT_BYTES ({MAX_TEXT_BYTES})"]


def test_truncated_png_keeps_the_chunks_before_the_cut(tmp_path: Path) -> None:
    data = png_with(text("prompt", json.dumps(PROMPT)))
    path = write(tmp_path, "a.png", data[:-20])
    meta = read_metadata(path)
    assert meta.prompt == PROMPT
    assert len(meta.problems) == 1 and "past the end of the file" in meta.problems[0]


def test_chunk_claiming_gigabytes_is_not_allocated(tmp_path: Path) -> None:
    data = png_with(text("prompt", json.dumps(PROMPT)), struct.pack(">I", 0x7FFF_FFF0) + b"tEXt" + b"key\x00")
    meta = read_metadata(write(tmp_path, "a.png", data))
    assert meta.prompt == PROMPT and "claims 2147483632 bytes" in meta.problems[0]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a....",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8",
        b"RIFF\xff\xff\xff\xffWEBP",
        bytes(range(256)) * 10,
    ],
)
def test_junk_is_reported_never_raised(tmp_path: Path, data: bytes) -> None:
    meta = read_metadata(write(tmp_path, "junk.png", data))
    assert meta.prompt is None and meta.document is None and meta.problems


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    meta = read_metadata(tmp_path / "nope.png")
    assert meta.format is None and meta.problems == [f"{tmp_path / 'nope.png'}: no such file"]
    assert meta.unreadable == meta.problems[0]


def test_non_json_values_and_duplicates_and_language_tags(tmp_path: Path) -> None:
    itxt = chunk(b"iTXt", b"parameters\x00\x00\x00en\x00\x00a cat")
    path = write(
        tmp_path,
        "a.png",
        png_with(text("prompt", "not json"), text("prompt", "{}"), itxt, text("runtime_metadata", "[1]")),
    )
    meta = read_metadata(path)
    assert meta.prompt is None and meta.parameters == "a cat" and meta.document is None
    assert meta.problems == [
        "PNG has more than one 'prompt' chunk; the first is used",
        "PNG 'parameters' is iTXt, not tEXt: other readers may miss it",
        "PNG 'parameters' has language tag 'en'",
        "prompt is not valid JSON: Expecting value: line 1 column 1 (char 0)",
        "runtime_metadata is not a JSON object",
    ]


def test_read_text_chunks_survives_what_pillow_refuses(tmp_path: Path) -> None:
    path = write(tmp_path, "a.png", png_with(text("prompt", "p"), ztxt("workflow", b"w" * (2 << 20))))
    assert read_text_chunks(path) == {"prompt": "p", "workflow": "w" * (2 << 20)}


def jpeg_with_segments(*segments: bytes) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="JPEG")
    raw = buf.getvalue()
    return raw[:2] + b"".join(segments) + raw[2:]


def app1(body: bytes) -> bytes:
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def test_jpeg_comment_segment_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "a.jpeg"
    save_image(Image.new("RGB", (8, 8)), path, "jpeg", prompt=PROMPT)
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xfe\x00\x07hello" + data[2:])
    meta = read_metadata(path)
    assert meta.prompt == PROMPT
    assert meta.problems == ["JPEG has a COM segment (sd-prompt-reader fails on it)"]


def test_damaged_exif_does_not_hide_the_xmp_document(tmp_path: Path) -> None:
    xmp = build_xmp(XmpFields(json.dumps({"schema": 1})))
    data = jpeg_with_segments(
        app1(b"Exif\x00\x00MM\x00*\x00\x00\xff\xff\xff\xff"),
        app1(b"http://ns.adobe.com/xap/1.0/\x00" + xmp),
    )
    meta = read_metadata(write(tmp_path, "a.jpeg", data))
    assert meta.document == {"schema": 1}
    assert len(meta.problems) == 1 and meta.problems[0].startswith("EXIF unreadable")


def test_xmp_with_entities_is_refused(tmp_path: Path) -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><d xmlns="' + NAMESPACE.encode() + b'">&b;</d></x:xmpmeta>'
    )
    with pytest.raises(ValueError, match="DOCTYPE"):
        parse_xmp(laughs)
    data = jpeg_with_segments(app1(b"http://ns.adobe.com/xap/1.0/\x00" + laughs))
    meta = read_metadata(write(tmp_path, "a.jpeg", data))
    assert meta.document is None and meta.problems[0].startswith("XMP unreadable")


def test_utf16_xmp_cannot_smuggle_a_doctype() -> None:
    packet = '<!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>'.encode("utf-16")
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_xmp(packet)


def test_xmp_escapes_markup_in_the_document() -> None:
    doc = json.dumps({"text": "<b>&amp;</b> \ufffe"})
    assert json.loads(parse_xmp(build_xmp(XmpFields(doc, ("prompt",)))).document or "") == json.loads(doc)


def test_truncated_webp_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "a.webp"
    save_image(Image.new("RGB", (8, 8)), path, "webp", prompt=PROMPT, document={"schema": 1})
    data = path.read_bytes()
    meta = read_metadata(write(tmp_path, "cut.webp", data[: len(data) - 10]))
    assert meta.problems == [
        f"WebP RIFF size claims {len(data)} bytes, the file has {len(data) - 10} (truncated)",
        f"WebP chunk 'XMP ' claims {len(meta_xmp(path))} bytes past the end of the file",
    ]
    assert meta.prompt == PROMPT  # EXIF comes before XMP and is intact


def meta_xmp(path: Path) -> bytes:
    return Image.open(path).info["xmp"]


def test_comfyui_own_webp_layout_is_read(tmp_path: Path) -> None:
    """ComfyUI's SaveAnimatedWEBP: prompt in IFD0 Model, workflow in Make."""
    exif = piexif.dump(
        {
            "0th": {
                0x0110: "prompt:" + json.dumps(PROMPT),
                0x010F: "workflow:" + json.dumps(WORKFLOW),
            }
        }
    )
    path = tmp_path / "comfy.webp"
    Image.new("RGB", (8, 8)).save(path, format="WEBP", exif=exif)
    meta = read_metadata(path)
    assert (meta.prompt, meta.workflow, meta.problems) == (PROMPT, WORKFLOW, [])


def test_deeply_nested_json_is_reported_not_raised(tmp_path: Path) -> None:
    deep = "[" * 100_000
    path = write(tmp_path, "a.png", png_with(text("prompt", deep), text("runtime_metadata", deep)))
    meta = read_metadata(path)
    assert meta.prompt is None and meta.document is None
    assert [p.split(":")[0] for p in meta.problems] == [
        "prompt is not valid JSON",
        "runtime_metadata is not valid JSON",
    ]


# --- Special files and resources ----------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def read_in_thread(path: Path, seconds: float = 5.0) -> tuple[Any, bool]:
    """read_metadata(path) in a thread: (its result, whether it returned within ``seconds``)."""
    box: list[Any] = []
    worker = threading.Thread(target=lambda: box.append(read_metadata(path)), daemon=True)
    worker.start()
    worker.join(seconds)
    return (box[0] if box else None), not worker.is_alive()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_given_as_the_image_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "a.png"
    os.mkfifo(fifo)
    meta, returned = read_in_thread(fifo)
    if not returned:  # unblock the reader stuck in open() so the test run can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert returned, "read_metadata blocked on a FIFO"
    assert meta.unreadable == f"{fifo} is a FIFO (named pipe), not a file"
    assert meta.problems == [meta.unreadable]


def test_a_directory_or_a_device_given_as_the_image_says_what_it_is(tmp_path: Path) -> None:
    assert read_metadata(tmp_path).unreadable == f"{tmp_path} is a directory, not a file"
    meta, returned = read_in_thread(Path("/dev/zero"))
    assert returned and meta.unreadable == "/dev/zero is a device, not a file"


def test_a_directory_where_the_sidecar_should_be_is_a_problem_and_leaks_nothing(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    document = {"schema": 1, "runtime": {"nodes": ["x" * 100] * 500}}
    result = save_image(Image.new("RGB", (4, 4)), image, "png", document=document, inline_size_limit_kb=1)
    assert result.sidecar is not None
    result.sidecar.unlink()
    result.sidecar.mkdir()
    before = open_fds()
    for _ in range(20):
        meta = read_metadata(image)  # documented never to raise
        assert meta.document is None
        assert meta.problems == [f"sidecar is not a regular file: {result.sidecar.name} is a directory"]
    assert open_fds() == before


RSS_PROBE = """
import json, resource, sys
from runtime_metadata.writers.read import read_metadata
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
meta = read_metadata(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps([(after - before) * 1024, meta.problems]))
"""


def peak_rss_growth(path: Path) -> tuple[int, list[str]]:
    """Bytes of peak RSS that reading ``path`` adds, measured in a fresh process; and the problems."""
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, str(path)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    growth, problems = json.loads(out.stdout)
    return growth, problems


def test_sixteen_compressed_chunks_cannot_inflate_past_the_files_text_budget(tmp_path: Path) -> None:
    # Each chunk alone is within MAX_TEXT_BYTES; together they would inflate to 1 GiB.
    bombs = [ztxt(f"k{i}", bytes(MAX_TEXT_BYTES)) for i in range(16)]
    path = write(tmp_path, "bombs.png", png_with(*bombs))
    assert path.stat().st_size < 2 << 20
    growth, problems = peak_rss_growth(path)
    # The first fits the budget (Pillow would refuse it); every later one is refused.
    assert problems == [
        *[
            "PNG zTXt chunk unreadable: inflates past what is left of MAX_TEXT_TOTAL_BYTES "
            f"({MAX_TEXT_TOTAL_BYTES}) for the file"
        ]
        * 15,
        "PNG 'k0' inflates past Pillow's MAX_TEXT_CHUNK: Pillow (and ComfyUI) refuse this file",
    ]
    assert growth < 3 * MAX_TEXT_TOTAL_BYTES, f"reading took {growth >> 20} MiB more"


def test_the_text_budget_counts_every_chunk_in_the_file() -> None:
    plain = [text(f"t{i}", "x" * 1000) for i in range(5)]
    raw = png_with(*plain, ztxt("z", b"y" * 3000))
    found = walk_png(io.BytesIO(raw), len(raw), text_budget=3500)
    assert [t.key for t in found.texts] == ["t0", "t1", "t2"]
    assert found.problems == [
        "PNG tEXt chunk of 1003 bytes skipped (the file's text passes MAX_TEXT_TOTAL_BYTES)",
        "PNG tEXt chunk of 1003 bytes skipped (the file's text passes MAX_TEXT_TOTAL_BYTES)",
        "PNG zTXt chunk unreadable: inflates past what is left of MAX_TEXT_TOTAL_BYTES "
        f"({MAX_TEXT_TOTAL_BYTES}) for the file",
    ]


# --- Any sequence of chunks ---------------------------------------------------------------------


keys = st.sampled_from(["prompt", "workflow", "parameters", "runtime_metadata", "k", ""]) | st.text(max_size=90)
payloads = st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8"))


@st.composite
def png_chunks(draw: st.DrawFn) -> bytes:
    """A chunk a PNG may hold, well formed or damaged in one of the ways files are."""
    kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IDAT", b"eXIf", b"IEND"]))
    key = draw(keys).encode("latin-1", "replace")
    body = draw(payloads)
    if kind == b"zTXt":
        data = (
            key
            + b"\x00"
            + draw(st.sampled_from([b"\x00", b"\x01"]))
            + draw(st.sampled_from([zlib.compress(body), body]))
        )
    elif kind == b"iTXt":
        flag = draw(st.sampled_from([b"\x00\x00", b"\x01\x00", b"\x01\x05"]))
        data = key + b"\x00" + flag + draw(st.sampled_from([b"", b"en"])) + b"\x00\x00"
        data += zlib.compress(body) if flag == b"\x01\x00" else body
    else:
        data = key + b"\x00" + body
    damage = draw(st.sampled_from(["none", "none", "none", "crc", "length", "cut"]))
    if damage == "crc":
        return chunk(kind, data, crc=0)
    if damage == "length":
        return struct.pack(">I", draw(st.integers(0, 0xFFFF_FFFF))) + kind + data
    out = chunk(kind, data)
    return out[: draw(st.integers(0, len(out)))] if damage == "cut" else out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(png_chunks(), max_size=8), st.booleans())
def test_any_chunk_sequence_is_read_without_raising(tmp_path: Path, chunks: list[bytes], cut: bool) -> None:
    raw = png_with(*chunks)
    if cut:
        raw = raw[: len(raw) // 2]
    path = write(tmp_path, "fuzz.png", raw)
    meta = read_metadata(path)
    assert meta.format == "png" and meta.unreadable is None
    # Every text chunk found is one the walker can also read alone: nothing invented.
    for found in walk_png(io.BytesIO(raw), len(raw)).texts:
        assert found.key
