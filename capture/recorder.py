"""The per-run recorder and the store of finished runs.

A run is keyed by ComfyUI's real ``prompt_id`` and found through a context variable, so
concurrent or back-to-back prompts never see each other's events. Finished runs are kept in
a bounded store (oldest dropped first) as encoded log bytes: no live objects survive a run.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import msgspec

from ..events.log import FileLog, MemoryLog
from ..events.schema import AnyEvent, HookStats, RunFinished, RunStarted

#: The run being executed in this context (thread / task), if capture is on.
current_run: ContextVar[Recorder | None] = ContextVar("runtime_metadata_run", default=None)
#: The node whose per-node function is executing (needed where get_output_data has no id).
current_node: ContextVar[str | None] = ContextVar("runtime_metadata_node", default=None)


class Recorder:
    """Collects one run's events; appending is the only thing the hot path does."""

    __slots__ = (
        "dynprompt",
        "finished",
        "hook_calls",
        "hook_max_ns",
        "hook_total_ns",
        "log",
        "log_path",
        "pending",
        "prompt",
        "prompt_id",
        "started",
    )

    def __init__(
        self,
        prompt_id: str,
        prompt: dict[str, Any],
        workflow: Any,
        comfyui: str,
        plugin: str,
        log_dir: str | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.prompt = prompt
        self.hook_calls = 0
        self.hook_total_ns = 0
        self.hook_max_ns = 0
        self.started: set[str] = set()
        self.finished = False
        #: Nodes whose call returned but whose work goes on (async tasks, expanded subgraph),
        #: with what will end them (see ``hooks``); whatever is left when the run ends is closed.
        self.pending: dict[str, Any] = {}
        #: Modern ComfyUI's DynamicPrompt, for the ids of expanded nodes; dropped at the end.
        self.dynprompt: Any = None
        self.log_path: Path | None = None
        self.log: MemoryLog | FileLog
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            self.log_path = Path(log_dir) / f"{_safe_name(prompt_id)}.rtlog"
            self.log = FileLog(self.log_path)
        else:
            self.log = MemoryLog()
        started = RunStarted(
            prompt_id=prompt_id,
            wall_ns=time.time_ns(),
            t_ns=time.perf_counter_ns(),
            prompt=prompt,
            workflow=workflow,
            comfyui=comfyui,
            plugin=plugin,
            environment=environment or {},
        )
        try:
            self.log.append(started)
        except OverflowError:  # an int widget beyond 64 bits (INT inputs allow them)
            self.log.append(msgspec.structs.replace(started, prompt=fit_ints(prompt), workflow=fit_ints(workflow)))

    def append(self, event: AnyEvent) -> None:
        """Add one event to this run's log.

        The log encodes the event at once and keeps only bytes: the call hook relies on this
        when it hands ComfyUI's own input dict (plain scalars only) to a ``NodeInputs``.
        """
        self.log.append(event)

    def charge(self, t0: int) -> None:
        """Account the time since ``t0`` as capture overhead."""
        spent = time.perf_counter_ns() - t0
        self.hook_calls += 1
        self.hook_total_ns += spent
        if spent > self.hook_max_ns:
            self.hook_max_ns = spent

    def class_type(self, node_id: str, obj: object = None) -> str:
        """The node's ComfyUI class_type (ephemeral nodes fall back to the Python class name)."""
        node = self.prompt.get(node_id)
        if isinstance(node, dict) and isinstance(node.get("class_type"), str):
            return node["class_type"]
        return type(obj).__name__ if obj is not None else "?"

    def finish(self, status: str, error_type: str | None, error_message: str | None) -> bytes:
        """Close the run: final stats and status, flush the file; return the log bytes."""
        self.append(HookStats(self.hook_calls, self.hook_total_ns, self.hook_max_ns))
        self.append(RunFinished(time.perf_counter_ns(), status, error_type, error_message))
        self.finished = True
        self.dynprompt = None
        self.pending.clear()
        if isinstance(self.log, FileLog):
            self.log.close()
        return self.log.to_bytes()

    def snapshot(self) -> bytes:
        """The log as it stands now."""
        return self.log.to_bytes()


#: The ints msgpack can hold; others are recorded as their decimal text.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def fit_ints(value: Any) -> Any:
    """``value`` with every int msgpack cannot encode replaced by its decimal text.

    Only called after an ``OverflowError`` from the log, so ordinary values cost nothing.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value if _INT_MIN <= value <= _INT_MAX else str(int(value))
    if isinstance(value, (list, tuple)):
        return [fit_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: fit_ints(v) for k, v in value.items()}
    return value


def _safe_name(prompt_id: str) -> str:
    """A prompt id usable as a file name (ComfyUI's are UUIDs; clients may send anything)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in prompt_id)[:128]
    return keep.lstrip(".") or "prompt"


class RunStore:
    """Finished runs by prompt_id, bounded; oldest dropped first."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = max(1, limit)
        self._runs: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, prompt_id: str, log_bytes: bytes) -> None:
        """Keep a finished run's log."""
        with self._lock:
            self._runs[prompt_id] = log_bytes
            self._runs.move_to_end(prompt_id)
            while len(self._runs) > self.limit:
                self._runs.popitem(last=False)

    def get(self, prompt_id: str) -> bytes | None:
        """A finished run's log, if still kept."""
        with self._lock:
            return self._runs.get(prompt_id)

    def __len__(self) -> int:
        return len(self._runs)

    def ids(self) -> list[str]:
        """Prompt ids kept, oldest first."""
        with self._lock:
            return list(self._runs)
