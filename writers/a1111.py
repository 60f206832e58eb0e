"""The A1111 ``parameters`` string (infotext) that galleries, Civitai and prompt readers parse.

Layout, as AUTOMATIC1111's webui writes it and Civitai parses it::

    <positive>
    Negative prompt: <negative>
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, ...

The settings line is last and starts with ``Steps: `` (Civitai requires that). The
``Negative prompt:`` line is always written, even when empty: sd-prompt-reader and ComfyUI's
frontend look for ``\\nNegative prompt:``. Values that contain ``,``, ``:`` or a newline are
written as JSON strings so naive ``split(",")`` parsers keep the other keys intact; the keys
every reader needs (Steps .. Model) come before the JSON-valued ``Lora hashes``/``Hashes`` for
the same reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

#: ComfyUI sampler name -> the spelling A1111 and Civitai use. Unknown names pass through.
SAMPLERS: dict[str, str] = {
    "euler": "Euler",
    "euler_cfg_pp": "Euler CFG++",
    "euler_ancestral": "Euler a",
    "euler_ancestral_cfg_pp": "Euler a CFG++",
    "heun": "Heun",
    "heunpp2": "Heun++ 2",
    "dpm_2": "DPM2",
    "dpm_2_ancestral": "DPM2 a",
    "lms": "LMS",
    "dpm_fast": "DPM fast",
    "dpm_adaptive": "DPM adaptive",
    "dpmpp_2s_ancestral": "DPM++ 2S a",
    "dpmpp_2s_ancestral_cfg_pp": "DPM++ 2S a CFG++",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_gpu": "DPM++ SDE",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_cfg_pp": "DPM++ 2M CFG++",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_gpu": "DPM++ 2M SDE",
    "dpmpp_3m_sde": "DPM++ 3M SDE",
    "dpmpp_3m_sde_gpu": "DPM++ 3M SDE",
    "ddpm": "DDPM",
    "lcm": "LCM",
    "ipndm": "iPNDM",
    "ipndm_v": "iPNDM v",
    "deis": "DEIS",
    "restart": "Restart",
    "ddim": "DDIM",
    "uni_pc": "UniPC",
    "uni_pc_bh2": "UniPC",
}

#: ComfyUI scheduler -> A1111 ``Schedule type``; None means "write no Schedule type", because
#: ComfyUI's ``normal`` is what A1111 calls its default (``Automatic``) for most samplers.
SCHEDULERS: dict[str, str | None] = {
    "normal": None,
    "karras": "Karras",
    "exponential": "Exponential",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "ddim_uniform": "DDIM",
    "beta": "Beta",
    "linear_quadratic": "Linear Quadratic",
    "kl_optimal": "KL Optimal",
    "polyexponential": "Polyexponential",
    "align_your_steps": "Align Your Steps",
}

#: Model file extensions A1111 does not show in ``Model:`` (it writes the file's stem).
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".sft", ".gguf")

#: What ComfyUI-made infotexts put in ``Version``.
VERSION = "ComfyUI"


def sampler_name(name: str) -> str:
    """The A1111 spelling of a ComfyUI sampler name (unknown names unchanged)."""
    return SAMPLERS.get(name, name)


def schedule_type(scheduler: str) -> str | None:
    """The A1111 ``Schedule type`` of a ComfyUI scheduler; None when none should be written."""
    if scheduler in SCHEDULERS:
        return SCHEDULERS[scheduler]
    return scheduler


def model_stem(name: str) -> str:
    """A model's display name as A1111 writes it: file name without folders or extension."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    lowered = base.lower()
    for ext in MODEL_EXTENSIONS:
        if lowered.endswith(ext):
            return base[: -len(ext)]
    return base


def quote(value: str) -> str:
    """``value`` as A1111 writes a setting: JSON-quoted when it holds ``,`` ``:`` or a newline."""
    if any(c in value for c in ",:\n\r"):
        return json.dumps(value, ensure_ascii=False)
    return value


def number(value: Any) -> str:
    """A number as A1111 prints it: ``7`` for 7.0, shortest round-trip form otherwise."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        return repr(value)
    return str(value)


def _get(mapping: Any, key: str) -> Any:
    return mapping.get(key) if isinstance(mapping, Mapping) else None


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def parameters(generation: Mapping[str, Any]) -> str | None:
    """The A1111 infotext for a canonical generation dict; None when it has no sampler info."""
    sampler = _get(generation, "sampler")
    if not isinstance(sampler, Mapping):
        return None
    if all(_get(sampler, k) is None for k in ("name", "steps", "cfg", "seed")):
        return None

    settings: list[tuple[str, str]] = []

    def add(key: str, value: str | None) -> None:
        if value is not None and value != "":
            settings.append((key, value))

    steps = _get(sampler, "steps")
    add("Steps", None if steps is None else number(steps))
    name = _get(sampler, "name")
    add("Sampler", None if name is None else quote(sampler_name(str(name))))
    scheduler = _get(sampler, "scheduler")
    if scheduler is not None:
        stype = schedule_type(str(scheduler))
        add("Schedule type", None if stype is None else quote(stype))
    cfg = _get(sampler, "cfg")
    add("CFG scale", None if cfg is None else number(cfg))
    seed = _get(sampler, "seed")
    add("Seed", None if seed is None else number(seed))
    size = _get(generation, "size")
    width, height = _get(size, "width"), _get(size, "height")
    if width is not None and height is not None:
        add("Size", f"{number(width)}x{number(height)}")

    hashes: dict[str, str] = {}
    # The checkpoint and the VAE are written alike: "<X> hash", "<X>", and a Hashes entry.
    for key, label in (("model", "Model"), ("vae", "VAE")):
        entry = _get(generation, key)
        file_hash, file_name = _get(entry, "hash"), _get(entry, "name")
        add(f"{label} hash", None if file_hash is None else quote(str(file_hash)))
        add(label, None if file_name is None else quote(model_stem(str(file_name))))
        if file_hash:
            hashes[key] = str(file_hash)

    denoise = _get(sampler, "denoise")
    if isinstance(denoise, (int, float)) and not isinstance(denoise, bool) and denoise < 1:
        add("Denoising strength", number(denoise))
    clip_skip = _get(generation, "clip_skip")
    # ComfyUI's CLIPSetLastLayer says -2 where A1111 says 2; 1 (no skip) is not written.
    if isinstance(clip_skip, int) and not isinstance(clip_skip, bool) and abs(clip_skip) > 1:
        add("Clip skip", str(abs(clip_skip)))

    lora_hashes: list[str] = []
    loras = _get(generation, "loras")
    for lora in loras if isinstance(loras, list) else []:
        lname, lhash = _get(lora, "name"), _get(lora, "hash")
        if lname is None or not lhash:
            continue
        stem = model_stem(str(lname))
        lora_hashes.append(f"{stem}: {lhash}")
        hashes[f"lora:{stem}"] = str(lhash)
    if lora_hashes:
        add("Lora hashes", json.dumps(", ".join(lora_hashes), ensure_ascii=False))
    if hashes:
        add("Hashes", json.dumps(hashes, ensure_ascii=False))
    add("Version", VERSION)

    positive = _text(_get(generation, "positive"))
    negative = _text(_get(generation, "negative"))
    line = ", ".join(f"{key}: {value}" for key, value in settings)
    return f"{positive}\nNegative prompt: {negative}\n{line}"
