"""The background writer: finished runs go on a bounded queue; one thread folds and writes them.

Nothing here runs on ComfyUI's prompt thread except ``submit``, which puts the run's log bytes
on the queue and returns (``queue.put_nowait``: a few microseconds). The thread reads each
log, folds it with ``projections.history.history_rows``, hands the rows to the callbacks (the
live websocket push) and writes them to the database.

Nothing is lost when something goes wrong, because the run logs on disk are the truth:

* a full queue drops the run from the queue (logged once) and marks the history as behind;
* a database error (down, unreachable, locked) is logged once per kind of error and marks the
  history as behind, and the user's run never notices;
* while behind, the thread retries every few seconds (doubling up to a minute): once the
  database answers, it catches up by folding every log of the log folder that the history
  does not hold yet (``rebuild`` with a skip list), idempotently. It does the same at start.

Retention runs in the same thread, every ``PRUNE_EVERY`` runs: the worker's oldest runs past
``history_max_runs``, and the oldest log files past ``log_max_mb`` among those already in the
history (a log that the history does not hold yet is never deleted).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..capture.listeners import RunEnd
from ..config import hide_password
from ..errors import RuntimeMetadataError
from ..events.log import iter_log, read_log
from ..events.schema import RunStarted
from ..projections.history import RunRows, history_rows

if TYPE_CHECKING:
    from .store import HistoryStore

log = logging.getLogger("runtime_metadata")

#: Finished runs waiting to be written at most; past it a run waits for the backfill from its log.
QUEUE_RUNS = 256
#: Runs written in one transaction when several are waiting (a burst of short runs).
BATCH_RUNS = 64
#: First wait before retrying an unreachable database, in seconds; it doubles up to RETRY_MAX_S.
RETRY_S = 2.0
RETRY_MAX_S = 60.0
#: Retention is looked at every this many runs written (it costs a query; a write does not).
PRUNE_EVERY = 50
#: While ComfyUI has prompts running or queued, finished runs wait (the thread's Python work
#: would take the GIL from the next run): at most this long, or until BATCH_RUNS are waiting.
DEFER_MAX_S = 10.0
#: How often a waiting thread asks whether ComfyUI is idle.
IDLE_POLL_S = 0.01
#: ComfyUI must have been idle this long: its own end-of-run messages go out first (the thread's
#: work right after ``task_done`` delayed them by the fold's time, measured: +7 ms per run).
IDLE_SETTLE_S = 0.05

RowsCallback = Callable[[RunRows, RunEnd], None]


@dataclass(frozen=True)
class Limits:
    """Retention in force (read from the configuration each time retention runs)."""

    max_runs: int = 10_000
    log_max_bytes: int = 1024 << 20


_STOP = object()


class HistoryWriter:
    """Folds and writes finished runs off the hot path; ``submit`` is the run-end listener."""

    def __init__(
        self,
        url: str | None,
        worker_id: str,
        log_dir: str | os.PathLike[str] | None = None,
        limits: Callable[[], Limits] = Limits,
        on_rows: Sequence[RowsCallback] = (),
        queue_runs: int = QUEUE_RUNS,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.url = url
        self.worker_id = worker_id
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.limits = limits
        self.on_rows = list(on_rows)
        #: True while ComfyUI runs or has queued prompts (the routes module asks its prompt queue).
        self.busy = busy
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_runs)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._tried = threading.Event()  # set once the database has been tried (reachable or not)
        self._store: HistoryStore | None = None
        self._behind = True  # nothing caught up yet: the first connection backfills
        self._retry_at = 0.0
        self._retry_s = RETRY_S
        self._since_prune = 0
        self._reported: set[str] = set()
        self.written = 0
        self.dropped = 0
        self.last_error: str | None = None

    # ----------------------------------------------------------------- the prompt thread's side

    def submit(self, end: RunEnd) -> None:
        """Queue a finished run (the run-end listener); returns at once, never raises."""
        if self._thread is None:
            self.start()
        try:
            self._queue.put_nowait(end)
            self._idle.clear()
        except queue.Full:
            self.dropped += 1
            self._behind = True
            self._report(
                "queue-full",
                f"history queue full ({self._queue.maxsize} runs waiting): run {end.prompt_id[:36]} and "
                "later ones will be caught up from their logs",
            )

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the thread (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="runtime-metadata-history", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread and close the database."""
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
            self._thread = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every submitted run has been handled (tests, benchmarks); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._idle.wait(0.05) and self._queue.empty() and self._idle.is_set():
                return True
        return False

    def status(self) -> dict[str, Any]:
        """What the status route shows: backend, URL without its password, queue, last error."""
        backend = self.url.split(":", 1)[0].split("+", 1)[0] if self.url else None
        return {
            "enabled": self.url is not None,
            "backend": backend,
            "url": hide_password(self.url),
            "worker_id": self.worker_id,
            "log_dir": str(self.log_dir) if self.log_dir is not None else None,
            "queued": self._queue.qsize(),
            "written": self.written,
            "dropped": self.dropped,
            "behind": self._behind and self.url is not None,
            "last_error": self.last_error,
        }

    def wait_tried(self, timeout: float = 10.0) -> bool:
        """Start the thread if need be and wait until it has tried the database once."""
        self.start()
        return self._tried.wait(timeout)

    @property
    def store(self) -> HistoryStore | None:
        """The open, migrated database (None while it is not reachable)."""
        return self._store

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        while True:
            if self._behind and self.url is not None and time.monotonic() >= self._retry_at:
                self._catch_up()
            timeout = max(0.05, self._retry_at - time.monotonic()) if self._behind and self.url else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                continue
            if item is _STOP:
                return
            self._wait_for_idle()
            batch = [item]
            while len(batch) < BATCH_RUNS:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    self._queue.put(_STOP)  # handled after this batch
                    break
                batch.append(more)
            try:
                self._handle(batch)
            except Exception as exc:  # a bug here must never kill the thread
                self._report(f"bug:{type(exc).__name__}", f"history writer: {type(exc).__name__}: {exc}", exc)
            finally:
                if self._queue.empty():
                    self._idle.set()

    def _wait_for_idle(self) -> None:
        """Let ComfyUI's runs go first: wait while it is busy (bounded, see DEFER_MAX_S)."""
        busy = self.busy
        if busy is None:
            return
        deadline = time.monotonic() + DEFER_MAX_S
        idle_since: float | None = None
        while (now := time.monotonic()) < deadline and self._queue.qsize() < BATCH_RUNS - 1:
            try:
                is_busy = busy()
            except Exception:  # a question about ComfyUI's queue is never worth a lost run
                return
            if is_busy:
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= IDLE_SETTLE_S:
                return
            time.sleep(IDLE_POLL_S)

    def _handle(self, batch: list[RunEnd]) -> None:
        folded: list[RunRows] = []
        for end in batch:
            result = read_log(end.log)
            name = end.log_path.name if end.log_path is not None else None
            rows = history_rows(result.events, self.worker_id, name)
            if rows is None:
                continue
            folded.append(rows)
            for callback in self.on_rows:
                self._call(callback, rows, end)
        if self.url is None or not folded:
            return
        if self._behind:
            # Not reachable a moment ago: the catch-up from the logs will write these too.
            if time.monotonic() < self._retry_at:
                return
            self._catch_up()
            if self._behind:
                return
        self._write(folded)

    def _call(self, callback: RowsCallback, rows: RunRows, end: RunEnd) -> None:
        try:
            callback(rows, end)
        except Exception as exc:
            self._report(f"callback:{id(callback)}", f"history: run-end callback failed: {exc!r}", exc)

    def _write(self, folded: list[RunRows]) -> None:
        store = self._store
        if store is None:
            self._behind = True
            return
        try:
            self.written += store.write(folded)
        except Exception as exc:
            self._failed(exc)
            return
        self._since_prune += len(folded)
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self._retention()

    def _catch_up(self) -> None:
        """Connect (and migrate) if need be, then write every kept log the history lacks."""
        from .rebuild import log_files, rebuild

        try:
            if self._store is None:
                from .store import HistoryStore

                store = HistoryStore(str(self.url))
                try:
                    store.migrate()
                except Exception:
                    store.close()
                    raise
                self._store = store
                self._tried.set()  # routes may read now; the catch-up goes on
            if self.log_dir is not None and self.log_dir.is_dir():
                stored = self._store.stored_logs()
                report = rebuild(
                    self._store,
                    log_files(self.log_dir),
                    self.worker_id,
                    skip=lambda p: _in_history(p, stored, self.worker_id),
                )
                self.written += report.written
                if report.written:
                    log.info(
                        "[runtime-metadata] history caught up from %s: %d run(s) written", self.log_dir, report.written
                    )
            self._retention()
        except Exception as exc:
            self._failed(exc)
            return
        finally:
            self._tried.set()
        if self.last_error is not None:
            log.info("[runtime-metadata] history database reachable again (%s)", hide_password(self.url))
        self._behind = False
        self.last_error = None
        self._retry_s = RETRY_S
        self._reported.discard("db")

    def _failed(self, exc: BaseException) -> None:
        from .store import describe_error

        self._behind = True
        self.last_error = describe_error(exc, str(self.url))
        self._retry_at = time.monotonic() + self._retry_s
        self._retry_s = min(self._retry_s * 2, RETRY_MAX_S)
        self._report(
            "db",
            f"history database {hide_password(self.url)} unavailable ({self.last_error}); runs go on, "
            "their logs keep them and the history catches up when it is back",
        )

    def _retention(self) -> None:
        store = self._store
        if store is None:
            return
        limits = self.limits()
        store.prune(self.worker_id, limits.max_runs)
        if self.log_dir is not None and limits.log_max_bytes > 0 and self.log_dir.is_dir():
            stored = store.stored_logs()
            kept = {p.name for p in self.log_dir.glob("*.rtlog") if _in_history(p, stored, self.worker_id)}
            prune_logs(self.log_dir, limits.log_max_bytes, kept)

    def _report(self, key: str, message: str, exc: BaseException | None = None) -> None:
        if key in self._reported:
            return
        self._reported.add(key)
        log.warning("[runtime-metadata] %s", message, exc_info=exc if key.startswith(("bug", "callback")) else None)


#: Bytes read from a log to find which worker wrote it (its first record, the run's start).
PEEK_BYTES = 256 * 1024


def _in_history(path: Path, stored: dict[str, dict[str, str]], worker_id: str) -> bool:
    """True when the run of the log ``path`` is in the history, complete (no need to fold it).

    By file name, for this worker's runs. A name stored for other workers only (a worker id
    that changed with the port, or another worker that ran a reused prompt id) is checked
    against the worker the log itself names, read from its first record.
    """
    workers = stored.get(path.name)
    if not workers:
        return False
    if workers.get(worker_id, "running") != "running":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(PEEK_BYTES)
        first = next((e for e in iter_log(head) if isinstance(e, RunStarted)), None)
    except (OSError, RuntimeMetadataError):
        return False
    owner = first.worker_id if first is not None else None
    return owner is not None and workers.get(owner, "running") != "running"


def prune_logs(folder: Path, max_bytes: int, in_history: set[str]) -> int:
    """Delete the oldest ``*.rtlog`` files already in the history until the folder holds at most
    ``max_bytes`` of logs; how many files went. Logs the history lacks are never deleted."""
    from .rebuild import LOG_SUFFIX

    entries = []
    total = 0
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.endswith(LOG_SUFFIX) and entry.is_file(follow_symlinks=False):
                st = entry.stat()
                total += st.st_size
                entries.append((st.st_mtime_ns, entry.name, st.st_size))
    deleted = 0
    for _, name, size in sorted(entries):
        if total <= max_bytes:
            break
        if name not in in_history:
            continue
        try:
            os.unlink(folder / name)
        except OSError:
            continue
        total -= size
        deleted += 1
    return deleted
