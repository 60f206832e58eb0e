"""Run-end listeners: how code outside capture (history, the live push) learns a run has ended.

A listener is called once per captured run, on the thread that ran it, right after the run's
last event is in its log (the file log closed, the run kept in the store). Its time adds to
the end of the user's run, so a listener must return at once: it hands the work to a thread
of its own (``history.writer`` puts the run on a bounded queue). An exception in a listener is
logged once per listener and never reaches ComfyUI, capture or the other listeners.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("runtime_metadata")


@dataclass(frozen=True)
class RunEnd:
    """What a listener receives: the finished run's whole log, and where it is kept on disk."""

    prompt_id: str
    client_id: str | None
    log: bytes
    #: The run's ``.rtlog`` file when a log folder is in force, else None (memory only).
    log_path: Path | None


RunListener = Callable[[RunEnd], None]

_listeners: list[RunListener] = []
_failed: set[int] = set()
_lock = threading.Lock()


def add_run_listener(listener: RunListener) -> None:
    """Call ``listener(RunEnd)`` at the end of every captured run (once, however often added)."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_run_listener(listener: RunListener) -> None:
    """Stop calling ``listener``; nothing happens if it was not added."""
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def notify_run_end(end: RunEnd) -> None:
    """Call every listener with ``end``; never raises."""
    for listener in tuple(_listeners):  # a snapshot: listeners may be removed meanwhile
        _call(listener, end)


def _call(listener: RunListener, end: RunEnd) -> None:
    try:
        listener(end)
    except Exception:
        if id(listener) not in _failed:
            _failed.add(id(listener))
            log.exception(
                "[runtime-metadata] run-end listener %s failed (reported once); the run is unaffected",
                getattr(listener, "__qualname__", listener),
            )
