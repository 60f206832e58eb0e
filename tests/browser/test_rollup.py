"""Badges of nodes the user does not see one by one roll up to the node the user sees.

On the March-2024 frontend: a group node (its inner nodes run as "<group id>:<index>"). On the
Vue frontend: a subgraph (its nodes run as "<subgraph node id>:<inner id>") and a node that
expands into other nodes at run time (they carry its display id).
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import assert_shows, demo_workflow, unique_int


@pytest.fixture(scope="module")
def server(comfy_server) -> Any:
    return comfy_server(enabled=True)


def screen_point(page: Any, node_id: Any, dy: float = -15) -> tuple[float, float]:
    """Where a node's title bar is on the page (dy from the top of its body)."""
    return tuple(
        page.evaluate(
            """([id, dy]) => {
                 const c = window.app.canvas, n = window.app.graph.getNodeById(id);
                 const r = c.canvas.getBoundingClientRect(), s = c.ds.scale;
                 return [r.left + (n.pos[0] + 40 + c.ds.offset[0]) * s, r.top + (n.pos[1] + dy + c.ds.offset[1]) * s];
               }""",
            [node_id, dy],
        )
    )


def test_a_group_nodes_badge_is_the_sum_of_its_inner_nodes(server, open_page) -> None:
    page = open_page(server)
    if page.generation != "march2024":
        pytest.skip("group nodes are the March-2024 frontend's way of nesting nodes (see the subgraph test)")
    page.load_workflow(demo_workflow())
    page.evaluate("window.app.canvas.selectNodes([3, 4].map((id) => window.app.graph.getNodeById(id)))")
    x, y = screen_point(page, 3)
    page.page.once("dialog", lambda dialog: dialog.accept("timed pair"))
    page.page.mouse.click(x, y, button="right")
    page.page.locator(".litemenu-entry", has_text="Convert to Group Node").click()
    group = page.evaluate("window.app.graph._nodes.find((n) => n.type === 'workflow/timed pair')?.id ?? null")
    assert group is not None, "the group node was not created"
    # Freshly converted, the inner nodes run under their own ids; reloaded, under "<group>:<i>".
    for reload in (False, True):
        if reload:
            page.evaluate("async () => { await window.app.loadGraphData(window.app.graph.serialize()); }")
            page.set_widget(1, "a", unique_int())  # nothing cached
        inner_ids = page.evaluate(
            "(id) => window.app.graph.getNodeById(id).getInnerNodes().map((n) => String(n.id))", group
        )
        assert inner_ids == ([f"{group}:0", f"{group}:1"] if reload else ["3", "4"])
        prompt_id = page.run_workflow()
        run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
        inner = [n for n in run["nodes"] if (n["display_id"] or n["node_id"]) in inner_ids]
        assert len(inner) == 2 and all(n["status"] == "executed" for n in inner), run["nodes"]
        badges = page.badges()
        # One badge per node on the canvas that ran something: 3 and 4 show on the group node.
        # (Converting drops the demo graph's links into 3, so 1 and 2 may not run at all.)
        shown = {str(group) if (n["display_id"] or n["node_id"]) in inner_ids else n["node_id"] for n in run["nodes"]}
        assert sorted(badges) == sorted(shown)
        assert_shows(badges[str(group)], "", sum(n["duration_ms"] for n in inner))
        assert page.redraw() == len(shown)
    page.screenshot("badges-group-node")
    assert page.console.ours() == [], page.console.ours()
