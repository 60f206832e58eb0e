"""Fold a run's events into its state, and the state into the runtime document.

``project(state | None, events) -> state`` is pure: it never mutates the state it is given,
so folding a prefix of a log and then the rest gives the same state as folding it all.
``runtime_document`` turns a state into the JSON-ready block embedded in images; encoding it
with ``canonical_json`` gives the same bytes live (in the save node) and on replay.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

import msgspec

from ..canonical import canonical_json as canonical_json  # the documents' encoding, re-exported
from ..events.schema import (
    AnyEvent,
    HookStats,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from ..prompt_graph import ancestors, class_type

#: 2: the timing counts are ``nodes_executed``/``nodes_cached``, as in ``stats`` and the history
#: (1 called them ``executed_nodes``/``cached_nodes``; see ``document.as_schema``).
DOCUMENT_SCHEMA = 2


class NodeRecord(msgspec.Struct):
    """What the run did with one node."""

    node_id: str
    class_type: str
    order: int
    status: str = "pending"  # running | executed | failed | interrupted | cached | pending
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
    status: str = "running"
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
    """Apply ``events`` to (a copy of) ``state``."""
    st = RunState() if state is None else state.copy()
    nodes = st.nodes
    count = 0
    # isinstance tests, the three per-node events first: the history folds every log again
    # (rebuild, catch-up), and this is about twice as fast as ``match`` with class patterns
    # (measured on a 200-node run).
    for event in events:
        count += 1
        if isinstance(event, NodeInputs):
            nid = event.node_id
            rec = nodes.get(nid)
            if rec is None:
                rec = nodes[nid] = NodeRecord(nid, "?", len(nodes))
            rec.inputs = event.inputs
            rec.calls = event.calls
        elif isinstance(event, NodeStarted):
            nid, ct = event.node_id, event.class_type
            rec = nodes.get(nid)
            if rec is None or rec.status == "cached":
                # A node seen again (lazy re-entry) keeps its first position.
                order = rec.order if rec is not None else len(nodes)
                rec = nodes[nid] = NodeRecord(nid, ct, order)
            rec.class_type = ct
            rec.status = "running"
            rec.start_ns = event.t_ns
            rec.display_id = event.display_id
            rec.parent_id = event.parent_id
        elif isinstance(event, NodeFinished):
            nid = event.node_id
            rec = nodes.get(nid)
            if rec is None:
                rec = nodes[nid] = NodeRecord(nid, class_type(st.prompt, nid), len(nodes))
            rec.status = event.status
            rec.end_ns = event.t_ns
            rec.error_type = event.error_type
            rec.error_message = event.error_message
        elif isinstance(event, NodeCached):
            nid = event.node_id
            if nid not in nodes:
                nodes[nid] = NodeRecord(
                    nid, event.class_type, len(nodes), status="cached", cached_from=event.from_prompt_id
                )
        elif isinstance(event, HookStats):
            st.hook_calls, st.hook_total_ns, st.hook_max_ns = event.calls, event.total_ns, event.max_ns
        elif isinstance(event, RunStarted):
            st.prompt_id = event.prompt_id
            st.wall_ns = event.wall_ns
            st.t0_ns = event.t_ns
            st.prompt = event.prompt
            st.workflow = event.workflow
            st.comfyui = event.comfyui
            st.plugin = event.plugin
            st.environment = event.environment
        elif isinstance(event, RunFinished):
            st.status = event.status
            st.end_ns = event.t_ns
            st.error_type = event.error_type
            st.error_message = event.error_message
    st.events += count
    return st


def _in_scope(rec: NodeRecord, scope: set[str] | None, nodes: dict[str, NodeRecord]) -> bool:
    if scope is None:
        return True
    # Ephemeral nodes from node expansion belong to the scope of the prompt node they were
    # expanded from, however deep the expansion nests.
    seen = 0
    while rec.node_id not in scope:
        parent = nodes.get(rec.parent_id) if rec.parent_id is not None else None
        if parent is None or seen > len(nodes):
            return rec.parent_id is not None and rec.parent_id in scope
        rec, seen = parent, seen + 1
    return True


def _ns_to_ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def runtime_document(state: RunState, saved_by: str | None = None) -> dict[str, Any]:
    """The runtime block: nodes in execution order (ancestors of ``saved_by`` only) and timing."""
    scope = ancestors(state.prompt, saved_by) if saved_by is not None else None
    records = sorted((r for r in state.nodes.values() if _in_scope(r, scope, state.nodes)), key=lambda r: r.order)
    nodes: list[dict[str, Any]] = []
    by_class: dict[str, list[int]] = {}
    executed_ns = 0
    for rec in records:
        item: dict[str, Any] = {"id": rec.node_id, "class_type": rec.class_type, "status": rec.status}
        if rec.status == "cached":
            item["cached"] = True
            if rec.cached_from is not None:
                item["cached_from"] = rec.cached_from
        if rec.start_ns is not None and rec.end_ns is not None:
            duration = rec.end_ns - rec.start_ns
            item["duration_ms"] = _ns_to_ms(duration)
            executed_ns += duration
            by_class.setdefault(rec.class_type, []).append(duration)
        if rec.calls is not None and rec.calls != 1:
            item["calls"] = rec.calls
        if rec.inputs is not None:
            item["inputs"] = {k: (v[0] if len(v) == 1 else v) for k, v in sorted(rec.inputs.items())}
        if rec.error_type or rec.error_message:
            item["error"] = {"type": rec.error_type, "message": rec.error_message}
        if rec.display_id is not None and rec.display_id != rec.node_id:
            item["display_id"] = rec.display_id
        if rec.parent_id is not None:
            item["parent_id"] = rec.parent_id
        nodes.append(item)
    doc: dict[str, Any] = {
        "schema": DOCUMENT_SCHEMA,
        "prompt_id": state.prompt_id,
        "started_at": _iso(state.wall_ns),
        "status": state.status,
        "comfyui": state.comfyui,
        "plugin": state.plugin,
        "nodes": nodes,
        "timing": {
            "nodes_executed": sum(1 for n in nodes if "duration_ms" in n),
            "nodes_cached": sum(1 for n in nodes if n.get("cached")),
            "node_time_ms": _ns_to_ms(executed_ns),
            "by_class": {
                ct: {
                    "calls": len(ds),
                    "total_ms": _ns_to_ms(sum(ds)),
                    "mean_ms": _ns_to_ms(sum(ds) // len(ds)),
                    "max_ms": _ns_to_ms(max(ds)),
                }
                for ct, ds in sorted(by_class.items())
            },
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
