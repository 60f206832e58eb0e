"""The fold from events to the runtime document: pure, order-preserving, scoped, exact."""

from __future__ import annotations

import copy

from runtime_metadata.canonical import encode_document
from runtime_metadata.events.log import MemoryLog, read_log
from runtime_metadata.events.schema import NODE_STATUSES, RUN_STATUSES, NodeFinished, NodeStarted
from runtime_metadata.projections.document import build_document, events_for_save, parser_document
from runtime_metadata.projections.runtime import canonical_json, project, runtime_document
from runtime_metadata.prompt_graph import ancestors


def test_nodes_come_out_in_run_order_with_inputs_durations_and_cached_flag(events):
    doc = runtime_document(project(None, events))
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [
        ("3", "cached"),
        ("1", "executed"),
        ("2", "executed"),
        ("4", "executed"),
    ]
    cached, math, empty, _ = doc["nodes"]
    assert cached == {"id": "3", "class_type": "CheckpointLoaderSimple", "status": "cached", "cached": True}
    assert math["inputs"] == {"a": 16, "b": 4, "op": "multiply"}
    assert math["duration_ms"] == 0.001
    assert empty["inputs"]["width"] == 64
    assert empty["duration_ms"] == 1.0
    assert doc["status"] == "success"
    assert doc["timing"]["nodes_executed"] == 3
    assert doc["timing"]["nodes_cached"] == 1
    assert doc["timing"]["node_time_ms"] == 2.001
    assert doc["timing"]["wall_ms"] == 2.099
    assert doc["timing"]["hooks"] == {"calls": 9, "total_ms": 0.005, "max_ms": 0.001, "share": 0.0022}
    assert doc["timing"]["by_class"]["EmptyImage"] == {"calls": 1, "total_ms": 1.0, "mean_ms": 1.0, "max_ms": 1.0}


def test_a_save_node_sees_only_its_own_ancestors(events):
    assert ancestors(events[0].prompt, "4") == {"1", "2"}
    doc = runtime_document(project(None, events), saved_by="4")
    assert [n["id"] for n in doc["nodes"]] == ["1", "2"]
    assert doc["saved_by"] == {"id": "4", "class_type": "SaveImageRuntimeMetadata"}


def test_folding_never_mutates_the_state_it_is_given(events):
    state = project(None, events[:6])
    before = copy.deepcopy(state)
    project(state, events[6:])
    assert state == before


def test_folding_any_prefix_then_the_rest_equals_folding_it_all(events):
    whole = project(None, events)
    for cut in range(len(events) + 1):
        assert project(project(None, events[:cut]), events[cut:]) == whole, cut


def test_a_failed_node_carries_its_error(events):
    failing = events[:5] + [
        NodeStarted("2", "EmptyImage", 4_000),
        NodeFinished("2", 5_000, "failed", "ValueError", "bad size"),
    ]
    doc = runtime_document(project(None, failing))
    assert doc["nodes"][-1]["error"] == {"type": "ValueError", "message": "bad size"}
    assert doc["nodes"][-1]["status"] == "failed"
    assert doc["status"] == "running"


def test_the_save_document_is_built_from_the_prefix_the_save_node_saw(events):
    prefix = events_for_save(events, "4")
    assert prefix == events[:10]
    doc = build_document(events, "4")
    assert doc.runtime is not None and doc.runtime["status"] == "running"
    assert "hooks" not in doc.runtime["timing"]
    assert doc.provenance.capture_mode == "parser+runtime"
    static = parser_document(events[0].prompt, "4", {"comfyui": "test"}, "0.1.0")
    assert static.provenance.capture_mode == "parser" and static.runtime is None
    assert b'"runtime":' not in encode_document(static).split(b'"provenance"')[1]  # no runtime block at all


def test_the_document_encodes_identically_from_a_stored_log(events):
    log = MemoryLog()
    for event in events:
        log.append(event)
    live = encode_document(build_document(events, "4"))
    replayed = encode_document(build_document(read_log(log.to_bytes()).events, "4"))
    assert live == replayed
    assert canonical_json({"b": 1, "a": {"d": 2, "c": 3}}) == b'{"a":{"c":3,"d":2},"b":1}'


def test_each_item_of_a_batch_list_gets_its_own_values_in_the_generation():
    import json
    from pathlib import Path

    from runtime_metadata.events.schema import NodeInputs, NodeStarted, RunStarted

    prompt = json.loads((Path(__file__).parent / "workflows" / "txt2img.json").read_text())
    prompt["3"]["inputs"]["seed"] = ["20", 0]
    prompt["20"] = {"class_type": "SeedList", "inputs": {"start": 7, "count": 3}}
    events = [RunStarted("p", 1, 0, prompt)]
    for nid, node in prompt.items():
        literal = {k: [v] for k, v in node["inputs"].items() if not isinstance(v, list)}
        calls = 3 if nid in ("3", "8", "9") else 1
        if nid == "3":
            literal["seed"] = [7, 8, 9]
        events += [NodeStarted(nid, node["class_type"], 1), NodeInputs(nid, 2, literal, calls)]
    whole = build_document(events, "9")
    assert whole.ai_info.generation["sampler"]["seed"] == [7, 8, 9]
    assert whole.runtime is not None and "list_index" not in whole.runtime["saved_by"]
    second = build_document(events, "9", list_index=1)
    assert second.ai_info.generation["sampler"]["seed"] == 8
    assert second.ai_info.generation["sampler"]["steps"] == 20
    assert second.runtime is not None and second.runtime["saved_by"]["list_index"] == 1
    beyond = build_document(events, "9", list_index=5)  # ComfyUI repeats a short list's last item
    assert beyond.ai_info.generation["sampler"]["seed"] == 9


def test_a_status_outside_the_schema_is_damage_not_a_document(events):
    """Statuses are the schema's Literals: a log claiming another is reported, not folded."""
    assert RUN_STATUSES == ("success", "error", "interrupted")
    assert NODE_STATUSES == ("executed", "failed", "interrupted", "pending")
    log = MemoryLog()
    log.extend(events[:3])
    log.extend([("NodeFinished", "1", 3_000, "exploded", None, None)])
    result = read_log(log.to_bytes())
    assert [type(e).__name__ for e in result.events] == ["RunStarted", "NodeCached", "NodeStarted"]
    assert len(result.damage) == 1 and "exploded" in result.damage[0].reason
