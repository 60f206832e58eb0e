"""save_image round trips: every format, inline and sidecar around the limit, JPEG's EXIF budget.

Each file written here is re-opened by Pillow and read back by ``read_metadata``; values are
compared exactly, and for PNG the chunk order too.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import piexif
import pytest
from PIL import Image

from runtime_metadata.writers import save as save_module
from runtime_metadata.writers.a1111 import parameters as a1111_parameters
from runtime_metadata.writers.atomic import TEMP_PREFIX
from runtime_metadata.writers.containers import walk_png
from runtime_metadata.writers.exif import JPEG_EXIF_MAX, build_exif
from runtime_metadata.writers.png import DOCUMENT_KEY, read_text_chunks
from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import (
    FORMATS,
    encode_document,
    save_image,
    summarize,
)
from runtime_metadata.writers.sidecar import SIDECAR_SUFFIX, sidecar_name

KB = 1024
LIMIT_KB = 32
PROMPT: dict[str, Any] = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
    "5": {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 512, "height": 768, "batch_size": 1},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat, 猫", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "9": {
        "class_type": "SaveImageRuntimeMetadata",
        "inputs": {"images": ["8", 0], "filename_prefix": "t"},
    },
}
WORKFLOW: dict[str, Any] = {
    "last_node_id": 9,
    "nodes": [{"id": int(k), "type": v["class_type"], "widgets_values": []} for k, v in PROMPT.items()],
    "links": [[1, 4, 0, 3, 0, "MODEL"], [2, 6, 0, 3, 1, "CONDITIONING"]],
    "version": 0.4,
}
GENERATION = {
    "model": {"name": "sd15.safetensors", "hash": "a1b2c3d4e5"},
    "positive": "a cat",
    "negative": "blurry",
    "sampler": {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 20,
        "cfg": 7.0,
        "seed": 42,
        "denoise": 1.0,
    },
    "size": {"width": 512, "height": 768},
}
PARAMETERS = a1111_parameters(GENERATION)


def make_document(size: int, **extra: Any) -> dict[str, Any]:
    """A document whose canonical JSON is exactly ``size`` bytes."""
    doc: dict[str, Any] = {
        "schema": 1,
        "runtime": {"prompt_id": "p-1", "status": "success", "pad": ""},
        **extra,
    }
    doc["runtime"]["pad"] = "x" * (size - len(encode_document(doc)))
    assert len(encode_document(doc)) == size
    return doc


@pytest.fixture
def image() -> Image.Image:
    img = Image.new("RGB", (64, 48))
    img.putdata([(x * 4, y * 5, (x + y) * 2) for y in range(48) for x in range(64)])
    return img


def reopen(path: Path) -> Image.Image:
    """Pillow opens and decodes the file completely."""
    img = Image.open(path)
    img.load()
    return img


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def sidecars(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + SIDECAR_SUFFIX))


def check_pointer(meta: Any, image_path: Path, content_bytes: int) -> None:
    (sidecar,) = sidecars(image_path.parent)
    data = sidecar.read_bytes()
    # Named for the image (its whole name) and for its own content.
    assert sidecar.name == sidecar_name(image_path, data)
    assert sidecar.name == f"{image_path.name}.{hashlib.sha256(data).hexdigest()[:16]}{SIDECAR_SUFFIX}"
    assert meta.pointer == {
        "file": sidecar.name,
        "codec": "zstd",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "schema": 1,
        "content_bytes": content_bytes,
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("size", "inline"), [(31 * KB, True), (32 * KB, True), (32 * KB + 1, False), (33 * KB, False)])
def test_round_trip_inline_or_sidecar_around_the_limit(
    tmp_path: Path, image: Image.Image, fmt: str, size: int, inline: bool
) -> None:
    doc = make_document(size)
    path = tmp_path / f"ComfyUI_00001_.{fmt}"
    result = save_image(
        image,
        path,
        fmt,
        prompt=PROMPT,
        extra_pnginfo={"workflow": WORKFLOW},
        document=doc,  # type: ignore[arg-type]
        parameters=PARAMETERS,
        inline_size_limit_kb=LIMIT_KB,
    )
    assert result.path == path and result.dropped == () and result.document_bytes == size
    meta = read_metadata(path)
    assert meta.problems == []
    assert meta.format == fmt
    assert meta.prompt == PROMPT
    assert meta.workflow == WORKFLOW
    assert meta.parameters == PARAMETERS
    assert meta.document == doc
    if inline:
        assert result.sidecar is None and meta.pointer is None
        assert not list(tmp_path.glob("*" + SIDECAR_SUFFIX))
    else:
        check_pointer(meta, path, size)
        assert result.sidecar == sidecars(tmp_path)[0]
        assert meta.summary == {
            "schema": 1,
            "runtime": {"prompt_id": "p-1", "status": "success", "pad": "x" * 199 + "…"},
        }
    assert reopen(path).size == (64, 48)
    assert no_temp_files(tmp_path)


def test_png_chunks_are_comfyui_text_in_order(tmp_path: Path, image: Image.Image) -> None:
    doc = make_document(2 * KB)
    path = tmp_path / "a.png"
    save_image(
        image,
        path,
        "png",
        prompt=PROMPT,
        extra_pnginfo={"workflow": WORKFLOW, "other": [1, 2]},
        document=doc,
        parameters=PARAMETERS,
    )
    with open(path, "rb") as fh:
        found = walk_png(fh, path.stat().st_size)
    assert found.chunk_order == ["IHDR", "tEXt", "tEXt", "tEXt", "tEXt", "iTXt", "IDAT", "IEND"]
    assert [(t.key, t.chunk_type, t.compressed, t.language) for t in found.texts] == [
        ("prompt", "tEXt", False, ""),
        ("workflow", "tEXt", False, ""),
        ("other", "tEXt", False, ""),
        ("parameters", "tEXt", False, ""),
        (DOCUMENT_KEY, "iTXt", False, ""),
    ]
    # Byte for byte what ComfyUI's SaveImage writes.
    assert found.texts[0].text == json.dumps(PROMPT)
    assert found.texts[1].text == json.dumps(WORKFLOW)
    assert found.texts[4].text == encode_document(doc).decode()
    pil = reopen(path)
    assert pil.text == {  # type: ignore[attr-defined]
        "prompt": json.dumps(PROMPT),
        "workflow": json.dumps(WORKFLOW),
        "other": "[1, 2]",
        "parameters": PARAMETERS,
        DOCUMENT_KEY: encode_document(doc).decode(),
    }
    assert read_text_chunks(path)[DOCUMENT_KEY] == encode_document(doc).decode()
    assert read_metadata(path).extra == {"other": [1, 2]}


def test_non_latin1_parameters_go_to_uncompressed_itxt_without_language(tmp_path: Path, image: Image.Image) -> None:
    text = a1111_parameters({**GENERATION, "positive": "a cat, 猫"})
    path = tmp_path / "u.png"
    save_image(image, path, "png", prompt=PROMPT, parameters=text)
    with open(path, "rb") as fh:
        found = walk_png(fh, path.stat().st_size)
    assert [(t.key, t.chunk_type, t.compressed, t.language) for t in found.texts] == [
        ("prompt", "tEXt", False, ""),
        ("parameters", "iTXt", False, ""),
    ]
    assert reopen(path).text["parameters"] == text  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_exif_tags_are_where_comfyui_and_readers_look(tmp_path: Path, image: Image.Image, fmt: str) -> None:
    path = tmp_path / f"a.{fmt}"
    save_image(image, path, fmt, prompt=PROMPT, extra_pnginfo={"workflow": WORKFLOW}, parameters=PARAMETERS)  # type: ignore[arg-type]
    exif = reopen(path).getexif()
    assert exif[0x010E] == "prompt:" + json.dumps(PROMPT)
    assert exif[0x010F] == "workflow:" + json.dumps(WORKFLOW)
    assert 0x0110 not in exif  # never IFD0 Model: sd-prompt-reader json.loads it
    raw = piexif.load(reopen(path).info["exif"])
    assert raw["Exif"][piexif.ExifIFD.UserComment] == b"UNICODE\x00" + PARAMETERS.encode("utf-16-be")  # type: ignore[union-attr]


def chunks_as_comfyuis_2024_frontend_walks_them(data: bytes) -> list[bytes]:
    """A WebP's chunk types, stepped over as the March-2024 frontend's ``getWebpMetadata`` does:
    8 + size bytes each, never RIFF's padding byte after an odd size."""
    kinds, offset = [], 12
    while offset < len(data):
        # Where the frontend's DataView read throws, or lands in the middle of a chunk.
        assert offset + 8 <= len(data), f"a chunk header past the end at {offset} (after {kinds})"
        kinds.append(data[offset : offset + 4])
        offset += 8 + int.from_bytes(data[offset + 4 : offset + 8], "little")
    return kinds


@pytest.mark.parametrize("sidecar", [False, True])
def test_a_webp_reloads_in_the_2024_frontend_which_ignores_riff_padding(
    tmp_path: Path, image: Image.Image, sidecar: bool
) -> None:
    # One to four more characters in the prompt and in the document: EXIF and XMP of either parity.
    for extra in range(4):
        prompt = {**PROMPT, "6": {**PROMPT["6"], "inputs": {**PROMPT["6"]["inputs"], "text": "a" * extra}}}
        for pad in range(4):
            path = tmp_path / f"{extra}-{pad}.webp"
            document = make_document(KB + pad) if not sidecar else make_document(LIMIT_KB * KB + KB + pad)
            save_image(
                image,
                path,
                "webp",
                prompt=prompt,
                extra_pnginfo={"workflow": WORKFLOW},
                document=document,  # type: ignore[arg-type]
                parameters=PARAMETERS,
                inline_size_limit_kb=LIMIT_KB,
            )
            kinds = chunks_as_comfyuis_2024_frontend_walks_them(path.read_bytes())
            assert kinds == [b"VP8X", b"VP8 ", b"EXIF", b"XMP "], (extra, pad)
            assert read_metadata(path).document == document


@pytest.mark.parametrize("fmt", FORMATS)
def test_two_megabyte_workflow(tmp_path: Path, image: Image.Image, fmt: str) -> None:
    workflow = {
        **WORKFLOW,
        "nodes": [{"id": i, "type": "Note", "widgets_values": ["w" * 1000]} for i in range(2000)],
    }
    assert len(json.dumps(workflow)) > 2_000_000
    doc = {"schema": 1, "runtime": {"prompt_id": "p-1"}, "workflow": workflow}
    path = tmp_path / f"big.{fmt}"
    result = save_image(
        image,
        path,
        fmt,
        prompt=PROMPT,
        extra_pnginfo={"workflow": workflow},
        document=doc,  # type: ignore[arg-type]
        parameters=PARAMETERS,
        inline_size_limit_kb=LIMIT_KB,
    )
    meta = read_metadata(path)
    assert meta.problems == []
    assert meta.document == doc and result.sidecar is not None
    check_pointer(meta, path, len(encode_document(doc)))
    assert meta.parameters == PARAMETERS
    if fmt == "jpeg":
        # 2 MB cannot fit 64 KB of EXIF: prompt, then workflow go; the infotext and pointer stay.
        assert result.dropped == ("prompt", "workflow") == meta.dropped
        assert meta.prompt is None and meta.workflow is None
    else:
        assert result.dropped == ()
        assert meta.prompt == PROMPT and meta.workflow == workflow
    pil = reopen(path)
    if fmt == "png":
        assert pil.text["workflow"] == json.dumps(workflow)  # type: ignore[attr-defined]


def test_jpeg_over_budget_drops_prompt_first(tmp_path: Path, image: Image.Image) -> None:
    prompt = {"1": {"class_type": "Note", "inputs": {"text": "p" * 50_000}}}
    workflow = {"nodes": [{"id": 1, "widgets_values": ["w" * 20_000]}], "links": []}
    path = tmp_path / "a.jpeg"
    result = save_image(
        image,
        path,
        "jpeg",
        prompt=prompt,
        extra_pnginfo={"workflow": workflow},
        document=make_document(KB),
        parameters=PARAMETERS,
    )
    assert result.dropped == ("prompt",)
    meta = read_metadata(path)
    assert meta.problems == [] and meta.dropped == ("prompt",)
    assert meta.prompt is None and meta.workflow == workflow and meta.parameters == PARAMETERS
    assert meta.document == make_document(KB)
    assert len(reopen(path).info["exif"]) <= JPEG_EXIF_MAX


def test_jpeg_over_budget_drops_workflow_second_and_keeps_usercomment_and_pointer(
    tmp_path: Path, image: Image.Image
) -> None:
    workflow = {"nodes": [{"id": 1, "widgets_values": ["w" * 70_000]}], "links": []}
    doc = make_document(40 * KB)
    path = tmp_path / "a.jpeg"
    result = save_image(
        image,
        path,
        "jpeg",
        prompt=PROMPT,
        extra_pnginfo={"workflow": workflow},
        document=doc,
        parameters=PARAMETERS,
        inline_size_limit_kb=LIMIT_KB,
    )
    assert result.dropped == ("prompt", "workflow")
    meta = read_metadata(path)
    assert meta.problems == [] and meta.dropped == ("prompt", "workflow")
    assert meta.parameters == PARAMETERS
    check_pointer(meta, path, 40 * KB)
    assert meta.document == doc
    assert reopen(path).format == "JPEG"


def test_jpeg_infotext_too_large_for_exif_is_dropped_last_and_file_stays_valid(
    tmp_path: Path, image: Image.Image
) -> None:
    huge = a1111_parameters({**GENERATION, "positive": "a cat " * 6000})
    path = tmp_path / "a.jpeg"
    result = save_image(
        image,
        path,
        "jpeg",
        prompt=PROMPT,
        extra_pnginfo={"workflow": WORKFLOW},
        document=make_document(KB),
        parameters=huge,
    )
    assert result.dropped == ("prompt", "workflow", "parameters")
    meta = read_metadata(path)
    assert meta.problems == [] and meta.parameters is None and meta.document == make_document(KB)
    reopen(path)


#: The size of the test image, which save_image writes into JPEG EXIF's required tags.
JPEG_SIZE = (64, 48)


def _exif_of_size(target: int) -> tuple[dict[str, Any], int]:
    """A prompt whose JPEG EXIF (with WORKFLOW and PARAMETERS) dumps to exactly ``target`` bytes."""
    base = len(build_exif({"t": ""}, {"workflow": WORKFLOW}, PARAMETERS, jpeg_size=JPEG_SIZE).data)
    prompt = {"t": "x" * (target - base)}
    size = len(build_exif(prompt, {"workflow": WORKFLOW}, PARAMETERS, jpeg_size=JPEG_SIZE).data)
    return prompt, size


@pytest.mark.parametrize(("target", "dropped"), [(JPEG_EXIF_MAX, ()), (JPEG_EXIF_MAX + 1, ("prompt",))])
def test_jpeg_exif_limit_is_exactly_65533_bytes(
    tmp_path: Path, image: Image.Image, target: int, dropped: tuple[str, ...]
) -> None:
    prompt, size = _exif_of_size(target)
    assert size == target
    path = tmp_path / "edge.jpeg"
    result = save_image(
        image,
        path,
        "jpeg",
        prompt=prompt,
        extra_pnginfo={"workflow": WORKFLOW},
        parameters=PARAMETERS,
    )
    assert result.dropped == dropped
    assert read_metadata(path).workflow == WORKFLOW
    reopen(path)


def test_pillow_itself_refuses_one_byte_more_than_the_limit(image: Image.Image) -> None:
    """Why JPEG_EXIF_MAX is 65,533: the fact FORMATS.md records, checked against this Pillow."""
    prompt, _ = _exif_of_size(JPEG_EXIF_MAX + 1)
    data = build_exif(prompt, {"workflow": WORKFLOW}, PARAMETERS, jpeg_size=JPEG_SIZE).data
    assert len(data) == JPEG_EXIF_MAX + 1
    with pytest.raises(ValueError, match="EXIF data is too long"):
        image.save(Path("/dev/null"), format="JPEG", exif=data)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_extra_pnginfo_keys_beyond_the_spare_tags_are_dropped(tmp_path: Path, image: Image.Image, fmt: str) -> None:
    extra = {"workflow": WORKFLOW, "a": 1, "b": [2], "c": {"3": 3}, "d": "four"}
    path = tmp_path / f"x.{fmt}"
    result = save_image(image, path, fmt, prompt=PROMPT, extra_pnginfo=extra, parameters=PARAMETERS)  # type: ignore[arg-type]
    assert result.dropped == ("extra:d",)
    meta = read_metadata(path)
    assert meta.extra == {"a": 1, "b": [2], "c": {"3": 3}} and meta.workflow == WORKFLOW
    assert meta.dropped == ("extra:d",)


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_off_writes_a_bare_image(tmp_path: Path, image: Image.Image, fmt: str) -> None:
    path = tmp_path / f"bare.{fmt}"
    result = save_image(
        image,
        path,
        fmt,
        prompt=PROMPT,
        extra_pnginfo={"workflow": WORKFLOW},  # type: ignore[arg-type]
        document=make_document(40 * KB),
        parameters=PARAMETERS,
        metadata=False,
    )
    assert result.sidecar is None and result.dropped == ()
    meta = read_metadata(path)
    assert (meta.prompt, meta.workflow, meta.parameters, meta.document, meta.problems) == (
        None,
        None,
        None,
        None,
        [],
    )
    pil = reopen(path)
    assert "exif" not in pil.info and not getattr(pil, "text", {})
    assert not list(tmp_path.glob("*" + SIDECAR_SUFFIX))


@pytest.mark.parametrize("fmt", FORMATS)
def test_sidecar_exists_before_the_image_is_opened(
    tmp_path: Path, image: Image.Image, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = save_module.atomic_open
    seen: list[bool] = []

    def checking_open(target: Any, **kwargs: Any) -> Any:
        seen.append(len(sidecars(tmp_path)) == 1)
        return real_open(target, **kwargs)

    monkeypatch.setattr(save_module, "atomic_open", checking_open)
    save_image(
        image,
        tmp_path / f"s.{fmt}",
        fmt,
        document=make_document(40 * KB),
        inline_size_limit_kb=LIMIT_KB,
    )  # type: ignore[arg-type]
    assert seen == [True]


def test_failed_image_write_leaves_no_image_no_temp_and_no_sidecar(
    tmp_path: Path, image: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_write(img: Image.Image, target: Any, chunks: Any) -> None:
        target.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(save_module, "write_png", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_image(
            image,
            tmp_path / "f.png",
            "png",
            document=make_document(40 * KB),
            inline_size_limit_kb=LIMIT_KB,
        )
    assert list(tmp_path.iterdir()) == []


def test_saving_again_replaces_the_file_whole(tmp_path: Path, image: Image.Image) -> None:
    path = tmp_path / "same.png"
    save_image(image, path, "png", prompt={"v": 1})
    save_image(image, path, "png", prompt={"v": 2})
    assert read_metadata(path).prompt == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.png"]


def test_document_that_is_not_json_is_dropped_not_fatal(tmp_path: Path, image: Image.Image) -> None:
    path = tmp_path / "d.png"
    result = save_image(image, path, "png", prompt=PROMPT, document={"schema": 1, "bad": object()})
    assert result.dropped == ("document",)
    meta = read_metadata(path)
    assert meta.document is None and meta.prompt == PROMPT


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("jpeg", "RGBA"), ("jpeg", "P"), ("webp", "RGBA"), ("webp", "LA"), ("png", "RGBA")],
)
def test_modes_the_encoder_cannot_take_are_converted(tmp_path: Path, fmt: str, mode: str) -> None:
    img = Image.new(mode, (16, 16))
    path = tmp_path / f"m.{fmt}"
    save_image(img, path, fmt, prompt=PROMPT, parameters=PARAMETERS)  # type: ignore[arg-type]
    assert read_metadata(path).prompt == PROMPT
    reopen(path)


def test_summary_keeps_two_levels_of_scalars_within_its_budget() -> None:
    doc = {
        "schema": 1,
        "runtime": {"prompt_id": "p", "nodes": [1, 2], "timing": {"x": 1}},
        "note": "n" * 500,
    }
    assert summarize(doc) == {"schema": 1, "note": "n" * 199 + "…", "runtime": {"prompt_id": "p"}}
    wide = {"schema": 1, "runtime": {f"k{i}": i for i in range(1000)}}
    assert summarize(wide) == {"schema": 1}


def test_unknown_format_is_refused(tmp_path: Path, image: Image.Image) -> None:
    with pytest.raises(ValueError, match="unknown image format"):
        save_image(image, tmp_path / "a.gif", "gif")  # type: ignore[arg-type]


def test_webp_keeps_real_transparency_and_drops_opaque_alpha(tmp_path: Path) -> None:
    clear = Image.new("RGBA", (16, 16), (1, 2, 3, 0))
    opaque = Image.new("RGBA", (16, 16), (1, 2, 3, 255))
    save_image(clear, tmp_path / "clear.webp", "webp", lossless=True)
    save_image(opaque, tmp_path / "opaque.webp", "webp", lossless=True)
    assert reopen(tmp_path / "clear.webp").mode == "RGBA"
    assert reopen(tmp_path / "opaque.webp").mode == "RGB"
    assert reopen(tmp_path / "opaque.webp").getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_a_document_the_xmp_packet_cannot_hold_goes_to_a_sidecar_whatever_the_limit(
    tmp_path: Path, image: Image.Image, fmt: str
) -> None:
    size = 70 * KB if fmt == "jpeg" else 17 * 1024 * KB
    doc = make_document(size)
    path = tmp_path / f"x.{fmt}"
    result = save_image(image, path, fmt, document=doc, inline_size_limit_kb=64 * 1024)  # type: ignore[arg-type]
    assert result.sidecar is not None
    meta = read_metadata(path)
    assert meta.problems == [] and meta.document == doc
