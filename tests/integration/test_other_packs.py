"""Capture beside another pack that wraps the same executor functions, in both load orders.

``otherpack/`` wraps ComfyUI's executor functions when it is imported, in one of two styles
(a ``(*args, **kwargs)`` wrapper that hides ComfyUI's signature, or ``functools.wraps`` that
keeps it). Each server loads it twice around the plugin, which installs capture when it is
imported: one style below the plugin's wrappers (imported first), the other above them
(imported last). Two servers per generation cover each style in each order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata.events.schema import NodeCached, NodeFinished, NodeInputs, NodeStarted, RunFinished
from runtime_metadata.harness import ComfyServer

from .integration_helpers import document_of as read_document
from .integration_helpers import events_of, run_ok, saved_images, status, unique

OTHERPACK = Path(__file__).resolve().parent / "otherpack"

#: layout -> (the style imported before the plugin, the style imported after it)
LAYOUTS = {
    "varargs below, preserving above": ("varargs", "preserving"),
    "preserving below, varargs above": ("preserving", "varargs"),
}


def prompt_for(generation: str, value: int, prefix: str) -> dict[str, Any]:
    """A chain with a computed input; on the modern executor also expansion and a lazy switch."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "2": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": ["1", 0], "b": 1, "op": "add"}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": ["2", 0]}},
        "4": {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": ["3", 0], "filename_prefix": prefix}},
    }
    if generation == "modern":
        prompt["5"] = {"class_type": "ExpandAddTwice", "inputs": {"value": ["1", 0]}}
        prompt["6"] = {"class_type": "AsyncSleep", "inputs": {"value": ["5", 0], "seconds": 0.2}}
        prompt["2"]["inputs"]["a"] = ["7", 0]
        prompt["7"] = {
            "class_type": "SwitchRuntimeMetadata",
            "inputs": {"select": 1, "on_1": ["6", 0], "on_2": ["1", 0]},
        }
    return prompt


#: What capture records of prompt_for's run, as it does without any other pack.
STARTED = {
    "march2024": [("1", None, None), ("2", None, None), ("3", None, None), ("4", None, None)],
    "modern": [
        ("1", None, None),
        ("5", None, None),
        ("5.0.0.1", "5", "5"),
        ("5.0.0.2", "5", "5"),
        ("6", None, None),
        ("7", None, None),
        ("2", None, None),
        ("3", None, None),
        ("4", None, None),
    ],
}


def started(events: list[Any]) -> list[tuple[str, str | None, str | None]]:
    return [(e.node_id, e.display_id, e.parent_id) for e in events if isinstance(e, NodeStarted)]


def check_captured(server: ComfyServer, generation: str, prompt_id: str, value: int) -> None:
    """The run was captured exactly as without the other pack."""
    events = events_of(server, prompt_id)
    assert started(events) == STARTED[generation]
    finished = [(e.node_id, e.status) for e in events if isinstance(e, NodeFinished)]
    assert sorted(finished) == sorted((node_id, "executed") for node_id, _, _ in STARTED[generation])
    inputs = {e.node_id: e.inputs for e in events if isinstance(e, NodeInputs)}
    assert inputs["2"]["a"] == [value + 3 if generation == "modern" else value]
    if generation == "modern":
        # The expanding node ends when ComfyUI comes back to it after its subgraph, before the
        # async node that uses its result starts (without the node hook it would end with the run).
        order = [(type(e).__name__, e.node_id) for e in events if isinstance(e, (NodeStarted, NodeFinished))]
        assert order.index(("NodeFinished", "5")) < order.index(("NodeStarted", "6"))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "success"


def assumed_notes(capture: dict[str, Any]) -> list[str]:
    """The wrap points where capture says it assumed ComfyUI's argument order."""
    return sorted(note.split(":")[0] for note in capture["notes"] if "argument order" in note)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_capture_and_the_other_pack_both_work_and_switch_off_cleanly(
    start_comfy, tmp_path: Path, generation: str, layout: str
) -> None:
    below, above = LAYOUTS[layout]
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"runtime_hooks": {"enabled": True}}))
    logs = tmp_path / "rtlogs"
    server: ComfyServer = start_comfy(
        env={"AAA_METADATA_CONFIG": str(config), "AAA_METADATA_LOG_DIR": str(logs)},
        load_first={f"otherpack_{below}": OTHERPACK},
        load_last={f"otherpack_{above}": OTHERPACK},
        extra_nodes={"testpack": Path(__file__).resolve().parent / "testpack"},
    )
    per_node = "execute" if generation == "modern" else "recursive_execute"
    points = ["run", "message", "node", "call"] if generation == "modern" else ["run", "message", "call"]

    # Installed at import, between the two: every wrap point found, through the pack below.
    capture = status(server)["capture"]
    assert capture["skipped"] == [] and capture["active"] is True
    assert [item.split(":")[0] for item in capture["installed"]] == points
    assert assumed_notes(capture) == (sorted(points) if below == "varargs" else [])

    value = unique()
    prompt_id, entry = run_ok(server, prompt_for(generation, value, "wrapped"))
    check_captured(server, generation, prompt_id, value)
    (image,) = saved_images(server, entry)
    assert read_document(image)["provenance"]["capture_mode"] == "parser+runtime"
    calls = {style: server.get_json(f"/otherpack/{style}/calls") for style in (below, above)}
    assert calls[below] == calls[above]  # every call went through both of the pack's wrappers
    nodes = len(STARTED[generation])
    assert calls[below]["PromptExecutor.execute"] == 1 and calls[below]["get_output_data"] == nodes
    assert calls[below][per_node] >= nodes

    # Served from ComfyUI's cache: the other pack's wrappers see the rerun, capture the cached nodes.
    again_id, _ = run_ok(server, prompt_for(generation, value, "wrapped-again"))
    events = events_of(server, again_id)
    cached = sorted(e.node_id for e in events if isinstance(e, NodeCached))
    assert cached == sorted(n for n, _, parent in STARTED[generation] if parent is None and n != "4")
    assert started(events) == [("4", None, None)]

    # Switched off: capture steps aside (restored, or pass-through under the pack above it);
    # the other pack keeps working.
    config.write_text(json.dumps({"runtime_hooks": {"enabled": False}}))
    off_id, _ = run_ok(server, prompt_for(generation, unique(), "wrapped-off"))
    assert not (logs / f"{off_id}.rtlog").exists()
    assert status(server)["capture"]["installed"] == []
    count = server.get_json(f"/otherpack/{above}/calls")["PromptExecutor.execute"]
    off_again_id, _ = run_ok(server, prompt_for(generation, unique(), "wrapped-off-again"))
    assert not (logs / f"{off_again_id}.rtlog").exists()
    assert server.get_json(f"/otherpack/{above}/calls")["PromptExecutor.execute"] == count + 1
    assert server.get_json(f"/otherpack/{below}/calls")["PromptExecutor.execute"] == count + 1

    # Switched on again: installed anew, now above both of the pack's wrappers, so behind the
    # (*args, **kwargs) one whichever order they came in (functools.wraps leads to it).
    config.write_text(json.dumps({"runtime_hooks": {"enabled": True}}))
    value = unique()
    on_id, _ = run_ok(server, prompt_for(generation, value, "wrapped-on"))
    check_captured(server, generation, on_id, value)
    capture = status(server)["capture"]
    assert capture["skipped"] == [] and capture["active"] is True
    assert assumed_notes(capture) == sorted(points)
    server.stop()  # now rather than at the end of the module
