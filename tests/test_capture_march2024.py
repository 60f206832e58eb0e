"""What only the March-2024 executor asks of capture: node objects instead of node ids.

There ``get_output_data(obj, input_data_all)`` carries no node id and ``recursive_execute``
stays unwrapped: the call hook finds the node from its object in ComfyUI's
``object_storage``. The executor under test is ``tests/executors/march2024.py`` (ComfyUI's
real signatures); what every generation shares is in ``test_capture.py``. Another pack
wrapping these functions (varargs and signature-preserving, in both orders) is asserted on the
real March-2024 ComfyUI in ``tests/integration/test_other_packs.py``.
"""

from __future__ import annotations

import gc
import logging
import tracemalloc
import weakref

import pytest

from runtime_metadata import capture
from runtime_metadata.capture import detect, hooks, wrapping
from runtime_metadata.events.schema import NodeInputs, NodeStarted

from .executors import testnodes
from .generations import CHAIN, CHAIN_FIRST_INPUTS, CHAIN_STARTED, events_of, load_executor, of, run, started


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    monkeypatch.delenv("AAA_METADATA_LOG_DIR", raising=False)
    capture.reset()
    testnodes.Sink.calls.clear()
    yield
    capture.reset()
    testnodes.Sink.calls.clear()


@pytest.fixture
def execution(env):
    module = load_executor()
    capture.install(module, "test")
    return module


def test_the_install_leaves_recursive_execute_unwrapped_and_says_why(execution):
    assert [i.split(":")[0] for i in capture.STATUS.installed] == ["run", "message", "call"]
    assert capture.STATUS.notes == [detect.NO_NODE_HOOK_NOTE]
    assert getattr(execution.recursive_execute, wrapping.MARK, None) is None  # ComfyUI's own function
    assert "recursive_execute" in capture.STATUS.generation


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


def test_calls_are_matched_to_nodes_through_objects_kept_from_earlier_runs(execution):
    """ComfyUI keeps node objects between runs; a reused object is still found by identity."""
    executor = run(execution, CHAIN, "first")
    kept = dict(executor.object_storage)
    executor.outputs.clear()  # every node runs again, on the objects of the first run
    run(execution, CHAIN, "second", executor=executor)
    assert all(executor.object_storage[k] is v for k, v in kept.items())
    events = events_of("second")
    assert started(events) == CHAIN_STARTED
    assert [e.inputs for e in of(events, NodeInputs)][:2] == CHAIN_FIRST_INPUTS


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
    assert started(events_of("second")) == CHAIN_STARTED


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
    assert [e.node_id for e in of(events_of("p1"), NodeStarted)] == ["1"]
    assert capture.STATUS.disabled_reason is None


def test_a_fault_while_finding_a_calls_node_leaves_the_run_intact_and_switches_capture_off(
    execution, monkeypatch, caplog
):
    def boom(*args, **kwargs):
        raise RuntimeError("injected fault at node lookup")

    executor = run(execution, CHAIN, "warm")
    monkeypatch.setattr(hooks, "_storage_key", boom)
    capture.STATE.object_index.clear()  # the objects of the warm run are not known: a lookup it is
    prompt2 = {**CHAIN, "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 99}}}
    with caplog.at_level(logging.ERROR, logger="runtime_metadata"):
        run(execution, prompt2, "faulty", executor=executor)
        run(execution, {**prompt2, "1": {"class_type": "IntConst", "inputs": {"value": 1}}}, "after", executor=executor)
    assert executor.success is True
    assert testnodes.Sink.calls[-1].shape == (1, 8, 49, 3)  # the later run computed 1+48 as usual
    assert capture.STATUS.active is False
    assert capture.STATUS.disabled_reason.startswith("call: inputs:")
    assert "injected fault at node lookup" in capture.STATUS.disabled_reason
    assert sum("capture switched off" in r.getMessage() for r in caplog.records) == 1
    assert capture.STORE.get("after") is None


def test_finished_runs_are_bounded_and_memory_stays_flat(execution, monkeypatch):
    """The store, measured on the cheapest executor: 10,000 runs."""
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
