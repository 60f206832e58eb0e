"""Real metadata readers read what save_image writes: sd-parsers, sd-prompt-reader, exiftool.

Each reader must recover prompt, negative prompt, steps, sampler, CFG, seed, size and model
from the PNG, the JPEG and the WebP. No mocks: the readers are the released packages.

Install (see tests/readers_requirements.txt)::

    pip install --no-deps -r tests/readers_requirements.txt
    apt-get install -y libimage-exiftool-perl

A reader that is absent makes its tests skip, printing why; with
``RUNTIME_METADATA_REQUIRE_READERS=1`` (CI) an absent reader fails them instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.writers.a1111 import parameters as a1111_parameters
from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import FORMATS, encode_document, save_image

REQUIRE_READERS = os.environ.get("RUNTIME_METADATA_REQUIRE_READERS") == "1"
INSTALL = {
    "sd-parsers": "pip install --no-deps -r tests/readers_requirements.txt",
    "sd-prompt-reader": "pip install --no-deps -r tests/readers_requirements.txt",
    "exiftool": "apt-get install -y libimage-exiftool-perl",
}

PROMPT = {
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
        },
    },
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
}
WORKFLOW = {
    "nodes": [{"id": 3, "type": "KSampler"}, {"id": 4, "type": "CheckpointLoaderSimple"}],
    "links": [],
}
BIG_WORKFLOW = {
    "nodes": [{"id": i, "type": "Note", "widgets_values": ["w" * 1000]} for i in range(2000)],
    "links": [],
}
BASE = {
    "model": {"name": "sd15.safetensors", "hash": "a1b2c3d4e5"},
    "vae": {"name": "vae-ft-mse-840000.safetensors", "hash": "735e4c3a44"},
    "loras": [
        {
            "name": "detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "hash": "0123456789",
        }
    ],
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
    "batch_size": 1,
    "clip_skip": 2,
}
#: name -> (generation, workflow). "rich": multi-line, commas, a colon and non-Latin-1 text
#: (PNG parameters become iTXt); "huge": a 2 MB workflow that JPEG has to drop.
CASES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "basic": (BASE, WORKFLOW),
    "rich": (
        {
            **BASE,
            "positive": "a cat, sitting on a windowsill\ngolden hour, 猫",
            "negative": "blurry, lowres, text: watermark",
            "sampler": {**BASE["sampler"], "cfg": 6.5, "seed": 1234567890123},
        },
        WORKFLOW,
    ),  # type: ignore[dict-item]
    "huge": (BASE, BIG_WORKFLOW),
}


def expected(generation: dict[str, Any]) -> dict[str, str]:
    """The fields every reader must recover, as the strings readers report."""
    sampler = generation["sampler"]
    cfg = sampler["cfg"]
    return {
        "positive": generation["positive"],
        "negative": generation["negative"],
        "steps": str(sampler["steps"]),
        "sampler": "DPM++ 2M",
        "cfg": str(int(cfg)) if float(cfg).is_integer() else str(cfg),
        "seed": str(sampler["seed"]),
        "size": f"{generation['size']['width']}x{generation['size']['height']}",
        "model": "sd15",
    }


def absent(reader: str, why: str) -> None:
    """Skip (or, when readers are required, fail) and say why and how to install."""
    message = f"{reader} is not available here ({why}); install with: {INSTALL[reader]}"
    print(f"\n[readers] {message}", file=sys.stderr)
    if REQUIRE_READERS:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """One image per (case, format), saved with full metadata and a sidecar for the huge ones."""
    folder = tmp_path_factory.mktemp("readers")
    pixels = Image.new("RGB", (64, 48), (120, 90, 60))
    out: dict[tuple[str, str], Path] = {}
    for name, (generation, workflow) in CASES.items():
        document = {"schema": 1, "runtime": {"prompt_id": name}, "workflow": workflow}
        for fmt in FORMATS:
            path = folder / f"{name}.{fmt}"
            save_image(
                pixels,
                path,
                fmt,
                prompt=PROMPT,
                extra_pnginfo={"workflow": workflow},  # type: ignore[arg-type]
                document=document,
                parameters=a1111_parameters(generation),
                inline_size_limit_kb=32,
            )
            out[(name, fmt)] = path
    return out


CASE_FORMATS = [(case, fmt) for case in CASES for fmt in FORMATS]
#: Images handed to sd-parsers, kept alive for the module (see test_sd_parsers).
_KEEP_REFERENCED: list[Image.Image] = []


@pytest.mark.parametrize(("case", "fmt"), CASE_FORMATS)
def test_sd_parsers(images: dict[tuple[str, str], Path], case: str, fmt: str) -> None:
    try:
        from sd_parsers import ParserManager
        from sd_parsers.data import Generators
    except ImportError as exc:
        absent("sd-parsers", str(exc))
    # sd-parsers 0.6 caches the last JPEG's UserComment by ``id(image)``: once the previous
    # image is freed, a new one can get its id and be read as the previous file (seen in CI:
    # rich.jpeg parsed as basic.jpeg). Open the image here and keep it alive so ids are unique.
    image = Image.open(images[(case, fmt)])
    _KEEP_REFERENCED.append(image)
    info = ParserManager().parse(image)
    assert info is not None, "sd-parsers found no metadata"
    want = expected(CASES[case][0])
    assert info.generator == Generators.AUTOMATIC1111
    (sampler,) = info.samplers
    got = {
        "positive": info.full_prompt,
        "negative": info.full_negative_prompt,
        "steps": sampler.parameters["steps"],
        "sampler": sampler.name,
        "cfg": sampler.parameters["cfg_scale"],
        "seed": sampler.parameters["seed"],
        "size": info.metadata["Size"],
        "model": sampler.model.name if sampler.model else None,
    }
    assert got == want
    assert sampler.parameters["scheduler"] == "Karras"
    assert sampler.model is not None and sampler.model.hash == "a1b2c3d4e5"
    assert info.metadata["Hashes"] == {
        "model": "a1b2c3d4e5",
        "vae": "735e4c3a44",
        "lora:detail": "0123456789",
    }


@pytest.mark.parametrize(("case", "fmt"), CASE_FORMATS)
def test_sd_prompt_reader(images: dict[tuple[str, str], Path], case: str, fmt: str) -> None:
    try:
        # The parsing core only: sd_prompt_reader/__init__.py is empty, so this imports no GUI.
        from sd_prompt_reader.format import BaseFormat
        from sd_prompt_reader.image_data_reader import ImageDataReader
    except ImportError as exc:
        absent("sd-prompt-reader", str(exc))
    assert "customtkinter" not in sys.modules
    reader = ImageDataReader(str(images[(case, fmt)]))
    assert reader.status == BaseFormat.Status.READ_SUCCESS
    want = expected(CASES[case][0])
    got = {
        "positive": reader.positive,
        "negative": reader.negative,
        "steps": reader.parameter["steps"],
        "sampler": reader.parameter["sampler"],
        "cfg": reader.parameter["cfg"],
        "seed": reader.parameter["seed"],
        "size": reader.parameter["size"],
        "model": reader.parameter["model"],
    }
    assert got == want
    assert (reader.width, reader.height) == tuple(want["size"].split("x"))
    assert reader.tool == ("ComfyUI\n(A1111 compatible)" if fmt == "png" else "A1111 webUI")


def exiftool(*args: str) -> str:
    exe = shutil.which("exiftool")
    if exe is None:
        absent("exiftool", "no exiftool on PATH")
    return subprocess.run([exe, *args], check=True, capture_output=True, text=True, timeout=60).stdout  # type: ignore[list-item]


def infotext_fields(text: str) -> dict[str, str]:
    """An independent split of an A1111 infotext into the fields this test checks."""
    head, settings = text.rsplit("\n", 1)
    positive, negative = head.split("\nNegative prompt: ", 1)
    simple = settings.split(", Lora hashes: ", 1)[0]
    pairs = dict(re.findall(r"(?:^|, )([A-Za-z ]+): ([^,]*)", simple))
    return {
        "positive": positive,
        "negative": negative,
        "steps": pairs["Steps"],
        "sampler": pairs["Sampler"],
        "cfg": pairs["CFG scale"],
        "seed": pairs["Seed"],
        "size": pairs["Size"],
        "model": pairs["Model"],
    }


@pytest.mark.parametrize(("case", "fmt"), CASE_FORMATS)
def test_exiftool(images: dict[tuple[str, str], Path], case: str, fmt: str) -> None:
    path = images[(case, fmt)]
    (tags,) = json.loads(exiftool("-j", "-a", "-G1", "-charset", "utf8", str(path)))
    generation, workflow = CASES[case]
    text_tag = "PNG:Parameters" if fmt == "png" else "ExifIFD:UserComment"
    assert tags[text_tag] == a1111_parameters(generation)
    assert infotext_fields(tags[text_tag]) == expected(generation)
    meta = read_metadata(path)
    document_text = encode_document({"schema": 1, "runtime": {"prompt_id": case}, "workflow": workflow}).decode()
    if fmt == "png":
        assert (tags["PNG:Prompt"], tags["PNG:Workflow"]) == (
            json.dumps(PROMPT),
            json.dumps(workflow),
        )
        embedded = tags["PNG:Runtime_metadata"]
    else:
        if case == "huge" and fmt == "jpeg":
            assert "IFD0:ImageDescription" not in tags and "IFD0:Make" not in tags
        else:
            assert tags["IFD0:ImageDescription"] == "prompt:" + json.dumps(PROMPT)
            assert tags["IFD0:Make"] == "workflow:" + json.dumps(workflow)
        assert "IFD0:Model" not in tags
        embedded = tags["XMP-rtmeta:Document"]
    if case == "huge":
        assert json.loads(embedded)["sidecar"] == meta.pointer
    else:
        assert embedded == document_text


@pytest.mark.parametrize(("case", "fmt"), CASE_FORMATS)
def test_exiftool_finds_no_structural_fault(images: dict[tuple[str, str], Path], case: str, fmt: str) -> None:
    out = exiftool("-validate", "-warning", "-error", "-a", "-s", "-G1", str(images[(case, fmt)]))
    lines = [
        line.split(":", 1)[1].strip() for line in out.splitlines() if re.match(r"\[ExifTool\]\s+(Warning|Error)", line)
    ]
    # Only "[minor] Odd offset": piexif does not word-align values, which no reader minds.
    assert all(line.startswith("[minor] Odd offset") for line in lines), lines


@pytest.mark.parametrize("fmt", ["webp", "jpeg"])
def test_sd_prompt_reader_reads_opaque_rgba_saves(tmp_path: Path, fmt: str) -> None:
    """sd-prompt-reader takes RGBA WebP/JPEG for NovelAI's alpha format; opaque alpha is dropped."""
    try:
        from sd_prompt_reader.format import BaseFormat
        from sd_prompt_reader.image_data_reader import ImageDataReader
    except ImportError as exc:
        absent("sd-prompt-reader", str(exc))
    path = tmp_path / f"rgba.{fmt}"
    save_image(
        Image.new("RGBA", (64, 64), (10, 20, 30, 255)),
        path,
        fmt,  # type: ignore[arg-type]
        parameters=a1111_parameters(BASE),
    )
    reader = ImageDataReader(str(path))
    assert reader.status == BaseFormat.Status.READ_SUCCESS
    assert reader.parameter["steps"] == "20"
