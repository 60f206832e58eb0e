"""Fixtures that provision a CPU-only ComfyUI and start headless servers with the plugin loaded."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata.harness import ComfyServer, Installation, ensure_comfyui

REPO_ROOT = Path(__file__).resolve().parents[2]  # the plugin package itself

StartComfy = Callable[..., ComfyServer]


@pytest.fixture(scope="session")
def comfy_installation() -> Installation:
    """Provision (or reuse) ComfyUI once per session; honours COMFYUI_PATH/COMFYUI_PYTHON."""
    return ensure_comfyui()


@pytest.fixture(scope="session")
def start_comfy(comfy_installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartComfy]:
    """Return start(env=None, **ComfyServer kwargs) -> a started server; all stop at session end."""
    servers: list[ComfyServer] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> ComfyServer:
        # A pytest-managed workdir keeps the server log and outputs around after failures.
        kwargs.setdefault("workdir", tmp_path_factory.mktemp("comfy"))
        server = ComfyServer(comfy_installation, plugin_dir=REPO_ROOT, env=env, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
