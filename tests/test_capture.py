"""Capture's contract on every executor generation: what is recorded, and what never breaks.

Each test runs on the March-2024 executor and on the modern one in the signature forms of
0.3.64, 2026 and 0.38.1 (``tests/generations.py``). What only one generation does is tested
in ``test_capture_march2024.py`` and ``test_capture_modern.py``. Where a real ComfyUI server
in ``tests/integration`` asserts the same behaviour on March 2024 and 0.3.64, the test runs
here on the forms no server runs only (``covered_by_real_servers`` names the real test).
"""

from __future__ import annotations

import functools
import inspect
import logging

import pytest

from runtime_metadata import capture, errors
from runtime_metadata.capture import detect, hooks, inputs, wrapping
from runtime_metadata.capture.summary import REDACTED
from runtime_metadata.events.log import read_log
from runtime_metadata.events.schema import (
    HookStats,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)

from .executors import testnodes
from .generations import (
    CHAIN,
    CHAIN_FIRST_INPUTS,
    CHAIN_STARTED,
    GENERATIONS,
    ON_REAL_SERVERS,
    TENSOR,
    clear_node_state,
    covered_by_real_servers,
    doc_of,
    events_of,
    load_executor,
    of,
    run,
    started,
)


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


@pytest.fixture(params=sorted(GENERATIONS))
def gen(request):
    return GENERATIONS[request.param]


@pytest.fixture
def execution(env, gen):
    module = gen.load()
    capture.install(module, "test")
    return module


# --------------------------------------------------------------------------- install


def test_the_install_wraps_every_point_the_generation_offers(execution, gen):
    assert capture.STATUS.skipped == []
    assert [i.split(":")[0] for i in capture.STATUS.installed] == list(gen.points)
    assert capture.STATUS.generation == f"ComfyUI test, executor {gen.label}"
    assert capture.STATUS.active and capture.is_installed()


# --------------------------------------------------------------------------- what is recorded


@covered_by_real_servers(
    "gen",
    "test_runtime_capture.py::test_every_node_of_the_run_is_captured_with_the_values_only_the_run_knew",
)
def test_executed_nodes_are_recorded_in_order_with_class_type_inputs_and_durations(execution, gen):
    run(execution, CHAIN)
    events = events_of("p1")
    assert isinstance(events[0], RunStarted) and events[0].prompt_id == "p1"
    assert events[0].prompt == CHAIN and events[0].workflow == {"nodes": []}
    assert [(e.node_id, e.class_type, e.display_id, e.parent_id) for e in of(events, NodeStarted)] == [
        ("1", "IntConst", None, None),
        ("2", "Add", None, None),
        ("3", "MakeImage", None, None),
        ("4", "Sink", None, None),
    ]
    # The hidden PROMPT is never copied into events; 64 exists only at run time.
    assert [(e.node_id, e.inputs, e.calls) for e in of(events, NodeInputs)] == [
        ("1", {"value": [16]}, 1),
        ("2", {"a": [16], "b": [48]}, 1),
        ("3", {"width": [64], "seed": [7]}, 1),
        ("4", {"value": [{"type": TENSOR, "shape": [1, 8, 64, 3], "dtype": "torch.float32"}], "unique_id": ["4"]}, 1),
    ]
    assert [(e.node_id, e.status, e.error_type) for e in of(events, NodeFinished)] == [
        (n, "executed", None) for n in "1234"
    ]
    assert of(events, NodeCached) == []
    assert isinstance(events[-2], HookStats) and events[-2].calls > 0
    assert isinstance(events[-1], RunFinished) and (events[-1].status, events[-1].error_type) == ("success", None)
    # Each node's own start and end, one after the other.
    starts = {e.node_id: e.t_ns for e in of(events, NodeStarted)}
    ends = {e.node_id: e.t_ns for e in of(events, NodeFinished)}
    for a, b in zip("123", "234"):
        assert starts[a] < ends[a] <= starts[b]
    doc = doc_of("p1")
    assert [(n["id"], n["class_type"], n["status"]) for n in doc["nodes"]] == [
        ("1", "IntConst", "executed"),
        ("2", "Add", "executed"),
        ("3", "MakeImage", "executed"),
        ("4", "Sink", "executed"),
    ]
    assert [n["duration_ms"] for n in doc["nodes"]] == [round((ends[n] - starts[n]) / 1e6, 3) for n in "1234"]
    assert doc["timing"]["nodes_executed"] == 4 and doc["timing"]["nodes_cached"] == 0
    assert doc["status"] == "success" and doc["comfyui"] == f"ComfyUI test, executor {gen.label}"


@covered_by_real_servers(
    "gen",
    "test_runtime_capture.py::test_a_rerun_marks_upstream_nodes_cached",
)
def test_cached_nodes_are_marked_cached_and_carry_the_inputs_of_the_run_that_computed_them(execution):
    executor = run(execution, CHAIN, "first")
    changed = {**CHAIN, "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 8}}}
    run(execution, changed, "second", executor=executor)
    doc = doc_of("second")
    assert [(n["id"], n["class_type"], n["status"], n.get("cached"), "duration_ms" in n) for n in doc["nodes"]] == [
        ("1", "IntConst", "cached", True, False),
        ("2", "Add", "cached", True, False),
        ("3", "MakeImage", "executed", None, True),
        ("4", "Sink", "executed", None, True),
    ]
    # The cached nodes carry the values of the run that computed what the cache holds.
    assert doc["nodes"][0]["inputs"] == {"value": 16} and doc["nodes"][0]["cached_from"] == "first"
    assert doc["nodes"][1]["inputs"] == {"a": 16, "b": 48}
    assert doc["nodes"][2]["inputs"] == {"seed": 8, "width": 64}  # as it ran
    # A fully cached rerun: each cached node carries the inputs of the run that computed it.
    run(execution, changed, "third", executor=executor)
    events = events_of("third")
    assert [type(e).__name__ for e in events] == ["RunStarted"] + ["NodeCached", "NodeInputs"] * 4 + [
        "HookStats",
        "RunFinished",
    ]
    assert [(e.node_id, e.class_type, e.from_prompt_id) for e in of(events, NodeCached)] == [
        ("1", "IntConst", "first"),
        ("2", "Add", "first"),
        ("3", "MakeImage", "second"),
        ("4", "Sink", "second"),
    ]
    assert [e.inputs for e in of(events, NodeInputs)][:3] == [
        {"value": [16]},
        {"a": [16], "b": [48]},
        {"width": [64], "seed": [8]},
    ]
    assert events[-1].status == "success"
    third = doc_of("third")
    assert third["timing"]["nodes_cached"] == 4 and third["timing"]["nodes_executed"] == 0
    first = doc_of("first")
    assert first["prompt_id"] == "first" and first["timing"]["nodes_cached"] == 0


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
    cached = {n["id"]: n for n in doc_of("again")["nodes"]}
    assert [n["status"] for n in cached.values()] == ["cached"] * 4
    # Nodes 2-4 have the same literals as in "other", but not the same upstream graph.
    assert all("inputs" not in n and "cached_from" not in n for n in cached.values())


@covered_by_real_servers(
    "gen",
    "test_runtime_capture.py::test_a_failing_node_closes_the_run_as_failed",
)
def test_a_failing_node_is_recorded_with_its_error_and_the_run_closed_as_error(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "Fail", "inputs": {"value": ["1", 0]}},
    }
    executor = run(execution, prompt, outputs=("2",))
    assert executor.success is False
    events = events_of("p1")
    assert [e.node_id for e in of(events, NodeStarted)] == ["1", "2"]
    failed = of(events, NodeFinished, "2")
    assert failed == [NodeFinished("2", failed[0].t_ns, "failed", "ValueError", "cannot handle 3")]
    last = events[-1]
    assert (last.status, last.error_type, last.error_message) == ("error", "ValueError", "cannot handle 3")
    doc = doc_of("p1")
    assert doc["status"] == "error"
    assert doc["nodes"][1]["error"] == {"type": "ValueError", "message": "cannot handle 3"}
    assert doc["error"] == {"type": "ValueError", "message": "cannot handle 3"}
    assert capture.current_run.get() is None


def test_a_node_failing_before_its_call_is_recorded_as_failed(execution):
    """ComfyUI cannot create the node object: its function is never called."""
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 3}},
        "2": {"class_type": "BrokenInit", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    executor = run(execution, prompt, outputs=("3",))
    assert executor.success is False
    events = events_of("p1")
    assert [(e.node_id, e.status, e.error_type, e.error_message) for e in of(events, NodeFinished)] == [
        ("1", "executed", None, None),
        ("2", "failed", "RuntimeError", "no backend for key=sk-init-999"),
    ]
    assert "2" not in [e.node_id for e in of(events, NodeStarted)]  # it never started
    assert events[-1].status == "error" and events[-1].error_type == "RuntimeError"
    assert [(n["id"], n["status"]) for n in doc_of("p1")["nodes"]] == [("1", "executed"), ("2", "failed")]


@covered_by_real_servers(
    "gen",
    "test_runtime_capture.py::test_an_interrupted_run_is_closed_as_interrupted",
)
def test_an_interrupt_raised_in_a_node_marks_it_and_the_run_interrupted(execution, monkeypatch):
    def interrupt(self, a, b):
        raise execution.InterruptProcessingException()

    monkeypatch.setattr(testnodes.Add, "run", interrupt)
    executor = run(execution, CHAIN)
    assert executor.success is False
    events = events_of("p1")
    assert [e.status for e in of(events, NodeFinished, "2")] == ["interrupted"]
    assert (events[-1].status, events[-1].error_type) == ("interrupted", None)
    assert doc_of("p1")["status"] == "interrupted"


def test_batch_lists_record_each_calls_own_values(execution):
    prompt = {
        "1": {"class_type": "SeedList", "inputs": {"start": 100, "count": 3}},
        "2": {"class_type": "MakeImage", "inputs": {"width": 8, "seed": ["1", 0]}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "SumList", "inputs": {"values": ["1", 0]}},
        "5": {"class_type": "Sink", "inputs": {"value": ["4", 0]}},
    }
    run(execution, prompt, outputs=("3", "5"))
    recorded = {e.node_id: (e.inputs, e.calls) for e in of(events_of("p1"), NodeInputs)}
    assert recorded["1"] == ({"start": [100], "count": [3]}, 1)
    assert recorded["2"] == ({"width": [8], "seed": [100, 101, 102]}, 3)  # OUTPUT_IS_LIST fanned out
    assert recorded["4"] == ({"values": [100, 101, 102]}, 1)  # INPUT_IS_LIST: one call, the whole list
    assert recorded["5"] == ({"value": [303], "unique_id": ["5"]}, 1)
    shape = {"type": TENSOR, "dtype": "torch.float32"}
    assert recorded["3"] == ({"value": [{**shape, "shape": [1, 8, 8, 3]}] * 3, "unique_id": ["3"]}, 3)
    assert 303 in testnodes.Sink.calls
    doc = doc_of("p1", saved_by="3")  # its ancestors: not the SumList branch, not itself
    assert [n["id"] for n in doc["nodes"]] == ["1", "2"]
    assert doc["nodes"][1]["calls"] == 3 and doc["nodes"][1]["inputs"] == {"seed": [100, 101, 102], "width": 8}


@covered_by_real_servers(
    "gen",
    "test_runtime_capture.py::test_compound_ids_as_the_2025_frontend_sends_subgraphs",
)
def test_compound_subgraph_ids_stay_strings(execution):
    prompt = {
        "98:17": {"class_type": "IntConst", "inputs": {"value": 3}},
        "98:2": {"class_type": "Add", "inputs": {"a": ["98:17", 0], "b": 4}},
        "54:62:174": {"class_type": "Sink", "inputs": {"value": ["98:2", 0]}},
    }
    executor = run(execution, prompt, outputs=("54:62:174",))
    run(
        execution,
        {**prompt, "54:62:174": {"class_type": "Sink", "inputs": {"value": ["98:17", 0]}}},
        "again",
        ("54:62:174",),
        executor,
    )
    events = events_of("p1")
    assert [e.node_id for e in of(events, NodeStarted)] == ["98:17", "98:2", "54:62:174"]
    assert of(events, NodeInputs, "54:62:174")[0].inputs == {"value": [7], "unique_id": ["54:62:174"]}
    assert [(e.node_id, e.parent_id, e.display_id) for e in of(events, NodeStarted)][0] == ("98:17", None, None)
    doc = doc_of("p1", saved_by="54:62:174")
    assert [n["id"] for n in doc["nodes"]] == ["98:17", "98:2"]
    assert doc["saved_by"] == {"id": "54:62:174", "class_type": "Sink"}
    again = events_of("again")
    assert [e.node_id for e in of(again, NodeCached)] == ["98:2", "98:17"]  # ordered by id length, then id
    assert [e.node_id for e in of(again, NodeStarted)] == ["54:62:174"]


# --------------------------------------------------------------------------- secrets


@covered_by_real_servers(
    "gen",
    "test_save_node.py::test_credentials_never_reach_the_log_or_the_document",
    "test_redaction.py::test_no_byte_the_save_node_writes_holds_a_credential",
)
def test_a_credential_typed_into_an_input_never_reaches_the_log(execution):
    prompt = {
        "1": {"class_type": "ApiNode", "inputs": {"api_key": "sk-live-123", "size": 5}},
        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
    }
    run(execution, prompt, outputs=("2",))
    data = capture.STORE.get("p1")
    events = read_log(data).events
    recorded = {e.node_id: e.inputs for e in of(events, NodeInputs)}
    assert recorded["1"]["api_key"] == [REDACTED]
    assert recorded["1"]["size"] == [5]
    assert all(b"sk-live-123" not in bytes(str(e), "utf8") for e in of(events, NodeInputs))
    # Nowhere in the log: not in the prompt either.
    assert b"sk-live-123" not in data
    assert events[0].prompt["1"]["inputs"] == {"api_key": REDACTED, "size": 5}
    assert testnodes.Sink.calls == [5]


@covered_by_real_servers(
    "gen",
    "test_save_node.py::test_a_credential_fed_from_another_node_never_reaches_the_log_or_the_document",
)
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
    recorded = {e.node_id: e.inputs for e in of(events, NodeInputs)}
    assert recorded["1"] == {"value": [REDACTED], "max_tokens": [77]}  # max_tokens is no credential
    assert recorded["2"]["api_key"] == [REDACTED]
    assert events[0].prompt["1"]["inputs"]["value"] == REDACTED
    assert testnodes.Sink.calls[-1] == 5  # the node itself got its real key


def test_an_error_message_quoting_a_key_is_redacted(execution):
    prompt = {"1": {"class_type": "KeyedFail", "inputs": {"api_key": "sk-in-url-123"}}}
    run(execution, prompt, outputs=("1",))
    data = capture.STORE.get("p1")
    assert b"sk-in-url-123" not in data
    finished = read_log(data).events[-1]
    assert finished.status == "error" and "key=[redacted] failed" in finished.error_message


# --------------------------------------------------------------------------- odd values


def test_odd_strings_and_huge_ints_are_recorded_and_capture_stays_on(execution):
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": 2**70}, "_meta": {"title": "half an emoji \ud83d"}},
        "2": {"class_type": "Text", "inputs": {"value": "broken \udc00 text", "max_tokens": 1}},
        "3": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3", "4"))
    assert capture.STATUS.active and capture.STATUS.disabled_reason is None
    events = events_of("p1")
    recorded = {e.node_id: e.inputs for e in of(events, NodeInputs)}
    assert recorded["1"]["value"] == [str(2**70)]
    assert recorded["2"]["value"] == ["broken ? text"]
    assert events[0].prompt["1"]["_meta"]["title"] == "half an emoji ?"


def test_ints_beyond_64_bits_are_recorded_as_text_and_capture_stays_on(execution):
    # IntMathRuntimeMetadata's INT inputs allow -(2**64 - 1); msgpack holds -2**63 .. 2**64 - 1.
    big = -(2**64 - 1)
    prompt = {
        "1": {"class_type": "IntConst", "inputs": {"value": big}},
        "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 2**64 - 1}},
        "3": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    run(execution, prompt, outputs=("3",))
    run(execution, {**prompt, "1": {"class_type": "IntConst", "inputs": {"value": big - 1}}}, "p2", ("3",))
    assert capture.STATUS.active and capture.STATUS.disabled_reason is None
    assert testnodes.Sink.calls == [0, -1]
    events = events_of("p1")
    assert events[0].prompt["1"]["inputs"] == {"value": str(big)}
    assert [(e.node_id, e.inputs) for e in of(events, NodeInputs)] == [
        ("1", {"value": [str(big)]}),
        ("2", {"a": [str(big)], "b": [2**64 - 1]}),
        ("3", {"value": [0], "unique_id": ["3"]}),
    ]
    assert [e.status for e in of(events, NodeFinished)] == ["executed"] * 3


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
    first = read_log(data).events[0]
    assert first.prompt["1"]["inputs"]["value"].endswith(f"…[{len(blob) + 1} chars]")


# --------------------------------------------------------------------------- never breaks


def test_switching_capture_off_in_the_configuration_restores_comfyuis_own_functions(execution, monkeypatch):
    originals = [(item.owner, item.attr, item.original) for item in capture.STATE.installed]
    assert originals and all(getattr(o, a).__wrapped__ is f for o, a, f in originals)
    run(execution, CHAIN, "on")
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "0")
    executor = run(execution, CHAIN, "off")  # this run is not captured and un-wraps
    assert executor.success is True
    assert capture.STORE.get("off") is None
    assert all(getattr(owner, attr) is original for owner, attr, original in originals)
    assert capture.STATUS.installed == [] and capture.STATUS.active is False
    assert capture.STATUS.disabled_reason is None  # off by choice, not by a fault
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture.install(execution, "test")  # what the prompt handler does once the config says on
    run(execution, {**CHAIN, "1": {"class_type": "IntConst", "inputs": {"value": 2}}}, "on again")
    assert len(of(events_of("on again"), NodeStarted)) == 4


#: Where a fault is injected -> how the wrap point reports it.
FAULTS = {"run": "run: start", "message": "message: cached nodes", "call": "call: inputs"}


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
    else:
        capture.STATE.inputs.clear()  # forget the classes seen in the warm run
        monkeypatch.setattr(inputs, "classify", boom)
    faulty = {**CHAIN, "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 99}}}
    with caplog.at_level(logging.ERROR, logger="runtime_metadata"):
        run(execution, faulty, "faulty", executor=executor)
        assert executor.success is True
        run(execution, {**faulty, "1": {"class_type": "IntConst", "inputs": {"value": 1}}}, "after", executor=executor)
    assert executor.success is True
    assert testnodes.Sink.calls[-1].shape == (1, 8, 49, 3)  # the later run computed 1+48 as usual
    assert capture.STATUS.active is False
    assert capture.STATUS.disabled_reason.startswith(FAULTS[point] + ":"), capture.STATUS.disabled_reason
    assert f"injected fault at {point}" in capture.STATUS.disabled_reason
    assert sum("capture switched off" in r.getMessage() for r in caplog.records) == 1
    assert capture.STORE.get("after") is None  # capture stayed off for the rest of the process


def test_a_run_whose_arguments_are_not_a_prompt_is_left_alone(env, gen, caplog):
    """Where the order was assumed, a call that does not fit it is not recorded (and said once)."""
    errors.forget_reports()  # said once per process: an earlier generation's test said it already
    module = gen.load()
    original = module.PromptExecutor.execute

    def by_keywords_elsewhere(self, *args, **kwargs):  # a caller's own calling convention
        prompt, prompt_id = kwargs.pop("graph"), kwargs.pop("name")
        return original(self, prompt, prompt_id, *args, **kwargs)

    module.PromptExecutor.execute = by_keywords_elsewhere
    capture.install(module, "test")
    executor = module.PromptExecutor()
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        executor.execute(graph=CHAIN, name="kw", extra_data={}, execute_outputs=["4"])
    assert executor.success is True
    assert capture.STORE.get("kw") is None and capture.STATUS.disabled_reason is None
    assert any("run not captured" in r.getMessage() for r in caplog.records)


def varargs_wrapper(func, calls):
    """Another pack's wrapper that names none of its arguments and hides what it wraps."""
    if inspect.iscoroutinefunction(func):  # ComfyUI awaits it: an async wrapper

        async def async_wrapper(*args, **kwargs):
            calls.append(func.__name__)
            return await func(*args, **kwargs)

        return async_wrapper

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


#: (generation, style): a (*args, **kwargs) wrapper where no real server has one (the real ones
#: run under tests/integration/otherpack's, see test_other_packs.py); partialmethod everywhere.
PACK_WRAPPERS = [
    (name, style)
    for name in sorted(GENERATIONS)
    for style in (varargs_wrapper, partialmethod_wrapper)
    if not (style is varargs_wrapper and name in ON_REAL_SERVERS)
]


@pytest.mark.parametrize("gen, style", PACK_WRAPPERS, indirect=["gen"])
def test_a_pack_wrapping_with_args_and_kwargs_only_does_not_stop_capture(env, gen, style):
    """Such a signature names nothing; ComfyUI's own argument order is assumed (and said)."""
    module = gen.load()
    theirs: list[str] = []
    module.PromptExecutor.execute = style(module.PromptExecutor.execute, theirs)
    module.get_output_data = varargs_wrapper(module.get_output_data, theirs)
    capture.install(module, "test")
    assert capture.STATUS.skipped == []
    assert [i.split(":")[0] for i in capture.STATUS.installed] == list(gen.points)
    assumed = [n for n in capture.STATUS.notes if "argument order" in n]
    assert [n.split(":")[0] for n in assumed] == ["run", "call"]
    run(module, CHAIN)
    assert theirs.count("execute") == 1 and theirs.count("get_output_data") == 4
    events = events_of("p1")
    assert started(events) == CHAIN_STARTED
    assert [e.inputs for e in of(events, NodeInputs)][:2] == CHAIN_FIRST_INPUTS


# --------------------------------------------------------------------------- detection and wrapping


def _sync_generation(execute):
    """The execution module of Aug 2024 - Jul 2025 as far as wrap points go: ComfyUI's signatures."""
    from types import ModuleType

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
