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


def test_a_subgraphs_badge_sums_its_nodes_and_inside_each_node_has_its_own(server, open_page) -> None:
    page = open_page(server)
    if page.generation != "modern":
        pytest.skip("subgraphs arrived with the Vue frontend (see the group node test)")
    page.load_workflow(demo_workflow())
    sub = page.evaluate(
        """async () => {
             const c = window.app.canvas, g = window.app.graph;
             c.selectItems([g.getNodeById(3), g.getNodeById(4)]);
             await window.app.extensionManager.command.execute('Comfy.Graph.ConvertToSubgraph');
             return window.app.graph._nodes.find((n) => n.subgraph)?.id ?? null;
           }"""
    )
    assert sub is not None, "no subgraph node after Convert to Subgraph"
    prompt_id = page.run_workflow()
    run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
    inner = {
        str(n["display_id"] or n["node_id"]).split(":", 1)[1]: n
        for n in run["nodes"]
        if str(n["display_id"] or n["node_id"]).startswith(f"{sub}:")
    }
    assert sorted(inner) == ["3", "4"], run["nodes"]
    badges = page.badges()
    assert sorted(badges) == sorted(["1", "2", str(sub), "5"])
    assert_shows(badges[str(sub)], "", sum(n["duration_ms"] for n in inner.values()))
    assert page.redraw() == 4
    page.screenshot("badges-subgraph")

    # Inside the subgraph, as a user who opens it sees it.
    page.evaluate("(id) => window.app.canvas.openSubgraph(window.app.graph.getNodeById(id).subgraph)", sub)
    inside = page.badges([str(sub)])
    assert sorted(inside) == ["3", "4"]
    for node_id, node in inner.items():
        assert_shows(inside[node_id], "", node["duration_ms"])
    assert page.redraw() == 2
    page.screenshot("badges-inside-subgraph")

    # A row of the panel for a node inside selects it there; from the root graph, the subgraph node.
    panel = page.open_runs_panel()
    panel.locator(f"[data-rtm=run-detail][data-prompt-id='{prompt_id}']").wait_for()
    panel.locator(f"[data-rtm=wf-row][data-display-id='{sub}:4']").click()
    assert page.evaluate("Object.keys(window.app.canvas.selected_nodes ?? {})") == ["4"]
    assert page.evaluate("window.app.canvas.graph !== window.app.graph")
    panel.locator("[data-rtm=wf-row][data-node-id='5']").click()  # a root node: back to the root graph
    assert page.evaluate("window.app.canvas.graph === window.app.graph")
    panel.locator(f"[data-rtm=wf-row][data-display-id='{sub}:3']").click()
    assert page.evaluate("Object.keys(window.app.canvas.selected_nodes ?? {})") == [str(sub)]
    assert page.console.ours() == [], page.console.ours()


def test_an_expanded_nodes_badge_includes_the_nodes_it_expanded_into(server, open_page) -> None:
    page = open_page(server)
    if page.generation != "modern":
        pytest.skip("node expansion arrived with ComfyUI 2025's executor")
    page.load_workflow(demo_workflow())
    expander = page.evaluate(
        """(a) => {
             const g = window.app.graph, LG = window.LiteGraph;
             const e = LG.createNode("ExpandToIntMath");
             e.pos = [40, 420];
             g.add(e);
             e.widgets.find((w) => w.name === "a").value = a;
             const n2 = g.getNodeById(2);
             e.connect(0, n2, n2.inputs.findIndex((i) => i.name === "b"));
             return e.id;
           }""",
        unique_int(),
    )
    prompt_id = page.run_workflow()
    run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
    placed = [n for n in run["nodes"] if str(n["display_id"] or n["node_id"]) == str(expander)]
    assert len(placed) == 3, run["nodes"]  # the node itself and the two it expanded into
    assert {n["parent_id"] for n in placed if n["node_id"] != str(expander)} == {str(expander)}
    total = sum(n["duration_ms"] for n in placed)
    assert_shows(page.badges()[str(expander)], "", total)
    page.screenshot("badges-expanded")
    # Run again unchanged: the expanding node is served from the cache; its badge greys the
    # time it took with its expansion.
    page.run_workflow()
    assert_shows(page.badges()[str(expander)], "cached", total)
    assert page.console.ours() == [], page.console.ours()
