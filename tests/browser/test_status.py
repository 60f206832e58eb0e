"""Hook status in the Runs panel: whether capture is on, and why not when it is off."""

from __future__ import annotations

import json
from typing import Any


def test_the_panel_shows_capture_on_and_the_executor_it_wrapped(comfy_server, open_page) -> None:
    page = open_page(comfy_server(enabled=True))
    panel = page.open_runs_panel()
    state = panel.locator("[data-rtm=capture-state]")
    state.wait_for()
    assert state.inner_text() == "Capture: ON"
    expected = "executor 2024 (recursive_execute)" if page.generation == "march2024" else "executor 2025+"
    assert expected in panel.locator("[data-rtm=status]").inner_text()
    assert page.console.ours() == [], page.console.ours()


def test_with_capture_off_the_status_says_why(comfy_server, open_page) -> None:
    page = open_page(comfy_server(enabled=False))
    panel = page.open_runs_panel()
    panel.locator("[data-rtm=capture-state]").wait_for()
    assert panel.locator("[data-rtm=capture-state]").inner_text() == "Capture: OFF"
    why = panel.locator("[data-rtm=capture-why]").inner_text()
    assert "runtime_hooks.enabled is false" in why, why
    assert not panel.locator("[data-rtm=capture-toggle]").is_checked()
    assert page.console.ours() == [], page.console.ours()


def test_the_panel_kind_follows_what_the_frontend_offers(comfy_server, open_page) -> None:
    page = open_page(comfy_server(enabled=True))
    kind = page.evaluate("window.runtimeMetadata.panelKind")
    offers_sidebar: Any = page.evaluate("typeof window.app.extensionManager?.registerSidebarTab === 'function'")
    assert kind == ("sidebar" if offers_sidebar else "floating")
    assert kind == ("sidebar" if page.generation == "modern" else "floating")


def test_the_toggle_writes_config_json_keeping_the_other_keys(comfy_server, open_page) -> None:
    server = comfy_server(enabled=False, name="toggle")  # its own: it changes the configuration
    before = json.loads(server.config_path.read_text())
    page = open_page(server)
    panel = page.open_runs_panel()
    toggle = panel.locator("[data-rtm=capture-toggle]")
    toggle.wait_for()
    toggle.check()
    panel.locator("[data-rtm=capture-state]", has_text="enabled").or_(
        panel.locator("[data-rtm=capture-state]", has_text="ON")
    ).wait_for()
    after = json.loads(server.config_path.read_text())
    assert after["runtime_hooks"]["enabled"] is True
    del after["runtime_hooks"]["enabled"], before["runtime_hooks"]["enabled"]
    assert after == before
    panel.locator("[data-rtm=capture-toggle]").uncheck()
    panel.locator("[data-rtm=capture-state]", has_text="OFF").wait_for()
    assert json.loads(server.config_path.read_text())["runtime_hooks"]["enabled"] is False
    assert page.console.ours() == [], page.console.ours()
