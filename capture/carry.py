"""Cached-node carry-over: the inputs a cached node had in the captured run that computed it.

ComfyUI caches a node's outputs by id while its inputs stay the same, so a node served from
the cache holds the values of the last run that executed it. The run hook notes, when a run
ends, which run last recorded each node's inputs (``remember_run``; nothing on the hot
path); the message hook, told which nodes are cached, reads those inputs back from that
run's log in the store (``carried_inputs``) when they provably still hold: when the node's
``graph_signature`` (its class and literal inputs, and all upstream of it) is the same in
both prompts.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

from ..events.log import iter_log
from ..events.schema import NodeInputs, NodeStarted, RunStarted
from ..prompt_graph import is_link
from .recorder import Recorder, RunStore

#: Nodes whose last run is remembered; the oldest are forgotten first.
MAX_REMEMBERED_NODES = 4096

#: A kept run's prompt, and per node it executed: (class_type, its last NodeInputs).
RecordedRun = tuple[dict[str, Any], dict[str, tuple[str, NodeInputs]]]


def remember(last_run: dict[str, str], node_id: str, prompt_id: str) -> None:
    """Note the run holding ``node_id``'s inputs, as the most recent entry."""
    last_run.pop(node_id, None)
    last_run[node_id] = prompt_id


def remember_run(last_run: dict[str, str], rec: Recorder) -> None:
    """Note a finished run as the holder of the inputs of every prompt node it executed."""
    prompt_id, prompt = rec.prompt_id, rec.prompt
    for node_id in rec.started:
        if node_id in prompt:  # nodes of the prompt only (not expanded ones: no graph to compare)
            remember(last_run, node_id, prompt_id)
    extra = len(last_run) - MAX_REMEMBERED_NODES
    if extra > 0:
        for node_id in list(itertools.islice(last_run, extra)):
            del last_run[node_id]


class CarryMemo:
    """Per cached-nodes message: earlier runs (prompt, inputs by node) and graph signatures, read once."""

    def __init__(self, store: RunStore, last_run: dict[str, str]) -> None:
        self.store = store
        self.last_run = last_run
        self.runs: dict[str, RecordedRun | None] = {}
        self.signatures: dict[str, dict[str, Any]] = {}

    def run(self, prompt_id: str) -> RecordedRun | None:
        """A kept run's prompt and recorded inputs, read from its log once."""
        if prompt_id not in self.runs:
            self.runs[prompt_id] = recorded_inputs(self.store, prompt_id)
        return self.runs[prompt_id]

    def signature(self, key: str, prompt: dict[str, Any], node_id: str) -> Any:
        """``graph_signature`` of ``node_id`` in ``prompt``, memoised per prompt (``key``)."""
        return graph_signature(prompt, node_id, self.signatures.setdefault(key, {}))


def carried_inputs(rec: Recorder, node_id: str, class_type: str, seen: CarryMemo) -> tuple[str, NodeInputs] | None:
    """The inputs of the captured run that computed a now-cached node, if provably so.

    Provably: that run executed the same class under this id, and the node's whole upstream
    graph in that run's prompt (classes and literal inputs, as ComfyUI's cache key has it)
    equals the one in this prompt. A run no longer kept, or any difference, carries nothing.
    """
    then_id = seen.last_run.get(node_id)
    if then_id is None or then_id == rec.prompt_id:
        return None
    then = seen.run(then_id)
    if then is None:
        return None
    prompt, inputs = then
    recorded = inputs.get(node_id)
    if recorded is None or recorded[0] != class_type:
        return None
    if seen.signature(then_id, prompt, node_id) != seen.signature("\0this run", rec.prompt, node_id):
        return None
    return then_id, recorded[1]


def recorded_inputs(store: RunStore, prompt_id: str) -> RecordedRun | None:
    """A kept run's prompt, and per node it executed: (class_type, its last NodeInputs)."""
    data = store.get(prompt_id)
    if data is None:
        return None
    prompt: dict[str, Any] | None = None
    classes: dict[str, str] = {}
    inputs: dict[str, tuple[str, NodeInputs]] = {}
    for event in iter_log(data):
        if isinstance(event, RunStarted):
            prompt = event.prompt
        elif isinstance(event, NodeStarted):
            classes[event.node_id] = event.class_type
        elif isinstance(event, NodeInputs) and event.node_id in classes:
            inputs[event.node_id] = (classes[event.node_id], event)
    return None if prompt is None else (prompt, inputs)


def graph_signature(prompt: dict[str, Any], node_id: str, memo: dict[str, bytes] | None = None) -> bytes:
    """A digest of a node and everything upstream of it: class types and literal inputs, links followed.

    Two prompts give a node the same signature exactly when ComfyUI's cache would consider
    its output unchanged (IS_CHANGED aside), so the inputs recorded in one hold in the other.
    Each node's digest is computed once from its own data and its inputs' digests, without
    recursion: a signature nesting its inputs' signatures would share them between the
    branches of every diamond, and hashing or comparing it would then cost 2^depth.
    """
    memo = {} if memo is None else memo  # share one per prompt to sign many nodes in O(graph)
    if node_id in memo:
        return memo[node_id]
    stack = [node_id]
    active: set[str] = set()  # visited, waiting for their inputs' digests
    while stack:
        nid = stack[-1]
        if nid in memo:
            stack.pop()
            continue
        node = prompt.get(nid)
        if not isinstance(node, dict):
            memo[nid] = _digest(("missing", nid))
            stack.pop()
            continue
        raw = node.get("inputs")
        items = sorted(raw.items()) if isinstance(raw, dict) else []
        if nid not in active:
            active.add(nid)
            links = [str(value[0]) for _, value in items if is_link(value)]
            pending = [src for src in links if src not in memo and src not in active]
            if pending:
                stack.extend(pending)
                continue
        parts: list[tuple[Any, ...]] = []
        for name, value in items:
            if is_link(value):
                src = str(value[0])
                # Not computed yet only when it is still waiting itself: a cycle, which ComfyUI
                # refuses to run. A digest equal to nothing, so nothing is ever carried over.
                upstream = memo.get(src) or os.urandom(16)
                parts.append((name, "link", value[1], upstream))
            else:
                parts.append((name, "value", repr(value)))
        memo[nid] = _digest((repr(node.get("class_type")), tuple(parts)))
        active.discard(nid)
        stack.pop()
    return memo[node_id]


def _digest(parts: tuple[Any, ...]) -> bytes:
    # repr of str/int/bytes tuples is unambiguous; 16 bytes of BLAKE2b make collisions moot.
    return hashlib.blake2b(repr(parts).encode("utf-8", "surrogatepass"), digest_size=16).digest()
