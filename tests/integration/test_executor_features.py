"""What the 2025 executor does that the March-2024 one cannot, captured on a real ComfyUI 0.3.64.

Lazy inputs (an input evaluated only when a node asks for it), async nodes (``async def``
functions run as asyncio tasks), node expansion (a node that returns a subgraph, whose nodes get
ephemeral ids), V3 nodes (``comfy_api.latest``) and the ids of subgraphs made in the Vue
frontend. Where the March-2024 ComfyUI does something testable instead (lazy inputs: it runs
every branch), the test runs on both and says what each does.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime_metadata.events.schema import NodeCached, NodeFinished, NodeInputs, NodeStarted
from runtime_metadata.harness import ComfyServer

from .integration_helpers import document_of, events_of, run_ok, runtime_nodes, saved_images, unique


def save(images: list[Any], prefix: str) -> dict[str, Any]:
    return {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": images, "filename_prefix": prefix}}


def image_of(color: list[Any]) -> dict[str, Any]:
    return {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color}}


def of(events: list[Any], kind: type, node_id: str | None = None) -> list[Any]:
    return [e for e in events if isinstance(e, kind) and (node_id is None or e.node_id == node_id)]


def test_a_lazy_switch_runs_and_records_only_the_branch_it_selects(comfy: ComfyServer, generation: str) -> None:
    """Modern: the unselected branch never runs, and nothing says it did. March 2024: both run."""
    base = unique()
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": base, "b": 1, "op": "add"}},
        "2": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": base, "b": 2, "op": "add"}},
        "3": {"class_type": "SwitchRuntimeMetadata", "inputs": {"select": 2, "on_1": ["1", 0], "on_2": ["2", 0]}},
        "4": image_of(["3", 0]),
        "5": save(["4", 0], "lazy"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    (image,) = saved_images(comfy, entry)
    nodes = runtime_nodes(image)
    events = events_of(comfy, prompt_id)
    assert nodes["4"]["inputs"]["color"] == base + 2
    assert nodes["3"]["inputs"]["on_2"] == base + 2 and nodes["3"]["inputs"]["select"] == 2
    if generation == "modern":
        assert list(nodes) == ["2", "3", "4"]
        assert of(events, NodeStarted, "1") == [] and of(events, NodeCached, "1") == []
        assert of(events, NodeInputs, "1") == [] and of(events, NodeFinished, "1") == []
        # ComfyUI called the switch with the branch it did not evaluate as "nothing".
        assert nodes["3"]["inputs"]["on_1"] is None
        # ... and entered the switch twice (it asked for on_2 first), but it ran once.
        assert len(of(events, NodeStarted, "3")) == len(of(events, NodeFinished, "3")) == 1
    else:
        assert list(nodes) == ["1", "2", "3", "4"]
        assert nodes["1"]["status"] == "executed" and nodes["3"]["inputs"]["on_1"] == base + 1


@pytest.mark.generations("modern")
def test_async_nodes_last_as_long_as_their_tasks_ran(comfy: ComfyServer) -> None:
    """Two async nodes sleep 0.6 s at once: get_output_data hands back tasks at once, yet each
    node is recorded for as long as its task ran, and the two overlap."""
    seconds = 0.6
    a, b = unique(), unique()
    prompt = {
        "1": {"class_type": "AsyncSleep", "inputs": {"value": a, "seconds": seconds}},
        "2": {"class_type": "AsyncSleep", "inputs": {"value": b, "seconds": seconds}},
        "3": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": ["1", 0], "b": ["2", 0], "op": "add"}},
        "4": image_of(["3", 0]),
        "5": save(["4", 0], "async"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    (image,) = saved_images(comfy, entry)
    nodes = runtime_nodes(image)
    assert nodes["3"]["inputs"] == {"a": a, "b": b, "op": "add"}
    for node_id in ("1", "2"):
        assert nodes[node_id]["status"] == "executed"
        assert nodes[node_id]["duration_ms"] >= seconds * 1000, nodes[node_id]
        assert nodes[node_id]["duration_ms"] < seconds * 1000 * 10  # not the whole run's, nor stuck
    events = events_of(comfy, prompt_id)
    start = {e.node_id: e.t_ns for e in of(events, NodeStarted)}
    end = {e.node_id: e.t_ns for e in of(events, NodeFinished)}
    assert start["2"] < end["1"] and start["1"] < end["2"]  # they ran at the same time
    assert max(end["1"], end["2"]) <= start["3"]  # and the node using both waited for both
    # Both together took about one sleep, not two: ComfyUI really ran them concurrently.
    assert max(end["1"], end["2"]) - min(start["1"], start["2"]) < 2 * seconds * 1e9


@pytest.mark.generations("modern")
def test_an_expanding_node_and_its_ephemeral_nodes_are_recorded_with_their_real_ids(comfy: ComfyServer) -> None:
    value = unique()
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "2": {"class_type": "ExpandAddTwice", "inputs": {"value": ["1", 0]}},
        "3": image_of(["2", 0]),
        "4": save(["3", 0], "expand"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    (image,) = saved_images(comfy, entry)
    events = events_of(comfy, prompt_id)
    # ComfyUI's GraphBuilder names them "<parent>.<call>.<graph>.<n>"; they show as their parent.
    assert [(e.node_id, e.class_type, e.display_id, e.parent_id) for e in of(events, NodeStarted)] == [
        ("1", "IntMathRuntimeMetadata", None, None),
        ("2", "ExpandAddTwice", None, None),
        ("2.0.0.1", "IntMathRuntimeMetadata", "2", "2"),
        ("2.0.0.2", "IntMathRuntimeMetadata", "2", "2"),
        ("3", "EmptyImage", None, None),
        ("4", "SaveImageRuntimeMetadata", None, None),
    ]
    inputs = {e.node_id: e.inputs for e in of(events, NodeInputs)}
    assert inputs["2.0.0.1"] == {"a": [value], "b": [1], "op": ["add"]}
    assert inputs["2.0.0.2"] == {"a": [value + 1], "b": [2], "op": ["add"]}
    # The expanding node ends after its subgraph: it is not done until ComfyUI comes back to it.
    ends = [e.node_id for e in of(events, NodeFinished)]
    assert ends.index("2.0.0.2") < ends.index("2") < ends.index("3")
    doc = document_of(image)["runtime"]
    assert [(n["id"], n["status"], n.get("display_id"), n.get("parent_id")) for n in doc["nodes"]] == [
        ("1", "executed", None, None),
        ("2", "executed", None, None),
        ("2.0.0.1", "executed", "2", "2"),
        ("2.0.0.2", "executed", "2", "2"),
        ("3", "executed", None, None),
    ]
    assert {n["id"]: n for n in doc["nodes"]}["3"]["inputs"]["color"] == value + 3
    # The ephemeral ids never reach the prompt, the history, or ComfyUI's outputs.
    assert sorted(entry["outputs"]) == ["4"]


@pytest.mark.generations("modern")
def test_v3_nodes_are_captured_like_any_other(comfy: ComfyServer) -> None:
    """ComfyUI's V3 node API (io.ComfyNode): its own PrimitiveInt feeding EmptyImage's width."""
    assert "PrimitiveInt" in comfy.object_info()
    width = unique() % 64 + 8
    prompt = {
        "0": {"class_type": "PrimitiveInt", "inputs": {"value": width}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["0", 0], "height": 8, "batch_size": 1, "color": 0}},
        "5": save(["3", 0], "v3"),
    }
    _, entry = run_ok(comfy, prompt)
    (image,) = saved_images(comfy, entry)
    nodes = runtime_nodes(image)
    assert nodes["0"]["class_type"] == "PrimitiveInt" and nodes["0"]["status"] == "executed"
    assert nodes["0"]["inputs"] == {"value": width}
    assert nodes["3"]["inputs"]["width"] == width


@pytest.mark.generations("modern")
def test_subgraph_ids_with_expansion_inside_a_subgraph(comfy: ComfyServer) -> None:
    """The Vue frontend sends a subgraph's nodes as "<subgraph node>:<node>" (see
    test_runtime_capture's compound-id test); a node expanding inside one gets ephemeral ids
    under its compound id, and shows as it."""
    value = unique()
    prompt = {
        "9:1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "9:2": {"class_type": "ExpandAddTwice", "inputs": {"value": ["9:1", 0]}},
        "9:3": image_of(["9:2", 0]),
        "4": save(["9:3", 0], "subgraph-expand"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    (image,) = saved_images(comfy, entry)
    started = [(e.node_id, e.display_id, e.parent_id) for e in of(events_of(comfy, prompt_id), NodeStarted)]
    assert started == [
        ("9:1", None, None),
        ("9:2", None, None),
        ("9:2.0.0.1", "9:2", "9:2"),
        ("9:2.0.0.2", "9:2", "9:2"),
        ("9:3", None, None),
        ("4", None, None),
    ]
    nodes = runtime_nodes(image)
    assert list(nodes) == ["9:1", "9:2", "9:2.0.0.1", "9:2.0.0.2", "9:3"]
    assert nodes["9:3"]["inputs"]["color"] == value + 3


@pytest.mark.generations("modern")
def test_an_async_node_mapped_over_a_list_ends_with_its_last_task(comfy: ComfyServer) -> None:
    start, seconds = unique(), 0.3
    prompt = {
        "1": {"class_type": "SeedList", "inputs": {"start": start, "count": 3}},
        "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0], "seconds": seconds}},
        "3": image_of(["2", 0]),
        "4": save(["3", 0], "async-list"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    assert len(saved_images(comfy, entry)) == 3
    events = events_of(comfy, prompt_id)
    [inputs] = of(events, NodeInputs, "2")
    assert inputs.calls == 3 and inputs.inputs["value"] == [start, start + 1, start + 2]
    [started], [finished] = of(events, NodeStarted, "2"), of(events, NodeFinished, "2")
    assert finished.status == "executed"
    # Three tasks of 0.3 s at once: the node lasts one sleep at least, and ends before its user starts.
    assert finished.t_ns - started.t_ns >= seconds * 1e9
    assert finished.t_ns <= of(events, NodeStarted, "3")[0].t_ns


@pytest.mark.generations("modern")
def test_a_failing_async_node_is_recorded_as_failed_when_its_task_fails(comfy: ComfyServer) -> None:
    value, seconds = unique(), 0.3
    prompt = {
        "1": {"class_type": "AsyncSleep", "inputs": {"value": value, "seconds": seconds, "fail": True}},
        "2": image_of(["1", 0]),
        "3": save(["2", 0], "async-fail"),
    }
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    events = events_of(comfy, prompt_id)
    [started], [failed] = of(events, NodeStarted, "1"), of(events, NodeFinished, "1")
    message = f"async failure after {seconds} s with {value}"
    assert (failed.status, failed.error_type, failed.error_message) == ("failed", "RuntimeError", message)
    assert failed.t_ns - started.t_ns >= seconds * 1e9  # when its task failed, not when it was handed back
    assert (events[-1].status, events[-1].error_type) == ("error", "RuntimeError")
    assert of(events, NodeStarted, "2") == []


@pytest.mark.generations("modern")
def test_a_node_failing_before_its_function_is_called_is_recorded_as_failed(comfy: ComfyServer) -> None:
    value = unique()
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "2": {"class_type": "LazyCheckFails", "inputs": {"value": ["1", 0]}},
        "3": image_of(["2", 0]),
        "4": save(["3", 0], "fail-before-call"),
    }
    prompt_id = comfy.queue(prompt)
    assert comfy.wait(prompt_id, timeout=120)["status"]["status_str"] == "error"
    events = events_of(comfy, prompt_id)
    assert of(events, NodeStarted, "2") == [] and of(events, NodeInputs, "2") == []  # never called
    [failed] = of(events, NodeFinished, "2")
    assert (failed.status, failed.error_type, failed.error_message) == ("failed", "RuntimeError", "lazy check failed")
    assert events[-1].status == "error"


@pytest.mark.generations("modern")
def test_nested_expansion_keeps_each_nodes_parent_and_the_outer_display_id(comfy: ComfyServer) -> None:
    value = unique()
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "2": {"class_type": "ExpandAddTwice", "inputs": {"value": ["1", 0], "inner": "nested"}},
        "3": image_of(["2", 0]),
        "4": save(["3", 0], "nested"),
    }
    prompt_id, entry = run_ok(comfy, prompt)
    events = events_of(comfy, prompt_id)
    assert [(e.node_id, e.class_type, e.display_id, e.parent_id) for e in of(events, NodeStarted)] == [
        ("1", "IntMathRuntimeMetadata", None, None),
        ("2", "ExpandAddTwice", None, None),
        ("2.0.0.1", "ExpandAddTwice", "2", "2"),
        ("2.0.0.1.0.0.1", "IntMathRuntimeMetadata", "2", "2.0.0.1"),
        ("2.0.0.1.0.0.2", "IntMathRuntimeMetadata", "2", "2.0.0.1"),
        ("2.0.0.2", "IntMathRuntimeMetadata", "2", "2"),
        ("3", "EmptyImage", None, None),
        ("4", "SaveImageRuntimeMetadata", None, None),
    ]
    ends = [e.node_id for e in of(events, NodeFinished)]
    assert ends.index("2.0.0.1.0.0.2") < ends.index("2.0.0.1") < ends.index("2.0.0.2") < ends.index("2")
    (image,) = saved_images(comfy, entry)
    nodes = runtime_nodes(image)
    assert list(nodes) == ["1", "2", "2.0.0.1", "2.0.0.1.0.0.1", "2.0.0.1.0.0.2", "2.0.0.2", "3"]
    assert nodes["3"]["inputs"]["color"] == value + 13


@pytest.mark.generations("modern")
@pytest.mark.parametrize(
    "inner, inner_class, error",
    [
        ("fail", "FailingNode", ("ValueError", "cannot handle {value}")),
        ("fail_before_call", "LazyCheckFails", ("RuntimeError", "lazy check failed")),
    ],
)
def test_a_failure_inside_an_expanded_subgraph_fails_the_expanding_node_too(
    comfy: ComfyServer, inner: str, inner_class: str, error: tuple[str, str]
) -> None:
    value = unique()
    error = (error[0], error[1].format(value=value))
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": value, "b": 0, "op": "add"}},
        "2": {"class_type": "ExpandAddTwice", "inputs": {"value": ["1", 0], "inner": inner}},
        "3": image_of(["2", 0]),
        "4": save(["3", 0], f"expand-{inner}"),
    }
    prompt_id = comfy.queue(prompt)
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    # ComfyUI reports the failure under the real node id, the one that expanded.
    reported = next(data for kind, data in entry["status"]["messages"] if kind == "execution_error")
    assert reported["node_id"] == "2"
    events = events_of(comfy, prompt_id)
    assert [(e.node_id, e.status, e.error_type, e.error_message) for e in of(events, NodeFinished)] == [
        ("1", "executed", None, None),
        ("2.0.0.1", "failed", *error),
        ("2", "failed", *error),
    ]
    assert (events[-1].status, events[-1].error_type, events[-1].error_message) == ("error", *error)
    assert [(e.node_id, e.class_type) for e in events if isinstance(e, NodeStarted)][:2] == [
        ("1", "IntMathRuntimeMetadata"),
        ("2", "ExpandAddTwice"),
    ]
