"""The save node on a real ComfyUI: formats, batch lists, secrets, --disable-metadata.

A test-only node pack (``testpack/``) is loaded beside the plugin for nodes that third-party
packs provide: seeds computed from text, batch lists of seeds, nodes taking API keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.events.log import read_log_file
from runtime_metadata.harness import ComfyServer
from runtime_metadata.writers.read import read_metadata

TESTPACK = Path(__file__).resolve().parent / "testpack"
WORKFLOW = {"nodes": [], "links": [], "version": 0.4, "extra": {"note": "kept as ComfyUI sent it"}}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps({"runtime_hooks": {"enabled": True, "inline_size_limit_kb": 32}}))
    return path


@pytest.fixture(scope="module")
def server(
    start_comfy: Callable[..., ComfyServer], tmp_path_factory: pytest.TempPathFactory, config_file: Path
) -> ComfyServer:
    logs = tmp_path_factory.mktemp("rtlogs")
    return start_comfy(
        env={"AAA_METADATA_CONFIG": str(config_file), "AAA_METADATA_LOG_DIR": str(logs)},
        extra_nodes={"testpack": TESTPACK},
    )


def graph(save_inputs: dict[str, Any], color: Any = 0x102030, width: Any = 32) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 16, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": ["1", 0], **save_inputs}},
    }


def run(server: ComfyServer, prompt: dict[str, Any]) -> tuple[str, list[Path]]:
    prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": WORKFLOW}})
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    images = [
        server.output_dir / img["subfolder"] / img["filename"]
        for out in entry["outputs"].values()
        for img in out.get("images", [])
    ]
    return prompt_id, images


@pytest.mark.parametrize("fmt,ext", [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")])
def test_every_format_carries_comfyuis_metadata_and_the_runtime_document(
    server: ComfyServer, fmt: str, ext: str
) -> None:
    a = {"png": 20, "jpeg": 21, "webp": 22}[fmt]  # distinct per format, so nothing is cached
    prompt = {
        "0": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": a, "b": 32 - a, "op": "add"}},
        **graph({"filename_prefix": f"fmt-{fmt}", "format": fmt, "quality": 90}, width=["0", 0]),
    }
    _, (image,) = run(server, prompt)
    assert image.suffix == f".{ext}"
    with Image.open(image) as img:
        img.load()
        assert img.size == (32, 16)
        assert img.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
    meta = read_metadata(image)
    assert meta.problems == []
    assert meta.prompt == prompt
    assert meta.workflow == WORKFLOW
    nodes = {n["id"]: n for n in meta.document["runtime"]["nodes"]}
    assert nodes["1"]["inputs"]["width"] == 32  # computed by node 0 at run time


def test_a_batch_list_records_each_calls_own_value(server: ComfyServer) -> None:
    prompt = {
        "0": {"class_type": "SeedList", "inputs": {"start": 0x000010, "count": 3}},
        **graph({"filename_prefix": "batchlist"}, color=["0", 0]),
    }
    _, images = run(server, prompt)
    assert len(images) == 3  # the save node ran once per list item
    doc = read_metadata(images[0]).document["runtime"]
    empty = {n["id"]: n for n in doc["nodes"]}["1"]
    assert empty["inputs"]["color"] == [16, 17, 18]
    assert empty["calls"] == 3
    with Image.open(images[2]) as img:
        assert img.getpixel((0, 0)) == (0, 0, 18)


def test_credentials_never_reach_the_log_or_the_document(server: ComfyServer) -> None:
    secret = "sk-test-DO-NOT-LEAK-42"
    prompt = {
        "0": {"class_type": "KeyedColor", "inputs": {"api_key": secret, "color": 0x203040}},
        **graph({"filename_prefix": "secret"}, color=["0", 0]),
    }
    prompt_id = server.queue(
        prompt,
        extra_data={
            "extra_pnginfo": {"workflow": {"nodes": [{"widgets_values": [secret, 1]}]}},
            "api_key_comfy_org": secret,
        },
    )
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success"
    log_file = Path(server.env["AAA_METADATA_LOG_DIR"]) / f"{prompt_id}.rtlog"
    assert secret.encode() not in log_file.read_bytes()
    image = server.output_dir / entry["outputs"]["2"]["images"][0]["filename"]
    meta = read_metadata(image)
    assert secret not in json.dumps(meta.document)
    keyed = {n["id"]: n for n in meta.document["runtime"]["nodes"]}["0"]
    assert keyed["inputs"]["api_key"] == "[redacted]"
    assert read_log_file(log_file).events[0].prompt["0"]["inputs"]["api_key"] == "[redacted]"


def test_disable_metadata_is_honoured(start_comfy: Callable[..., ComfyServer]) -> None:
    server = start_comfy(env={"AAA_METADATA_ENABLE_HOOKS": "1"}, extra_args=["--disable-metadata"])
    _, (image,) = run(server, graph({"filename_prefix": "nometa"}))
    with Image.open(image) as img:
        img.load()
        assert dict(img.text) == {}


def test_a_large_document_goes_to_a_sidecar_when_the_limit_changes_without_restart(
    server: ComfyServer, config_file: Path
) -> None:
    _, (inline,) = run(server, graph({"filename_prefix": "limit-32"}, color=0x010101))
    config_file.write_text(json.dumps({"runtime_hooks": {"enabled": True, "inline_size_limit_kb": 0}}))
    try:
        _, (sidecar_image,) = run(server, graph({"filename_prefix": "limit-0"}, color=0x020202))
    finally:
        config_file.write_text(json.dumps({"runtime_hooks": {"enabled": True, "inline_size_limit_kb": 32}}))
    assert read_metadata(inline).pointer is None
    meta = read_metadata(sidecar_image)
    assert meta.problems == []
    # Named for the image's whole name and the sidecar's own sha256 (writers/sidecar.py).
    assert meta.pointer is not None
    assert meta.pointer["file"] == f"limit-0_00001_.png.{meta.pointer['sha256'][:16]}.runtime.json.zst"
    assert (sidecar_image.parent / meta.pointer["file"]).is_file()
    assert meta.document["runtime"]["nodes"][0]["inputs"]["color"] == 0x020202  # followed and verified


def test_privacy_choices_leave_out_the_workflow_or_the_runtime_block(server: ComfyServer) -> None:
    _, (no_workflow,) = run(server, graph({"filename_prefix": "private-wf", "embed_workflow": False}, color=0x030303))
    _, (no_runtime,) = run(server, graph({"filename_prefix": "private-rt", "embed_runtime": False}, color=0x040404))
    meta = read_metadata(no_workflow)
    assert meta.workflow is None and meta.prompt is not None and "runtime" in meta.document
    meta = read_metadata(no_runtime)
    assert meta.workflow == WORKFLOW and "runtime" not in meta.document and "ai_info" in meta.document


def test_an_api_prompt_without_workflow_still_saves_with_comfyuis_chunks(server: ComfyServer) -> None:
    prompt = graph({"filename_prefix": "api-only"}, color=0x050505)
    prompt_id = server.queue(prompt)  # no extra_data at all, as API clients often send
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success"
    image = server.output_dir / entry["outputs"]["2"]["images"][0]["filename"]
    meta = read_metadata(image)
    assert meta.prompt == prompt and meta.workflow is None and meta.document is not None


def test_an_error_while_building_metadata_still_saves_the_image(server: ComfyServer) -> None:
    prompt = graph({"filename_prefix": "fault"}, color=0x060606)
    prompt["3"] = {"class_type": "BreakMetadataOnce", "inputs": {"images": ["1", 0]}}
    prompt["2"]["inputs"]["images"] = ["3", 0]
    _, (image,) = run(server, prompt)
    meta = read_metadata(image)
    assert meta.prompt == prompt and meta.workflow == WORKFLOW
    assert meta.document is None
    assert "could not build the metadata document" in server.log_text()
    assert "injected metadata fault" in server.log_text()


def test_a_credential_fed_from_another_node_never_reaches_the_log_or_the_document(server: ComfyServer) -> None:
    secret = "sk-linked-DO-NOT-LEAK-7"
    prompt = {
        "9": {"class_type": "TextValue", "inputs": {"value": secret}},
        "0": {"class_type": "KeyedColor", "inputs": {"api_key": ["9", 0], "color": 0x304050}},
        **graph({"filename_prefix": "secret-linked"}, color=["0", 0]),
    }
    prompt_id, (image,) = run(server, prompt)
    log_file = Path(server.env["AAA_METADATA_LOG_DIR"]) / f"{prompt_id}.rtlog"
    assert secret.encode() not in log_file.read_bytes()
    meta = read_metadata(image)
    assert secret not in json.dumps(meta.document)
    nodes = {n["id"]: n for n in meta.document["runtime"]["nodes"]}
    assert nodes["9"]["inputs"] == {"value": "[redacted]"} and nodes["0"]["inputs"]["api_key"] == "[redacted]"
    with Image.open(image) as img:
        assert img.getpixel((0, 0)) == (0x30, 0x40, 0x50)  # the run itself was untouched
