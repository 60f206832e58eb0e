"""What the integration tests share: running prompts, reading what they saved and logged, settings."""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from runtime_metadata.events.log import read_log_file
from runtime_metadata.harness import ComfyServer

HERE = Path(__file__).resolve().parent
TESTPACK = HERE / "testpack"
EXAMPLES = HERE.parents[1] / "examples"
RUN_TIMEOUT = 600.0  # a run that loads the 2.1 GB checkpoint on a busy CPU

#: The shared servers' config.json: capture on, with the debug log lines DESIGN.md promises.
BASE_SETTINGS: dict[str, Any] = {
    "runtime_hooks": {
        "enabled": True,
        "inline_size_limit_kb": 32,
        "log_disagreements": True,
        "log_performance": True,
    },
    "debug": {"enabled": True},
}

_unique = itertools.count(1000)


def unique() -> int:
    """A number no other run of this session used: inputs made with it are never served from cache."""
    return next(_unique)


def example() -> tuple[dict[str, Any], dict[str, Any]]:
    """The demo's prompt and workflow (examples/)."""
    return (
        json.loads((EXAMPLES / "demo_prompt.json").read_text()),
        json.loads((EXAMPLES / "demo_workflow.json").read_text()),
    )


def config_path(server: ComfyServer) -> Path:
    """The config.json the server's plugin reads."""
    return Path(server.env["AAA_METADATA_CONFIG"])


def logs_dir(server: ComfyServer) -> Path:
    """Where the server's plugin keeps each run's event log."""
    return Path(server.env["AAA_METADATA_LOG_DIR"])


def events_of(server: ComfyServer, prompt_id: str) -> list[Any]:
    """The events of a run, read from its log file (which must be intact)."""
    result = read_log_file(logs_dir(server) / f"{prompt_id}.rtlog")
    assert result.ok, result.describe_damage()
    return list(result.events)


@contextlib.contextmanager
def settings(server: ComfyServer, **hooks: Any) -> Iterator[None]:
    """Change ``runtime_hooks`` keys of the server's config.json for a while (read at each run)."""
    path = config_path(server)
    before = path.read_text()
    changed = json.loads(before)
    changed["runtime_hooks"].update(hooks)
    path.write_text(json.dumps(changed))
    try:
        yield
    finally:
        path.write_text(before)


def run_ok(
    server: ComfyServer,
    prompt: dict[str, Any],
    workflow: dict[str, Any] | None = None,
    extra_data: dict[str, Any] | None = None,
    timeout: float = RUN_TIMEOUT,
) -> tuple[str, dict[str, Any]]:
    """Queue a prompt, wait for it, check it succeeded; (prompt_id, history entry)."""
    extra = copy.deepcopy(extra_data or {})
    if workflow is not None:
        extra.setdefault("extra_pnginfo", {})["workflow"] = workflow
    prompt_id = server.queue(prompt, extra_data=extra)
    entry = server.wait(prompt_id, timeout=timeout)
    assert entry["status"]["status_str"] == "success", (entry["status"], server.log_text()[-3000:])
    return prompt_id, entry


def run_failing(
    server: ComfyServer, prompt: dict[str, Any], timeout: float = RUN_TIMEOUT
) -> tuple[str, dict[str, Any]]:
    """Queue a prompt that is expected to fail; (prompt_id, history entry)."""
    prompt_id = server.queue(prompt)
    entry = server.wait(prompt_id, timeout=timeout)
    assert entry["status"]["status_str"] == "error", entry["status"]
    return prompt_id, entry


def saved_images(server: ComfyServer, entry: dict[str, Any], node_id: str | None = None) -> list[Path]:
    """The files the run's output nodes (or one of them) reported, in their order."""
    outputs = entry["outputs"] if node_id is None else {node_id: entry["outputs"][node_id]}
    return [
        server.output_dir / img["subfolder"] / img["filename"]
        for out in outputs.values()
        for img in out.get("images", [])
    ]


def chunks_of(path: Path) -> dict[str, str]:
    """A PNG's text chunks."""
    with Image.open(path) as img:
        img.load()
        return dict(img.text)


def document_of(path: Path) -> dict[str, Any]:
    """The plugin's document embedded in a PNG."""
    return json.loads(chunks_of(path)["runtime_metadata"])


def runtime_nodes(path: Path) -> dict[str, dict[str, Any]]:
    """The runtime block's nodes of a PNG's document, by id."""
    return {node["id"]: node for node in document_of(path)["runtime"]["nodes"]}


def status(server: ComfyServer) -> dict[str, Any]:
    """The plugin's status route: what capture installed, skipped, noted."""
    body = server.get_json("/runtime_metadata/status")
    assert isinstance(body, dict)
    return body


class LogWindow:
    """The part of the server log written from now on (the shared server's log holds every test)."""

    def __init__(self, server: ComfyServer) -> None:
        self.server = server
        self.start = len(server.log_text())

    def text(self) -> str:
        """What the server logged since this window opened."""
        return self.server.log_text()[self.start :]


def wait_for_file(path: Path, server: ComfyServer, timeout: float = 120.0) -> None:
    """Wait until a node of a running prompt has created ``path``."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert server.is_running(), server.log_text()[-3000:]
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout:.0f}s"
        time.sleep(0.05)
