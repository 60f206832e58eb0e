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

from ..events.log import FileLog, MemoryLog
from ..events.schema import AnyEvent, HookStats, RunFinished, RunStarted

#: The run being executed in this context (thread / task), if capture is on.
current_run: ContextVar[Recorder | None] = ContextVar("runtime_metadata_run", default=None)
#: The node whose per-node function is executing (needed where get_output_data has no id).
current_node: ContextVar[str | None] = ContextVar("runtime_metadata_node", default=None)


class Recorder:
    """Collects one run's events; appending is the only thing the hot path does."""

    __slots__ = (
        "prompt_id",
        "log",
        "prompt",
        "hook_calls",
        "hook_total_ns",
        "hook_max_ns",
        "started",
        "finished",
        "log_path",
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
        self.log_path: Path | None = None
        self.log: MemoryLog | FileLog
        if log_dir:
            os.makedirs(log_dir, exist_ok=True)
            self.log_path = Path(log_dir) / f"{_safe_name(prompt_id)}.rtlog"
            self.log = FileLog(self.log_path)
        else:
            self.log = MemoryLog()
        self.log.append(
            RunStarted(
                prompt_id=prompt_id,
                wall_ns=time.time_ns(),
                t_ns=time.perf_counter_ns(),
                prompt=prompt,
                workflow=workflow,
                comfyui=comfyui,
                plugin=plugin,
                environment=environment or {},
            )
        )

    def append(self, event: AnyEvent) -> None:
        """Add one event to this run's log."""
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
        if isinstance(self.log, FileLog):
            self.log.close()
        return self.log.to_bytes()

    def snapshot(self) -> bytes:
        """The log as it stands now."""
        return self.log.to_bytes()


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
