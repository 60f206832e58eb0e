"""A key typed into a widget never leaves in a saved image, on a real ComfyUI.

The graph holds a key three ways: in an API node's credential widget, pasted into the text of
another node, and in a muted copy of the API node that only the UI workflow holds; ComfyUI's
own account token arrives through ``extra_data`` and is pasted into a note. Every file the save
node writes (image, sidecar) and the run's log are searched for each secret as UTF-8, UTF-16BE
and UTF-16LE (JPEG and WebP keep the A1111 string in UTF-16).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.harness import ComfyServer
from runtime_metadata.writers.read import read_metadata

from .integration_helpers import settings

KEY = "sk-proj-DO-NOT-LEAK-0123456789"
MUTED_KEY = "sk-muted-DO-NOT-LEAK-9876"
TOKEN = "comfyui-token-DO-NOT-LEAK-55aa"
SECRETS = (KEY, MUTED_KEY, TOKEN)
COLOR = 0x405060
REDACTED = "[redacted]"


@pytest.fixture(scope="module")
def server(comfy: ComfyServer) -> ComfyServer:
    """The session's shared server of this generation (capture on, event logs kept, the test pack)."""
    return comfy


def prompt_for(prefix: str, save: dict[str, Any]) -> dict[str, Any]:
    return {
        "1": {"class_type": "KeyedColor", "inputs": {"api_key": KEY, "color": COLOR}},
        "2": {"class_type": "SeedFromText", "inputs": {"text": f"a fox, {KEY}", "modulo": 7}},
        "3": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": 24, "b": ["2", 0], "op": "add"}},
        "4": {
            "class_type": "EmptyImage",
            "inputs": {"width": ["3", 0], "height": 16, "batch_size": 1, "color": ["1", 0]},
        },
        "5": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["4", 0], "filename_prefix": prefix, **save},
        },
    }


def workflow_for() -> dict[str, Any]:
    """The UI workflow as a frontend sends it (widget values positional)."""
    return {
        "nodes": [
            {"id": 1, "type": "KeyedColor", "mode": 0, "widgets_values": [KEY, COLOR]},
            {"id": 2, "type": "SeedFromText", "mode": 0, "widgets_values": [f"a fox, {KEY}", 7]},
            {"id": 9, "type": "KeyedColor", "mode": 2, "widgets_values": [MUTED_KEY, 5]},  # muted: not in the prompt
            {"id": 10, "type": "Note", "mode": 0, "widgets_values": [f"token: {TOKEN}"]},
        ],
        "links": [],
        "version": 0.4,
    }


def save(server: ComfyServer, prefix: str, **save_inputs: Any) -> tuple[str, Path]:
    prompt_id = server.queue(
        prompt_for(prefix, save_inputs),
        extra_data={"extra_pnginfo": {"workflow": workflow_for()}, "api_key_comfy_org": TOKEN},
    )
    entry = server.wait(prompt_id, timeout=120)
    assert entry["status"]["status_str"] == "success", entry["status"]
    (image,) = entry["outputs"]["5"]["images"]
    return prompt_id, server.output_dir / image["subfolder"] / image["filename"]


def leaks(data: bytes) -> list[str]:
    """Which secrets ``data`` holds, in any of the encodings images use."""
    return [
        f"{secret} ({encoding})"
        for secret in SECRETS
        for encoding in ("utf-8", "utf-16-be", "utf-16-le")
        if secret.encode(encoding) in data
    ]


def written_files(image: Path) -> list[Path]:
    """The image and every file saved beside it under its name (sidecars)."""
    return [p for p in image.parent.iterdir() if p.name.startswith(image.stem)]


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_no_byte_the_save_node_writes_holds_a_credential(server: ComfyServer, fmt: str) -> None:
    prompt_id, image = save(server, f"redact-{fmt}", format=fmt)
    for path in written_files(image):
        assert leaks(path.read_bytes()) == [], path.name
    log = Path(server.env["AAA_METADATA_LOG_DIR"]) / f"{prompt_id}.rtlog"
    assert leaks(log.read_bytes()) == []
    meta = read_metadata(image)
    assert meta.problems == []
    # ComfyUI's chunks are there and load: the key fields hold the marker, everything else is kept.
    assert meta.prompt["1"]["inputs"] == {"api_key": REDACTED, "color": COLOR}
    assert meta.prompt["2"]["inputs"]["text"] == f"a fox, {REDACTED}"
    if fmt != "jpeg" or meta.workflow is not None:  # JPEG drops the workflow only when EXIF is full
        nodes = {n["id"]: n for n in meta.workflow["nodes"]}
        assert nodes[1]["widgets_values"] == [REDACTED, COLOR]
        assert nodes[9]["widgets_values"] == [REDACTED, 5]
        assert nodes[10]["widgets_values"] == [f"token: {REDACTED}"]
    runtime = {n["id"]: n for n in meta.document["runtime"]["nodes"]}
    assert runtime["2"]["inputs"]["text"] == f"a fox, {REDACTED}"


def test_redaction_changes_neither_what_comfyui_ran_nor_the_pixels(server: ComfyServer) -> None:
    prompt_id, redacted = save(server, "redact-pixels")
    _, kept = save(server, "keep-pixels", keep_api_keys=True)
    with Image.open(redacted) as a, Image.open(kept) as b:
        assert a.size == b.size and a.tobytes() == b.tobytes()
        assert a.getpixel((0, 0)) == (0x40, 0x50, 0x60)
    # ComfyUI's own history keeps the prompt it ran, key included: nothing was changed in place.
    history = server.get_json(f"/history/{prompt_id}")[prompt_id]
    assert history["prompt"][2]["1"]["inputs"]["api_key"] == KEY


def test_keep_api_keys_keeps_comfyuis_chunks_as_they_were(server: ComfyServer) -> None:
    _, image = save(server, "keep", keep_api_keys=True)
    meta = read_metadata(image)
    assert meta.prompt["1"]["inputs"]["api_key"] == KEY
    assert meta.workflow == workflow_for()
    # The plugin's own document never carries them, whatever the option says.
    assert leaks(json.dumps(meta.document).encode()) == []


def test_a_sidecar_holds_no_credential_either(server: ComfyServer) -> None:
    # A limit of 1 KB sends the runtime document to a zstd sidecar (re-read without restart).
    with settings(server, inline_size_limit_kb=1):
        _, image = save(server, "redact-sidecar")
    files = written_files(image)
    assert len(files) == 2, files  # the image and its sidecar
    meta = read_metadata(image)
    assert meta.problems == [] and meta.document["runtime"]["nodes"]
    import zstandard

    for path in files:
        data = path.read_bytes()
        if path != image:
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 24)
        assert leaks(data) == [], path.name
