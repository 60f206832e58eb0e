"""The fold and the runtime document, made faster, give what they always gave, byte for byte.

Images embed documents built by earlier versions, and ``replay --check`` compares them byte
for byte, so the projection may change how it computes, never what. ``Reference`` below is the
fold and the document as they were before they were optimised (kept verbatim, as the oracle);
hypothesis feeds both arbitrary runs (re-entered nodes, cached nodes, expanded nodes nested
under parents, failures, odd timings) and compares the states and the canonical bytes.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_metadata.canonical import canonical_json
from runtime_metadata.events.schema import (
    HookStats,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from runtime_metadata.projections.runtime import NodeRecord, RunState, project, runtime_document
from runtime_metadata.projections.workflow import is_link


class Reference:
    """``project`` and ``runtime_document`` before the replay optimisation (the oracle; with the
    timing counts renamed by document schema 2)."""

    @staticmethod
    def project(state: RunState | None, events: Iterable[Any]) -> RunState:
        st = RunState() if state is None else state.copy()
        nodes = st.nodes
        count = 0
        for event in events:
            count += 1
            match event:
                case NodeInputs(node_id=nid, inputs=inputs, calls=calls):
                    rec = nodes.get(nid)
                    if rec is None:
                        rec = nodes[nid] = NodeRecord(nid, "?", len(nodes))
                    rec.inputs = inputs
                    rec.calls = calls
                case NodeStarted(node_id=nid, class_type=ct, t_ns=t):
                    rec = nodes.get(nid)
                    if rec is None or rec.status == "cached":
                        order = rec.order if rec is not None else len(nodes)
                        rec = nodes[nid] = NodeRecord(nid, ct, order)
                    rec.class_type = ct
                    rec.status = "running"
                    rec.start_ns = t
                    rec.display_id = event.display_id
                    rec.parent_id = event.parent_id
                case NodeFinished(node_id=nid, t_ns=t, status=status):
                    rec = nodes.get(nid)
                    if rec is None:
                        rec = nodes[nid] = NodeRecord(nid, Reference._class_of(st.prompt, nid), len(nodes))
                    rec.status = status
                    rec.end_ns = t
                    rec.error_type = event.error_type
                    rec.error_message = event.error_message
                case NodeCached(node_id=nid, class_type=ct):
                    if nid not in nodes:
                        nodes[nid] = NodeRecord(nid, ct, len(nodes), status="cached", cached_from=event.from_prompt_id)
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
        st.events += count
        return st

    @staticmethod
    def _class_of(prompt: dict[str, Any], node_id: str) -> str:
        node = prompt.get(node_id)
        return str(node.get("class_type", "?")) if isinstance(node, dict) else "?"

    @staticmethod
    def ancestors(prompt: dict[str, Any], node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            node = prompt.get(stack.pop())
            if not isinstance(node, dict):
                continue
            for value in (node.get("inputs") or {}).values():
                if is_link(value):
                    src = str(value[0])
                    if src not in seen:
                        seen.add(src)
                        stack.append(src)
        return seen

    @staticmethod
    def _in_scope(rec: NodeRecord, scope: set[str] | None, nodes: dict[str, NodeRecord]) -> bool:
        if scope is None:
            return True
        seen = 0
        while rec.node_id not in scope:
            parent = nodes.get(rec.parent_id) if rec.parent_id is not None else None
            if parent is None or seen > len(nodes):
                return rec.parent_id is not None and rec.parent_id in scope
            rec, seen = parent, seen + 1
        return True

    @staticmethod
    def _ns_to_ms(ns: int) -> float:
        return round(ns / 1e6, 3)

    @staticmethod
    def runtime_document(state: RunState, saved_by: str | None = None) -> dict[str, Any]:
        R = Reference
        scope = R.ancestors(state.prompt, saved_by) if saved_by is not None else None
        records = sorted((r for r in state.nodes.values() if R._in_scope(r, scope, state.nodes)), key=lambda r: r.order)
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
                item["duration_ms"] = R._ns_to_ms(duration)
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
            "schema": 2,
            "prompt_id": state.prompt_id,
            "started_at": R._iso(state.wall_ns),
            "status": state.status,
            "comfyui": state.comfyui,
            "plugin": state.plugin,
            "nodes": nodes,
            "timing": {
                "nodes_executed": sum(1 for n in nodes if "duration_ms" in n),
                "nodes_cached": sum(1 for n in nodes if n.get("cached")),
                "node_time_ms": R._ns_to_ms(executed_ns),
                "by_class": {
                    ct: {
                        "calls": len(ds),
                        "total_ms": R._ns_to_ms(sum(ds)),
                        "mean_ms": R._ns_to_ms(sum(ds) // len(ds)),
                        "max_ms": R._ns_to_ms(max(ds)),
                    }
                    for ct, ds in sorted(by_class.items())
                },
            },
        }
        if saved_by is not None:
            doc["saved_by"] = {"id": saved_by, "class_type": R._class_of(state.prompt, saved_by)}
        if state.end_ns is not None:
            doc["timing"]["wall_ms"] = R._ns_to_ms(state.end_ns - state.t0_ns)
            wall = state.end_ns - state.t0_ns
            doc["timing"]["hooks"] = {
                "calls": state.hook_calls,
                "total_ms": R._ns_to_ms(state.hook_total_ns),
                "max_ms": R._ns_to_ms(state.hook_max_ns),
                "share": round(state.hook_total_ns / wall, 4) if wall > 0 else 0.0,
            }
        if state.error_type or state.error_message:
            doc["error"] = {"type": state.error_type, "message": state.error_message}
        return doc

    @staticmethod
    def _iso(wall_ns: int) -> str:
        if not wall_ns:
            return ""
        return _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")


# --- strategies: runs the executor could log, and some it should not --------------------------

IDS = ["1", "2", "3", "4", "10", "2.0.1", "2.0.2", "x"]
CLASSES = ["KSampler", "LoraLoader", "Save", "?"]
# Durations around the rounding points of milliseconds (x.xxx5), negative ones, huge ones.
TIMES = st.one_of(
    st.integers(0, 10**7),
    st.integers(0, 10**4).map(lambda k: k * 1000 + 500),
    st.integers(-(10**6), 10**15),
    st.integers(0, 1 << 62),
)
VALUES = st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), st.text(max_size=3), st.none(), st.booleans())
INPUTS = st.dictionaries(st.sampled_from(["seed", "b", "a", "text", "z"]), st.lists(VALUES, min_size=0, max_size=3))
OPT_ID = st.one_of(st.none(), st.sampled_from(IDS))
OPT_TEXT = st.one_of(st.none(), st.text(max_size=4))

EVENT = st.one_of(
    st.builds(NodeStarted, st.sampled_from(IDS), st.sampled_from(CLASSES), TIMES, OPT_ID, OPT_ID),
    st.builds(NodeInputs, st.sampled_from(IDS), TIMES, INPUTS, st.integers(0, 3)),
    st.builds(
        NodeFinished,
        st.sampled_from(IDS),
        TIMES,
        st.sampled_from(["executed", "failed", "interrupted", "pending"]),
        OPT_TEXT,
        OPT_TEXT,
    ),
    st.builds(NodeCached, st.sampled_from(IDS), st.sampled_from(CLASSES), TIMES, OPT_TEXT),
    st.builds(HookStats, st.integers(0, 100), TIMES, TIMES),
    st.builds(RunFinished, TIMES, st.sampled_from(["success", "error", "interrupted"]), OPT_TEXT, OPT_TEXT),
)
PROMPT = st.dictionaries(
    st.sampled_from(IDS),
    st.fixed_dictionaries(
        {
            "class_type": st.sampled_from(CLASSES),
            "inputs": st.dictionaries(
                st.sampled_from(["a", "b", "images"]),
                st.one_of(st.tuples(st.sampled_from(IDS), st.integers(0, 2)).map(list), VALUES),
            ),
        }
    ),
)
STARTED = st.builds(
    RunStarted, st.text(max_size=5), st.integers(0, 2 * 10**18), TIMES, PROMPT, st.none(), st.text(max_size=3)
)


@st.composite
def node_record(draw: st.DrawFn) -> list[Any]:
    """A node's start, inputs and end in a row, as a log record holds them (the fold's fast path)."""
    nid = draw(st.sampled_from(IDS))
    return [
        NodeStarted(nid, draw(st.sampled_from(CLASSES)), draw(TIMES), draw(OPT_ID), draw(OPT_ID)),
        NodeInputs(nid, draw(TIMES), draw(INPUTS), draw(st.integers(0, 3))),
        NodeFinished(
            nid,
            draw(TIMES),
            draw(st.sampled_from(["executed", "failed", "interrupted", "pending"])),
            draw(OPT_TEXT),
            draw(OPT_TEXT),
        ),
    ]


#: Single events in any order, and whole node records (a node seen again, cached first, or cut
#: by the prefix fold below takes the general path).
RUN = st.tuples(
    STARTED,
    st.lists(st.one_of(EVENT.map(lambda e: [e]), node_record()), max_size=20).map(
        lambda parts: [e for part in parts for e in part]
    ),
)


def canonical(doc: dict[str, Any]) -> bytes:
    return canonical_json(doc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(RUN, st.integers(0, 40), st.one_of(st.none(), st.sampled_from(IDS)))
def test_fold_and_document_equal_the_reference_byte_for_byte(run, cut, saved_by):
    started, events = run
    events = [started, *events]
    state = project(None, events)
    expected = Reference.project(None, events)
    assert state == expected
    # Folding a prefix, then the rest, is folding it all (and the prefix state is not mutated).
    prefix = project(None, events[:cut])
    before = prefix.copy()
    assert project(prefix, events[cut:]) == expected
    assert prefix == before
    doc = runtime_document(state, saved_by)
    reference = Reference.runtime_document(expected, saved_by)
    assert doc == reference
    assert canonical(doc) == canonical(reference)


@settings(max_examples=300, deadline=None)
@given(st.lists(TIMES, min_size=1, max_size=20))
def test_durations_round_like_the_reference(times):
    events = [RunStarted("p", 1, 0, {})]
    for i, t in enumerate(times):
        events += [NodeStarted(str(i), "X", 0), NodeFinished(str(i), t, "executed")]
    events.append(RunFinished(times[0], "success"))
    assert canonical(runtime_document(project(None, events))) == canonical(
        Reference.runtime_document(Reference.project(None, events))
    )
