"""The whole path on a real ComfyUI server: capture -> log -> document in the saved PNG -> replay.

These tests fail if capture is switched off: the values they look for exist only at run time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.canonical import encode_document
from runtime_metadata.cli import main as cli_main
from runtime_metadata.events.log import read_log_file
from runtime_metadata.events.schema import NodeFinished, RunFinished
from runtime_metadata.harness import ComfyServer
from runtime_metadata.projections.document import build_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example() -> tuple[dict[str, Any], dict[str, Any]]:
    return (
        json.loads((EXAMPLES / "demo_prompt.json").read_text()),
        json.loads((EXAMPLES / "demo_workflow.json").read_text()),
    )


@pytest.fixture(scope="module")
def server(start_comfy: Callable[..., ComfyServer], tmp_path_factory: pytest.TempPathFactory) -> ComfyServer:
    logs = tmp_path_factory.mktemp("rtlogs")
    return start_comfy(env={"AAA_METADATA_ENABLE_HOOKS": "1", "AAA_METADATA_LOG_DIR": str(logs)})


def logs_dir(server: ComfyServer) -> Path:
    return Path(server.env["AAA_METADATA_LOG_DIR"])


def saved_images(server: ComfyServer, entry: dict[str, Any]) -> list[Path]:
    return [
        server.output_dir / img["subfolder"] / img["filename"]
        for out in entry["outputs"].values()
        for img in out.get("images", [])
    ]


def chunks_of(path: Path) -> dict[str, str]:
    with Image.open(path) as img:
        img.load()
        return dict(img.text)


def run_example(server: ComfyServer, prefix: str, **changes: Any) -> tuple[str, dict[str, Any], Path]:
    prompt, workflow = example()
    prompt["5"]["inputs"]["filename_prefix"] = prefix
    for node, inputs in changes.items():
        prompt[node]["inputs"].update(inputs)
    prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (image,) = saved_images(server, entry)
    return prompt_id, prompt, image


def test_the_png_holds_the_value_only_the_run_knew(server: ComfyServer) -> None:
    prompt_id, prompt, image = run_example(server, "computed")
    chunks = chunks_of(image)
    doc = json.loads(chunks["runtime_metadata"])["runtime"]
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
    assert "recursive_execute" in doc["comfyui"] or "async execute" in doc["comfyui"]


def test_comfyuis_own_chunks_are_intact(server: ComfyServer) -> None:
    _, prompt, image = run_example(server, "chunks")
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


def test_replaying_the_log_rebuilds_the_embedded_document_byte_for_byte(server: ComfyServer, capsys) -> None:
    prompt_id, _, image = run_example(server, "replay")
    log_file = logs_dir(server) / f"{prompt_id}.rtlog"
    result = read_log_file(log_file)
    assert result.ok
    assert isinstance(result.events[-1], RunFinished) and result.events[-1].status == "success"
    embedded = chunks_of(image)["runtime_metadata"]
    assert encode_document(build_document(result.events, "5")).decode() == embedded
    assert cli_main(["replay", str(log_file), "--check", str(image)]) == 0
    assert "byte for byte" in capsys.readouterr().out


def test_a_rerun_marks_upstream_nodes_cached(server: ComfyServer) -> None:
    first_id, _, _ = run_example(server, "cache-a", **{"1": {"a": 20}})
    _, _, image = run_example(server, "cache-b", **{"1": {"a": 20}})
    doc = json.loads(chunks_of(image)["runtime_metadata"])["runtime"]
    status = {n["id"]: n["status"] for n in doc["nodes"]}
    assert status == {"1": "cached", "2": "cached", "3": "cached", "4": "cached"}
    assert doc["timing"]["nodes_cached"] == 4
    # ... and still say what they computed with: the values of the run that filled the cache.
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert nodes["3"]["inputs"]["width"] == 80 and nodes["3"]["cached_from"] == first_id
    assert "duration_ms" not in nodes["3"]


def test_a_failing_node_closes_the_run_as_failed(server: ComfyServer) -> None:
    prompt, workflow = example()
    prompt["1"]["inputs"].update(a=-16, b=4)  # width -64: EmptyImage fails at run time
    prompt["5"]["inputs"]["filename_prefix"] = "fail"
    prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "error"
    events = read_log_file(logs_dir(server) / f"{prompt_id}.rtlog").events
    failed = [e for e in events if isinstance(e, NodeFinished) and e.status == "failed"]
    assert [e.node_id for e in failed] == ["3"]
    assert failed[0].error_type and failed[0].error_message
    assert events[-1].status == "error"
    # The server is still healthy: the next run works.
    run_example(server, "after-fail", **{"1": {"a": 17}})


def test_back_to_back_prompts_each_see_only_their_own_run(server: ComfyServer) -> None:
    prompt, workflow = example()
    ids = []
    for a, prefix in ((5, "b2b-5"), (6, "b2b-6")):
        p = json.loads(json.dumps(prompt))
        p["1"]["inputs"]["a"] = a
        p["5"]["inputs"]["filename_prefix"] = prefix
        ids.append((a, server.queue(p, extra_data={"extra_pnginfo": {"workflow": workflow}})))
    for a, prompt_id in ids:
        entry = server.wait(prompt_id, timeout=120)
        (image,) = saved_images(server, entry)
        doc = json.loads(chunks_of(image)["runtime_metadata"])["runtime"]
        assert doc["prompt_id"] == prompt_id
        width = {n["id"]: n for n in doc["nodes"]}["3"]["inputs"]["width"]
        assert width == a * 4


def test_with_capture_off_the_same_image_carries_only_the_static_parse(
    server: ComfyServer, start_comfy: Callable[..., ComfyServer]
) -> None:
    _, _, with_capture = run_example(server, "onoff", **{"1": {"a": 9}})
    plain = start_comfy(env={"AAA_METADATA_ENABLE_HOOKS": "0"})
    _, _, without = run_example(plain, "onoff", **{"1": {"a": 9}})
    on, off = chunks_of(with_capture), chunks_of(without)
    doc_on, doc_off = json.loads(on["runtime_metadata"]), json.loads(off["runtime_metadata"])
    assert doc_on["provenance"]["capture_mode"] == "parser+runtime" and "runtime" in doc_on
    assert doc_off["provenance"]["capture_mode"] == "parser" and "runtime" not in doc_off
    assert on["prompt"] == off["prompt"] and on["workflow"] == off["workflow"]
    with Image.open(with_capture) as a, Image.open(without) as b:
        assert a.tobytes() == b.tobytes()
    assert "capture installed" not in plain.log_text()


def test_doctor_reports_what_the_running_comfyui_captures(server: ComfyServer, capsys) -> None:
    assert cli_main(["doctor", "--url", server.url]) == 0
    out = capsys.readouterr().out
    assert "capture: ON" in out
    assert "wrapped  run: PromptExecutor.execute" in out
    assert "wrapped  call: execution.get_output_data" in out


def test_switching_capture_on_in_config_json_needs_no_restart(
    start_comfy: Callable[..., ComfyServer], tmp_path: Path
) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"runtime_hooks": {"enabled": False}}))
    server = start_comfy(env={"AAA_METADATA_CONFIG": str(config)})
    _, _, before = run_example(server, "cfg-off", **{"1": {"a": 11}})
    assert json.loads(chunks_of(before)["runtime_metadata"])["provenance"]["capture_mode"] == "parser"
    assert "capture installed" not in server.log_text()  # off: the executor was not touched
    config.write_text(json.dumps({"runtime_hooks": {"enabled": True}}))
    _, _, after = run_example(server, "cfg-on", **{"1": {"a": 12}})
    doc = json.loads(chunks_of(after)["runtime_metadata"])
    assert doc["provenance"]["capture_mode"] == "parser+runtime"
    assert {n["id"]: n for n in doc["runtime"]["nodes"]}["3"]["inputs"]["width"] == 48


def test_v3_nodes_are_captured_like_any_other(server: ComfyServer) -> None:
    """ComfyUI's V3 node API (io.ComfyNode, 2025+): PrimitiveInt feeding EmptyImage's width."""
    if "PrimitiveInt" not in server.object_info():
        pytest.skip("this ComfyUI predates V3 nodes (PrimitiveInt); run with COMFYUI_PATH=<modern ComfyUI>")
    prompt, workflow = example()
    prompt["0"] = {"class_type": "PrimitiveInt", "inputs": {"value": 40}}
    prompt["3"]["inputs"]["width"] = ["0", 0]
    prompt["5"]["inputs"]["filename_prefix"] = "v3"
    prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (image,) = saved_images(server, entry)
    nodes = {n["id"]: n for n in json.loads(chunks_of(image)["runtime_metadata"])["runtime"]["nodes"]}
    assert nodes["0"]["class_type"] == "PrimitiveInt" and nodes["0"]["status"] == "executed"
    assert nodes["0"]["inputs"] == {"value": 40}
    assert nodes["3"]["inputs"]["width"] == 40
