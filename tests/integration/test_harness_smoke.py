"""Smoke test of the harness itself: a real ComfyUI runs a model-free graph and writes a PNG."""

from __future__ import annotations

import json
from collections.abc import Callable

from PIL import Image

from runtime_metadata.harness import ComfyServer


def test_empty_image_is_saved_with_prompt_metadata(
    start_comfy: Callable[..., ComfyServer],
) -> None:
    """EmptyImage -> SaveImage runs to success and the PNG carries ComfyUI's `prompt` text chunk."""
    # require_plugin=False: this checks the harness, not whether the plugin imports.
    server = start_comfy(require_plugin=False)
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

    entry = server.run(prompt, timeout=120)

    assert entry["status"]["status_str"] == "success", entry["status"]
    assert entry["status"]["completed"] is True
    saved = entry["outputs"]["2"]["images"]
    assert [image["filename"] for image in saved] == ["harness_smoke_00001_.png"]
    path = server.output_dir / saved[0]["subfolder"] / saved[0]["filename"]
    assert path.is_file()
    with Image.open(path) as image:
        assert image.size == (64, 48)
        assert image.getpixel((0, 0)) == (0x33, 0x66, 0x99)
        assert json.loads(image.text["prompt"]) == prompt
