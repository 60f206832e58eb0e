"""Fold a run's events into its history rows: one run row, one row per node, one per class type.

Pure: the same events (and worker id default and log name) always give equal rows, which is
what makes the history a projection. The live writer and ``history rebuild`` both call
``history_rows`` on the run's log, so a rebuilt history holds exactly the rows the live one had.

Per class type the run also gets a histogram of its nodes' durations (``bucket``): the
statistics routes merge these over thousands of runs without reading every node row.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ..events.schema import AnyEvent, RunFinished, RunStarted
from .document import build_document, save_nodes
from .rules import SAVE_NODE
from .runtime import NodeRecord, RunState, project

#: The plugin's save node, whose documents (generation, disagreements) a run row keeps.
SAVE_CLASSES = frozenset({SAVE_NODE})
#: Histogram buckets per doubling of a duration: a bucket is 2.2% wide, so the middle of the
#: bucket a percentile falls in is within 1.1% of the exact value.
BUCKETS_PER_DOUBLING = 32
#: Worker id of a log written before logs named their worker, when the caller knows none.
UNKNOWN_WORKER = "unknown"


class NodeRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What the run did with one node, in run order (``seq``)."""

    seq: int
    node_id: str
    display_id: str | None
    parent_id: str | None
    class_type: str
    status: str  # executed | cached | failed | interrupted | pending | running (log without an end)
    duration_ns: int | None
    start_ns: int | None  # from the run's start
    calls: int | None
    inputs: dict[str, Any] | None  # as the image records them: one value, or the batch list
    cached_from: str | None
    error_type: str | None
    error_message: str | None


class ClassRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The run's nodes of one class type: how many, how long, and a histogram of durations."""

    class_type: str
    nodes: int  # every node of the class, cached ones included
    count: int  # those with a duration
    total_ns: int
    max_ns: int
    buckets: list[int]  # the bucket of each timed node, ascending (a histogram the stats merge in C)


class RunRow(msgspec.Struct, frozen=True, gc=False):
    """One run, as the runs list shows it."""

    run_id: int  # a 63-bit digest of (worker, prompt id, start): the same run, the same id
    worker_id: str
    prompt_id: str
    client_id: str | None
    started_ns: int  # wall clock, ns since the epoch
    finished_ns: int | None
    status: str  # success | error | interrupted | running (the log has no end)
    wall_ns: int | None
    nodes_executed: int
    nodes_cached: int
    nodes_failed: int
    hook_ns: int
    hook_calls: int
    comfyui: str
    plugin: str
    error_type: str | None
    error_message: str | None
    images: list[dict[str, Any]]
    saves: list[dict[str, Any]]
    events: int  # how many events were folded: a longer log of the same run supersedes
    log_name: str | None


class RunRows(msgspec.Struct, frozen=True, gc=False):
    """Everything the history keeps of one run."""

    run: RunRow
    nodes: list[NodeRow]
    classes: list[ClassRow]


def run_id(worker_id: str, prompt_id: str, started_ns: int) -> int:
    """The run's key as one positive 63-bit integer (equal inputs, equal id; ~1e-8 collision odds at 1e5 runs)."""
    digest = hashlib.blake2b(f"{worker_id}\0{prompt_id}\0{started_ns}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def bucket(duration_ns: int) -> int:
    """The histogram bucket of a duration (-1 for zero)."""
    return math.floor(math.log2(duration_ns) * BUCKETS_PER_DOUBLING) if duration_ns > 0 else -1


def bucket_value(index: int) -> float:
    """The duration in ns a bucket stands for: its geometric middle."""
    return 0.0 if index < 0 else 2.0 ** ((index + 0.5) / BUCKETS_PER_DOUBLING)


def history_rows(
    events: Sequence[AnyEvent],
    worker_id: str | None = None,
    log_name: str | None = None,
    save_classes: frozenset[str] = SAVE_CLASSES,
) -> RunRows | None:
    """The rows of the run in ``events``; None when they hold no RunStarted (not a run's log).

    ``worker_id`` is used only for logs that do not name their worker (before schema 3).
    """
    started = next((e for e in events if isinstance(e, RunStarted)), None)
    if started is None:
        return None
    state = project(None, events)
    worker = started.worker_id or worker_id or UNKNOWN_WORKER
    nodes = [_node_row(seq, rec, state.t0_ns) for seq, rec in enumerate(sorted(state.nodes.values(), key=_order))]
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
    wall = state.end_ns - state.t0_ns if state.end_ns is not None else None
    run = RunRow(
        run_id=run_id(worker, state.prompt_id, state.wall_ns),
        worker_id=worker,
        prompt_id=state.prompt_id,
        client_id=started.client_id,
        started_ns=state.wall_ns,
        finished_ns=state.wall_ns + wall if wall is not None else None,
        status=state.status,
        wall_ns=wall,
        nodes_executed=sum(1 for n in nodes if n.status == "executed"),
        nodes_cached=sum(1 for n in nodes if n.status == "cached"),
        nodes_failed=sum(1 for n in nodes if n.status == "failed"),
        hook_ns=state.hook_total_ns,
        hook_calls=state.hook_calls,
        comfyui=state.comfyui,
        plugin=state.plugin,
        error_type=state.error_type,
        error_message=state.error_message,
        images=[_image(i) for i in finished.images] if finished is not None else [],
        saves=_saves(events, state.prompt, save_classes),
        events=state.events,
        log_name=log_name,
    )
    return RunRows(run, nodes, class_rows(nodes))


def _order(rec: NodeRecord) -> int:
    return rec.order


def _node_row(seq: int, rec: NodeRecord, t0_ns: int) -> NodeRow:
    duration = rec.end_ns - rec.start_ns if rec.start_ns is not None and rec.end_ns is not None else None
    return NodeRow(
        seq=seq,
        node_id=rec.node_id,
        display_id=rec.display_id,
        parent_id=rec.parent_id,
        class_type=rec.class_type,
        status=rec.status,
        duration_ns=duration,
        start_ns=rec.start_ns - t0_ns if rec.start_ns is not None else None,
        calls=rec.calls,
        inputs={k: (v[0] if len(v) == 1 else v) for k, v in sorted(rec.inputs.items())}
        if rec.inputs is not None
        else None,
        cached_from=rec.cached_from,
        error_type=rec.error_type,
        error_message=rec.error_message,
    )


def class_rows(nodes: Iterable[NodeRow]) -> list[ClassRow]:
    """Per class type (sorted): node count, durations' count, total, max and histogram."""
    seen: dict[str, int] = {}
    durations: dict[str, list[int]] = {}
    for node in nodes:
        ct = node.class_type
        seen[ct] = seen.get(ct, 0) + 1
        if node.duration_ns is not None:
            got = durations.get(ct)
            if got is None:
                durations[ct] = [node.duration_ns]
            else:
                got.append(node.duration_ns)
    rows = []
    log2, scale, floor = math.log2, BUCKETS_PER_DOUBLING, math.floor
    for class_type in sorted(seen):
        ds = durations.get(class_type, [])
        # bucket(d), inline: once per node
        buckets = sorted(floor(log2(d) * scale) if d > 0 else -1 for d in ds)
        rows.append(ClassRow(class_type, seen[class_type], len(ds), sum(ds), max(ds, default=0), buckets))
    return rows


def _image(image: Any) -> dict[str, Any]:
    return {
        "node_id": image.node_id,
        "path": image.path,
        "filename": image.filename,
        "subfolder": image.subfolder,
        "type": image.type,
    }


def _saves(events: Sequence[AnyEvent], prompt: dict[str, Any], save_classes: frozenset[str]) -> list[dict[str, Any]]:
    """Per save node of the plugin: the generation it embedded and the disagreements found."""
    if not any(isinstance(node, dict) and node.get("class_type") in save_classes for node in prompt.values()):
        return []  # most runs of a farm; looking at the prompt is cheaper than at every event
    events = list(events)
    saves = []
    for node_id in dict.fromkeys(save_nodes(events, save_classes)):  # once per node, in run order
        info = build_document(events, node_id).ai_info
        disagreements = msgspec.to_builtins(info.disagreements)  # rows hold JSON data
        saves.append({"node_id": node_id, "generation": info.generation, "disagreements": disagreements})
    return saves


def iso(wall_ns: int | None) -> str | None:
    """A wall-clock time in ns as ISO-8601 UTC with milliseconds."""
    if wall_ns is None:
        return None
    return _dt.datetime.fromtimestamp(wall_ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")


def state_of(events: Sequence[AnyEvent]) -> RunState:
    """The folded state (for callers that need more than the rows)."""
    return project(None, events)
