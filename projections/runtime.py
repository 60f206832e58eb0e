"""Fold a run's events into its state, and the state into the runtime document.

``project(state | None, events) -> state`` is pure: it never mutates the state it is given,
so folding a prefix of a log and then the rest gives the same state as folding it all.
``runtime_document`` turns a state into the JSON-ready block embedded in images; encoding it
with ``canonical_json`` gives the same bytes live (in the save node) and on replay.
"""

from __future__ import annotations

import datetime as _dt
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec

from ..canonical import canonical_json as canonical_json  # the documents' encoding, re-exported
from ..events.schema import (
    AnyEvent,
    HookStats,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    NodeStatus,
    RunFinished,
    RunStarted,
    RunStatus,
)
from ..prompt_graph import ancestors, class_type
from .timing import class_timing

#: 2: the timing counts are ``nodes_executed``/``nodes_cached``, as in ``stats`` and the history
#: (1 called them ``executed_nodes``/``cached_nodes``; see ``document.as_schema``).
DOCUMENT_SCHEMA = 2


#: A node's state in a fold: how it ended, or started and not ended yet, or served from the cache.
NodePhase = NodeStatus | Literal["running", "cached"]
#: A run's state in a fold: how it ended, or not ended yet.
RunPhase = RunStatus | Literal["running"]


class NodeRecord(msgspec.Struct, gc=False):
    """What the run did with one node (untracked by the cyclic GC: it holds data, never itself)."""

    node_id: str
    class_type: str
    order: int
    status: NodePhase = "pending"
    start_ns: int | None = None
    end_ns: int | None = None
    inputs: dict[str, list[Any]] | None = None
    calls: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    display_id: str | None = None
    parent_id: str | None = None
    cached_from: str | None = None


class RunState(msgspec.Struct):
    """Everything a log says about one run."""

    prompt_id: str = ""
    wall_ns: int = 0
    t0_ns: int = 0
    prompt: dict[str, Any] = msgspec.field(default_factory=dict)
    workflow: Any = None
    comfyui: str = ""
    plugin: str = ""
    environment: dict[str, str] = msgspec.field(default_factory=dict)
    status: RunPhase = "running"
    error_type: str | None = None
    error_message: str | None = None
    end_ns: int | None = None
    nodes: dict[str, NodeRecord] = msgspec.field(default_factory=dict)
    hook_calls: int = 0
    hook_total_ns: int = 0
    hook_max_ns: int = 0
    events: int = 0

    def copy(self) -> RunState:
        """A copy that shares no mutable part with this state (the prompt is never mutated)."""
        return msgspec.structs.replace(self, nodes={k: msgspec.structs.replace(v) for k, v in self.nodes.items()})


def project(state: RunState | None, events: Iterable[AnyEvent]) -> RunState:
    """Apply ``events`` to (a copy of) ``state``.

    Written for replay speed (a million events a second is the goal): one type test per event,
    the three per-node events first, records built whole. ``tests/test_fold_equivalence.py``
    holds the plain version it must equal, state for state.
    """
    st = RunState() if state is None else state.copy()
    # Any: the branches test the exact type once, which mypy does not follow through ``kind``.
    todo: Sequence[Any] = events if isinstance(events, (list, tuple)) else list(events)
    nodes = st.nodes
    get = nodes.get
    count = len(todo)
    last = count - 2
    i = 0
    while i < count:
        event = todo[i]
        i += 1
        kind = type(event)
        if kind is NodeStarted:
            nid = event.node_id
            rec = get(nid)
            if rec is None and i <= last:
                # The usual node: its start, inputs and end in a row (a log's record), folded into
                # one record built whole, as the three steps below would leave it.
                got, end = todo[i], todo[i + 1]
                if type(got) is NodeInputs and type(end) is NodeFinished and got.node_id == nid == end.node_id:
                    nodes[nid] = NodeRecord(
                        nid,
                        event.class_type,
                        len(nodes),
                        end.status,
                        event.t_ns,
                        end.t_ns,
                        got.inputs,
                        got.calls,
                        end.error_type,
                        end.error_message,
                        event.display_id,
                        event.parent_id,
                    )
                    i += 2
                    continue
            if rec is None or rec.status == "cached":
                # A node seen again (lazy re-entry) keeps its first position.
                order = rec.order if rec is not None else len(nodes)
                rec = nodes[nid] = NodeRecord(nid, event.class_type, order, "running", event.t_ns)
                if event.display_id is not None or event.parent_id is not None:  # expanded nodes only
                    rec.display_id = event.display_id
                    rec.parent_id = event.parent_id
            else:
                rec.class_type = event.class_type
                rec.status = "running"
                rec.start_ns = event.t_ns
                rec.display_id = event.display_id
                rec.parent_id = event.parent_id
        elif kind is NodeInputs:
            nid = event.node_id
            rec = get(nid)
            if rec is None:
                rec = nodes[nid] = NodeRecord(nid, "?", len(nodes))
            rec.inputs = event.inputs
            rec.calls = event.calls
        elif kind is NodeFinished:
            nid = event.node_id
            rec = get(nid)
            if rec is None:
                rec = nodes[nid] = NodeRecord(nid, class_type(st.prompt, nid), len(nodes))
            rec.status = event.status
            rec.end_ns = event.t_ns
            rec.error_type = event.error_type
            rec.error_message = event.error_message
        else:
            _apply_run_event(st, event)
    st.events += count
    return st


def _apply_run_event(st: RunState, event: AnyEvent) -> None:
    """The events other than a node's start, inputs and end (a few per run)."""
    match event:
        case NodeCached(node_id=nid, class_type=ct):
            if nid not in st.nodes:
                st.nodes[nid] = NodeRecord(nid, ct, len(st.nodes), status="cached", cached_from=event.from_prompt_id)
        case HookStats(calls=c, total_ns=tot, max_ns=mx):
            st.hook_calls, st.hook_total_ns, st.hook_max_ns = c, tot, mx
        case RunStarted():
            st.prompt_id = event.prompt_id
            st.wall_ns = event.wall_ns
            st.t0_ns = event.t_ns
            st.prompt = event.prompt
            st.workflow = event.workflow
            st.comfyui = event.comfyui
            st.plugin = event.plugin
            st.environment = event.environment
        case RunFinished(t_ns=t, status=status):
            st.status = status
            st.end_ns = t
            st.error_type = event.error_type
            st.error_message = event.error_message


def _in_scope(records: Iterable[NodeRecord], scope: set[str], nodes: dict[str, NodeRecord]) -> list[NodeRecord]:
    """The records of nodes in ``scope``, or expanded (however deeply) from a node in it.

    Ephemeral nodes from node expansion belong to the scope of the prompt node they were
    expanded from. Each node's answer is remembered, so the walks up the parent chains cost
    one step per node in all, not one per node and level of nesting.
    """
    known: dict[str, bool] = {}
    kept = []
    for rec in records:
        start = rec
        chain: list[str] = []
        while True:
            nid = rec.node_id
            if nid in scope:
                answer = True
                break
            done = known.get(nid)
            if done is not None:
                answer = done
                break
            chain.append(nid)
            pid = rec.parent_id
            parent = nodes.get(pid) if pid is not None else None
            if parent is None:
                answer = pid is not None and pid in scope
                break
            if len(chain) > len(nodes):  # a cycle of parents (not from a real run): out of scope
                answer = False
                break
            rec = parent
        for nid in chain:
            known[nid] = answer
        if answer:
            kept.append(start)
    return kept


#: Below this many nanoseconds (18 minutes) ``_ns_to_ms`` may use integer arithmetic: a float
#: ``ns / 1e6`` is then far closer to the exact quotient than any rounding decision needs.
_EXACT_NS = 1 << 40


def _ns_to_ms(ns: int) -> float:
    """Nanoseconds as milliseconds rounded to 3 decimals, exactly as ``round(ns / 1e6, 3)``."""
    if type(ns) is int and 0 <= ns < _EXACT_NS:
        q, r = divmod(ns, 1000)
        if r != 500:  # not a tie: both round the same way, and int / int is correctly rounded
            return (q + 1 if r > 500 else q) / 1000
    return round(ns / 1e6, 3)


_ORDER = operator.attrgetter("order")


def _ns_mean(durations: Sequence[int]) -> int:
    return sum(durations) // len(durations)


def runtime_document(state: RunState, saved_by: str | None = None) -> dict[str, Any]:
    """The runtime block: nodes in execution order (ancestors of ``saved_by`` only) and timing.

    The order of keys in the dicts is not part of the document: its encoding
    (``canonical_json``) sorts them. Like ``project``, written for replay speed and checked
    against the plain version in ``tests/test_fold_equivalence.py``.
    """
    all_nodes = state.nodes
    if saved_by is None:
        records = list(all_nodes.values())
    else:
        scope = ancestors(state.prompt, saved_by)
        records = _in_scope(all_nodes.values(), scope, all_nodes)
    records.sort(key=_ORDER)  # folded by ``project`` they are in order already: one pass
    nodes: list[dict[str, Any]] = []
    append = nodes.append
    by_class: dict[str, list[int]] = {}
    executed_ns = executed = cached = 0
    for rec in records:
        status = rec.status
        node_id = rec.node_id
        item: dict[str, Any] = {"id": node_id, "class_type": rec.class_type, "status": status}
        if status == "cached":
            cached += 1
            item["cached"] = True
            if rec.cached_from is not None:
                item["cached_from"] = rec.cached_from
        start, end = rec.start_ns, rec.end_ns
        if start is not None and end is not None:
            duration = end - start
            item["duration_ms"] = _ns_to_ms(duration)
            executed += 1
            executed_ns += duration
            durations = by_class.get(rec.class_type)
            if durations is None:
                by_class[rec.class_type] = [duration]
            else:
                durations.append(duration)
        calls = rec.calls
        if calls is not None and calls != 1:
            item["calls"] = calls
        inputs = rec.inputs
        if inputs is not None:
            item["inputs"] = {k: (v[0] if len(v) == 1 else v) for k, v in inputs.items()}
        if rec.error_type or rec.error_message:
            item["error"] = {"type": rec.error_type, "message": rec.error_message}
        display = rec.display_id
        if display is not None and display != node_id:
            item["display_id"] = display
        if rec.parent_id is not None:
            item["parent_id"] = rec.parent_id
        append(item)
    doc: dict[str, Any] = {
        "schema": DOCUMENT_SCHEMA,
        "prompt_id": state.prompt_id,
        "started_at": _iso(state.wall_ns),
        "status": state.status,
        "comfyui": state.comfyui,
        "plugin": state.plugin,
        "nodes": nodes,
        "timing": {
            "nodes_executed": executed,
            "nodes_cached": cached,
            "node_time_ms": _ns_to_ms(executed_ns),
            "by_class": class_timing(by_class, _ns_to_ms, _ns_mean),
        },
    }
    if saved_by is not None:
        doc["saved_by"] = {"id": saved_by, "class_type": class_type(state.prompt, saved_by)}
    if state.end_ns is not None:
        doc["timing"]["wall_ms"] = _ns_to_ms(state.end_ns - state.t0_ns)
        wall = state.end_ns - state.t0_ns
        doc["timing"]["hooks"] = {
            "calls": state.hook_calls,
            "total_ms": _ns_to_ms(state.hook_total_ns),
            "max_ms": _ns_to_ms(state.hook_max_ns),
            # Share of the run's wall time spent in capture code (0..1, 4 decimals).
            "share": round(state.hook_total_ns / wall, 4) if wall > 0 else 0.0,
        }
    if state.error_type or state.error_message:
        doc["error"] = {"type": state.error_type, "message": state.error_message}
    return doc


def _iso(wall_ns: int) -> str:
    if not wall_ns:
        return ""
    return _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")
