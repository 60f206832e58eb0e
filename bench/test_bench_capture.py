"""Per-node capture cost: one node through the wrapped executor functions minus the unwrapped.

The executor is the March-2024 test executor (``tests/executors/march2024.py``, ComfyUI's real
call sequence): one node with eight scalar inputs (a KSampler's worth) goes through
``recursive_execute`` -> ``get_input_data`` -> ``get_output_data`` -> the node function. The
same call is timed on a plain copy of the module and on a copy with capture installed (all
wrappers of one node call: on this executor the call hook alone, with a recorder active as
during a run, including its share of encoding the event batches). Both are measured in the same session; the difference of the medians is the capture
cost per node (target: under 2 µs), stored with the ratio in ``extra_info``.

Run: ``pytest bench/test_bench_capture.py --benchmark-only``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from runtime_metadata import capture
from runtime_metadata.capture.recorder import Recorder, current_run
from runtime_metadata.events.log import FileLog, MemoryLog, read_log

EXECUTORS = Path(__file__).resolve().parent.parent / "tests" / "executors"
TARGET_US = 2.0
_medians: dict[str, float] = {}


def _load(name: str) -> ModuleType:
    """A fresh copy of a test executor module (bench is not a package: import by path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}_{id(object())}", EXECUTORS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Sampler:
    """Eight scalar inputs, like a KSampler's widgets; returns at once."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seed": ("INT", {}),
                "steps": ("INT", {}),
                "cfg": ("FLOAT", {}),
                "sampler_name": ("STRING", {}),
                "scheduler": ("STRING", {}),
                "denoise": ("FLOAT", {}),
                "width": ("INT", {}),
                "height": ("INT", {}),
            }
        }

    def sample(self, seed, steps, cfg, sampler_name, scheduler, denoise, width, height):
        return (seed,)


PROMPT = {
    "17": {
        "class_type": "Sampler",
        "inputs": {
            "seed": 123456789,
            "steps": 25,
            "cfg": 7.5,
            "sampler_name": "dpmpp_2m",
            "scheduler": "karras",
            "denoise": 1.0,
            "width": 1024,
            "height": 1024,
        },
    }
}


def _one_node(module: ModuleType):
    """A callable running node 17 once through ``module.recursive_execute`` (as ComfyUI does)."""
    module.NODE_CLASS_MAPPINGS["Sampler"] = Sampler
    outputs: dict = {}
    executed: set = set()
    outputs_ui: dict = {}
    storage: dict = {}
    extra = {"extra_pnginfo": {"workflow": {}}}

    def call() -> None:
        outputs.clear()  # so that the node runs every time instead of coming from the cache
        result = module.recursive_execute(None, PROMPT, outputs, "17", extra, executed, "bench", outputs_ui, storage)
        assert result[0] is True

    return call, outputs, storage


def _record(benchmark, name: str) -> None:
    _medians[name] = benchmark.stats.stats.median


@pytest.fixture
def captured(monkeypatch):
    """The executor with capture installed and a run in progress (a recorder in context)."""
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    monkeypatch.delenv("AAA_METADATA_LOG_DIR", raising=False)
    capture.reset()
    module = _load("march2024")
    capture.install(module, "bench")
    # March 2024: recursive_execute stays unwrapped (the node comes from object_storage).
    assert [i.split(":")[0] for i in capture.STATUS.installed] == ["run", "message", "call"]
    rec = Recorder("bench", PROMPT, None, "bench", "bench")
    token = current_run.set(rec)
    yield module, rec
    current_run.reset(token)
    capture.reset()


def test_node_call_unwrapped(benchmark):
    """Baseline: the same node call through the plain (unwrapped) executor functions."""
    call, outputs, _ = _one_node(_load("march2024"))
    benchmark(call)
    assert outputs["17"] == [[123456789]]
    _record(benchmark, "unwrapped")


def test_node_call_captured(benchmark, captured):
    """The node call through every wrapper one node goes through, recording its events."""
    module, rec = captured
    call, outputs, storage = _one_node(module)
    rec.objects = storage  # what the run hook does: ComfyUI's object storage names the node
    holder = [0]

    def captured_call() -> None:
        call()
        holder[0] += 1
        if holder[0] == 2000:  # a run's log stays small; start a fresh one now and then
            holder[0] = 0
            rec.log = MemoryLog()

    benchmark(captured_call)
    assert outputs["17"] == [[123456789]]
    assert capture.STATUS.active and capture.STATUS.disabled_reason is None
    call()  # one more, so that the log certainly holds a node's events
    events = read_log(rec.snapshot()).events
    assert [type(e).__name__ for e in events[-3:]] == ["NodeStarted", "NodeInputs", "NodeFinished"]
    assert events[-2].inputs["sampler_name"] == ["dpmpp_2m"] and events[-2].inputs["cfg"] == [7.5]
    _record(benchmark, "captured")
    if "unwrapped" in _medians:
        added_us = (_medians["captured"] - _medians["unwrapped"]) * 1e6
        ratio = _medians["captured"] / _medians["unwrapped"]
        benchmark.extra_info["added_us_per_node"] = round(added_us, 3)
        benchmark.extra_info["ratio_to_unwrapped"] = round(ratio, 3)
        benchmark.extra_info["target_us_per_node"] = TARGET_US
        print(
            f"\ncapture per node: +{added_us:.2f} µs (unwrapped {_medians['unwrapped'] * 1e6:.2f} µs, "
            f"captured {_medians['captured'] * 1e6:.2f} µs, ratio {ratio:.2f}x; target < {TARGET_US} µs)"
        )


def test_node_call_captured_with_a_log_folder(benchmark, captured, tmp_path):
    """The same call with a log folder: each node's events are written (one os.write) when it ends.

    What durability costs per node (see ``Recorder``): reported beside the unwrapped call and
    beside capture into memory, measured in the same session.
    """
    module, _ = captured
    rec = Recorder("bench-file", PROMPT, None, "bench", "bench", log_dir=str(tmp_path))
    token = current_run.set(rec)
    try:
        assert isinstance(rec.log, FileLog) and rec.flush_at == 1
        call, outputs, storage = _one_node(module)
        rec.objects = storage
        holder = [0]

        def captured_call() -> None:
            call()
            holder[0] += 1
            if holder[0] == 20_000:  # a fresh file now and then, as runs come and go
                holder[0] = 0
                rec.log.close(sync=False)
                rec.log = FileLog(tmp_path / "bench-file.rtlog")

        benchmark(captured_call)
        assert outputs["17"] == [[123456789]]
        assert capture.STATUS.active and capture.STATUS.disabled_reason is None
        size = rec.log.size
        call()
        assert rec.log.size > size  # written when the node ended, no flush asked for
        events = read_log(rec.log.to_bytes()).events
        assert [type(e).__name__ for e in events[-3:]] == ["NodeStarted", "NodeInputs", "NodeFinished"]
    finally:
        current_run.reset(token)
        rec.log.close(sync=False)
    _record(benchmark, "captured_file")
    if "unwrapped" in _medians:
        added_us = (_medians["captured_file"] - _medians["unwrapped"]) * 1e6
        benchmark.extra_info["added_us_per_node"] = round(added_us, 3)
        benchmark.extra_info["ratio_to_unwrapped"] = round(_medians["captured_file"] / _medians["unwrapped"], 3)
        line = f"\ncapture per node with a log folder: +{added_us:.2f} µs"
        if "captured" in _medians:
            write_us = (_medians["captured_file"] - _medians["captured"]) * 1e6
            benchmark.extra_info["added_us_over_memory"] = round(write_us, 3)
            line += f" ({write_us:+.2f} µs over capture into memory)"
        print(line)
