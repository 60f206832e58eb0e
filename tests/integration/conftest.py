"""Fixtures that provision a CPU-only ComfyUI and start headless servers with the plugin loaded."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]  # the plugin package itself
# The harness is stdlib-only and lives at the repo root; import it as a top-level package so
# these tests work whether or not the plugin is pip-installed.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from harness import ComfyServer, Installation, ensure_comfyui  # noqa: E402

StartComfy = Callable[..., ComfyServer]


@pytest.fixture(scope="session")
def comfy_installation() -> Installation:
    """Provision (or reuse) ComfyUI once per session; honours COMFYUI_PATH/COMFYUI_PYTHON."""
    return ensure_comfyui()


@pytest.fixture(scope="session")
def start_comfy(
    comfy_installation: Installation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartComfy]:
    """Return start(env=None, **ComfyServer kwargs) -> started ComfyServer; all are stopped at session end."""
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
