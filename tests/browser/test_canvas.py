"""Node badges on the canvas after runs queued through ComfyUI's own UI, on a real server.

Every number is checked against what the run recorded, as the plugin's run route serves it.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import DEMO_NODES, assert_shows, badge_value, demo_workflow, unique_int


@pytest.fixture(scope="module")
def server(comfy_server) -> Any:
    return comfy_server(enabled=True)


@pytest.fixture
def page(server, open_page) -> Any:
    p = open_page(server)
    p.load_workflow(demo_workflow())
    return p


def recorded(server: Any, prompt_id: str) -> dict[str, dict[str, Any]]:
    run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
    return {n["display_id"] or n["node_id"]: n for n in run["nodes"]}


def test_a_run_queued_in_the_ui_gives_badges_equal_to_its_recorded_durations(server, page) -> None:
    prompt_id = page.run_workflow()
    nodes = recorded(server, prompt_id)
    assert sorted(nodes) == DEMO_NODES
    badges = page.badges()
    assert sorted(badges) == DEMO_NODES
    for node_id, node in nodes.items():
        assert node["status"] == "executed"
        assert_shows(badges[node_id], "", node["duration_ms"])
    assert page.redraw() == len(DEMO_NODES)  # every badge is drawn, not just computed
    page.screenshot("badges")
    assert page.console.ours() == [], page.console.ours()


def test_a_rerun_marks_cached_nodes_with_their_last_duration_and_clears_badges_first(server, page) -> None:
    first_id = page.run_workflow()
    first = recorded(server, first_id)
    assert len(page.badges()) == len(DEMO_NODES)
    # Record, at the moment each run starts, whether the previous run's badges were cleared
    # (this listener runs after the extension's own).
    page.evaluate(
        """async () => {
             const { api } = await import('/scripts/api.js');
             window.__cleared = [];
             api.addEventListener('execution_start',
               () => window.__cleared.push(Object.keys(window.runtimeMetadata.badges()).length));
           }"""
    )
    second_id = page.run_workflow()
    assert page.evaluate("window.__cleared") == [0]
    second = recorded(server, second_id)
    badges = page.badges()
    cached = [n for n, node in second.items() if node["status"] == "cached"]
    assert cached, f"nothing was cached on an identical rerun: {second}"
    for node_id in cached:
        assert_shows(badges[node_id], "cached", first[node_id]["duration_ms"])
    for node_id, node in second.items():
        if node["status"] == "executed":
            assert_shows(badges[node_id], "", node["duration_ms"])
    page.redraw()
    page.screenshot("badges-cached")
    assert page.console.ours() == [], page.console.ours()


def test_a_failed_node_is_marked_failed(server, page) -> None:
    page.set_widget(1, "a", -16)  # width -64: EmptyImage (node 3) fails at run time
    prompt_id = page.run_workflow()
    nodes = recorded(server, prompt_id)
    assert nodes["3"]["status"] == "failed"
    badges = page.badges()
    assert badge_value(badges["3"])[0] == "failed"
    assert "4" not in badges and "5" not in badges  # never ran: no badge
    assert page.console.ours() == [], page.console.ours()


def test_the_setting_turns_the_badges_off_and_on(server, page) -> None:
    page.run_workflow()
    assert page.redraw() == len(DEMO_NODES)
    page.switch_badges_in_settings(False)
    assert page.redraw() == 0
    page.screenshot("badges-off")
    page.switch_badges_in_settings(True)
    assert page.redraw() == len(DEMO_NODES)
    assert page.console.ours() == [], page.console.ours()


def test_two_runs_queued_together_leave_the_second_ones_badges(server, page) -> None:
    """The plugin holds end-of-run messages back while more prompts run: the first run's may come
    after the second started; it must not bring back the first run's badges."""
    page.evaluate(
        """async () => {
             const { api } = await import('/scripts/api.js');
             window.__seen = [];
             api.addEventListener('execution_start', (e) => window.__seen.push(['start', e.detail.prompt_id]));
             api.addEventListener('runtime_metadata.run',
               (e) => window.__seen.push(['push', e.detail.prompt_id, window.runtimeMetadata.layer.run?.prompt_id ?? null]));
           }"""
    )
    page.queue()
    page.set_widget(1, "a", unique_int())  # the second prompt differs: nothing cached
    page.queue()
    page.page.wait_for_function("window.__seen.filter((s) => s[0] === 'push').length >= 2", timeout=120_000)
    seen = page.evaluate("window.__seen")
    first, second = [s[1] for s in seen if s[0] == "start"][:2]
    # Whenever a message arrived, the badges showed the newest started run or none at all.
    for i, item in enumerate(seen):
        if item[0] == "push":
            newest = [s[1] for s in seen[:i] if s[0] == "start"][-1]
            assert item[2] in (None, newest), seen
    assert page.evaluate("window.runtimeMetadata.layer.run?.prompt_id") == second
    nodes = recorded(server, second)
    for node_id, node in nodes.items():
        assert_shows(page.badges()[node_id], "", node["duration_ms"])
    assert first != second
    assert page.console.ours() == [], page.console.ours()
