"""Provision a CPU-only ComfyUI and drive a headless server with the plugin loaded (stdlib only)."""

from __future__ import annotations

from .models import Models, ensure_models
from .provision import (
    LABEL,
    PLUGIN_RUNTIME_DEPS,
    Installation,
    ProvisionError,
    default_cache_dir,
    ensure_comfyui,
)
from .server import (
    ComfyServer,
    ComfyServerError,
    ComfyStartupError,
    PromptRejected,
    PromptTimeout,
    free_port,
)

__all__ = [
    "LABEL",
    "PLUGIN_RUNTIME_DEPS",
    "ComfyServer",
    "ComfyServerError",
    "ComfyStartupError",
    "Installation",
    "Models",
    "PromptRejected",
    "PromptTimeout",
    "ProvisionError",
    "default_cache_dir",
    "ensure_comfyui",
    "ensure_models",
    "free_port",
]
