"""ComfyUI node classes: the save node, and small helper nodes whose outputs only a run knows."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import msgspec

from . import capture, config
from .capture import comfy
from .capture.secrets import plain_secrets, redact_for_image, redact_json
from .events.log import read_log
from .events.schema import NodeInputs
from .projections.document import Document, build_document, parser_document
from .projections.reconcile import Disagreement, format_disagreement
from .projections.rules import INT_MATH_NODE, INT_MATH_OPS, SAVE_NODE, SWITCH_NODE, int_math
from .version import __version__
from .writers import hashes
from .writers.a1111 import parameters as a1111_parameters
from .writers.save import FORMATS, ImageFormat, save_image

log = logging.getLogger("runtime_metadata")

CAPTURE_CHOICES = ["auto", "on", "off"]
#: Generation fields that name model files, and the ComfyUI folder each lives in.
_MODEL_KINDS = {"model": "checkpoints", "vae": "vae"}


def _to_pil(image: Any) -> Any:
    """A ComfyUI IMAGE item (H, W, C float tensor in 0..1) as a Pillow image."""
    import numpy as np
    from PIL import Image

    array = 255.0 * image.cpu().numpy()
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def build_save_document(prompt: Any, unique_id: str, capture_choice: str, call_index: int = 0) -> Document:
    """This save node's document: from its own run's log when captured, else the static parse.

    ``call_index``: how many times this node's function already ran in this execution; when
    it runs over a batch list (once per item), it says which item this image is.
    """
    rec = capture.live_run() if capture_choice != "off" else None
    if rec is not None:
        events = read_log(rec.snapshot()).events
        calls = next((e.calls for e in events if isinstance(e, NodeInputs) and e.node_id == unique_id), 1)
        list_index = comfy.list_index()
        if list_index is None:
            list_index = call_index
        return build_document(events, unique_id, list_index if calls > 1 else None)
    return parser_document(prompt if isinstance(prompt, dict) else {}, unique_id, comfy.environment(), __version__)


_hash_cache: hashes.HashCache | None = None


def _hash(kind: str, name: Any, use_cache: bool) -> str | None:
    """AutoV2 hash of a model file, cached by path, size and mtime; None when unknown."""
    global _hash_cache
    if not isinstance(name, str):
        return None
    path = comfy.model_file(kind, name)
    if path is None:
        return None
    if _hash_cache is None:
        # Kept on disk too, so a restart does not re-hash multi-GB checkpoints.
        _hash_cache = hashes.HashCache(config.cache_dir() / "model-hashes.json")
    return hashes.autov2(path, _hash_cache if use_cache else None)


def infotext_generation(generation: dict[str, Any], use_cache: bool) -> dict[str, Any]:
    """The generation fields as the A1111 writer wants them: model files with their hashes."""
    out = dict(generation)
    for key, kind in _MODEL_KINDS.items():
        if isinstance(generation.get(key), str):
            out[key] = {"name": generation[key], "hash": _hash(kind, generation[key], use_cache)}
    loras = generation.get("loras")
    if isinstance(loras, list):
        out["loras"] = [
            {**lora, "hash": _hash("loras", lora.get("name"), use_cache)} if isinstance(lora, dict) else lora
            for lora in loras
        ]
    return out


def _report_disagreements(disagreements: list[Disagreement], cfg: config.Config) -> None:
    if cfg.debug and cfg.log_disagreements:
        for item in disagreements:
            log.info("%s", format_disagreement(item))


KEEP_API_KEYS_TIP = (
    "Off (default): API keys, tokens and passwords typed into any node's widgets are replaced by "
    "[redacted] in the prompt and workflow this image carries, so sharing the image never shares "
    "them; the workflow still loads, with the key to type in again. On: keep them, for exact "
    "reloads of your own private images."
)


def _credential_free(
    prompt: Any, pnginfo: Any, hidden_secrets: tuple[Any, ...]
) -> tuple[Any, Any, frozenset[str]] | None:
    """The prompt and extra_pnginfo with every credential replaced, and the credentials found;
    None when that failed (the caller then writes neither)."""
    rec = capture.live_run()
    known = plain_secrets(hidden_secrets) | (rec.secrets if rec is not None else frozenset())
    try:
        return redact_for_image(prompt, pnginfo, known, comfy.input_types)
    except Exception:  # never write what could not be cleaned
        log.exception("[runtime-metadata] could not redact credentials; the image keeps no prompt or workflow")
        return None


_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class PlannedFile:
    """One image file a save writes: its name, its path, and ComfyUI's UI record of it."""

    name: str
    path: str
    ui: dict[str, str]


@dataclass(frozen=True)
class SavePlan:
    """What a save writes, decided before anything is built or written."""

    fmt: ImageFormat
    files: tuple[PlannedFile, ...]
    #: ComfyUI's own chunks as the images will carry them.
    prompt: Any
    extra_pnginfo: dict[str, Any] | None
    #: The credential-free prompt the document is built from; None: the images get no document.
    document_prompt: Any
    #: Credentials found, kept out of the document too.
    secrets: frozenset[str]


def comfyui_chunks(extra_pnginfo: Any, embed_workflow: bool) -> dict[str, Any] | None:
    """ComfyUI's ``extra_pnginfo`` as the image will carry it (a copy; the workflow left out if asked)."""
    pnginfo = dict(extra_pnginfo) if isinstance(extra_pnginfo, dict) else None
    if pnginfo is not None and not embed_workflow:
        pnginfo.pop("workflow", None)
    return pnginfo


def plan_save(
    count: int,
    requested_format: str,
    target: tuple[str, str, int, str],
    *,
    with_metadata: bool,
    prompt: Any,
    extra_pnginfo: dict[str, Any] | None,
    keep_api_keys: bool,
    clean: tuple[Any, Any, frozenset[str]] | None,
) -> SavePlan:
    """The files, chunks and document source of a save of ``count`` images (pure).

    ``target`` is ComfyUI's ``(folder, filename, counter, subfolder)`` for the prefix;
    ``clean`` is the credential-free ``(prompt, extra_pnginfo, secrets)``, or None when metadata
    is off or the credentials could not be taken out (then the images carry neither chunk).
    """
    fmt: ImageFormat = next((f for f in FORMATS if f == requested_format), "png")
    folder, filename, counter, subfolder = target
    files = []
    for batch_number in range(count):
        name = f"{filename.replace('%batch_num%', str(batch_number))}_{counter + batch_number:05}_.{_EXT[fmt]}"
        files.append(
            PlannedFile(name, os.path.join(folder, name), {"filename": name, "subfolder": subfolder, "type": "output"})
        )
    if with_metadata and not keep_api_keys:
        prompt, extra_pnginfo = clean[:2] if clean is not None else (None, None)
    return SavePlan(
        fmt,
        tuple(files),
        prompt,
        extra_pnginfo,
        clean[0] if clean is not None else None,
        clean[2] if clean is not None else frozenset(),
    )


class SaveImageRuntimeMetadata:
    """Saves images like ComfyUI's SaveImage and adds what the run actually did."""

    CATEGORY = "image/runtime metadata"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = (
        "Saves images with ComfyUI's prompt/workflow, an A1111 parameters string and what this "
        "run actually did (resolved values, cached nodes, timings)."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "optional": {
                "format": (list(FORMATS), {"default": "png"}),
                "quality": ("INT", {"default": 95, "min": 1, "max": 100}),
                "lossless": ("BOOLEAN", {"default": False}),
                "capture": (CAPTURE_CHOICES, {"default": "auto"}),
                "embed_workflow": ("BOOLEAN", {"default": True}),
                "embed_runtime": ("BOOLEAN", {"default": True}),
                "keep_api_keys": ("BOOLEAN", {"default": False, "tooltip": KEEP_API_KEYS_TIP}),
            },
            "hidden": {
                "prompt": "PROMPT",
                "extra_pnginfo": "EXTRA_PNGINFO",
                "unique_id": "UNIQUE_ID",
                # ComfyUI's account token and API key (0.3.x): received only to be redacted.
                "auth_token_comfy_org": "AUTH_TOKEN_COMFY_ORG",
                "api_key_comfy_org": "API_KEY_COMFY_ORG",
            },
        }

    def _next_call(self, unique_id: Any) -> int:
        """How many times this node already saved in the current run (ComfyUI keeps one
        instance per node id and calls it once per item of a batch list)."""
        rec = capture.live_run()
        key = (getattr(rec, "prompt_id", None), str(unique_id))
        seen: dict[tuple[Any, str], int] = self.__dict__.setdefault("_calls", {})
        index = seen.get(key, 0)
        if key not in seen and len(seen) >= 16:
            seen.clear()
        seen[key] = index + 1
        return index

    def save_images(
        self,
        images: Any,
        filename_prefix: str = "ComfyUI",
        format: str = "png",  # the socket name users see
        quality: int = 95,
        lossless: bool = False,
        capture: str = "auto",
        embed_workflow: bool = True,
        embed_runtime: bool = True,
        keep_api_keys: bool = False,
        prompt: Any = None,
        extra_pnginfo: Any = None,
        unique_id: Any = None,
        auth_token_comfy_org: Any = None,
        api_key_comfy_org: Any = None,
    ) -> dict[str, Any]:
        if capture == "on":
            _capture_on()
        try:
            cfg = config.get()
        except Exception:  # the configuration never costs an image
            log.exception("[runtime-metadata] configuration unreadable; using defaults")
            cfg = config.Config()
        height, width = int(images[0].shape[0]), int(images[0].shape[1])
        target = comfy.save_image_path(filename_prefix, width, height)[:4]
        with_metadata = not comfy.metadata_disabled()
        pnginfo = comfyui_chunks(extra_pnginfo, embed_workflow)
        clean = _credential_free(prompt, pnginfo, (auth_token_comfy_org, api_key_comfy_org)) if with_metadata else None
        plan = plan_save(
            len(images),
            format,
            target,
            with_metadata=with_metadata,
            prompt=prompt,
            extra_pnginfo=pnginfo,
            keep_api_keys=keep_api_keys,
            clean=clean,
        )
        document, parameters = self._metadata(plan, str(unique_id), capture, embed_runtime, cfg)
        for file, image in zip(plan.files, images, strict=True):
            pil = _to_pil(image)
            try:
                save_image(
                    pil,
                    file.path,
                    plan.fmt,
                    prompt=plan.prompt,
                    extra_pnginfo=plan.extra_pnginfo,
                    document=document,
                    parameters=parameters,
                    inline_size_limit_kb=cfg.inline_size_limit_kb,
                    quality=quality,
                    lossless=lossless,
                    metadata=with_metadata,
                )
            except Exception:  # never lose the image over its metadata
                log.exception(
                    "[runtime-metadata] saving %s with full metadata failed; saving with ComfyUI's own", file.name
                )
                save_image(
                    pil,
                    file.path,
                    plan.fmt,
                    prompt=plan.prompt,
                    extra_pnginfo=plan.extra_pnginfo,
                    quality=quality,
                    lossless=lossless,
                    metadata=with_metadata,
                )
        return {"ui": {"images": [file.ui for file in plan.files]}}

    def _metadata(
        self, plan: SavePlan, unique_id: str, capture: str, embed_runtime: bool, cfg: config.Config
    ) -> tuple[Document | None, str | None]:
        """The document and the A1111 string the plan asks for; None for what could not be built."""
        if plan.document_prompt is None:
            return None, None
        try:
            document = build_save_document(plan.document_prompt, unique_id, capture, self._next_call(unique_id))
            # The run's log holds no credential (capture redacts them): this changes
            # nothing there, and keeps a value pasted elsewhere out of a parsed document.
            document = redact_json(document, plan.secrets)
            _report_disagreements(document.ai_info.disagreements, cfg)
            if not embed_runtime:
                document = msgspec.structs.replace(document, runtime=None)
        except Exception:  # the image is always saved
            log.exception("[runtime-metadata] could not build the metadata document; saving without it")
            return None, None
        try:  # an unreadable model file costs the A1111 string, not the document
            parameters = a1111_parameters(infotext_generation(document.ai_info.generation, cfg.enable_hash_cache))
        except Exception:  # the image is always saved
            log.exception("[runtime-metadata] could not build the A1111 parameters; saving without them")
            parameters = None
        return document, parameters


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
    OPS = INT_MATH_OPS

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        big = 0xFFFFFFFFFFFFFFFF
        return {
            "required": {
                "a": ("INT", {"default": 0, "min": -big, "max": big}),
                "b": ("INT", {"default": 0, "min": -big, "max": big}),
                "op": (list(cls.OPS), {"default": "add"}),
            }
        }

    def compute(self, a: int, b: int, op: str) -> tuple[int]:
        # The one definition, which the static parser also uses to compute this node's output.
        return (int_math(a, b, op),)


class _AnyType(str):
    """ComfyUI's usual wildcard type: compares equal to every socket type."""

    def __ne__(self, other: object) -> bool:
        return False


ANY = _AnyType("*")


class SwitchRuntimeMetadata:
    """Passes ``on_1`` or ``on_2`` on, by ``select``: which branch ran is decided at run time.

    On ComfyUI versions with lazy inputs only the selected branch is executed; older ones run
    both and pass the selected one on.
    """

    CATEGORY = "utils/runtime metadata"
    RETURN_TYPES = (ANY,)
    RETURN_NAMES = ("value",)
    FUNCTION = "switch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "select": ("INT", {"default": 1, "min": 1, "max": 2}),
                "on_1": (ANY, {"lazy": True}),
                "on_2": (ANY, {"lazy": True}),
            }
        }

    def check_lazy_status(self, select: int, on_1: Any = None, on_2: Any = None) -> list[str]:
        """Ask ComfyUI (lazy-input versions) to compute only the selected input."""
        wanted = "on_1" if select == 1 else "on_2"
        return [wanted] if (on_1 if select == 1 else on_2) is None else []

    def switch(self, select: int, on_1: Any = None, on_2: Any = None) -> tuple[Any]:
        return (on_1 if select == 1 else on_2,)


NODE_CLASS_MAPPINGS = {
    SAVE_NODE: SaveImageRuntimeMetadata,
    INT_MATH_NODE: IntMathRuntimeMetadata,
    SWITCH_NODE: SwitchRuntimeMetadata,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    SAVE_NODE: "Save Image (Runtime Metadata)",
    INT_MATH_NODE: "Int Math (Runtime Metadata)",
    SWITCH_NODE: "Switch (Runtime Metadata)",
}
