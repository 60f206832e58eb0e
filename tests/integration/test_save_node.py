"""The save node on a real ComfyUI: formats, batch lists, secrets, --disable-metadata.

A test-only node pack (``testpack/``) is loaded beside the plugin for nodes that third-party
packs provide: seeds computed from text, batch lists of seeds, nodes taking API keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.events.log import read_log_file
from runtime_metadata.events.schema import NodeInputs
from runtime_metadata.harness import ComfyServer
from runtime_metadata.writers.read import read_metadata

from .integration_helpers import events_of, logs_dir, run_ok, saved_images, settings

WORKFLOW = {"nodes": [], "links": [], "version": 0.4, "extra": {"note": "kept as ComfyUI sent it"}}


def graph(save_inputs: dict[str, Any], color: Any = 0x102030, width: Any = 32) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": 16, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": ["1", 0], **save_inputs}},
    }


def run(server: ComfyServer, prompt: dict[str, Any]) -> tuple[str, list[Path]]:
    prompt_id, entry = run_ok(server, prompt, WORKFLOW, timeout=120)
    return prompt_id, saved_images(server, entry)


@pytest.mark.parametrize("fmt,ext", [("png", "png"), ("jpeg", "jpg"), ("webp", "webp")])
def test_every_format_carries_comfyuis_metadata_and_the_runtime_document(
    comfy: ComfyServer, fmt: str, ext: str
) -> None:
    a = {"png": 20, "jpeg": 21, "webp": 22}[fmt]  # distinct per format, so nothing is cached
    prompt = {
        "0": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": a, "b": 32 - a, "op": "add"}},
        **graph({"filename_prefix": f"fmt-{fmt}", "format": fmt, "quality": 90}, width=["0", 0]),
    }
    _, (image,) = run(comfy, prompt)
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


def test_a_batch_list_records_each_calls_own_value_and_each_image_says_which_it_is(comfy: ComfyServer) -> None:
    prompt = {
        "0": {"class_type": "SeedList", "inputs": {"start": 0x000010, "count": 3}},
        **graph({"filename_prefix": "batchlist"}, color=["0", 0]),
    }
    prompt_id, images = run(comfy, prompt)
    assert len(images) == 3  # the save node ran once per list item
    for index, image in enumerate(images):
        doc = read_metadata(image).document["runtime"]
        empty = {n["id"]: n for n in doc["nodes"]}["1"]
        assert empty["inputs"]["color"] == [16, 17, 18]  # the run, honestly: three calls
        assert empty["calls"] == 3
        assert doc["saved_by"] == {"id": "2", "class_type": "SaveImageRuntimeMetadata", "list_index": index}
        with Image.open(image) as img:
            assert img.getpixel((0, 0)) == (0, 0, 16 + index)  # ... and this image is the index-th
    # One NodeInputs per node, with one value per call, in call order.
    inputs = {e.node_id: e for e in events_of(comfy, prompt_id) if isinstance(e, NodeInputs)}
    assert inputs["1"].calls == 3 and inputs["1"].inputs["color"] == [16, 17, 18]
    assert inputs["0"].calls == 1 and inputs["0"].inputs == {"start": [16], "count": [3]}


def test_credentials_never_reach_the_log_or_the_document(comfy: ComfyServer) -> None:
    secret = "sk-test-DO-NOT-LEAK-42"
    prompt = {
        "0": {"class_type": "KeyedColor", "inputs": {"api_key": secret, "color": 0x203040}},
        **graph({"filename_prefix": "secret"}, color=["0", 0]),
    }
    prompt_id = comfy.queue(
        prompt,
        extra_data={
            "extra_pnginfo": {"workflow": {"nodes": [{"widgets_values": [secret, 1]}]}},
            "api_key_comfy_org": secret,
            "auth_token_comfy_org": secret,
        },
    )
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success"
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    assert secret.encode() not in log_file.read_bytes()
    image = comfy.output_dir / entry["outputs"]["2"]["images"][0]["filename"]
    meta = read_metadata(image)
    assert secret not in json.dumps(meta.document)
    keyed = {n["id"]: n for n in meta.document["runtime"]["nodes"]}["0"]
    assert keyed["inputs"]["api_key"] == "[redacted]"
    assert read_log_file(log_file).events[0].prompt["0"]["inputs"]["api_key"] == "[redacted]"


def test_a_large_document_goes_to_a_sidecar_when_the_limit_changes_without_restart(comfy: ComfyServer) -> None:
    _, (inline,) = run(comfy, graph({"filename_prefix": "limit-32"}, color=0x010101))
    with settings(comfy, inline_size_limit_kb=0):
        _, (sidecar_image,) = run(comfy, graph({"filename_prefix": "limit-0"}, color=0x020202))
    assert read_metadata(inline).pointer is None
    meta = read_metadata(sidecar_image)
    assert meta.problems == []
    # Named for the image's whole name and the sidecar's own sha256 (writers/sidecar.py).
    assert meta.pointer is not None
    assert meta.pointer["file"] == f"limit-0_00001_.png.{meta.pointer['sha256'][:16]}.runtime.json.zst"
    assert (sidecar_image.parent / meta.pointer["file"]).is_file()
    assert meta.document["runtime"]["nodes"][0]["inputs"]["color"] == 0x020202  # followed and verified


def test_privacy_choices_leave_out_the_workflow_or_the_runtime_block(comfy: ComfyServer) -> None:
    _, (no_workflow,) = run(comfy, graph({"filename_prefix": "private-wf", "embed_workflow": False}, color=0x030303))
    _, (no_runtime,) = run(comfy, graph({"filename_prefix": "private-rt", "embed_runtime": False}, color=0x040404))
    meta = read_metadata(no_workflow)
    assert meta.workflow is None and meta.prompt is not None and "runtime" in meta.document
    meta = read_metadata(no_runtime)
    assert meta.workflow == WORKFLOW and "runtime" not in meta.document and "ai_info" in meta.document


def test_an_api_prompt_without_workflow_still_saves_with_comfyuis_chunks(comfy: ComfyServer) -> None:
    prompt = graph({"filename_prefix": "api-only"}, color=0x050505)
    prompt_id = comfy.queue(prompt)  # no extra_data at all, as API clients often send
    entry = comfy.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success"
    image = comfy.output_dir / entry["outputs"]["2"]["images"][0]["filename"]
    meta = read_metadata(image)
    assert meta.prompt == prompt and meta.workflow is None and meta.document is not None


def test_an_error_while_building_metadata_still_saves_the_image(comfy: ComfyServer) -> None:
    prompt = graph({"filename_prefix": "fault"}, color=0x060606)
    prompt["3"] = {"class_type": "BreakMetadataOnce", "inputs": {"images": ["1", 0]}}
    prompt["2"]["inputs"]["images"] = ["3", 0]
    _, (image,) = run(comfy, prompt)
    meta = read_metadata(image)
    assert meta.prompt == prompt and meta.workflow == WORKFLOW
    assert meta.document is None
    assert "could not build the metadata document" in comfy.log_text()
    assert "injected metadata fault" in comfy.log_text()


def test_a_credential_fed_from_another_node_never_reaches_the_log_or_the_document(comfy: ComfyServer) -> None:
    secret = "sk-linked-DO-NOT-LEAK-7"
    prompt = {
        "9": {"class_type": "TextValue", "inputs": {"value": secret}},
        "0": {"class_type": "KeyedColor", "inputs": {"api_key": ["9", 0], "color": 0x304050}},
        **graph({"filename_prefix": "secret-linked"}, color=["0", 0]),
    }
    prompt_id, (image,) = run(comfy, prompt)
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    assert secret.encode() not in log_file.read_bytes()
    meta = read_metadata(image)
    assert secret not in json.dumps(meta.document)
    nodes = {n["id"]: n for n in meta.document["runtime"]["nodes"]}
    assert nodes["9"]["inputs"] == {"value": "[redacted]"} and nodes["0"]["inputs"]["api_key"] == "[redacted]"
    with Image.open(image) as img:
        assert img.getpixel((0, 0)) == (0x30, 0x40, 0x50)  # the run itself was untouched


@pytest.mark.generations("modern")
def test_a_v3_nodes_hidden_credentials_never_reach_the_log_or_the_document(comfy: ComfyServer) -> None:
    """ComfyUI 2025+: a V3 node (comfy_api.latest) gets ComfyUI's credentials as hidden inputs."""
    secret, token = "sk-v3-DO-NOT-LEAK-9", "tok-v3-DO-NOT-LEAK-8"
    prompt = {
        "0": {"class_type": "KeyedColorV3", "inputs": {"api_key": secret, "color": 0x405060}},
        **graph({"filename_prefix": "secret-v3"}, color=["0", 0]),
    }
    prompt_id, entry = run_ok(
        comfy, prompt, extra_data={"api_key_comfy_org": secret, "auth_token_comfy_org": token}, timeout=120
    )
    log_file = logs_dir(comfy) / f"{prompt_id}.rtlog"
    raw = log_file.read_bytes()
    assert secret.encode() not in raw and token.encode() not in raw
    (image,) = saved_images(comfy, entry)
    meta = read_metadata(image)
    assert secret not in json.dumps(meta.document) and token not in json.dumps(meta.document)
    keyed = {e.node_id: e for e in events_of(comfy, prompt_id) if isinstance(e, NodeInputs)}["0"]
    # ComfyUI 0.3.64 hands a V3 node's hidden values (its id, the credentials) to
    # get_output_data beside the inputs (``hidden_inputs``), and capture records the inputs
    # only: the credential typed into the widget is redacted by its name.
    assert keyed.inputs == {"api_key": ["[redacted]"], "color": [0x405060]}
    with Image.open(image) as img:
        assert img.getpixel((0, 0)) == (0x40, 0x50, 0x60)
