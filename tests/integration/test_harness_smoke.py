"""Smoke test of the harness itself: each generation's real ComfyUI runs a model-free graph."""

from __future__ import annotations

import json
import urllib.request

from PIL import Image

from runtime_metadata.harness import ComfyServer, Installation
from runtime_metadata.harness.provision import comfyui_version_of

from .integration_helpers import run_ok, saved_images


def test_empty_image_is_saved_with_prompt_metadata(comfy: ComfyServer) -> None:
    """EmptyImage -> SaveImage runs to success and the PNG carries ComfyUI's `prompt` text chunk."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 48, "batch_size": 1, "color": 0x336699},
        },
        "2": {
            "class_type": "SaveImage",
            "inputs": {"images": ["1", 0], "filename_prefix": "harness_smoke"},
        },
    }

    _, entry = run_ok(comfy, prompt, timeout=120)

    assert entry["status"]["completed"] is True
    (path,) = saved_images(comfy, entry)
    assert path.name == "harness_smoke_00001_.png"
    with Image.open(path) as image:
        assert image.size == (64, 48)
        assert image.getpixel((0, 0)) == (0x33, 0x66, 0x99)
        assert json.loads(image.text["prompt"]) == prompt


def test_each_generation_is_the_comfyui_it_claims_to_be(
    comfy: ComfyServer, installation: Installation, generation: str
) -> None:
    """The March-2024 tree predates comfyui_version.py; the modern one serves the Vue frontend."""
    version = comfyui_version_of(installation.root)
    system = comfy.get_json("/system_stats")["system"]
    with urllib.request.urlopen(comfy.url + "/", timeout=30) as response:
        page = response.read().decode("utf-8", "replace")
    if generation == "march2024":
        assert version is None
        assert "comfyui_version" not in system
    else:
        assert version is not None and system["comfyui_version"] == version
        # The Vue frontend of comfyui-frontend-package (the 2024 page is a plain litegraph one).
        assert '<div id="vue-app"' in page
        frontend = comfy.get_json("/api/system_stats")  # the frontend's own API prefix answers too
        assert frontend["system"]["comfyui_version"] == version
    assert "<title>ComfyUI</title>" in page
