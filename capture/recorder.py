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
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import msgspec

from ..errors import report_once
from ..events.log import FileLog, MemoryLog, encodable
from ..events.schema import AnyEvent, HookStats, RunFinished, RunStarted, RunStatus, SavedImage
from .summary import cut_strings, redact_text

#: The run being executed in this context (thread / task), if capture is on.
current_run: ContextVar[Recorder | None] = ContextVar("runtime_metadata_run", default=None)
#: The node whose per-node function is executing (needed where get_output_data has no id).
current_node: ContextVar[str | None] = ContextVar("runtime_metadata_node", default=None)


#: A RunStarted larger than this has its long strings cut before it is logged.
MAX_RUN_STARTED_BYTES = 1 << 20
#: Strings of the prompt/workflow kept whole up to this length (prompt texts are far shorter).
MAX_PROMPT_STRING = 16_384
#: Finished runs kept in memory, in bytes of log, whatever ``max_finished_runs`` says.
MAX_STORE_BYTES = 256 << 20
_sizer = msgspec.msgpack.Encoder()


#: Events gathered before they are encoded as one log frame (a few hundred nodes' worth):
#: one encoder call and one checksum per batch instead of per event.
BATCH_EVENTS = 512


class Recorder:
    """Collects one run's events; appending to ``events`` is all the hot path does.

    ``events`` holds event Structs and their tuple form (see ``MemoryLog.extend``) in the order
    they happened, each made of summaries only; ``flush`` encodes them into the log as one
    record. When ``flush_at`` events have gathered the hot path flushes, as do a save node
    asking for the run so far (``snapshot``) and the end of the run.

    Durability, with a log folder: ``flush_at`` is 1, so each node's events are written to its
    file (one ``os.write``) when the node ends, and any other event when it happens; the run's
    end queues the file's fsync (``FileLog.close_later``: ComfyUI's thread never waits for it).
    A ComfyUI killed at any moment (kill -9, the OOM killer) loses no event of a node that
    completed, only the node it was running; a machine that loses power can lose what the
    current run wrote since it started. Without a folder, events are encoded
    ``BATCH_EVENTS`` at a time into memory, which a crash loses anyway.
    """

    __slots__ = (
        "client_id",
        "dynprompt",
        "events",
        "finished",
        "flush_at",
        "hook_calls",
        "hook_max_ns",
        "hook_total_ns",
        "log",
        "log_path",
        "object_keys",
        "objects",
        "pending",
        "prompt",
        "prompt_id",
        "secret_nodes",
        "secrets",
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
        client_id: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.prompt_id = prompt_id
        self.client_id = client_id
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
        #: From scrub_secrets: nodes feeding credential inputs, and the credential values.
        self.secret_nodes: frozenset[str] = frozenset()
        self.secrets: frozenset[str] = frozenset()
        self.log_path: Path | None = None
        #: March 2024: ComfyUI's object storage, (node id, class_type) -> node object, and our
        #: index of it by id(object); the call hook finds which node a call belongs to there.
        self.objects: dict[Any, Any] | None = None
        self.object_keys: dict[int, Any] = {}
        self.events: list[Any] = []
        self.log: MemoryLog | FileLog
        self.log = MemoryLog()
        #: Events gathered before they are written: a batch in memory, each node's with a file.
        self.flush_at = BATCH_EVENTS
        if log_dir:
            try:
                os.makedirs(log_dir, exist_ok=True)
                path = _free_log_path(Path(log_dir), prompt_id)
                self.log = FileLog(path, on_error=_write_failed(path))
                self.log_path = path
                self.flush_at = 1
            except OSError as exc:  # a bad folder loses the file, not the capture
                report_once(f"cannot keep event logs in {log_dir!r} ({exc}); keeping them in memory only")
        started = RunStarted(
            prompt_id=prompt_id,
            wall_ns=time.time_ns(),
            t_ns=time.perf_counter_ns(),
            prompt=prompt,
            workflow=workflow,
            comfyui=comfyui,
            plugin=plugin,
            environment=environment or {},
            client_id=client_id,
            worker_id=worker_id,
        )
        try:
            payload = _sizer.encode(started)
        except (OverflowError, UnicodeEncodeError):  # huge ints, lone surrogates: made text
            started = encodable(started)
            payload = _sizer.encode(started)
        if len(payload) > MAX_RUN_STARTED_BYTES:
            # Base64 images and other blobs in widgets: keep the graph, not the payloads.
            started = msgspec.structs.replace(
                started,
                prompt=cut_strings(started.prompt, MAX_PROMPT_STRING),
                workflow=cut_strings(started.workflow, MAX_PROMPT_STRING),
            )
            payload = _sizer.encode(started)
        # Encoded once (for its size and for the log): the first frame of every log.
        self.log.append_encoded(payload)

    def append(self, event: AnyEvent) -> None:
        """Add one event to this run's log (encoded with the next batch)."""
        events = self.events
        events.append(event)
        if len(events) >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Encode the events gathered so far into the log, as one frame."""
        if self.events:
            events, self.events = self.events, []
            self.log.extend(events)

    def redact(self, text: str | None) -> str | None:
        """An error text with this run's credential values replaced (messages may quote them)."""
        return redact_text(text, self.secrets) if text and self.secrets else text

    def charge(self, t0: int) -> None:
        """Account the time since ``t0`` as capture overhead."""
        spent = time.perf_counter_ns() - t0
        self.hook_calls += 1
        self.hook_total_ns += spent
        if spent > self.hook_max_ns:
            self.hook_max_ns = spent

    def finish(
        self,
        status: RunStatus,
        error_type: str | None,
        error_message: str | None,
        images: list[SavedImage] | None = None,
    ) -> bytes:
        """Close the run: final stats and status, write the file (fsync queued); return the log bytes."""
        self.append(HookStats(self.hook_calls, self.hook_total_ns, self.hook_max_ns))
        self.append(RunFinished(time.perf_counter_ns(), status, error_type, self.redact(error_message), images or []))
        self.flush()
        self.finished = True
        self.dynprompt = None
        self.objects = None
        self.object_keys = {}
        self.pending.clear()
        data = self.log.to_bytes()  # a file log reads itself back: it holds none of it
        if isinstance(self.log, FileLog):
            # fsync on the syncer thread, so the finished run survives a power cut too without
            # ComfyUI's thread waiting for the disk (1 to 10 ms here, seconds on a slow one).
            self.log.close_later()
        return data

    def snapshot(self) -> bytes:
        """The log as it stands now (on disk too: what a save embeds can always be replayed)."""
        self.flush()
        return self.log.to_bytes()


def _write_failed(path: Path) -> Callable[[OSError], None]:
    def report(exc: OSError) -> None:
        report_once(f"cannot write the event log {str(path)!r} ({exc}); keeping the rest of this run in memory")

    return report


def _safe_name(prompt_id: str) -> str:
    """A prompt id usable as a file name (ComfyUI's are UUIDs; clients may send anything)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in prompt_id)[:128]
    return keep.lstrip(".") or "prompt"


#: Runs of one prompt id kept side by side in a log folder (a client reusing its ids).
MAX_LOGS_PER_PROMPT = 1000


def _free_log_path(folder: Path, prompt_id: str) -> Path:
    """``<prompt_id>.rtlog``, or ``<prompt_id>.<n>.rtlog`` when a run of that id already left one.

    A client may send the same prompt id again (modern ComfyUI accepts client-chosen ids): the
    earlier run's log is its only record, so it is never overwritten. ComfyUI runs one prompt
    at a time, so checking for the name is enough.
    """
    stem = _safe_name(prompt_id)
    path = folder / f"{stem}.rtlog"
    n = 1
    while path.exists() and n < MAX_LOGS_PER_PROMPT:
        n += 1
        path = folder / f"{stem}.{n}.rtlog"
    return path


class RunStore:
    """Finished runs by prompt_id, bounded; oldest dropped first."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = max(1, limit)
        self._runs: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, prompt_id: str, log_bytes: bytes) -> None:
        """Keep a finished run's log."""
        with self._lock:
            old = self._runs.pop(prompt_id, None)
            self._bytes -= len(old) if old is not None else 0
            self._runs[prompt_id] = log_bytes
            self._bytes += len(log_bytes)
            while len(self._runs) > self.limit or (self._bytes > MAX_STORE_BYTES and len(self._runs) > 1):
                _, dropped = self._runs.popitem(last=False)
                self._bytes -= len(dropped)

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
