"""The executor generations capture is tested on, and what every capture test needs to drive one.

A ``Generation`` loads a fresh copy of a test executor (ComfyUI's real signatures and call
sequence, see ``tests/executors``) and says what capture should make of it. ``run`` queues a
prompt as ComfyUI's server does. The contract suite (``test_capture.py``) runs on every
generation in ``GENERATIONS``; ``test_capture_modern.py`` runs the modern executor's own
behaviours on every signature form in ``MODERN_VARIANTS``.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runtime_metadata import capture
from runtime_metadata.events.log import read_log
from runtime_metadata.events.schema import NodeStarted
from runtime_metadata.projections.runtime import project, runtime_document

from .executors import testnodes
from .executors.modern_nodes import MODERN_NODES, AsyncSleep, Expand, Interrupter, Probe

EXECUTORS = Path(__file__).parent / "executors"
INTEGRATION = Path(__file__).parent / "integration"

#: The replica's generations and signature forms that a real ComfyUI server also runs in
#: ``tests/integration`` (the March-2024 ComfyUI and 0.3.64).
ON_REAL_SERVERS = frozenset({"march2024", "0.3.64"})

#: name -> (parameters of ``execute``, keyword of V3 hidden inputs in ``get_output_data``,
#: cache API): the modern executor's signature forms (see ``tests/executors/modern.py``).
MODERN_VARIANTS = {
    "0.38.1": (12, "v3_data", "async"),
    "2026": (11, "v3_data", "async"),
    "execute11+sync-entries": (11, "v3_data", "entry"),
    "0.3.64": (10, "hidden_inputs", "split"),
    "execute10+v3_data": (10, "v3_data", "split"),
}


def load_executor(name: str = "march2024") -> ModuleType:
    """A fresh copy of a test executor module, so each test patches its own."""
    spec = importlib.util.spec_from_file_location(f"execution_{name}_{id(object())}", EXECUTORS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.NODE_CLASS_MAPPINGS.update(testnodes.MAPPINGS)
    return module


def load_modern(variant: str = "2026") -> ModuleType:
    """A fresh copy of the modern test executor in one of its signature forms."""
    params, kwarg, cache_api = MODERN_VARIANTS[variant]
    spec = importlib.util.spec_from_file_location(f"execution_modern_{id(object())}", EXECUTORS / "modern.py")
    module = importlib.util.module_from_spec(spec)
    module.EXECUTE_PARAMS = params
    module.HIDDEN_KWARG = kwarg
    module.CACHE_API = cache_api
    spec.loader.exec_module(module)
    module.NODE_CLASS_MAPPINGS.update(testnodes.MAPPINGS)
    module.NODE_CLASS_MAPPINGS.update(MODERN_NODES)
    Expand.builder = module.GraphBuilder
    Interrupter.interrupt = staticmethod(module.interrupt_processing)
    return module


def covered_by_real_servers(fixture: str, *tests: str) -> pytest.MarkDecorator:
    """Run a replica test only on the forms no real server runs (``fixture``: "gen" or "variant").

    ``tests`` name the integration tests (``file.py::test_name``) that assert the same
    behaviour on the real servers of ``ON_REAL_SERVERS``; what the replica test asserts beyond
    them does not depend on the generation, so the newer signature forms keep asserting it.
    A name that no longer exists in ``tests/integration`` fails the collection.
    """
    for test in tests:
        file, _, name = test.partition("::")
        source = INTEGRATION / file
        if not name or not source.is_file() or f"def {name}(" not in source.read_text():
            raise ValueError(f"{test}: no such integration test (see {INTEGRATION})")
    forms = {"gen": GENERATIONS, "variant": MODERN_VARIANTS}[fixture]
    return pytest.mark.parametrize(fixture, sorted(set(forms) - ON_REAL_SERVERS), indirect=True)


@dataclass(frozen=True)
class Generation:
    """One executor generation: how to load it, and what capture makes of it."""

    name: str
    #: ``describe_generation``'s label, as the status and every document show it.
    label: str
    #: The wrap points capture installs on it, in order.
    points: tuple[str, ...]
    #: The async executor (per-node ``execute`` hook, ``get_output_data`` with node ids).
    modern: bool

    def load(self) -> ModuleType:
        """A fresh copy of this generation's test executor."""
        return load_modern(self.name) if self.modern else load_executor(self.name)


_MODERN = ("run", "message", "node", "call")
GENERATIONS = {
    g.name: g
    for g in (
        Generation("march2024", "2024 (recursive_execute)", ("run", "message", "call"), False),
        Generation("0.3.64", "2025+ (async execute)", _MODERN, True),
        Generation("2026", "2025+ (async execute)", _MODERN, True),
        Generation("0.38.1", "2025+ (async execute)", _MODERN, True),
    )
}

#: What ComfyUI's server passes as ``extra_data``: the UI workflow, and the account
#: credentials the frontend adds (which API nodes receive as hidden inputs).
EXTRA = {
    "extra_pnginfo": {"workflow": {"nodes": []}},
    "auth_token_comfy_org": "tok-secret-1",
    "api_key_comfy_org": "key-secret-2",
}

TENSOR = f"{testnodes.Tensorish.__module__}.Tensorish"
CHAIN = {
    "1": {"class_type": "IntConst", "inputs": {"value": 16}},
    "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 48}},
    "3": {"class_type": "MakeImage", "inputs": {"width": ["2", 0], "seed": 7}},
    "4": {"class_type": "Sink", "inputs": {"value": ["3", 0]}},
}
#: What a run of CHAIN records: (node id, class_type) in order, and the first two nodes' inputs.
CHAIN_STARTED = [("1", "IntConst"), ("2", "Add"), ("3", "MakeImage"), ("4", "Sink")]
CHAIN_FIRST_INPUTS = [{"value": [16]}, {"a": [16], "b": [48]}]


def run(execution: Any, prompt: dict, prompt_id: str = "p1", outputs=("4",), executor=None, extra=None) -> Any:
    """Queue ``prompt`` as ComfyUI's server does: a fresh copy of the JSON for every run."""
    executor = executor or execution.PromptExecutor()
    executor.execute(copy.deepcopy(prompt), prompt_id, copy.deepcopy(extra or EXTRA), list(outputs))
    return executor


def events_of(prompt_id: str) -> list:
    """The events of a finished run, from the store."""
    return read_log(capture.STORE.get(prompt_id)).events


def of(events: list, kind: type, node_id: str | None = None) -> list:
    """The events of type ``kind`` (of one node, if given)."""
    return [e for e in events if isinstance(e, kind) and (node_id is None or e.node_id == node_id)]


def started(events: list) -> list[tuple[str, str]]:
    """(node id, class_type) of every node that started, in order."""
    return [(e.node_id, e.class_type) for e in of(events, NodeStarted)]


def doc_of(prompt_id: str, saved_by: str | None = None) -> dict:
    """The runtime document of a finished run (for the save node ``saved_by``, if given)."""
    return runtime_document(project(None, events_of(prompt_id)), saved_by=saved_by)


def clear_node_state() -> None:
    """Forget what the test nodes noted in earlier tests."""
    testnodes.Sink.calls.clear()
    AsyncSleep.done_at.clear()
    AsyncSleep.delay = 0.05
    Probe.seen.clear()
