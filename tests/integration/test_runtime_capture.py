"""The whole path on a real ComfyUI server: capture -> log -> document in the saved PNG -> replay.

Each test runs on both generations of ComfyUI (see conftest.py). These tests fail if capture is
switched off: the values they look for exist only at run time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.canonical import encode_document
from runtime_metadata.cli import main as cli_main
from runtime_metadata.events.schema import NodeCached, NodeFinished, NodeInputs, NodeStarted, RunFinished, RunStarted
from runtime_metadata.harness import ComfyServer, Installation
from runtime_metadata.harness.provision import comfyui_version_of
from runtime_metadata.projections.document import build_document

from .integration_helpers import (
    LogWindow,
    chunks_of,
    document_of,
    events_of,
    example,
    logs_dir,
    run_ok,
    runtime_nodes,
    saved_images,
    settings,
    status,
    unique,
    wait_for_file,
)

#: What the plugin calls each generation's executor (capture/hooks.describe_generation).
EXECUTOR = {"march2024": "executor 2024 (recursive_execute)", "modern": "executor 2025+ (async execute)"}


def run_example(server: ComfyServer, prefix: str, **changes: Any) -> tuple[str, dict[str, Any], Path]:
    prompt, workflow = example()
    prompt["5"]["inputs"]["filename_prefix"] = prefix
    for node, inputs in changes.items():
        prompt[node]["inputs"].update(inputs)
    prompt_id, entry = run_ok(server, prompt, workflow)
    (image,) = saved_images(server, entry)
    return prompt_id, prompt, image


def test_every_node_of_the_run_is_captured_with_the_values_only_the_run_knew(
    comfy: ComfyServer, installation: Installation, generation: str
) -> None:
    prompt_id, prompt, image = run_example(comfy, "computed")
    doc = document_of(image)["runtime"]
    nodes = {n["id"]: n for n in doc["nodes"]}
    # In the prompt, EmptyImage's width and colour are links; at run time they were numbers.
    assert prompt["3"]["inputs"]["width"] == ["1", 0]
    assert nodes["3"]["inputs"]["width"] == 64
    assert nodes["3"]["inputs"]["color"] == 0x333333 + 64
    assert nodes["2"]["inputs"]["b"] == 64
    assert [n["id"] for n in doc["nodes"]] == ["1", "2", "3", "4"]
    assert all(n["status"] == "executed" and n["duration_ms"] >= 0 for n in doc["nodes"])
    assert nodes["4"]["inputs"]["image"] == {"type": "torch.Tensor", "shape": [1, 48, 64, 3], "dtype": "torch.float32"}
    assert doc["prompt_id"] == prompt_id
    assert doc["saved_by"] == {"id": "5", "class_type": "SaveImageRuntimeMetadata"}
    version = comfyui_version_of(installation.root)
    assert doc["comfyui"] == f"ComfyUI {version or 'unversioned (before comfyui_version.py)'}, {EXECUTOR[generation]}"
    # The log has every node of the run, the save node included, each started and finished once.
    events = events_of(comfy, prompt_id)
    assert isinstance(events[0], RunStarted) and events[0].prompt_id == prompt_id
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["1", "2", "3", "4", "5"]
    assert [(e.node_id, e.status) for e in events if isinstance(e, NodeFinished)] == [(n, "executed") for n in "12345"]
    assert isinstance(events[-1], RunFinished) and events[-1].status == "success"


def test_comfyuis_own_chunks_are_intact(comfy: ComfyServer) -> None:
    _, prompt, image = run_example(comfy, "chunks")
    _, workflow = example()
    chunks = chunks_of(image)
    assert list(chunks)[:2] == ["prompt", "workflow"]
    assert json.loads(chunks["prompt"]) == prompt
    assert json.loads(chunks["workflow"]) == workflow
    with Image.open(image) as img:
        assert img.size == (64, 48)
        # ImageInvert of colour 0x333373 (0x333333 + 64), within float->uint8 truncation
        r, g, b = img.getpixel((0, 0))
        assert (r, g) == (0xFF - 0x33, 0xFF - 0x33) and 0xFF - 0x73 - 1 <= b <= 0xFF - 0x73


def test_replaying_the_log_rebuilds_the_embedded_document_byte_for_byte(comfy: ComfyServer, capsys) -> None:
    prompt_id, _, image = run_example(comfy, "replay", **{"1": {"a": 15}})
    events = events_of(comfy, prompt_id)
    assert isinstance(events[-1], RunFinished) and events[-1].status == "success"
    embedded = chunks_of(image)["runtime_metadata"]
    assert encode_document(build_document(events, "5")).decode() == embedded
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    assert cli_main(["replay", str(log_file), "--check", str(image)]) == 0
    assert "byte for byte" in capsys.readouterr().out


def test_a_rerun_marks_upstream_nodes_cached(comfy: ComfyServer) -> None:
    first_id, _, _ = run_example(comfy, "cache-a", **{"1": {"a": 20}})
    second_id, _, image = run_example(comfy, "cache-b", **{"1": {"a": 20}})
    doc = document_of(image)["runtime"]
    status_of = {n["id"]: n["status"] for n in doc["nodes"]}
    assert status_of == {"1": "cached", "2": "cached", "3": "cached", "4": "cached"}
    assert doc["timing"]["nodes_cached"] == 4
    # ... and still say what they computed with: the values of the run that filled the cache.
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert nodes["3"]["inputs"]["width"] == 80 and nodes["3"]["cached_from"] == first_id
    assert "duration_ms" not in nodes["3"]
    # ComfyUI's own list of what it served from cache is where the log got them from.
    events = events_of(comfy, second_id)
    assert sorted(e.node_id for e in events if isinstance(e, NodeCached)) == ["1", "2", "3", "4"]
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["5"]


def test_a_failing_node_closes_the_run_as_failed(comfy: ComfyServer) -> None:
    prompt, workflow = example()
    prompt["1"]["inputs"].update(a=-16, b=4)  # width -64: EmptyImage fails at run time
    prompt["5"]["inputs"]["filename_prefix"] = "fail"
    prompt_id = comfy.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    events = events_of(comfy, prompt_id)
    failed = [e for e in events if isinstance(e, NodeFinished) and e.status == "failed"]
    assert [e.node_id for e in failed] == ["3"]
    assert failed[0].error_type and failed[0].error_message
    # The error ComfyUI reported is the one recorded.
    error = next(data for kind, data in entry["status"]["messages"] if kind == "execution_error")
    assert (error["node_id"], error["exception_type"].rsplit(".", 1)[-1]) == ("3", failed[0].error_type)
    assert events[-1].status == "error"
    # The server is still healthy: the next run works.
    run_example(comfy, "after-fail", **{"1": {"a": 17}})


@pytest.mark.parametrize("then", ["raise", "return"])
def test_an_interrupted_run_is_closed_as_interrupted(comfy: ComfyServer, tmp_path: Path, then: str) -> None:
    """ComfyUI's interrupt button (POST /interrupt) while a node runs: the node stops as samplers
    do ("raise"), or finishes and ComfyUI stops the next node before its call ("return")."""
    ready = tmp_path / "running"
    start = unique()
    prompt = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": start, "b": 1, "op": "add"}},
        "2": {"class_type": "WaitForInterrupt", "inputs": {"value": ["1", 0], "ready_file": str(ready), "then": then}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": ["2", 0]}},
        "4": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["3", 0], "filename_prefix": "interrupted"},
        },
    }
    prompt_id = comfy.queue(prompt)
    wait_for_file(ready, comfy)
    comfy.interrupt()
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    assert [kind for kind, _ in entry["status"]["messages"]][-1] == "execution_interrupted"
    assert entry["outputs"] == {}
    events = events_of(comfy, prompt_id)
    finished = [(e.node_id, e.status) for e in events if isinstance(e, NodeFinished)]
    started = [e.node_id for e in events if isinstance(e, NodeStarted)]
    if then == "raise":
        assert finished == [("1", "executed"), ("2", "interrupted")] and started == ["1", "2"]
    else:
        # ComfyUI handed node 3 its inputs, then stopped it before calling its function.
        assert finished == [("1", "executed"), ("2", "executed"), ("3", "interrupted")]
        assert started == ["1", "2", "3"]
        interrupted = [e for e in events if isinstance(e, NodeFinished) and e.node_id == "3"]
        assert interrupted[0].error_type == "InterruptProcessingException"
    assert isinstance(events[-1], RunFinished) and events[-1].status == "interrupted"
    # Nothing of the run leaks into the next one.
    run_example(comfy, f"after-interrupt-{then}", **{"1": {"a": 18 if then == "raise" else 19}})


def test_compound_ids_as_the_2025_frontend_sends_subgraphs(comfy: ComfyServer) -> None:
    """The Vue frontend flattens a subgraph (node 7 holding 3 and 4, itself in 9) to ids "9:7:3"...

    (its graphToPrompt joins the path of subgraph node ids with ":"; the subgraph nodes
    themselves are virtual and never sent). ComfyUI takes them as they are, on both generations.
    """
    color = unique()
    prompt = {
        "9:7:3": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": color, "b": 4, "op": "add"}},
        "9:7:4": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 8, "batch_size": 1, "color": ["9:7:3", 0]},
        },
        "9:2": {"class_type": "ImageInvert", "inputs": {"image": ["9:7:4", 0]}},
        "12": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["9:2", 0], "filename_prefix": "compound"},
        },
        "9:5": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["9:7:4", 0], "filename_prefix": "inner"},
        },
    }
    prompt_id, entry = run_ok(comfy, prompt)
    assert sorted(entry["outputs"]) == ["12", "9:5"]
    outer, inner = saved_images(comfy, entry, "12")[0], saved_images(comfy, entry, "9:5")[0]
    nodes = runtime_nodes(outer)
    assert list(nodes) == ["9:7:3", "9:7:4", "9:2"]
    assert nodes["9:7:4"]["inputs"]["color"] == color + 4
    assert {n["status"] for n in nodes.values()} == {"executed"}
    assert document_of(outer)["runtime"]["saved_by"] == {"id": "12", "class_type": "SaveImageRuntimeMetadata"}
    inner_doc = document_of(inner)["runtime"]
    assert inner_doc["saved_by"] == {"id": "9:5", "class_type": "SaveImageRuntimeMetadata"}
    assert [n["id"] for n in inner_doc["nodes"]] == ["9:7:3", "9:7:4"]
    events = events_of(comfy, prompt_id)
    started = {e.node_id: e for e in events if isinstance(e, NodeStarted)}
    assert sorted(started) == sorted(prompt)
    assert all(e.parent_id is None and e.display_id is None for e in started.values())
    save_inputs = [e.inputs for e in events if isinstance(e, NodeInputs) and e.node_id == "9:5"]
    assert save_inputs and save_inputs[0]["unique_id"] == ["9:5"]  # ComfyUI's own id, as a string


def test_back_to_back_prompts_each_see_only_their_own_run(comfy: ComfyServer) -> None:
    prompt, workflow = example()
    ids = []
    for a, prefix in ((5, "b2b-5"), (6, "b2b-6")):
        p = json.loads(json.dumps(prompt))
        p["1"]["inputs"]["a"] = a
        p["5"]["inputs"]["filename_prefix"] = prefix
        ids.append((a, comfy.queue(p, extra_data={"extra_pnginfo": {"workflow": workflow}})))
    for a, prompt_id in ids:
        entry = comfy.wait(prompt_id, timeout=120)
        (image,) = saved_images(comfy, entry)
        doc = document_of(image)["runtime"]
        assert doc["prompt_id"] == prompt_id
        width = {n["id"]: n for n in doc["nodes"]}["3"]["inputs"]["width"]
        assert width == a * 4


def test_with_capture_off_the_same_image_carries_only_the_static_parse(comfy: ComfyServer) -> None:
    _, _, with_capture = run_example(comfy, "onoff-on", **{"1": {"a": 9}})
    with settings(comfy, enabled=False):
        window = LogWindow(comfy)
        # The same graph but for the file name (the same prompt again would be all cached).
        _, _, without = run_example(comfy, "onoff-off", **{"1": {"a": 9}})
        off = status(comfy)["capture"]
        assert "executor functions restored" in window.text()
    # Switched off, the plugin gave ComfyUI back its own functions.
    assert off["installed"] == [] and off["active"] is False and off["disabled_reason"] is None
    on, plain = chunks_of(with_capture), chunks_of(without)
    doc_on, doc_off = json.loads(on["runtime_metadata"]), json.loads(plain["runtime_metadata"])
    assert doc_on["provenance"]["capture_mode"] == "parser+runtime" and "runtime" in doc_on
    assert doc_off["provenance"]["capture_mode"] == "parser" and "runtime" not in doc_off
    assert on["prompt"].replace("onoff-on", "onoff-off") == plain["prompt"] and on["workflow"] == plain["workflow"]
    with Image.open(with_capture) as a, Image.open(without) as b:
        assert a.tobytes() == b.tobytes()
    # Switched on again, the next prompt installs capture again.
    _, _, again = run_example(comfy, "onoff-again", **{"1": {"a": 10}})
    assert document_of(again)["provenance"]["capture_mode"] == "parser+runtime"
    assert status(comfy)["capture"]["active"] is True


def test_doctor_reports_what_the_running_comfyui_captures(comfy: ComfyServer, generation: str, capsys) -> None:
    run_example(comfy, "doctor", **{"1": {"a": 7}})  # capture is installed (it may have been switched off)
    assert cli_main(["doctor", "--url", comfy.url]) == 0
    out = capsys.readouterr().out
    assert "capture: ON" in out
    assert "wrapped  run: PromptExecutor.execute" in out
    assert "wrapped  call: execution.get_output_data" in out
    # Only the modern executor has a per-node function worth wrapping (see capture/hooks.py).
    assert ("wrapped  node: execution.execute" in out) == (generation == "modern")


def test_a_server_started_with_capture_off_and_disable_metadata(start_comfy, tmp_path: Path) -> None:
    """Capture off in config.json: the executor is untouched until it says on, no restart needed.

    The server also runs with ComfyUI's --disable-metadata (one server for two start-up
    options): the saved images carry no metadata at all, with capture off and on.
    """
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"runtime_hooks": {"enabled": False}}))
    logs = tmp_path / "rtlogs"
    server = start_comfy(
        env={"AAA_METADATA_CONFIG": str(config), "AAA_METADATA_LOG_DIR": str(logs)}, extra_args=["--disable-metadata"]
    )
    off_id, _, before = run_example(server, "cfg-off", **{"1": {"a": 11}})
    assert chunks_of(before) == {}
    assert "capture installed" not in server.log_text()  # off: the executor was not touched
    assert not (logs / f"{off_id}.rtlog").exists()
    config.write_text(json.dumps({"runtime_hooks": {"enabled": True}}))
    on_id, _, after = run_example(server, "cfg-on", **{"1": {"a": 12}})
    assert chunks_of(after) == {}
    assert "capture installed" in server.log_text()
    inputs = {e.node_id: e.inputs for e in events_of(server, on_id) if isinstance(e, NodeInputs)}
    assert inputs["3"]["width"] == [48]
    server.stop()  # now rather than at the end of the module
