"""The extension's pure modules, run in the browser as ComfyUI serves them.

These pin the rules the canvas tests rely on (duration formatting, the roll-up of subgraph and
expanded nodes to the node a user sees) with exact values, on inputs shaped like the routes'.
"""

from __future__ import annotations

from typing import Any

import pytest

LIB = "/extensions/runtime_metadata/lib/"


@pytest.fixture(scope="module")
def page(browser, comfy_server) -> Any:
    """A ComfyUI page (March-2024 server; the modules are the same files on both)."""
    server = comfy_server(enabled=True)
    context = browser.new_context()
    p = context.new_page()
    p.goto(server.url + LIB + "format.js")  # any same-origin page will do for imports
    yield p
    context.close()


def run(page: Any, module: str, body: str, arg: Any = None) -> Any:
    return page.evaluate(f"async (arg) => {{ const m = await import('{LIB}{module}'); {body} }}", arg)


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0.0412, "0.04 ms"),
        (4.2, "4.20 ms"),
        (12.34, "12.3 ms"),
        (153.4, "153 ms"),
        (999.4, "999 ms"),
        (1234.5, "1.23 s"),
        (12_345, "12.3 s"),
        (125_000, "2m 05s"),
        (None, ""),
    ],
)
def test_durations_read_in_ms_or_s(page, ms, text) -> None:
    assert run(page, "format.js", "return m.formatMs(arg);", ms) == text


NODES = [
    # root nodes
    {"node_id": "1", "display_id": "1", "class_type": "A", "status": "executed", "duration_ms": 2.0},
    {"node_id": "2", "display_id": "2", "class_type": "B", "status": "cached", "duration_ms": None},
    # node 5 expanded into two nodes that carry its display id
    {"node_id": "5.0.0.1", "display_id": "5", "class_type": "C", "status": "executed", "duration_ms": 1.5},
    {"node_id": "5.0.0.2", "display_id": "5", "class_type": "D", "status": "executed", "duration_ms": 0.5},
    # subgraph node 9 holding 3 and a nested subgraph 4 holding 7
    {"node_id": "9:3", "display_id": "9:3", "class_type": "E", "status": "executed", "duration_ms": 10.0},
    {"node_id": "9:4:7", "display_id": "9:4:7", "class_type": "F", "status": "failed", "duration_ms": 3.0},
    {"node_id": "9:8", "display_id": "9:8", "class_type": "G", "status": "cached", "last_duration_ms": 4.0},
]


def test_root_level_rolls_subgraph_and_expanded_nodes_up(page) -> None:
    got = run(
        page,
        "rollup.js",
        "return Object.fromEntries([...m.rollUp(arg, [])].map(([k, v]) => [k, [v.status, v.ms, v.lastMs, v.entries]]));",
        NODES,
    )
    assert got == {
        "1": ["executed", 2.0, None, 1],
        "2": ["cached", 0, None, 1],  # cached, and no last duration known
        "5": ["executed", 2.0, None, 2],
        "9": ["failed", 13.0, None, 3],  # a failure inside the subgraph marks the subgraph node
    }


def test_inside_a_subgraph_each_inner_node_has_its_own_badge(page) -> None:
    got = run(
        page,
        "rollup.js",
        "return Object.fromEntries([...m.rollUp(arg, ['9'])].map(([k, v]) => [k, [v.status, v.ms, v.lastMs]]));",
        NODES,
    )
    assert got == {"3": ["executed", 10.0, None], "4": ["failed", 3.0, None], "8": ["cached", 0, 4.0]}


def test_badge_texts(page) -> None:
    got = run(
        page,
        "badges.js",
        """const layer = new m.BadgeLayer((node) => node.node_id === '2' ? 7.25 : null);
           layer.setRun({prompt_id: 'p', nodes: arg});
           const out = {};
           for (const [id, b] of layer.level([])) out[id] = b.text;
           for (const [id, b] of layer.level(['9'])) out['9:' + id] = b.text;
           return out;""",
        NODES,
    )
    assert got == {
        "1": "2.00 ms",
        "2": "cached 7.25 ms",  # the last executed duration the page remembers, greyed when drawn
        "5": "2.00 ms",
        "9": "failed 13.0 ms",
        "9:3": "10.0 ms",
        "9:4": "failed 3.00 ms",
        "9:8": "cached 4.00 ms",
    }
