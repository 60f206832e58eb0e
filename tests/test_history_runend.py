"""What capture hands to the history: one run-end notice per run, and the run's facts in its log.

Run on both test executors (ComfyUI's real signatures): the March-2024 one and the modern one.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata import capture
from runtime_metadata.events.log import read_log, read_log_file
from runtime_metadata.events.schema import RunFinished, RunStarted, SavedImage

from . import test_capture, test_capture_modern
from .executors import testnodes


class SaveFile:
    """A node that reports an image as ComfyUI's SaveImage does (``ui.images``)."""

    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*", {}), "name": ("STRING", {})}}

    def run(self, value: Any, name: str) -> dict[str, Any]:
        return {"ui": {"images": [{"filename": name, "subfolder": "sub", "type": "output"}, {"odd": 1}]}}


PROMPT = {
    "1": {"class_type": "IntConst", "inputs": {"value": 16}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 48}},
    "3": {"class_type": "SaveFile", "inputs": {"value": ["2", 0], "name": "a.png"}},
}


@pytest.fixture(params=["march2024", "modern"])
def execution(request, monkeypatch, tmp_path):
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    monkeypatch.setenv("AAA_METADATA_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setenv("AAA_METADATA_WORKER_ID", "worker-a")
    capture.reset()
    if request.param == "march2024":
        module = test_capture.load_executor()
    else:
        module = test_capture_modern.load_modern("2026")
    module.NODE_CLASS_MAPPINGS["SaveFile"] = SaveFile
    # Where ComfyUI keeps "output" images, as folder_paths would say.
    monkeypatch.setattr(capture, "run_settings", _settings_with_folder(tmp_path / "out"))
    capture.install(module, "test")
    testnodes.Sink.calls.clear()
    ends: list[capture.RunEnd] = []
    capture.add_run_listener(ends.append)
    yield module, ends
    capture.remove_run_listener(ends.append)
    capture.reset()


def _settings_with_folder(folder: Path):
    real = capture.run_settings

    def settings() -> capture.RunSettings:
        import dataclasses

        return dataclasses.replace(real(), folder_of=lambda kind: str(folder) if kind == "output" else None)

    return settings


def run(module, prompt, prompt_id, client_id="client-1", executor=None):
    executor = executor or module.PromptExecutor()
    extra = {"extra_pnginfo": {"workflow": {"nodes": []}}, "client_id": client_id}
    executor.execute(copy.deepcopy(prompt), prompt_id, extra, ["3"])
    return executor


def test_each_run_end_is_announced_once_with_its_whole_log(execution, tmp_path):
    module, ends = execution
    run(module, PROMPT, "p1")
    assert [(e.prompt_id, e.client_id) for e in ends] == [("p1", "client-1")]
    end = ends[0]
    assert end.log == capture.STORE.get("p1")
    assert end.log_path == tmp_path / "logs" / "p1.rtlog"
    assert end.log_path.read_bytes() == end.log  # the file is complete when listeners hear of it
    events = read_log(end.log).events
    assert isinstance(events[-1], RunFinished)


def test_the_log_names_the_client_the_worker_and_the_images_the_run_saved(execution, tmp_path):
    module, ends = execution
    executor = run(module, PROMPT, "p1")
    events = read_log(ends[0].log).events
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.client_id, started.worker_id) == ("client-1", "worker-a")
    path = str(tmp_path / "out" / "sub" / "a.png")
    assert events[-1].images == [SavedImage("3", "a.png", "sub", "output", path)]
    # Run again: SaveFile is cached, so this run saved nothing, whatever ComfyUI still lists.
    run(module, PROMPT, "p2", client_id=None, executor=executor)
    events = read_log(ends[1].log).events
    assert events[0].client_id is None
    assert events[-1].images == []


def test_a_prompt_id_sent_twice_keeps_both_runs_logs(execution, tmp_path):
    module, ends = execution
    run(module, PROMPT, "same")
    run(module, {**PROMPT, "1": {"class_type": "IntConst", "inputs": {"value": 17}}}, "same")
    paths = [e.log_path for e in ends]
    assert paths == [tmp_path / "logs" / "same.rtlog", tmp_path / "logs" / "same.2.rtlog"]
    first, second = (read_log_file(p).events for p in paths)
    assert first[0].prompt["1"]["inputs"]["value"] == 16 and second[0].prompt["1"]["inputs"]["value"] == 17


def test_a_failing_listener_is_reported_once_and_changes_nothing(execution, caplog):
    module, ends = execution

    def broken(end: capture.RunEnd) -> None:
        raise RuntimeError("listener bug")

    capture.add_run_listener(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="runtime_metadata"):
            run(module, PROMPT, "p1")
            run(module, {**PROMPT, "1": {"class_type": "IntConst", "inputs": {"value": 1}}}, "p2")
    finally:
        capture.remove_run_listener(broken)
    assert [e.prompt_id for e in ends] == ["p1", "p2"]  # listeners after the broken one still hear
    reports = [r for r in caplog.records if "listener" in r.getMessage()]
    assert len(reports) == 1 and "unaffected" in reports[0].getMessage()
    assert capture.STATUS.active and capture.STATUS.disabled_reason is None


def test_a_listener_added_twice_is_called_once(execution):
    module, ends = execution
    capture.add_run_listener(ends.append)
    run(module, PROMPT, "p1")
    assert len(ends) == 1
