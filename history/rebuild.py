"""Rebuild or catch up the history from event logs (the source of truth).

``rebuild`` folds every ``*.rtlog`` of a folder with the same function the live writer uses
(``projections.history.history_rows``) and writes the rows idempotently, so running it on a
history that already holds some or all of those runs adds exactly the missing ones. The
background writer calls it with ``skip`` (the logs already in the history) to backfill after
an outage or a full queue.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeMetadataError
from ..events.log import paused_gc, read_log_file
from ..projections.history import RunRows, history_rows
from .store import HistoryStore

#: Runs written per transaction (one commit per batch, not per run).
BATCH_RUNS = 200
LOG_SUFFIX = ".rtlog"


@dataclass
class RebuildReport:
    """What a rebuild read and wrote."""

    files: int = 0
    runs: int = 0  # runs folded
    written: int = 0  # runs written (new, or a longer log of a run already there)
    events: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # one line per file not fully read

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def log_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The folder's event logs, oldest first (by modification time, then name)."""
    with os.scandir(folder) as it:
        entries = [
            (entry.stat().st_mtime_ns, entry.name, Path(entry.path))
            for entry in it
            if entry.name.endswith(LOG_SUFFIX) and entry.is_file(follow_symlinks=False)
        ]
    return [path for _, _, path in sorted(entries)]


def fold_file(path: Path, worker_id: str | None) -> tuple[RunRows | None, str | None]:
    """(the run's rows, a problem line) for one log file; never raises on a bad file."""
    try:
        result = read_log_file(path)  # a regular file only, at most MAX_LOG_BYTES of it
    except (OSError, RuntimeMetadataError) as exc:
        return None, f"{path.name}: skipped ({exc})"
    rows = history_rows(result.events, worker_id, path.name)
    problem = None
    if rows is None:
        problem = f"{path.name}: skipped (no run start in it)"
    elif result.damage:
        problem = f"{path.name}: damaged, {len(result.damage)} stretch(es) skipped"
    return rows, problem


def rebuild(
    store: HistoryStore,
    paths: Iterable[Path],
    worker_id: str | None = None,
    skip: Callable[[Path], bool] | None = None,
    batch: int = BATCH_RUNS,
) -> RebuildReport:
    """Fold ``paths`` and write their runs; ``skip(path)`` leaves a file unread."""
    report = RebuildReport()
    started = time.perf_counter()
    pending: list[RunRows] = []
    with paused_gc():  # millions of small acyclic objects (see events.log.paused_gc)
        for rows in _folded(paths, worker_id, skip, report):
            pending.append(rows)
            if len(pending) >= batch:
                report.written += store.write(pending)
                pending = []
        if pending:
            report.written += store.write(pending)
    report.seconds = time.perf_counter() - started
    return report


def _folded(
    paths: Iterable[Path], worker_id: str | None, skip: Callable[[Path], bool] | None, report: RebuildReport
) -> Iterator[RunRows]:
    for path in paths:
        if skip is not None and skip(path):
            continue
        report.files += 1
        rows, problem = fold_file(path, worker_id)
        if problem is not None:
            report.problems.append(problem)
        if rows is not None:
            report.runs += 1
            report.events += rows.run.events
            yield rows
