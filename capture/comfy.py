"""The few ComfyUI facilities the save node needs, behind functions that never assume.

This module is the only place that imports ComfyUI's modules (the hooks are handed the
``execution`` module it finds, and never import one). Every accessor degrades gracefully when
run outside ComfyUI (tests, the CLI) or on a ComfyUI that lacks something.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from typing import Any


def _module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception:  # absent or broken: the caller falls back
        return None


def execution_module() -> Any:
    """ComfyUI's ``execution`` module, if this process is a ComfyUI."""
    return sys.modules.get("execution") or _module("execution")


@functools.lru_cache(maxsize=1)
def comfyui_version() -> str:
    """ComfyUI's version string, or a description when it has none (pre-2025 releases).

    Looked up once per process (a failed import costs ~30 µs, and every run records it).
    """
    mod = _module("comfyui_version")
    version = getattr(mod, "__version__", None)
    if version:
        return str(version)
    return "unversioned (before comfyui_version.py)"


def metadata_disabled() -> bool:
    """True when ComfyUI was started with ``--disable-metadata``."""
    cli = _module("comfy.cli_args")
    args = getattr(cli, "args", None)
    return bool(getattr(args, "disable_metadata", False))


def save_image_path(prefix: str, width: int, height: int) -> tuple[str, str, int, str, str]:
    """(full_output_folder, filename, counter, subfolder, filename_prefix) as SaveImage uses."""
    fp = _module("folder_paths")
    if fp is None:
        raise RuntimeError("folder_paths is not importable: not running inside ComfyUI")
    return fp.get_save_image_path(prefix, fp.get_output_directory(), width, height)


def environment() -> dict[str, str]:
    """Versions of what made the image: ComfyUI, Python, torch."""
    torch = sys.modules.get("torch")
    return {
        "comfyui": comfyui_version(),
        "python": sys.version.split()[0],
        "torch": str(getattr(torch, "__version__", "not loaded")),
    }


@functools.lru_cache(maxsize=1)
def default_worker_id() -> str:
    """hostname:port of this ComfyUI (its ``--port``), the worker id when none is configured."""
    import socket

    args = getattr(_module("comfy.cli_args"), "args", None)
    port = getattr(args, "port", None)
    return f"{socket.gethostname()}:{port if isinstance(port, int) else 8188}"


def folder_of(kind: str) -> str | None:
    """ComfyUI's folder for an output type (``output``, ``temp``, ``input``), if it says."""
    fp = sys.modules.get("folder_paths")
    try:
        folder = fp.get_directory_by_type(kind) if fp is not None else None
    except Exception:  # an odd type: the image is recorded without its path
        return None
    return str(folder) if folder else None


def user_directory() -> str | None:
    """ComfyUI's user directory (``--user-directory`` where ComfyUI has it), if it has one."""
    fp = sys.modules.get("folder_paths")
    get = getattr(fp, "get_user_directory", None)
    try:
        folder = get() if callable(get) else getattr(fp, "user_directory", None)
    except Exception:
        return None
    return str(folder) if isinstance(folder, str) and folder else None


def model_file(kind: str, name: str) -> str | None:
    """The full path of a model file ComfyUI knows (``kind``: checkpoints, loras, vae...)."""
    fp = _module("folder_paths")
    try:
        path = fp.get_full_path(kind, name) if fp is not None else None
    except Exception:  # unknown kind or odd name: no hash, not an error
        return None
    return str(path) if path else None


def input_types(class_type: str) -> dict[str, Any] | None:
    """A node class's ``INPUT_TYPES()`` as ComfyUI knows it; None when unknown or broken."""
    mappings = getattr(sys.modules.get("nodes"), "NODE_CLASS_MAPPINGS", None)
    cls = mappings.get(class_type) if isinstance(mappings, dict) else None
    get = getattr(cls, "INPUT_TYPES", None)
    if not callable(get):
        return None
    try:
        found = get()
    except Exception:  # a node pack's definition may raise: the caller falls back
        return None
    return found if isinstance(found, dict) else None


def list_index() -> int | None:
    """Modern ComfyUI: which item of a batch list the executing node function is handling."""
    utils = sys.modules.get("comfy_execution.utils")
    get = getattr(utils, "get_executing_context", None)
    ctx = get() if callable(get) else None
    index = getattr(ctx, "list_index", None)
    return index if isinstance(index, int) else None


def register_prompt_handler(handler: Any) -> bool:
    """Call ``handler()`` whenever a prompt is submitted (before it is queued); False if impossible.

    ComfyUI's on-prompt handlers must return the prompt JSON they were given; this wrapper
    does, whatever ``handler`` does, so a fault in it never changes a submission.
    """
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    add = getattr(instance, "add_on_prompt_handler", None)
    if not callable(add):
        return False

    def on_prompt(json_data: Any) -> Any:
        with contextlib.suppress(Exception):  # never in the way of a submission
            handler()
        return json_data

    add(on_prompt)
    return True
