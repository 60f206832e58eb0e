"""Writers: save_image against what ComfyUI's SaveImage does, and zstd sidecars of a 200-node run.

Run: ``pytest bench/test_bench_writers.py --benchmark-only``. Every ratio is against a
baseline measured in the same run, on the same image, and is stored in ``extra_info`` so
``--benchmark-json`` keeps it for regression comparison.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from runtime_metadata.writers.a1111 import parameters as a1111_parameters
from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import encode_document, save_image
from runtime_metadata.writers.sidecar import ZstdCodec, read_sidecar, write_sidecar

SIZE = (1024, 1024)
_medians: dict[str, float] = {}

CLASS_TYPES = [
    "KSampler",
    "CLIPTextEncode",
    "VAEDecode",
    "LoraLoader",
    "CheckpointLoaderSimple",
    "ControlNetApplyAdvanced",
    "ImageScale",
    "EmptyLatentImage",
    "ConditioningCombine",
    "IntMathRuntimeMetadata",
    "UpscaleModelLoader",
]
WORDS = [
    "masterpiece",
    "best",
    "quality",
    "cat",
    "windowsill",
    "golden",
    "hour",
    "cinematic",
    "lighting",
    "detailed",
    "fur",
    "bokeh",
    "35mm",
]


def _ratio(benchmark: Any, name: str, baseline: str) -> None:
    _medians[name] = benchmark.stats.stats.median
    if baseline in _medians and name != baseline:
        ratio = _medians[name] / _medians[baseline]
        benchmark.extra_info["ratio_to_" + baseline] = round(ratio, 3)
        print(f"\n{name}: {ratio:.2f}x {baseline}")


def _inputs(rng: random.Random, i: int) -> dict[str, Any]:
    """About eight inputs as the runtime projection records them: scalars, text, summaries."""
    return {
        "seed": rng.randrange(2**48),
        "steps": rng.choice([20, 25, 30]),
        "cfg": rng.choice([5.5, 7.0, 7.5]),
        "sampler_name": rng.choice(["euler", "dpmpp_2m", "dpmpp_2m_sde"]),
        "text": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(8, 40))),
        "strength": round(rng.random(), 3),
        "model": {"type": "comfy.model_patcher.ModelPatcher"},
        "latent": {"type": "torch.Tensor", "shape": [1, 4, 128, 128], "dtype": "torch.float16"},
        "images": [str(max(0, i - 1)), 0],
    }


def runtime_document(nodes: int = 200) -> dict[str, Any]:
    """A document shaped like projections.document for a run of ``nodes`` executed nodes."""
    rng = random.Random(1234)
    items = []
    by_class: dict[str, list[float]] = {}
    for i in range(nodes):
        class_type = rng.choice(CLASS_TYPES)
        duration = round(rng.lognormvariate(1.0, 1.5), 3)
        cached = rng.random() < 0.2
        item: dict[str, Any] = {
            "id": str(i + 1),
            "class_type": class_type,
            "status": "cached" if cached else "executed",
        }
        if cached:
            item["cached"] = True
        else:
            item["duration_ms"] = duration
            by_class.setdefault(class_type, []).append(duration)
        item["inputs"] = _inputs(rng, i)
        items.append(item)
    return {
        "schema": 1,
        "runtime": {
            "schema": 1,
            "prompt_id": "6f1d2c3b-4a59-4e7f-9b0c-2d3e4f5a6b7c",
            "started_at": "2026-11-27T19:30:00.000+00:00",
            "status": "success",
            "comfyui": "0.3.64",
            "plugin": "0.1.0",
            "nodes": items,
            "saved_by": {"id": str(nodes), "class_type": "SaveImageRuntimeMetadata"},
            "timing": {
                "executed_nodes": sum(1 for n in items if "duration_ms" in n),
                "cached_nodes": sum(1 for n in items if n.get("cached")),
                "node_time_ms": round(sum(sum(v) for v in by_class.values()), 3),
                "by_class": {
                    k: {"calls": len(v), "total_ms": round(sum(v), 3), "max_ms": max(v)}
                    for k, v in sorted(by_class.items())
                },
            },
        },
        "provenance": {
            "capture_mode": "parser+runtime",
            "comfyui": "0.3.64",
            "plugin": "0.1.0",
            "environment": {},
        },
    }


def prompt_and_workflow(nodes: int = 30) -> tuple[dict[str, Any], dict[str, Any]]:
    """A typical txt2img+LoRA+upscale graph: ComfyUI's prompt and its UI workflow."""
    rng = random.Random(99)
    prompt = {str(i): {"class_type": rng.choice(CLASS_TYPES), "inputs": _inputs(rng, i)} for i in range(1, nodes + 1)}
    workflow = {
        "last_node_id": nodes,
        "nodes": [
            {
                "id": i,
                "type": v["class_type"],
                "pos": [i * 30.0, i * 12.5],
                "size": [315, 262],
                "flags": {},
                "order": i,
                "mode": 0,
                "inputs": [],
                "outputs": [],
                "properties": {"Node name for S&R": v["class_type"]},
                "widgets_values": list(v["inputs"].values())[:6],
            }
            for i, v in ((int(k), v) for k, v in prompt.items())
        ],
        "links": [[i, i, 0, i + 1, 0, "LATENT"] for i in range(1, nodes)],
        "version": 0.4,
    }
    return prompt, workflow


GENERATION = {
    "model": {"name": "sd15.safetensors", "hash": "a1b2c3d4e5"},
    "loras": [
        {
            "name": "detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "hash": "0123456789",
        }
    ],
    "positive": "a cat on a windowsill, golden hour",
    "negative": "blurry",
    "sampler": {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 20,
        "cfg": 7.0,
        "seed": 42,
        "denoise": 1.0,
    },
    "size": {"width": 1024, "height": 1024},
    "clip_skip": 2,
}


@pytest.fixture(scope="module")
def image() -> Image.Image:
    """1024x1024 RGB with gradients and noise: compresses like a generated image, not like a flat fill."""
    noise = Image.effect_noise(SIZE, 24)
    gx = Image.linear_gradient("L").resize(SIZE)
    gy = gx.rotate(90)
    return Image.merge("RGB", (Image.blend(gx, noise, 0.3), Image.blend(gy, noise, 0.3), noise))


PROMPT, WORKFLOW = prompt_and_workflow()
PARAMETERS = a1111_parameters(GENERATION)
SMALL_DOCUMENT = runtime_document(12)
RUN_DOCUMENT = runtime_document(200)


def test_baseline_comfyui_saveimage(benchmark: Any, image: Image.Image, tmp_path: Path) -> None:
    """Baseline: ComfyUI's stock SaveImage body: PngInfo tEXt prompt/workflow, compress_level=4."""
    path = tmp_path / "ComfyUI_00001_.png"

    def save() -> None:
        metadata = PngInfo()
        metadata.add_text("prompt", json.dumps(PROMPT))
        metadata.add_text("workflow", json.dumps(WORKFLOW))
        image.save(path, pnginfo=metadata, compress_level=4)

    benchmark(save)
    _ratio(benchmark, "comfyui_saveimage", "comfyui_saveimage")


def test_save_image_png_inline_document(benchmark: Any, image: Image.Image, tmp_path: Path) -> None:
    """save_image, PNG: prompt, workflow, parameters and a 12-node document inline; atomic, fsynced."""
    path = tmp_path / "a.png"

    def save() -> None:
        save_image(
            image,
            path,
            "png",
            prompt=PROMPT,
            extra_pnginfo={"workflow": WORKFLOW},
            document=SMALL_DOCUMENT,
            parameters=PARAMETERS,
            inline_size_limit_kb=32,
        )

    benchmark(save)
    assert read_metadata(path).document == SMALL_DOCUMENT
    benchmark.extra_info["document_bytes"] = len(encode_document(SMALL_DOCUMENT))
    _ratio(benchmark, "save_image_png_inline", "comfyui_saveimage")


def test_save_image_png_sidecar_document(benchmark: Any, image: Image.Image, tmp_path: Path) -> None:
    """save_image, PNG, with the 200-node document going to a zstd sidecar first."""
    path = tmp_path / "b.png"

    def save() -> None:
        save_image(
            image,
            path,
            "png",
            prompt=PROMPT,
            extra_pnginfo={"workflow": WORKFLOW},
            document=RUN_DOCUMENT,
            parameters=PARAMETERS,
            inline_size_limit_kb=32,
        )

    benchmark(save)
    assert read_metadata(path).document == RUN_DOCUMENT
    _ratio(benchmark, "save_image_png_sidecar", "comfyui_saveimage")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_baseline_pillow_save_lossy(benchmark: Any, image: Image.Image, tmp_path: Path, fmt: str) -> None:
    """Baseline for JPEG/WebP: a bare Pillow save at quality 95, no metadata, not atomic."""
    path = tmp_path / f"bare.{fmt}"
    options = {"method": 4} if fmt == "webp" else {}
    benchmark(image.save, path, format=fmt.upper(), quality=95, **options)
    _ratio(benchmark, f"pillow_{fmt}", f"pillow_{fmt}")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_save_image_lossy_formats(benchmark: Any, image: Image.Image, tmp_path: Path, fmt: str) -> None:
    """save_image for JPEG/WebP at quality 95 with EXIF, XMP document, atomic and fsynced."""
    path = tmp_path / f"c.{fmt}"

    def save() -> None:
        save_image(
            image,
            path,
            fmt,  # type: ignore[arg-type]
            prompt=PROMPT,
            extra_pnginfo={"workflow": WORKFLOW},
            document=SMALL_DOCUMENT,
            parameters=PARAMETERS,
            inline_size_limit_kb=32,
        )

    benchmark(save)
    assert read_metadata(path).document == SMALL_DOCUMENT
    _ratio(benchmark, f"save_image_{fmt}", f"pillow_{fmt}")


@pytest.mark.parametrize("level", [3, 10, 19])
def test_sidecar_compress_200_node_run(benchmark: Any, level: int) -> None:
    """zstd compression of the canonical JSON of a 200-node run, per level; ratio in extra_info."""
    content = encode_document(RUN_DOCUMENT)
    codec = ZstdCodec(level)
    compressed = benchmark(codec.compress, content)
    benchmark.extra_info["json_bytes"] = len(content)
    benchmark.extra_info["zstd_bytes"] = len(compressed)
    benchmark.extra_info["compression_ratio"] = round(len(content) / len(compressed), 2)
    print(f"\nlevel {level}: {len(content)} -> {len(compressed)} bytes ({len(content) / len(compressed):.2f}x)")


def test_sidecar_write_200_node_run(benchmark: Any, tmp_path: Path) -> None:
    """What a save pays for the sidecar: canonical encode, compress, atomic durable write."""
    image_path = tmp_path / "run.png"

    def write() -> None:
        write_sidecar(image_path, encode_document(RUN_DOCUMENT), schema=1)

    benchmark(write)
    pointer = write_sidecar(image_path, encode_document(RUN_DOCUMENT), schema=1)
    benchmark.extra_info["compression_ratio"] = round(pointer.content_bytes / pointer.bytes, 2)


def test_sidecar_read_verify_200_node_run(benchmark: Any, tmp_path: Path) -> None:
    """What a reader pays: path checks, size and sha256, bounded decompression, JSON decode."""
    image_path = tmp_path / "run.png"
    pointer = write_sidecar(image_path, encode_document(RUN_DOCUMENT), schema=1).to_dict()
    document = benchmark(read_sidecar, image_path, pointer)
    assert document == RUN_DOCUMENT
