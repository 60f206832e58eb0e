"""A fault inside the extension never breaks ComfyUI's page: reported once, the UI carries on."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import demo_workflow, unique_int


@pytest.fixture
def page(comfy_server, open_page) -> Any:
    p = open_page(comfy_server(enabled=True))
    p.load_workflow(demo_workflow())
    return p


def warnings_of_ours(page: Any) -> list[str]:
    return [text for kind, text, _ in page.console.messages if kind == "warning" and "[runtime-metadata]" in text]


def test_a_throwing_draw_switches_the_badges_off_and_the_canvas_keeps_drawing(page) -> None:
    page.run_workflow()
    assert page.redraw() == 5
    page.evaluate("() => { window.runtimeMetadata.layer.draw = () => { throw new Error('injected draw fault'); }; }")
    for _ in range(3):  # LiteGraph's own frames go on; the fault is reported once
        page.evaluate("window.app.canvas.draw(true, true)")
    assert page.evaluate("window.runtimeMetadata.drawing") is False
    ours = warnings_of_ours(page)
    assert len(ours) == 1 and "drawing the badges" in ours[0], ours
    assert not page.console.page_errors or all("injected" not in e for e in page.console.page_errors)
    # ComfyUI still works: another run is queued, runs, and its end arrives.
    page.set_widget(1, "a", unique_int())
    page.run_workflow()


def test_a_malformed_end_of_run_message_changes_nothing(page) -> None:
    prompt_id = page.run_workflow()
    before = page.badges()
    page.evaluate(
        """async () => {
             const { api } = await import('/scripts/api.js');
             for (const detail of [null, {}, { nodes: 'x' }, { prompt_id: 'other', nodes: [null, 7, 'x'] }]) {
               api.dispatchEvent(new CustomEvent('runtime_metadata.run', { detail }));
             }
           }"""
    )
    assert page.evaluate("window.runtimeMetadata.layer.run.prompt_id") == prompt_id
    assert page.badges() == before
    assert page.redraw() == 5
    assert page.console.ours() == [], page.console.ours()
