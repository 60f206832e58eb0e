"""Capture on the March-2024 executor's call sequence: what is recorded, and what never breaks.

The executor under test is ``tests/executors/march2024.py`` (ComfyUI's real signatures); the
same behaviours are checked against a real ComfyUI server in ``tests/integration``.
"""

from __future__ import annotations

import functools
import gc
import importlib.util
import logging
import tracemalloc
import weakref
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runtime_metadata import capture
from runtime_metadata.capture import detect, hooks, inputs, wrapping
from runtime_metadata.capture.summary import REDACTED
from runtime_metadata.events.log import read_log
from runtime_metadata.events.schema import NodeFinished, NodeInputs, NodeStarted, RunFinished
from runtime_metadata.projections.runtime import project, runtime_document

from .executors import testnodes

EXECUTORS = Path(__file__).parent / "executors"


def load_executor(name: str = "march2024") -> ModuleType:
    """A fresh copy of a test executor module, so each test patches its own."""
    spec = importlib.util.spec_from_file_location(f"execution_{name}_{id(object())}", EXECUTORS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.NODE_CLASS_MAPPINGS.update(testnodes.MAPPINGS)
    return module


@pytest.fixture
def execution(monkeypatch):
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    capture.reset()
    module = load_executor()
    capture.install(module, "test")
    testnodes.Sink.calls.clear()
    yield module
    capture.reset()


CHAIN = {
    "1": {"class_type": "IntConst", "inputs": {"value": 16}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 48}},
    "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 7}},
    "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
}
#: What a run of CHAIN records: (node id, class_type) in order, and the first two nodes' inputs.
CHAIN_STARTED = [("1", "IntConst"), ("2", "Add"), ("3", "MakeImage"), ("4", "Sink")]
CHAIN_FIRST_INPUTS = [{"value": [16]}, {"a": [16], "b": [48]}]


def started(events):
    return [(e.node_id, e.class_type) for e in events if isinstance(e, NodeStarted)]


def run(execution, prompt, prompt_id="p1", outputs=("4",), executor=None):
    executor = executor or execution.PromptExecutor()
    executor.execute(prompt, prompt_id, {"extra_pnginfo": {"workflow": {"nodes": []}}}, list(outputs))
    return executor


def events_of(prompt_id):
    return read_log(capture.STORE.get(prompt_id)).events


def test_the_install_wraps_three_points_of_the_2024_executor_and_says_why_not_the_fourth(execution):
    assert capture.STATUS.skipped == []
    assert [i.split(":")[0] for i in capture.STATUS.installed] == ["run", "message", "call"]
    assert capture.STATUS.notes == [detect.NO_NODE_HOOK_NOTE]
    assert getattr(execution.recursive_execute, wrapping.MARK, None) is None  # ComfyUI's own function
    assert "recursive_execute" in capture.STATUS.generation


def test_executed_nodes_are_recorded_in_order_with_resolved_values(execution):
    run(execution, CHAIN)
    events = events_of("p1")
    started = [e.node_id for e in events if isinstance(e, NodeStarted)]
    assert started == ["1", "2", "3", "4"]
    inputs = {e.node_id: e.inputs for e in events if isinstance(e, NodeInputs)}
    assert inputs["2"] == {"a": [16], "b": [48]}
    assert inputs["3"] == {"width": [64], "seed": [7]}  # 64 exists only at run time
    tensor_type = f"{testnodes.Tensorish.__module__}.Tensorish"
    assert inputs["4"]["value"] == [{"type": tensor_type, "shape": [1, 8, 64, 3], "dtype": "torch.float32"}]
    assert "prompt" not in inputs["4"]  # hidden PROMPT is never copied into events
    assert inputs["4"]["unique_id"] == ["4"]
    assert [e.status for e in events if isinstance(e, NodeFinished)] == ["executed"] * 4
    assert isinstance(events[-1], RunFinished) and events[-1].status == "success"


def test_a_second_identical_run_marks_cached_nodes_and_each_run_sees_only_itself(execution):
    executor = run(execution, CHAIN, "first")
    prompt2 = {**CHAIN, "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 8}}}
    run(execution, prompt2, "second", executor=executor)
    doc = runtime_document(project(None, events_of("second")))
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [
        ("1", "cached"),
        ("2", "cached"),
        ("3", "executed"),
        ("4", "executed"),
    ]
    assert "duration_ms" not in doc["nodes"][0]
    # The cached nodes carry the values of the run that computed what the cache holds.
    assert doc["nodes"][0]["inputs"] == {"value": 16} and doc["nodes"][0]["cached_from"] == "first"
    assert doc["nodes"][1]["inputs"] == {"a": 16, "b": 48}
    first = runtime_document(project(None, events_of("first")))
    assert first["prompt_id"] == "first" and first["timing"]["cached_nodes"] == 0


def test_a_failing_node_is_recorded_and_the_run_closed_as_error(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
    }
    executor = run(execution, prompt, outputs=("2",))
    assert executor.success is False
    events = events_of("p1")
    failed = [e for e in events if isinstance(e, NodeFinished) and e.node_id == "2"]
    assert failed == [NodeFinished("2", failed[0].t_ns, "failed", "ValueError", "cannot handle 3")]
    assert events[-1].status == "error" and events[-1].error_message == "cannot handle 3"
    assert capture.current_run.get() is None


def test_an_interrupted_run_is_marked_interrupted(execution, monkeypatch):
    def interrupt(self, a, b):
        raise execution.InterruptProcessingException()

    monkeypatch.setattr(testnodes.Add, "run", interrupt)
    run(execution, CHAIN)
    events = events_of("p1")
    assert [e.status for e in events if isinstance(e, NodeFinished) and e.node_id == "2"] == ["interrupted"]
    assert events[-1].status == "interrupted"


def test_batch_lists_record_each_calls_own_value(execution):
    prompt = {
        "1": {"class_type": "SeedList", "inputs": {"start": 100, "count": 3}},
        "2": {"class_type": "MakeImage", "inputs": {"width": 8, "seed": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "SumList", "inputs": {"values": ["1", 0]}},
        "5": {"class_type": "Sink", "inputs": {"value": ["4", 0]}},
    }
    run(execution, prompt, outputs=("3", "5"))
    inputs = {e.node_id: e for e in events_of("p1") if isinstance(e, NodeInputs)}
    assert inputs["2"].inputs["seed"] == [100, 101, 102]
    assert inputs["2"].inputs["width"] == [8]
    assert inputs["2"].calls == 3
    assert inputs["4"].inputs["values"] == [100, 101, 102]
    assert inputs["4"].calls == 1  # INPUT_IS_LIST: one call with the whole list
    assert testnodes.Sink.calls[-1] == 303


def test_secrets_never_reach_an_event(execution):
    prompt = {
        "1": {"class_type": "ApiNode", "inputs": {"api_key": "sk-live-123", "size": 5}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    run(execution, prompt, outputs=("2",))
    data = capture.STORE.get("p1")
    inputs = {e.node_id: e.inputs for e in read_log(data).events if isinstance(e, NodeInputs)}
    assert inputs["1"]["api_key"] == [REDACTED]
    assert inputs["1"]["size"] == [5]
    # The prompt itself is kept in RunStarted (it is what ComfyUI embeds in every PNG) ...
    # ... but the resolved-input events never carry the key.
    assert all(b"sk-live-123" not in bytes(str(e), "utf8") for e in read_log(data).events if isinstance(e, NodeInputs))


def test_capture_changes_nothing_comfyui_returns(execution):
    with_capture = run(execution, CHAIN, "on")
    on = (with_capture.outputs["2"], with_capture.outputs_ui, with_capture.status_messages[1:])
    capture.reset()
    plain = load_executor()
    without = run(plain, CHAIN, "on")
    off = (without.outputs["2"], without.outputs_ui, without.status_messages[1:])
    assert on == off


def test_values_are_summaries_that_keep_nothing_alive(execution):
    # MakeImage's output object was summarised at call time; once ComfyUI lets go of it,
    # nothing of capture's may keep it alive.
    executor = run(execution, CHAIN)
    testnodes.Sink.calls.clear()
    image = executor.outputs["3"][0][0]
    ref = weakref.ref(image)
    del image, executor
    gc.collect()
    assert capture.STORE.get("p1") is not None
    assert ref() is None


def test_switching_capture_off_in_the_configuration_restores_comfyuis_own_functions(execution, monkeypatch):
    originals = {name: getattr(execution, name).__wrapped__ for name in ("get_output_data",)}
    original_run = execution.PromptExecutor.execute.__wrapped__
    run(execution, CHAIN, "on")
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "0")
    executor = run(execution, CHAIN, "off")  # this run is not captured and un-wraps
    assert executor.success is True
    assert capture.STORE.get("off") is None
    assert execution.get_output_data is originals["get_output_data"]
    assert execution.PromptExecutor.execute is original_run
    assert capture.STATUS.installed == [] and capture.STATUS.active is False
    assert capture.STATUS.disabled_reason is None  # off by choice, not by a fault
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.install(execution, "test")  # what the prompt handler does once the config says on
    run(execution, {**CHAIN, "1": {"class_type": "IntConst", "inputs": {"value": 2}}}, "on again")
    assert len([e for e in events_of("on again") if isinstance(e, NodeStarted)]) == 4


#: Where a fault is injected -> the wrap point it must be reported at.
def test_a_node_failing_before_its_call_is_recorded_from_comfyuis_error_message(execution):
    """No per-node wrapper on 2024: the failure comes from ComfyUI's execution_error."""
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "BrokenInit", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    executor = run(execution, prompt, outputs=("3",))
    assert executor.success is False
    events = events_of("p1")
    finished = [(e.node_id, e.status, e.error_type, e.error_message) for e in events if isinstance(e, NodeFinished)]
    assert finished == [
        ("1", "executed", None, None),
        ("2", "failed", "RuntimeError", "no backend for key=sk-init-999"),
    ]
    assert "2" not in [e.node_id for e in events if isinstance(e, NodeStarted)]  # it never started
    assert events[-1].status == "error" and events[-1].error_type == "RuntimeError"
    doc = runtime_document(project(None, events))
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [("1", "executed"), ("2", "failed")]


def test_calls_are_matched_to_nodes_through_objects_kept_from_earlier_runs(execution):
    """ComfyUI keeps node objects between runs; a reused object is still found by identity."""
    executor = run(execution, CHAIN, "first")
    kept = dict(executor.object_storage)
    executor.outputs.clear()  # every node runs again, on the objects of the first run
    run(execution, CHAIN, "second", executor=executor)
    assert all(executor.object_storage[k] is v for k, v in kept.items())
    events = events_of("second")
    assert started(events) == CHAIN_STARTED
    assert [e.inputs for e in events if isinstance(e, NodeInputs)][:2] == CHAIN_FIRST_INPUTS


def test_the_object_index_kept_across_runs_is_checked_against_the_storage(execution):
    """An index entry that names another node (an id reused by a new object) is not believed."""
    executor = run(execution, CHAIN, "first")
    keys = list(executor.object_storage)
    objects = [executor.object_storage[k] for k in keys]
    # Every object's id now names the previous node: what reused ids would look like.
    for obj, wrong in zip(objects, keys[-1:] + keys[:-1]):
        capture.STATE.object_index[id(obj)] = (wrong, str(wrong[0]), str(wrong[1]))
    executor.outputs.clear()
    run(execution, CHAIN, "second", executor=executor)
    events = events_of("second")
    assert started(events) == CHAIN_STARTED


def test_a_get_output_data_call_for_no_node_of_the_run_records_nothing(execution):
    """Another pack calling get_output_data itself: no node to attribute it to, so no event."""
    executor = execution.PromptExecutor()

    class Probe:
        RETURN_TYPES = ("INT",)
        FUNCTION = "go"

        def go(self, x):
            return (x,)

    captured_during = []

    class Caller:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {})}}

        def run(self, value):
            captured_during.append(execution.get_output_data(Probe(), {"x": [value]}))
            return (value,)

    execution.NODE_CLASS_MAPPINGS["Caller"] = Caller
    run(execution, {"1": {"class_type": "Caller", "inputs": {"value": 5}}}, outputs=("1",), executor=executor)
    assert captured_during == [([[5]], {})]
    events = events_of("p1")
    assert [e.node_id for e in events if isinstance(e, NodeStarted)] == ["1"]
    assert capture.STATUS.disabled_reason is None


FAULTS = {
    "run": "run",
    "message": "message",
    "node lookup": "call",
    "call": "call",
}


@pytest.mark.parametrize("point", sorted(FAULTS))
def test_a_fault_at_any_wrap_point_leaves_the_run_intact_and_switches_capture_off(
    execution, monkeypatch, caplog, point
):
    def boom(*args, **kwargs):
        raise RuntimeError(f"injected fault at {point}")

    executor = run(execution, CHAIN, "warm")  # a normal run first, so the next one has cached nodes
    if point == "run":
        monkeypatch.setattr(hooks, "Recorder", boom)
    elif point == "message":
        monkeypatch.setattr(hooks, "NodeCached", boom)
    elif point == "node lookup":  # finding which node a call belongs to (object storage)
        monkeypatch.setattr(hooks, "_storage_key", boom)
        capture.STATE.object_index.clear()  # the objects of the warm run are not known: a lookup it is
    else:
        monkeypatch.setattr(inputs, "summarize_values", boom)
    prompt2 = {**CHAIN, "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 99}}}
    with caplog.at_level(logging.ERROR, logger="runtime_metadata"):
        run(execution, prompt2, "faulty", executor=executor)
        run(execution, {**prompt2, "1": {"class_type": "IntConst", "inputs": {"value": 1}}}, "after", executor=executor)
    assert executor.success is True
    assert testnodes.Sink.calls[-1].shape == (1, 8, 49, 3)  # the later run computed 1+48 as usual
    assert capture.STATUS.active is False
    assert capture.STATUS.disabled_reason.startswith(FAULTS[point] + ":")
    assert f"injected fault at {point}" in capture.STATUS.disabled_reason
    assert sum("capture switched off" in r.getMessage() for r in caplog.records) == 1
    assert capture.STORE.get("after") is None  # capture stayed off for the rest of the process


def outer_wrapper(func, calls):
    def wrapper(*args, **kwargs):
        calls.append(func.__name__)
        return func(*args, **kwargs)

    wrapper.__wrapped__ = func
    return wrapper


@pytest.mark.parametrize("order", ["theirs first", "ours first"])
def test_another_pack_wrapping_the_same_functions_keeps_working(monkeypatch, order):
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.reset()
    module = load_executor()
    theirs: list[str] = []

    def wrap_theirs():
        module.get_output_data = outer_wrapper(module.get_output_data, theirs)
        module.recursive_execute = outer_wrapper(module.recursive_execute, theirs)

    if order == "theirs first":
        wrap_theirs()
        capture.install(module, "test")
    else:
        capture.install(module, "test")
        wrap_theirs()
    try:
        run(module, CHAIN)
        assert theirs.count("get_output_data") == 4
        assert len([e for e in events_of("p1") if isinstance(e, NodeInputs)]) == 4
        capture.install(module, "test")  # a second install does nothing
        run(module, CHAIN, "p2", executor=None)
        assert len([e for e in events_of("p2") if isinstance(e, NodeInputs)]) == 4
        assert theirs.count("get_output_data") == 8
        capture.uninstall()
        if order == "theirs first":
            assert not capture.is_ours(module.get_output_data)  # original (their wrapper) restored
        run(module, CHAIN, "p3", executor=None)
        assert capture.STORE.get("p3") is None  # ours is gone or pass-through
        assert theirs.count("get_output_data") == 12  # theirs still runs
    finally:
        capture.reset()


def varargs_wrapper(func, calls):
    """Another pack's wrapper that names none of its arguments and hides what it wraps."""

    def wrapper(*args, **kwargs):
        calls.append(func.__name__)
        return func(*args, **kwargs)

    return wrapper


def partialmethod_wrapper(func, calls):
    """Another pack's ``functools.partialmethod`` wrapper (self, *args, original, **kwargs)."""

    def execute(self, *args, __original_function, **kwargs):
        calls.append(func.__name__)
        return __original_function(self, *args, **kwargs)

    return functools.partialmethod(execute, __original_function=func)


@pytest.mark.parametrize("style", [varargs_wrapper, partialmethod_wrapper])
def test_a_pack_wrapping_with_args_and_kwargs_only_does_not_stop_capture(monkeypatch, style):
    """Such a signature names nothing; ComfyUI's own argument order is assumed (and said)."""
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.reset()
    module = load_executor()
    theirs: list[str] = []
    module.PromptExecutor.execute = style(module.PromptExecutor.execute, theirs)
    module.get_output_data = varargs_wrapper(module.get_output_data, theirs)
    try:
        capture.install(module, "test")
        assert capture.STATUS.skipped == []
        assert [i.split(":")[0] for i in capture.STATUS.installed] == ["run", "message", "call"]
        assumed = [n for n in capture.STATUS.notes if "argument order" in n]
        assert [n.split(":")[0] for n in assumed] == ["run", "call"]
        run(module, CHAIN)
        assert theirs.count("execute") == 1 and theirs.count("get_output_data") == 4
        events = events_of("p1")
        assert started(events) == CHAIN_STARTED
        assert [e.inputs for e in events if isinstance(e, NodeInputs)][:2] == CHAIN_FIRST_INPUTS
    finally:
        capture.reset()


def test_a_pack_wrapping_recursive_execute_with_args_and_kwargs_keeps_node_ids(monkeypatch):
    """March 2024 needs nothing from recursive_execute's parameters: ids come from the storage."""
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.reset()
    module = load_executor()
    theirs: list[str] = []
    module.recursive_execute = varargs_wrapper(module.recursive_execute, theirs)
    try:
        capture.install(module, "test")
        assert capture.STATUS.skipped == []
        assert [i.split(":")[0] for i in capture.STATUS.installed] == ["run", "message", "call"]
        run(module, CHAIN)
        assert theirs.count("recursive_execute") == 4
        assert [e.node_id for e in events_of("p1") if isinstance(e, NodeStarted)] == ["1", "2", "3", "4"]
    finally:
        capture.reset()


def _sync_generation(execute: Any) -> ModuleType:
    """The execution module of Aug 2024 - Jul 2025 as far as wrap points go: ComfyUI's signatures."""
    module = ModuleType("execution_sync_generation")

    class PromptExecutor:
        def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
            raise NotImplementedError

        def add_message(self, event, data, broadcast: bool):
            raise NotImplementedError

    def get_output_data(obj, input_data_all, execution_block_cb=None, pre_execute_cb=None):
        raise NotImplementedError

    module.PromptExecutor = PromptExecutor
    module.execute = execute
    module.get_output_data = get_output_data
    return module


def test_the_order_assumed_for_get_output_data_follows_the_generation():
    def sync_execute(
        server,
        dynprompt,
        caches,
        current_item,
        extra_data,
        executed,
        prompt_id,
        execution_list,
        pending_subgraph_results,
    ):
        raise NotImplementedError

    async def async_execute(
        server,
        dynprompt,
        caches,
        current_item,
        extra_data,
        executed,
        prompt_id,
        execution_list,
        pending_subgraph_results,
        pending_async_nodes,
    ):
        raise NotImplementedError

    def varargs_execute(*args, **kwargs):
        raise NotImplementedError

    assert detect.assumed_order(load_executor(), "call") == ("obj", "input_data_all")
    assert detect.assumed_order(_sync_generation(sync_execute), "call") == ("obj", "input_data_all")
    assert detect.assumed_order(_sync_generation(async_execute), "call") == (
        "prompt_id",
        "unique_id",
        "obj",
        "input_data_all",
    )
    assert detect.assumed_order(_sync_generation(varargs_execute), "call") == ()  # generation unknown


def test_calls_without_node_ids_are_not_recorded_when_the_node_hook_cannot_be_installed():
    """Sync executor whose execute hides its parameters: the call hook could not name nodes."""

    def varargs_execute(*args, **kwargs):
        raise NotImplementedError

    points, skipped = detect.wrap_points(_sync_generation(varargs_execute))
    assert [p.name for p in points] == ["run", "message"]
    assert skipped == [
        "node: execute('args', 'kwargs') lacks current_item",
        "call: get_output_data carries no node id and the node hook is not installed",
    ]


def test_a_run_whose_arguments_are_not_a_prompt_is_left_alone(monkeypatch, caplog):
    """Where the order was assumed, a call that does not fit it is not recorded (and said once)."""
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.reset()
    module = load_executor()
    original = module.PromptExecutor.execute

    def by_keywords_elsewhere(self, *args, **kwargs):  # a caller's own calling convention
        prompt, prompt_id = kwargs.pop("graph"), kwargs.pop("name")
        return original(self, prompt, prompt_id, *args, **kwargs)

    module.PromptExecutor.execute = by_keywords_elsewhere
    try:
        capture.install(module, "test")
        executor = module.PromptExecutor()
        with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
            executor.execute(graph=CHAIN, name="kw", extra_data={}, execute_outputs=["4"])
        assert executor.success is True
        assert capture.STORE.get("kw") is None and capture.STATUS.disabled_reason is None
        assert any("run not captured" in r.getMessage() for r in caplog.records)
    finally:
        capture.reset()


def test_finished_runs_are_bounded_and_memory_stays_flat(execution, monkeypatch):
    monkeypatch.setenv("AAA_METADATA_MAX_RUNS", "16")
    executor = execution.PromptExecutor()
    small = {
        "1": {"class_type": "IntConst", "inputs": {"value": 1}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    for i in range(500):
        run(execution, {**small, "1": {"class_type": "IntConst", "inputs": {"value": i}}}, f"w{i}", ("2",), executor)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(10_000):
        run(execution, {**small, "1": {"class_type": "IntConst", "inputs": {"value": i}}}, f"r{i}", ("2",), executor)
        testnodes.Sink.calls.clear()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(
        s.size_diff
        for s in after.compare_to(before, "filename")
        if "runtime_metadata" in str(s.traceback) or "main" in str(s.traceback)
    )
    assert len(capture.STORE) == 16
    assert capture.STORE.ids()[-1] == "r9999"
    assert growth < 256 * 1024, growth


def test_a_credential_fed_through_a_link_is_redacted_at_its_source(execution):
    prompt = {
        "1": {"class_type": "Text", "inputs": {"value": "sk-linked-999", "max_tokens": 77}},
        "2": {"class_type": "ApiNode", "inputs": {"api_key": ["1", 0], "size": 5}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3",))
    data = capture.STORE.get("p1")
    assert b"sk-linked-999" not in data
    events = read_log(data).events
    inputs = {e.node_id: e.inputs for e in events if isinstance(e, NodeInputs)}
    assert inputs["1"] == {"value": [REDACTED], "max_tokens": [77]}  # max_tokens is no credential
    assert inputs["2"]["api_key"] == [REDACTED]
    assert events[0].prompt["1"]["inputs"]["value"] == REDACTED
    assert testnodes.Sink.calls[-1] == 5  # the node itself got its real key


def test_an_error_message_quoting_a_key_is_redacted(execution):
    prompt = {"1": {"class_type": "KeyedFail", "inputs": {"api_key": "sk-in-url-123"}}}
    run(execution, prompt, outputs=("1",))
    data = capture.STORE.get("p1")
    assert b"sk-in-url-123" not in data
    finished = read_log(data).events[-1]
    assert finished.status == "error" and "key=[redacted] failed" in finished.error_message


def test_odd_strings_and_huge_ints_are_recorded_and_capture_stays_on(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 2**70}, "_meta": {"title": "half an emoji \ud83d"}},
        "2": {"class_type": "Text", "inputs": {"value": "broken \udc00 text", "max_tokens": 1}},
        "3": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3", "4"))
    assert capture.STATUS.active and capture.STATUS.disabled_reason is None
    events = read_log(capture.STORE.get("p1")).events
    inputs = {e.node_id: e.inputs for e in events if isinstance(e, NodeInputs)}
    assert inputs["1"]["value"] == [str(2**70)]
    assert inputs["2"]["value"] == ["broken ? text"]
    assert events[0].prompt["1"]["_meta"]["title"] == "half an emoji ?"


def test_an_unusable_log_folder_keeps_the_run_in_memory(execution, monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AAA_METADATA_LOG_DIR", str(blocker / "logs"))
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        run(execution, CHAIN)
        run(execution, CHAIN, "p2")
    assert capture.STATUS.active
    assert capture.STORE.get("p1") is not None and capture.STORE.get("p2") is not None
    assert sum("keeping them in memory only" in r.getMessage() for r in caplog.records) == 1


def test_blobs_in_the_prompt_are_cut_and_the_store_is_bounded_in_bytes(execution, monkeypatch):
    from runtime_metadata.capture import recorder

    blob = "iVBORw0KGgo" + "A" * 3_000_000  # a base64 image pasted into a widget
    prompt = {
        "1": {"class_type": "Text", "inputs": {"value": blob, "max_tokens": 1}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    monkeypatch.setattr(recorder, "MAX_STORE_BYTES", 50_000)
    for i in range(5):
        run(
            execution,
            {**prompt, "1": {"class_type": "Text", "inputs": {"value": blob + str(i), "max_tokens": 1}}},
            f"b{i}",
            ("2",),
        )
    kept = capture.STORE.ids()
    assert kept[-1] == "b4" and len(kept) < 5
    data = capture.STORE.get("b4")
    assert len(data) < 100_000
    started = read_log(data).events[0]
    assert started.prompt["1"]["inputs"]["value"].endswith(f"…[{len(blob) + 1} chars]")


def test_a_cached_node_carries_nothing_when_its_literal_inputs_changed_since(execution):
    executor = run(execution, CHAIN, "first")
    # Another prompt reuses id "1" for a different value: ComfyUI re-runs it, and a later
    # rerun of the first prompt must not claim the second prompt's values for its cache...
    run(
        execution,
        {**CHAIN, "1": {"class_type": "IntConst", "inputs": {"value": 17}}},
        "other",
        executor=execution.PromptExecutor(),
    )
    run(
        execution,
        {**CHAIN, "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}, "_meta": {}}},
        "again",
        executor=executor,
    )
    cached = {n["id"]: n for n in runtime_document(project(None, events_of("again")))["nodes"]}
    assert [n["status"] for n in cached.values()] == ["cached"] * 4
    # Nodes 2-4 have the same literals as in "other", but not the same upstream graph.
    assert all("inputs" not in n and "cached_from" not in n for n in cached.values())


def test_a_future_handed_back_by_a_plain_function_is_returned_as_it_is(monkeypatch):
    """Another pack's sync wrapper may return a Task: callers keep .cancel() and .done()."""
    import asyncio

    seen: list = []

    class Recording(hooks.Hook):
        name = "probe"

        def begin(self, args, kwargs):
            return "ctx"

        def end(self, ctx, result, exc):
            seen.append((ctx, result, exc))

    monkeypatch.setattr(capture.STATUS, "active", True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        wrapped = wrapping.make_wrapper(lambda: fut, Recording([]))
        assert wrapped() is fut
        assert seen == []  # not finished yet
        fut.set_result(42)
        await asyncio.sleep(0)
        assert seen == [("ctx", 42, None)]

    asyncio.run(main())
