"""Capture on modern ComfyUI's async executor: what only it does, and what never breaks there.

The executor under test is ``tests/executors/modern.py``: ComfyUI's real signatures and call
sequence (lazy inputs, async nodes, node expansion, the cache's early return), in the
signature forms of ``generations.MODERN_VARIANTS``. What every generation shares is in
``test_capture.py``. Where a real ComfyUI 0.3.64 in ``tests/integration`` asserts the same
behaviour, the test runs here on the other forms only (``covered_by_real_servers``); tests of
what a server cannot show (the executor's call sequence, faults, signatures) run on all.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from typing import Any

import pytest

from runtime_metadata import capture
from runtime_metadata.capture import detect, hooks, inputs
from runtime_metadata.capture.summary import REDACTED
from runtime_metadata.events.log import read_log
from runtime_metadata.events.schema import (
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)

from .executors import testnodes
from .executors.modern_nodes import AsyncSleep, ExpandFail, Probe
from .generations import (
    CHAIN,
    EXTRA,
    MODERN_VARIANTS,
    ON_REAL_SERVERS,
    clear_node_state,
    covered_by_real_servers,
    doc_of,
    events_of,
    load_modern,
    of,
    run,
)


@pytest.fixture(params=sorted(MODERN_VARIANTS))
def variant(request) -> str:
    return request.param


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    monkeypatch.delenv("AAA_METADATA_LOG_DIR", raising=False)
    capture.reset()
    clear_node_state()
    yield
    capture.reset()
    clear_node_state()


@pytest.fixture
def execution(env, variant):
    module = load_modern(variant)
    capture.install(module, "test")
    return module


def trace_calls(module) -> list[tuple[str, str, str, int]]:
    """Wrap ``execute`` / ``get_output_data`` on top of capture; note each entry and exit."""
    calls: list[tuple[str, str, str, int]] = []

    def wrap(name: str, index: int) -> None:
        inner = getattr(module, name)

        async def tracer(*args, **kwargs):
            calls.append((name, ">", args[index], time.perf_counter_ns()))
            try:
                return await inner(*args, **kwargs)
            finally:
                calls.append((name, "<", args[index], time.perf_counter_ns()))

        tracer.__wrapped__ = inner
        setattr(module, name, tracer)

    wrap("execute", 3)
    wrap("get_output_data", 1)
    return calls


def times(calls, name, direction, node_id):
    return [t for n, d, nid, t in calls if (n, d, nid) == (name, direction, node_id)]


# --------------------------------------------------------------------------- install


def test_the_install_finds_all_four_wrap_points_of_the_modern_executor(execution):
    assert capture.STATUS.skipped == []
    assert capture.STATUS.installed == [
        "run: PromptExecutor.execute",
        "message: PromptExecutor.add_message",
        f"node: {execution.__name__}.execute",
        f"call: {execution.__name__}.get_output_data",
    ]
    assert capture.STATUS.generation == "ComfyUI test, executor 2025+ (async execute)"
    assert capture.is_ours(execution.execute) and capture.is_ours(execution.get_output_data)
    assert asyncio.iscoroutinefunction(execution.execute)
    assert asyncio.iscoroutinefunction(execution.get_output_data)


def test_the_call_hook_leaves_alone_a_call_whose_inputs_are_not_a_dict(env):
    """Where ComfyUI's order is only assumed, a call that does not fit it records nothing."""
    from runtime_metadata.capture.recorder import Recorder, current_run

    hook = hooks.CallHook(list(detect.CALL_ORDER_ASYNC), node_hook=True)
    rec = Recorder("p1", {"5": {"class_type": "Add", "inputs": {}}}, None, "test", "test")
    token = current_run.set(rec)
    try:
        assert hook.begin(("p1", "5", testnodes.Add(), ["not", "a", "dict"]), {}) is None
        assert hook.begin(("p1", "5", testnodes.Add(), None), {}) is None
        ctx = hook.begin(("p1", "5", testnodes.Add(), {"a": [1], "b": [2]}), {})
    finally:
        current_run.reset(token)
    assert ctx is not None and rec.started == {"5"}
    assert [e[0] for e in rec.events] == ["NodeStarted", "NodeInputs"]


# --------------------------------------------------------------------------- what is recorded


def test_a_fully_cached_rerun_enters_only_the_output_node_and_records_from_the_cached_list(execution):
    executor = run(execution, CHAIN, "first")
    calls = trace_calls(execution)
    run(execution, CHAIN, "again", executor=executor)
    # Only the output node enters execute(), and returns at once; no node function is called.
    assert [(n, d, nid) for n, d, nid, _ in calls] == [("execute", ">", "4"), ("execute", "<", "4")]
    events = events_of("again")
    assert [(e.node_id, e.from_prompt_id) for e in of(events, NodeCached)] == [(n, "first") for n in "1234"]
    assert of(events, NodeStarted) == [] and of(events, NodeFinished) == []
    assert events[-1].status == "success"


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_a_node_failing_before_its_function_is_called_is_recorded_as_failed",
)
def test_a_node_failing_before_its_function_is_called_is_recorded_as_failed(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "LazyBroken", "inputs": {"use_a": True, "a": ["1", 0], "b": 4}},
    }
    run(execution, prompt, outputs=("2",))
    events = events_of("p1")
    assert of(events, NodeStarted, "2") == []  # its function was never called
    failed = of(events, NodeFinished, "2")
    assert failed == [NodeFinished("2", failed[0].t_ns, "failed", "RuntimeError", "lazy check failed")]
    assert events[-1].status == "error"
    assert [(n["id"], n["class_type"], n["status"]) for n in doc_of("p1")["nodes"]] == [("2", "LazyBroken", "failed")]


@covered_by_real_servers(
    "variant",
    "test_runtime_capture.py::test_an_interrupted_run_is_closed_as_interrupted",
)
def test_an_interrupt_pressed_while_a_node_runs_stops_the_next_node_call(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "Interrupter", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
    }
    executor = run(execution, prompt)
    assert executor.success is False
    events = events_of("p1")
    assert [(e.node_id, e.status, e.error_type) for e in of(events, NodeFinished)] == [
        ("1", "executed", None),
        ("2", "executed", None),  # the interrupt is raised at the next node call
        ("3", "interrupted", "InterruptProcessingException"),
    ]
    assert (events[-1].status, events[-1].error_type) == ("interrupted", None)
    assert doc_of("p1")["status"] == "interrupted"


def test_a_lazy_node_is_recorded_once_with_the_start_and_end_of_its_call(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 5}},
        "2": {"class_type": "IntConst", "inputs": {"value": 6}},
        "3": {"class_type": "Lazy", "inputs": {"use_a": False, "a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
    }
    calls = trace_calls(execution)
    run(execution, prompt)
    assert testnodes.Sink.calls == [6]
    # ComfyUI entered node 3 twice (PENDING, then SUCCESS) and called it once.
    assert len(times(calls, "execute", ">", "3")) == 2 and len(times(calls, "get_output_data", ">", "3")) == 1
    events = events_of("p1")
    assert (
        len(of(events, NodeStarted, "3")) == len(of(events, NodeInputs, "3")) == len(of(events, NodeFinished, "3")) == 1
    )
    start, end = of(events, NodeStarted, "3")[0].t_ns, of(events, NodeFinished, "3")[0].t_ns
    assert times(calls, "execute", "<", "3")[0] < times(calls, "get_output_data", ">", "3")[0] <= start
    assert start < end <= times(calls, "get_output_data", "<", "3")[0]
    # The unused lazy input arrives as ComfyUI's "not evaluated" marker, the tuple (None,).
    assert of(events, NodeInputs, "3")[0].inputs == {"use_a": [False], "a": [None], "b": [6]}
    doc = doc_of("p1")
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [("2", "executed"), ("3", "executed"), ("4", "executed")]
    assert "1" not in {n["id"] for n in doc["nodes"]}  # never evaluated


def test_an_async_node_ends_when_its_task_does_not_when_get_output_data_returns(execution):
    prompt = {
        "1": {"class_type": "AsyncSleep", "inputs": {"value": 21}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "IntConst", "inputs": {"value": 1}},
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
    }
    calls = trace_calls(execution)
    run(execution, prompt, outputs=("2", "4"))
    assert sorted(testnodes.Sink.calls) == [1, 42]
    events = events_of("p1")
    assert [(e.node_id, e.class_type) for e in of(events, NodeStarted)] == [
        ("1", "AsyncSleep"),
        ("3", "IntConst"),  # ran while node 1's task was sleeping
        ("4", "Sink"),
        ("2", "Sink"),
    ]
    [finished] = of(events, NodeFinished, "1")
    assert (finished.status, finished.error_type) == ("executed", None)
    start = of(events, NodeStarted, "1")[0].t_ns
    returned = times(calls, "get_output_data", "<", "1")[0]  # with its task still running
    reentered = times(calls, "execute", ">", "1")[1]  # ComfyUI comes back for the result
    [task_done] = AsyncSleep.done_at
    assert returned - start < 40_000_000
    assert finished.t_ns - start >= 50_000_000  # covers the node's await asyncio.sleep(0.05)
    assert task_done <= finished.t_ns < reentered  # recorded when the task finished
    assert of(events, NodeInputs, "1")[0].inputs == {"value": [21]}
    doc = doc_of("p1", saved_by="2")
    assert [(n["id"], n["status"]) for n in doc["nodes"]] == [("1", "executed")]
    assert doc["nodes"][0]["duration_ms"] >= 50


def test_an_async_node_mapped_over_a_list_ends_with_its_last_task(execution):
    AsyncSleep.delay = 0.02
    prompt = {
        "1": {"class_type": "SeedList", "inputs": {"start": 1, "count": 3}},
        "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "SumList", "inputs": {"values": ["2", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
    }
    run(execution, prompt)
    assert testnodes.Sink.calls == [12]
    events = events_of("p1")
    assert of(events, NodeInputs, "2")[0].calls == 3
    [finished] = of(events, NodeFinished, "2")
    assert len(AsyncSleep.done_at) == 3 and max(AsyncSleep.done_at) <= finished.t_ns
    assert finished.t_ns - of(events, NodeStarted, "2")[0].t_ns >= 20_000_000


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_a_failing_async_node_is_recorded_as_failed_when_its_task_fails",
)
def test_a_failing_async_node_is_recorded_as_failed_when_its_task_fails(execution):
    prompt = {
        "1": {"class_type": "AsyncFail", "inputs": {"value": 7}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    calls = trace_calls(execution)
    executor = run(execution, prompt, outputs=("2",))
    assert executor.success is False
    events = events_of("p1")
    [failed] = of(events, NodeFinished, "1")
    assert (failed.status, failed.error_type, failed.error_message) == ("failed", "RuntimeError", "async boom 7")
    assert failed.t_ns < times(calls, "execute", ">", "1")[1]
    assert (events[-1].status, events[-1].error_type, events[-1].error_message) == (
        "error",
        "RuntimeError",
        "async boom 7",
    )


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_an_expanding_node_and_its_ephemeral_nodes_are_recorded_with_their_real_ids",
)
def test_expanded_nodes_are_recorded_with_their_real_parent_and_display_ids(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 5}},
        "2": {"class_type": "Expand", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3",))
    assert testnodes.Sink.calls == [8]
    events = events_of("p1")
    assert [(e.node_id, e.class_type, e.display_id, e.parent_id) for e in of(events, NodeStarted)] == [
        ("1", "IntConst", None, None),
        ("2", "Expand", None, None),
        ("2.0.0.1", "Add", "2", "2"),
        ("2.0.0.2", "Add", "2", "2"),
        ("3", "Sink", None, None),
    ]
    assert of(events, NodeInputs, "2.0.0.1")[0].inputs == {"a": [5], "b": [1]}
    assert of(events, NodeInputs, "2.0.0.2")[0].inputs == {"a": [6], "b": [2]}
    assert real_ids(events) == {"1": "1", "2": "2", "2.0.0.1": "2", "2.0.0.2": "2", "3": "3"}
    # The expanding node ends when ComfyUI comes back to it, after its subgraph has run.
    ends = {e.node_id: e.t_ns for e in of(events, NodeFinished)}
    assert [e.node_id for e in of(events, NodeFinished)] == ["1", "2.0.0.1", "2.0.0.2", "2", "3"]
    assert ends["2.0.0.2"] <= ends["2"] <= of(events, NodeStarted, "3")[0].t_ns
    doc = doc_of("p1", saved_by="3")
    assert [
        (n["id"], n["class_type"], n["status"], n.get("display_id"), n.get("parent_id"), n.get("inputs"))
        for n in doc["nodes"]
    ] == [
        ("1", "IntConst", "executed", None, None, {"value": 5}),
        ("2", "Expand", "executed", None, None, {"value": 5}),
        ("2.0.0.1", "Add", "executed", "2", "2", {"a": 5, "b": 1}),
        ("2.0.0.2", "Add", "executed", "2", "2", {"a": 6, "b": 2}),
    ]
    assert doc["saved_by"] == {"id": "3", "class_type": "Sink"}


def real_ids(events) -> dict[str, str]:
    """Each node's real (original prompt) id, by following parent ids."""
    parent = {e.node_id: e.parent_id for e in of(events, NodeStarted)}
    out = {}
    for node_id in parent:
        real = node_id
        while parent.get(real) is not None:
            real = parent[real]
        out[node_id] = real
    return out


NESTED = {
    "1": {"class_type": "IntConst", "inputs": {"value": 5}},
    "2": {"class_type": "ExpandNested", "inputs": {"value": ["1", 0]}},
    "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
}


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_nested_expansion_keeps_each_nodes_parent_and_the_outer_display_id",
)
def test_nested_expansion_keeps_each_nodes_parent_and_the_outer_display_id(execution):
    run(execution, NESTED, outputs=("3",))
    assert testnodes.Sink.calls == [18]
    events = events_of("p1")
    assert [(e.node_id, e.class_type, e.display_id, e.parent_id) for e in of(events, NodeStarted)] == [
        ("1", "IntConst", None, None),
        ("2", "ExpandNested", None, None),
        ("2.0.0.1", "Expand", "2", "2"),
        ("2.0.0.1.0.0.1", "Add", "2", "2.0.0.1"),
        ("2.0.0.1.0.0.2", "Add", "2", "2.0.0.1"),
        ("2.0.0.2", "Add", "2", "2"),
        ("3", "Sink", None, None),
    ]
    assert set(real_ids(events).values()) == {"1", "2", "3"}
    assert [(e.node_id, e.status) for e in of(events, NodeFinished)] == [
        ("1", "executed"),
        ("2.0.0.1.0.0.1", "executed"),
        ("2.0.0.1.0.0.2", "executed"),
        ("2.0.0.1", "executed"),
        ("2.0.0.2", "executed"),
        ("2", "executed"),
        ("3", "executed"),
    ]


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_nested_expansion_keeps_each_nodes_parent_and_the_outer_display_id",
)
def test_the_save_nodes_document_includes_nested_expanded_nodes(execution):
    run(execution, NESTED, outputs=("3",))
    ids = [n["id"] for n in doc_of("p1", saved_by="3")["nodes"]]
    assert ids == ["1", "2", "2.0.0.1", "2.0.0.1.0.0.1", "2.0.0.1.0.0.2", "2.0.0.2"]


@covered_by_real_servers(
    "variant",
    "test_executor_features.py::test_a_failure_inside_an_expanded_subgraph_fails_the_expanding_node_too",
)
@pytest.mark.parametrize(
    "inner, error",
    [("Fail", ("ValueError", "cannot handle 5")), ("LazyBroken", ("RuntimeError", "lazy check failed"))],
)
def test_a_failure_inside_an_expanded_subgraph_fails_the_expanding_node_too(execution, monkeypatch, inner, error):
    monkeypatch.setattr(ExpandFail, "inner", inner)
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 5}},
        "2": {"class_type": "ExpandFail", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3",))
    events = events_of("p1")
    # ComfyUI reports the failure under the real node id ("2"); the ephemeral node that failed
    # (in its function, or before it was called) and the node that expanded are both failed.
    assert [(e.node_id, e.status, e.error_type, e.error_message) for e in of(events, NodeFinished)] == [
        ("1", "executed", None, None),
        ("2.0.0.1", "failed", *error),
        ("2", "failed", *error),
    ]
    assert (events[-1].status, events[-1].error_type, events[-1].error_message) == ("error", *error)
    doc = doc_of("p1", saved_by="3")
    assert [(n["id"], n["class_type"], n["status"]) for n in doc["nodes"]] == [
        ("1", "IntConst", "executed"),
        ("2", "ExpandFail", "failed"),
        ("2.0.0.1", inner, "failed"),
    ]
    assert of(events, NodeStarted, "2.0.0.1")[0].parent_id == "2"


def test_back_to_back_prompts_each_see_only_their_own_run(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 2}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 3}},
        "3": {"class_type": "Probe", "inputs": {"value": ["2", 0]}},
    }
    executor = run(execution, prompt, "a", ("3",))
    run(execution, prompt, "b", ("3",), executor)  # identical: 1 and 2 come from the cache
    other = {**prompt, "1": {"class_type": "IntConst", "inputs": {"value": 9}}}
    run(execution, other, "c", ("3",), executor)
    assert Probe.seen == [
        ("a", [("NodeStarted", "1"), ("NodeStarted", "2"), ("NodeStarted", "3")]),
        ("b", [("NodeCached", "1"), ("NodeCached", "2"), ("NodeStarted", "3")]),
        ("c", [("NodeStarted", "1"), ("NodeStarted", "2"), ("NodeStarted", "3")]),
    ]
    for prompt_id in "abc":
        events = events_of(prompt_id)
        assert events[0].prompt_id == prompt_id
        assert of(events, RunStarted) == [events[0]] and of(events, RunFinished) == [events[-1]]
        assert [e.node_id for e in of(events, NodeFinished)] == (["3"] if prompt_id == "b" else ["1", "2", "3"])
    assert of(events_of("c"), NodeInputs, "2")[0].inputs == {"a": [9], "b": [3]}
    assert capture.current_run.get() is None


def test_concurrent_prompts_in_two_threads_each_see_only_their_own_run(execution):
    AsyncSleep.delay = 0.05
    results: dict[str, Any] = {}

    def worker(prompt_id: str, value: int) -> None:
        prompt = {
            "1": {"class_type": "IntConst", "inputs": {"value": value}},
            "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0]}},
            "3": {"class_type": "Probe", "inputs": {"value": ["2", 0]}},
        }
        results[prompt_id] = run(execution, prompt, prompt_id, ("3",))

    threads = [threading.Thread(target=worker, args=(f"t{i}", i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(Probe.seen) == [
        (f"t{i}", [("NodeStarted", "1"), ("NodeStarted", "2"), ("NodeStarted", "3")]) for i in range(2)
    ]
    for i in range(2):
        events = events_of(f"t{i}")
        assert of(events, NodeInputs, "2")[0].inputs == {"value": [i]}
        assert of(events, NodeInputs, "3")[0].inputs == {"value": [2 * i], "unique_id": ["3"]}
        assert [e.status for e in of(events, NodeFinished)] == ["executed"] * 3


def test_secrets_from_extra_data_and_inputs_become_redacted(execution):
    prompt = {
        "1": {"class_type": "ApiNode", "inputs": {"api_key": "sk-live-123", "size": 5}},
        "2": {"class_type": "CloudNode", "inputs": {"size": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3",))
    data = capture.STORE.get("p1")
    events = read_log(data).events
    inputs = {e.node_id: e.inputs for e in of(events, NodeInputs)}
    assert inputs["1"] == {
        "api_key": [REDACTED],
        "size": [5],
        "auth_token_comfy_org": [REDACTED],
        "unique_id": ["1"],
    }
    assert inputs["2"] == {"size": [5], "login": [REDACTED], "comfy_org": [REDACTED]}
    # Nowhere in the log: not from extra_data, not from the prompt or the workflow either.
    assert b"tok-secret-1" not in data and b"key-secret-2" not in data and b"sk-live-123" not in data
    assert events[0].prompt["1"]["inputs"] == {"api_key": REDACTED, "size": 5}
    assert testnodes.Sink.calls == [5]


def test_the_live_execution_list_is_left_out_like_the_prompt(env):
    """0.38.1 hands a node the executor's own ExecutionList: an object of ComfyUI's, not a value."""
    module = load_modern("0.38.1")
    capture.install(module, "test")
    prompt = {
        "1": {"class_type": "Scheduler", "inputs": {"value": 7}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    run(module, prompt, outputs=("2",), extra={"comfy_usage_source": "api"})
    assert of(events_of("p1"), NodeInputs, "1")[0].inputs == {"value": [7], "source": ["api"]}
    assert testnodes.Sink.calls == [7]


MIXED = {
    "1": {"class_type": "SeedList", "inputs": {"start": 1, "count": 2}},
    "2": {"class_type": "AsyncSleep", "inputs": {"value": ["1", 0]}},
    "3": {"class_type": "SumList", "inputs": {"values": ["2", 0]}},
    "4": {"class_type": "Expand", "inputs": {"value": ["3", 0]}},
    "5": {"class_type": "Lazy", "inputs": {"use_a": True, "a": ["4", 0], "b": ["9", 0]}},
    "6": {"class_type": "Sink", "inputs": {"value": ["5", 0]}},
    "7": {"class_type": "MakeImage", "inputs": {"width": ["4", 0], "seed": 1}},
    "8": {"class_type": "Sink", "inputs": {"value": ["7", 0]}},
    "9": {"class_type": "Fail", "inputs": {"value": 0}},
}


def _observable(executor) -> Any:
    """What ComfyUI makes of a run: results, history, status messages, what it sent."""

    def plain(value):
        if isinstance(value, testnodes.Tensorish):
            return ("tensor", value.shape)
        if isinstance(value, dict):
            out = {k: plain(v) for k, v in value.items() if k != "timestamp"}
            if "traceback" in out:  # every wrapper adds its own frames; ComfyUI's are the same
                out["traceback"] = [
                    f for f in out["traceback"] if "runtime_metadata" not in f and "/capture/wrapping.py" not in f
                ]
            return out
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return (
        executor.success,
        plain(executor.history_result),
        plain(executor.status_messages),
        plain(executor.server.sent),
        plain(testnodes.Sink.calls),
    )


def test_outputs_are_identical_with_capture_on_and_off(env, variant):
    AsyncSleep.delay = 0.01
    extra = {**EXTRA, "client_id": "c1"}

    def session(module):
        testnodes.Sink.calls.clear()
        executor = run(module, MIXED, "m1", ("6", "8"), extra=extra)
        seen = [_observable(executor)]
        run(module, MIXED, "m2", ("6", "8"), executor, extra=extra)  # cached
        seen.append(_observable(executor))
        run(
            module,
            {
                **MIXED,
                "9": {"class_type": "Fail", "inputs": {"value": 1}},
                "5": {"class_type": "Lazy", "inputs": {"use_a": False, "a": ["4", 0], "b": ["9", 0]}},
            },
            "m3",
            ("6", "8"),
            executor,
            extra=extra,
        )
        seen.append(_observable(executor))
        return seen

    captured = load_modern(variant)
    capture.install(captured, "test")
    on = session(captured)
    assert capture.STATUS.active and capture.STORE.get("m3") is not None
    capture.reset()
    off = session(load_modern(variant))
    assert capture.STORE.get("m3") is not None  # (kept from the captured session only)
    assert on == off
    assert on[0][0] is True and on[0][4] == [9, ("tensor", (1, 8, 9, 3))]  # (1 + 2) * 2 + 1 + 2
    assert on[2][0] is False  # the third run failed at node 9, with capture on and off alike


# --------------------------------------------------------------------------- never breaks


FAULT_PROMPT = {
    "1": {"class_type": "IntConst", "inputs": {"value": 16}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 48}},
    "3": {"class_type": "AsyncSleep", "inputs": {"value": ["2", 0]}},
    "4": {"class_type": "Expand", "inputs": {"value": ["3", 0]}},
    "5": {"class_type": "Sink", "inputs": {"value": ["4", 0]}},
}


def _fault_injections(monkeypatch, point: str) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError(f"injected fault at {point}")

    if point == "run":
        monkeypatch.setattr(hooks, "Recorder", boom)
    elif point == "message":
        monkeypatch.setattr(hooks, "NodeCached", boom)
    elif point == "node":

        class BadVar:
            def set(self, value):
                raise RuntimeError("injected fault at node")

            def get(self):
                return None

            def reset(self, token):
                pass

        monkeypatch.setattr(hooks, "current_node", BadVar())
    elif point == "call":
        capture.STATE.inputs.clear()  # forget the classes seen in the warm run
        monkeypatch.setattr(inputs, "classify", boom)
    elif point == "call: async end":
        real = hooks.NodeFinished

        def finished(node_id, *args, **kwargs):
            if node_id == "3":  # the async node: only its done-callback records it
                raise RuntimeError("injected fault at call: async end")
            return real(node_id, *args, **kwargs)

        monkeypatch.setattr(hooks, "NodeFinished", finished)
    elif point == "node: end":
        monkeypatch.setattr(hooks, "_own_error", boom)  # reached at the re-entry of node 4
        real_flag = hooks._flag

        def flag(result):
            value = real_flag(result)
            if value == "SUCCESS":
                raise RuntimeError("injected fault at node: end")
            return value

        monkeypatch.setattr(hooks, "_flag", flag)
    elif point == "call: ephemeral":
        monkeypatch.setattr(hooks, "_ephemeral_started", boom)


FAULT_POINTS = {
    "run": "run: start",
    "message": "message: cached nodes",
    "node": "node: start",
    "call": "call: inputs",
    "call: async end": "call: async end",
    "node: end": "node: end",
    "call: ephemeral": "call: inputs",
}


@pytest.mark.parametrize("point", sorted(FAULT_POINTS))
def test_a_fault_anywhere_in_a_run_of_async_and_expanded_nodes_leaves_it_intact(execution, monkeypatch, caplog, point):
    AsyncSleep.delay = 0.01
    executor = run(execution, FAULT_PROMPT, "warm", ("5",))  # so that node 1 is cached next
    assert testnodes.Sink.calls == [131] and capture.STATUS.active
    _fault_injections(monkeypatch, point)
    faulty = {**FAULT_PROMPT, "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 49}}}
    after = {**FAULT_PROMPT, "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 50}}}
    with caplog.at_level(logging.ERROR, logger="runtime_metadata"):
        run(execution, faulty, "faulty", ("5",), executor)
        assert executor.success is True
        run(execution, after, "after", ("5",), executor)
    assert executor.success is True
    assert testnodes.Sink.calls == [131, 133, 135]  # (16 + b) * 2 + 3, as without capture
    assert capture.STATUS.active is False
    assert capture.STATUS.disabled_reason.startswith(FAULT_POINTS[point] + ":"), capture.STATUS.disabled_reason
    assert f"injected fault at {point}" in capture.STATUS.disabled_reason
    assert sum("capture switched off" in r.getMessage() for r in caplog.records) == 1
    assert capture.STORE.get("after") is None  # capture stayed off for the rest of the process


class Theirs:
    """Another pack's wrappers: async where the function is async, as ComfyUI requires."""

    def __init__(self, module, style: str) -> None:
        self.calls: list[str] = []
        self.module = module
        self.style = style

    def wrap_all(self) -> None:
        m = self.module
        m.execute = self.wrap(m.execute)
        m.get_output_data = self.wrap(m.get_output_data)
        m.PromptExecutor.execute = self.wrap(m.PromptExecutor.execute)
        m.PromptExecutor.add_message = self.wrap(m.PromptExecutor.add_message)

    def wrap(self, func):
        calls = self.calls
        name = func.__name__
        if asyncio.iscoroutinefunction(func) and self.style == "async":

            async def wrapper(*args, **kwargs):
                calls.append(name)
                return await func(*args, **kwargs)

        else:  # sync functions; or "sync": a plain function handing back the coroutine

            def wrapper(*args, **kwargs):
                calls.append(name)
                return func(*args, **kwargs)

        wrapper.__name__ = name
        wrapper.__wrapped__ = func
        return wrapper


#: (variant, order, style): the async wrappers (functools.wraps-like: __wrapped__ kept) in both
#: orders where no real server runs them (0.3.64 runs tests/integration/otherpack's, see
#: test_other_packs.py); the sync one, handing back the coroutine, on every form.
PACK_WRAPPERS = [
    (variant, order, style)
    for variant in sorted(MODERN_VARIANTS)
    for order, style in (("theirs first", "async"), ("ours first", "async"), ("theirs first", "sync"))
    if not (style == "async" and variant in ON_REAL_SERVERS)
]


@pytest.mark.parametrize("variant, order, style", PACK_WRAPPERS, indirect=["variant"])
def test_another_pack_wrapping_the_same_functions_keeps_working(env, variant, order, style):
    module = load_modern(variant)
    theirs = Theirs(module, style)
    if order == "theirs first":
        theirs.wrap_all()
        capture.install(module, "test")
    else:
        capture.install(module, "test")
        theirs.wrap_all()
    assert capture.STATUS.skipped == []
    AsyncSleep.delay = 0.01
    try:
        executor = run(module, FAULT_PROMPT, "p1", ("5",))
        assert testnodes.Sink.calls == [131]
        # execute: 5 nodes + 2 ephemeral, + 1 lazy-free re-entry each for the async and the
        # expanding node; get_output_data: once per node.
        assert theirs.calls.count("execute") == 1 + 9 and theirs.calls.count("get_output_data") == 7
        events = events_of("p1")
        assert [e.node_id for e in of(events, NodeStarted)] == ["1", "2", "3", "4", "4.0.0.1", "4.0.0.2", "5"]
        assert [e.status for e in of(events, NodeFinished)] == ["executed"] * 7
        assert of(events, NodeFinished, "3")[0].t_ns - of(events, NodeStarted, "3")[0].t_ns >= 10_000_000
        capture.install(module, "test")  # a second install does nothing
        assert capture.STATUS.installed[0] == "run: PromptExecutor.execute" and len(capture.STATUS.installed) == 4
        run(module, FAULT_PROMPT, "p2", ("5",), executor)  # all cached
        assert [e.node_id for e in of(events_of("p2"), NodeCached)] == ["1", "2", "3", "4", "5"]
        capture.uninstall()
        if order == "theirs first":
            assert not capture.is_ours(module.get_output_data)  # their wrapper is back on top
        run(module, {**FAULT_PROMPT, "1": {"class_type": "IntConst", "inputs": {"value": 17}}}, "p3", ("5",), executor)
        assert capture.STORE.get("p3") is None  # ours is gone or pass-through
        assert testnodes.Sink.calls == [131, 133]
        assert theirs.calls.count("get_output_data") == 14  # theirs still runs
    finally:
        capture.reset()


# --------------------------------------------------------------------------- unknown versions


def test_an_unknown_get_output_data_is_skipped_and_the_rest_installed(env):
    module = load_modern("2026")
    inner = module.get_output_data

    async def get_output_data(
        prompt_id, unique_id, obj, inputs, execution_block_cb=None, pre_execute_cb=None, v3_data=None
    ):
        return await inner(prompt_id, unique_id, obj, inputs, execution_block_cb, pre_execute_cb, v3_data=v3_data)

    module.get_output_data = get_output_data
    status = capture.install(module, "test")
    assert status.skipped == [
        "call: get_output_data('prompt_id', 'unique_id', 'obj', 'inputs', 'execution_block_cb', "
        "'pre_execute_cb', 'v3_data') lacks input_data_all"
    ]
    assert [i.split(":")[0] for i in status.installed] == ["run", "message", "node"]
    assert status.active is True
    executor = run(module, CHAIN)
    assert executor.success is True and testnodes.Sink.calls[-1].shape == (1, 8, 64, 3)
    run(module, {**CHAIN, "3": {"class_type": "Fail", "inputs": {"value": ["2", 0]}}}, "p2", ("4",), executor)
    events = events_of("p2")
    # Without the call hook: ComfyUI's cached nodes, and failures, but no node calls.
    assert [(e.node_id, type(e).__name__) for e in events if hasattr(e, "node_id")] == [
        ("1", "NodeCached"),
        ("2", "NodeCached"),
        ("3", "NodeFinished"),
    ]
    assert (events[-1].status, events[-1].error_message) == ("error", "cannot handle 64")


def test_an_executor_without_a_known_per_node_function_still_records_runs(env):
    module = load_modern("0.3.64")
    module.run_node = module.execute
    del module.execute
    status = capture.install(module, "test")
    assert status.skipped == ["node: execute or recursive_execute not found"]
    assert [i.split(":")[0] for i in status.installed] == ["run", "message", "call"]


def test_an_executor_whose_run_cannot_be_keyed_installs_nothing(env):
    module = load_modern("2026")
    inner = module.PromptExecutor.execute

    def execute(self, graph, job_id, extra_data={}, execute_outputs=[]):
        return inner(self, graph, job_id, extra_data, execute_outputs)

    module.PromptExecutor.execute = execute
    status = capture.install(module, "test")
    assert status.skipped == [
        "run: execute('self', 'graph', 'job_id', 'extra_data', 'execute_outputs') lacks prompt, prompt_id",
        "run: without it no run can be keyed by prompt_id; nothing installed",
    ]
    assert status.installed == [] and not capture.is_ours(module.get_output_data)


def test_nothing_of_a_run_is_kept_alive_after_it(execution):
    AsyncSleep.delay = 0.01
    executor = run(execution, FAULT_PROMPT, "p1", ("5",))
    del executor
    gc.collect()
    assert [o for o in gc.get_objects() if isinstance(o, execution.DynamicPrompt)] == []
    assert [o for o in gc.get_objects() if isinstance(o, asyncio.Task)] == []
    assert capture.STORE.get("p1") is not None


# --------------------------------------------------------------------------- the fast path


class _Level(int):
    """An int subclass (like IntEnum values some packs pass)."""


SAMPLES = [
    {"seed": [123456789], "cfg": [7.5], "name": ["euler"], "on": [True], "none": [None]},
    {"seed": [1, 2, 3], "cfg": [7.5]},  # a batch list
    {"cfg": [float("nan")], "big": [float("inf")], "small": [float("-inf")]},
    {"text": ["x" * 5000]},
    {"nested": [[1, 2, [3, [4, [5]]]]], "many": [list(range(20))]},
    {"options": [{"api_key": "sk-nested", "size": 3}]},
    {"image": [testnodes.Tensorish((1, 8, 8, 3))]},
    {"level": [_Level(3)], "obj": [object()]},
    {"missing": (None,), "seed": [4]},
    {"password": ["hunter2"], "seed": [5]},
]


@pytest.mark.parametrize("inputs", SAMPLES, ids=lambda s: "+".join(s))
def test_the_call_hooks_fast_path_records_what_summaries_would(env, inputs):
    """The first call of a class goes the general way, the next ones may take the fast path;
    both record exactly what ``summarize_inputs`` gives (a tuple read as a list)."""
    from runtime_metadata.capture.recorder import Recorder, current_run
    from runtime_metadata.capture.summary import summarize_inputs

    class Node:  # a fresh class: nothing known about it yet
        pass

    hook = hooks.CallHook(["prompt_id", "unique_id", "obj", "input_data_all"])
    capture.STATUS.active = True
    rec = Recorder("fast", {"7": {"class_type": "Node", "inputs": {}}}, None, "test", "test")
    token = current_run.set(rec)
    try:
        for _ in range(3):
            ctx = hook.begin(("fast", "7", Node(), inputs), {})
            hook.end(ctx, ([], {}, False, False), None)
    finally:
        current_run.reset(token)
    assert capture.STATUS.disabled_reason is None
    recorded = [e.inputs for e in read_log(rec.snapshot()).events if isinstance(e, NodeInputs)]
    expected = summarize_inputs({k: list(v) if isinstance(v, tuple) else v for k, v in inputs.items()})
    assert recorded == [expected] * 3
    assert "sk-nested" not in str(recorded) and "hunter2" not in str(recorded)
