"""Hook status in the Runs panel: whether capture is on, and why not when it is off."""

from __future__ import annotations

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
