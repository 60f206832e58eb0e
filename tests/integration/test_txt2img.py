"""A real SD1.5 txt2img graph on the CPU: checkpoint, two LoRAs, CLIP skip, KSampler, VAE.

The models are random weights with SD1.5's names and shapes (harness/models.py generates them
once per machine, ~15-30 s and ~2.3 GB, into ~/.cache/runtime-metadata/models/), so ComfyUI's
real loaders, LoRA patching, text encoder, sampler and VAE decoder all run, without downloads.
KSampler's seed and steps are computed by helper nodes: the prompt holds only links, and the
values exist only at run time.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.harness import ComfyServer
from runtime_metadata.harness.models import Models

from .integration_helpers import RUN_TIMEOUT, LogWindow, logs_dir

FirstRun = tuple[dict[str, Any], str, Path, str]  # prompt, prompt_id, saved PNG, what the server logged


def txt2img(models: Models, prefix: str) -> dict[str, Any]:
    """API-format prompt; seed = 1000 + 234 and steps = 1 + 1 come from IntMath nodes."""
    return {
        "1": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": models.checkpoint_name},
        },
        "2": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": models.lora_name,
                "strength_model": 0.0,
                "strength_clip": 0.0,
            },
        },
        "3": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["2", 0],
                "clip": ["2", 1],
                "lora_name": models.lora_name,
                "strength_model": 0.5,
                "strength_clip": 0.5,
            },
        },
        "4": {
            "class_type": "CLIPSetLastLayer",
            "inputs": {"clip": ["3", 1], "stop_at_clip_layer": -2},
        },
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 0]}},
        "7": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1},
        },
        "8": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": 1000, "b": 234, "op": "add"}},
        "9": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": 1, "b": 1, "op": "add"}},
        "10": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["3", 0],
                "seed": ["8", 0],
                "steps": ["9", 0],
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["5", 0],
                "negative": ["6", 0],
                "latent_image": ["7", 0],
                "denoise": 1.0,
            },
        },
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
        "12": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["11", 0], "filename_prefix": prefix},
        },
    }


def run(server: ComfyServer, prompt: dict[str, Any]) -> tuple[str, Path, float]:
    started = time.perf_counter()
    prompt_id = server.queue(prompt)
    entry = server.wait(prompt_id, timeout=RUN_TIMEOUT)
    seconds = time.perf_counter() - started
    assert entry["status"]["status_str"] == "success", (entry["status"], server.log_text()[-4000:])
    images = [
        server.output_dir / img["subfolder"] / img["filename"]
        for out in entry["outputs"].values()
        for img in out.get("images", [])
    ]
    assert len(images) == 1, entry["outputs"]
    return prompt_id, images[0], seconds


def runtime_doc(image: Path) -> dict[str, Any]:
    with Image.open(image) as img:
        img.load()
        text = dict(img.text)
    assert "runtime_metadata" in text, list(text)
    return json.loads(text["runtime_metadata"])["runtime"]


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["id"]: node for node in doc["nodes"]}


@pytest.fixture(scope="module")
def first_run(comfy: ComfyServer, models: Models) -> FirstRun:
    prompt = txt2img(models, "txt2img")
    window = LogWindow(comfy)
    prompt_id, image, _ = run(comfy, prompt)
    return prompt, prompt_id, image, window.text()


def test_ksampler_records_the_seed_and_steps_only_the_run_knew(first_run: FirstRun) -> None:
    prompt, prompt_id, image, _ = first_run
    assert prompt["10"]["inputs"]["seed"] == ["8", 0]
    assert prompt["10"]["inputs"]["steps"] == ["9", 0]
    doc = runtime_doc(image)
    assert doc["prompt_id"] == prompt_id
    nodes = by_id(doc)
    sampler = nodes["10"]
    assert sampler["class_type"] == "KSampler"
    assert sampler["status"] == "executed"
    assert sampler["inputs"]["seed"] == 1234
    assert sampler["inputs"]["steps"] == 2
    assert sampler["inputs"]["cfg"] == 7.0
    assert sampler["inputs"]["sampler_name"] == "euler"
    assert sampler["inputs"]["scheduler"] == "normal"
    assert sampler["inputs"]["denoise"] == 1.0
    # Two real sampling steps of an 860M-parameter UNet (batch 2 for cfg) cannot be instant.
    assert sampler["duration_ms"] > 100
    assert nodes["8"]["inputs"] == {"a": 1000, "b": 234, "op": "add"}
    assert nodes["9"]["inputs"] == {"a": 1, "b": 1, "op": "add"}


def test_loras_text_and_clip_skip_are_recorded(first_run: FirstRun, models: Models) -> None:
    _, _, image, _ = first_run
    nodes = by_id(runtime_doc(image))
    off, half = nodes["2"]["inputs"], nodes["3"]["inputs"]
    assert nodes["2"]["class_type"] == nodes["3"]["class_type"] == "LoraLoader"
    assert off["lora_name"] == half["lora_name"] == models.lora_name
    # 0.0 stays a float 0.0 (not dropped, not None, not the int 0).
    assert off["strength_model"] == 0.0 and isinstance(off["strength_model"], float)
    assert off["strength_clip"] == 0.0 and isinstance(off["strength_clip"], float)
    assert half["strength_model"] == 0.5 and half["strength_clip"] == 0.5
    assert nodes["1"]["inputs"]["ckpt_name"] == models.checkpoint_name
    assert nodes["4"]["inputs"]["stop_at_clip_layer"] == -2
    assert nodes["5"]["inputs"]["text"] == "a red fox"
    assert nodes["6"]["inputs"]["text"] == "blurry"
    assert nodes["7"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1}
    assert all(n["status"] == "executed" for n in nodes.values()), {i: n["status"] for i, n in nodes.items()}
    assert sorted(nodes, key=int) == [str(i) for i in range(1, 12)]


def test_comfyui_took_the_files_as_sd15(first_run: FirstRun) -> None:
    log = first_run[3]
    # ComfyUI's own view: an SD1.5 text encoder and UNet were loaded, every LoRA key applied.
    assert "Requested to load SD1ClipModel" in log and "Requested to load BaseModel" in log
    assert "lora key not loaded" not in log
    assert "ERROR" not in log


def test_the_image_is_a_real_decode(first_run: FirstRun) -> None:
    _, _, image, _ = first_run
    with Image.open(image) as img:
        assert img.size == (64, 64)
        assert img.mode == "RGB"
        lo, hi = zip(*img.getextrema())
    # Random weights still decode to a non-constant picture (no NaNs turned into black).
    assert max(h - l for l, h in zip(lo, hi)) > 0


def test_a_standalone_vae_reuses_the_cached_sampling(comfy: ComfyServer, models: Models, first_run: FirstRun) -> None:
    prompt = copy.deepcopy(first_run[0])
    prompt["12"]["inputs"]["filename_prefix"] = "txt2img-vae"
    prompt["13"] = {"class_type": "VAELoader", "inputs": {"vae_name": models.vae_name}}
    prompt["11"]["inputs"]["vae"] = ["13", 0]
    _, image, _ = run(comfy, prompt)
    nodes = by_id(runtime_doc(image))
    status = {i: n["status"] for i, n in nodes.items()}
    executed = sorted(i for i, s in status.items() if s == "executed")
    assert executed == ["11", "13"], status
    assert nodes["13"]["class_type"] == "VAELoader"
    assert nodes["13"]["inputs"]["vae_name"] == models.vae_name
    # Loading the checkpoint, encoding and sampling were all served from ComfyUI's cache.
    assert status["1"] == status["10"] == "cached"
    with Image.open(image) as a, Image.open(first_run[2]) as b:
        assert a.size == b.size == (64, 64)
        assert a.tobytes() != b.tobytes()  # a different VAE decoded the same latent


def test_the_merged_document_prefers_the_run_and_lists_every_disagreement(
    comfy: ComfyServer, models: Models, capsys: pytest.CaptureFixture[str]
) -> None:
    """Seed from a node the parser cannot compute; a switch whose choice only the run knows."""
    prompt = txt2img(models, "reconcile")
    prompt["8"] = {"class_type": "SeedFromText", "inputs": {"text": "cat", "modulo": 1000}}  # 833 at run time
    prompt["20"] = {"class_type": "SeedFromText", "inputs": {"text": "owl", "modulo": 2}}  # selects 2
    prompt["21"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a grey owl", "clip": ["4", 0]}}
    prompt["22"] = {
        "class_type": "SwitchRuntimeMetadata",
        "inputs": {"select": ["20", 0], "on_1": ["5", 0], "on_2": ["21", 0]},
    }
    prompt["10"]["inputs"].update(positive=["22", 0], cfg=1.0)  # cfg 1 halves the sampling time
    window = LogWindow(comfy)
    prompt_id, image, _ = run(comfy, prompt)
    with Image.open(image) as img:
        img.load()
        chunks = dict(img.text)
    doc = json.loads(chunks["runtime_metadata"])
    ai = doc["ai_info"]
    assert doc["provenance"]["capture_mode"] == "parser+runtime"
    generation = ai["generation"]
    assert generation["sampler"]["seed"] == 833
    assert generation["sampler"]["steps"] == 2
    assert generation["positive"] == "a grey owl"
    assert generation["negative"] == "blurry"
    assert generation["model"] == models.checkpoint_name
    assert [lora["strength_model"] for lora in generation["loras"]] == [0.0, 0.5]
    assert ai["sources"]["sampler.seed"] == "runtime"
    assert ai["parser"]["sampler"]["seed"] == "unknown (linked from node 8, SeedFromText)"
    assert ai["parser"]["positive"] == "a red fox"  # the parser had to guess the switch
    by_path = {d["path"]: d for d in ai["disagreements"]}
    assert by_path["ai_info.generation.sampler.seed"]["runtime"] == 833
    assert by_path["ai_info.generation.sampler.seed"]["cause"] == "value computed upstream"
    assert by_path["ai_info.generation.positive"] == {
        "path": "ai_info.generation.positive",
        "parser": "a red fox",
        "runtime": "a grey owl",
        "cause": "switch picked another branch",
    }
    # With debug and the two log flags on, the server log says so in DESIGN.md's formats.
    log_text = window.text()
    assert (
        "[MetadataSaveImage] Disagreement at 'ai_info.generation.sampler.seed': parser=unknown (linked from node 8, SeedFromText) → runtime=833"
        in log_text
    )
    assert (
        "[MetadataSaveImage] Disagreement at 'ai_info.generation.positive': parser=a red fox → runtime=a grey owl"
        in log_text
    )
    perf_line = rf"\[AAA Metadata Hooks\] Performance: {prompt_id[:8]}\.\.\. - \d+ calls, total=\d+\.\d\dms, avg=\d+\.\d{{3}}ms, max=\d+\.\d{{3}}ms"
    assert re.search(perf_line, log_text), log_text[-2000:]
    # The A1111 string galleries read carries the run's values.
    params = chunks["parameters"]
    assert params.startswith("a grey owl\nNegative prompt: blurry\nSteps: 2, Sampler: Euler, CFG scale: 1")
    assert "Seed: 833" in params and "Size: 64x64" in params
    assert f"Model: {Path(models.checkpoint_name).stem}" in params
    # And the saved log rebuilds the very same document.
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    from runtime_metadata.cli import main as cli_main

    assert cli_main(["replay", str(log_file), "--check", str(image)]) == 0
    assert "byte for byte" in capsys.readouterr().out

    # Saved again under another name: everything upstream is served from ComfyUI's cache, and
    # the image still says what it was made with, from the run that computed the cache.
    prompt["12"]["inputs"]["filename_prefix"] = "reconcile-again"
    again_id, again, seconds = run(comfy, prompt)
    with Image.open(again) as img:
        img.load()
        doc2 = json.loads(img.text["runtime_metadata"])
    nodes = {n["id"]: n for n in doc2["runtime"]["nodes"]}
    assert nodes["10"]["status"] == "cached" and nodes["10"]["cached_from"] == prompt_id
    assert doc2["ai_info"]["generation"]["sampler"]["seed"] == 833
    assert doc2["ai_info"]["generation"]["positive"] == "a grey owl"
    assert doc2["ai_info"]["sources"]["sampler.seed"] == "runtime"
    assert seconds < 30  # nothing was sampled again


def test_two_save_branches_each_describe_their_own_sampler(comfy: ComfyServer, models: Models) -> None:
    """One checkpoint, two samplers with their own seeds and prompts, one save node each."""
    prompt = txt2img(models, "branch-a")
    prompt["10"]["inputs"].update(cfg=1.0, seed=111, steps=1)
    prompt["30"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue jay", "clip": ["4", 0]}}
    prompt["31"] = {"class_type": "KSampler", "inputs": {**prompt["10"]["inputs"], "seed": 222, "positive": ["30", 0]}}
    prompt["32"] = {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0], "vae": ["1", 2]}}
    prompt["33"] = {
        "class_type": "SaveImageRuntimeMetadata",
        "inputs": {"images": ["32", 0], "filename_prefix": "branch-b"},
    }
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    docs = {}
    for save_id in ("12", "33"):
        (img,) = entry["outputs"][save_id]["images"]
        with Image.open(comfy.output_dir / img["subfolder"] / img["filename"]) as image:
            image.load()
            docs[save_id] = json.loads(image.text["runtime_metadata"])
    a, b = docs["12"], docs["33"]
    assert a["ai_info"]["generation"]["sampler"]["seed"] == 111
    assert a["ai_info"]["generation"]["positive"] == "a red fox"
    assert b["ai_info"]["generation"]["sampler"]["seed"] == 222
    assert b["ai_info"]["generation"]["positive"] == "a blue jay"
    ids_a = {n["id"] for n in a["runtime"]["nodes"]}
    ids_b = {n["id"] for n in b["runtime"]["nodes"]}
    assert "31" not in ids_a and "30" not in ids_a and "10" in ids_a
    assert "10" not in ids_b and "5" not in ids_b and "31" in ids_b
    assert a["ai_info"]["disagreements"] == [] and b["ai_info"]["disagreements"] == []


def test_each_image_of_a_seed_list_carries_its_own_seed(comfy: ComfyServer, models: Models) -> None:
    """A batch list of seeds: ComfyUI samples and saves once per seed; each image says its own."""
    prompt = txt2img(models, "seedlist")
    prompt["8"] = {"class_type": "SeedList", "inputs": {"start": 5000, "count": 2}}
    prompt["10"]["inputs"].update(cfg=1.0, steps=1)
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=RUN_TIMEOUT)
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = entry["outputs"]["12"]["images"]
    assert len(images) == 2
    seeds, params = [], []
    for img in images:
        with Image.open(comfy.output_dir / img["subfolder"] / img["filename"]) as image:
            image.load()
            doc = json.loads(image.text["runtime_metadata"])
            params.append(image.text["parameters"])
        seeds.append(doc["ai_info"]["generation"]["sampler"]["seed"])
        sampler = {n["id"]: n for n in doc["runtime"]["nodes"]}["10"]
        assert sampler["inputs"]["seed"] == [5000, 5001] and sampler["calls"] == 2  # the run, honestly
    assert seeds == [5000, 5001]
    assert "Seed: 5000," in params[0] and "Seed: 5001," in params[1]
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    from runtime_metadata.cli import main as cli_main

    for img in images:
        assert (
            cli_main(["replay", str(log_file), "--check", str(comfy.output_dir / img["subfolder"] / img["filename"])])
            == 0
        )
