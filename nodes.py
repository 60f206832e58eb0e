"""ComfyUI node classes: the save node, and small helper nodes whose outputs only a run knows."""

from __future__ import annotations

import logging
import os
from typing import Any

from . import capture, config
from .capture import comfy
from .events.log import read_log
from .projections.document import build_document, encode_document
from .writers.png import png_chunks, write_png

log = logging.getLogger("runtime_metadata")

SAVE_NODE = "SaveImageRuntimeMetadata"
CAPTURE_CHOICES = ["auto", "on", "off"]


def _to_pil(image: Any) -> Any:
    """A ComfyUI IMAGE item (H, W, C float tensor in 0..1) as a Pillow image."""
    import numpy as np
    from PIL import Image

    array = 255.0 * image.cpu().numpy()
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def runtime_document_text(unique_id: str | None, prompt_id: str | None) -> str | None:
    """The embedded document for this save node, from its own run's log; None if none."""
    rec = capture.live_run()
    if rec is None or unique_id is None:
        return None
    result = read_log(rec.snapshot())
    return encode_document(build_document(result.events, str(unique_id)))


class SaveImageRuntimeMetadata:
    """Saves images like ComfyUI's SaveImage and adds what the run actually did."""

    CATEGORY = "image/runtime metadata"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves PNGs with ComfyUI's prompt/workflow plus the runtime metadata of this run."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "optional": {
                "capture": (CAPTURE_CHOICES, {"default": "auto"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"},
        }

    def save_images(
        self,
        images: Any,
        filename_prefix: str = "ComfyUI",
        capture: str = "auto",
        prompt: Any = None,
        extra_pnginfo: Any = None,
        unique_id: Any = None,
    ) -> dict[str, Any]:
        if capture == "on":
            _capture_on()
        height, width = int(images[0].shape[0]), int(images[0].shape[1])
        folder, filename, counter, subfolder, _ = comfy.save_image_path(filename_prefix, width, height)
        disabled = comfy.metadata_disabled()
        document = None
        if not disabled and capture != "off":
            try:
                document = runtime_document_text(unique_id, None)
            except Exception:  # noqa: BLE001 - the image is always saved
                log.exception("[runtime-metadata] could not build the runtime document; saving without it")
        results = []
        for batch_number, image in enumerate(images):
            chunks = None if disabled else png_chunks(prompt, extra_pnginfo, document)
            name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter:05}_.png"
            write_png(_to_pil(image), os.path.join(folder, name), chunks)
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"images": results}}


def _capture_on() -> None:
    """Install the hooks now so that the next run is captured (this one has already started)."""
    status = capture.install_into_comfyui(force=True)
    if not status.installed:
        log.warning("[runtime-metadata] capture=on but hooks could not be installed: %s", status.skipped)


class IntMathRuntimeMetadata:
    """Integer arithmetic: a value only the run knows (static parsers see a link)."""

    CATEGORY = "utils/runtime metadata"
    RETURN_TYPES = ("INT",)
    FUNCTION = "compute"
    OPS = ["add", "subtract", "multiply", "floor_divide", "modulo", "min", "max"]

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        big = 0xFFFFFFFFFFFFFFFF
        return {
            "required": {
                "a": ("INT", {"default": 0, "min": -big, "max": big}),
                "b": ("INT", {"default": 0, "min": -big, "max": big}),
                "op": (cls.OPS, {"default": "add"}),
            }
        }

    def compute(self, a: int, b: int, op: str) -> tuple[int]:
        if op == "add":
            return (a + b,)
        if op == "subtract":
            return (a - b,)
        if op == "multiply":
            return (a * b,)
        if op == "floor_divide":
            return (a // b if b else 0,)
        if op == "modulo":
            return (a % b if b else 0,)
        if op == "min":
            return (min(a, b),)
        if op == "max":
            return (max(a, b),)
        raise ValueError(f"unknown op {op!r}")


NODE_CLASS_MAPPINGS = {
    SAVE_NODE: SaveImageRuntimeMetadata,
    "IntMathRuntimeMetadata": IntMathRuntimeMetadata,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    SAVE_NODE: "Save Image (Runtime Metadata)",
    "IntMathRuntimeMetadata": "Int Math (Runtime Metadata)",
}
