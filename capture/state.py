"""What capture keeps for the life of the process, in one object, and how a fault switches it off.

``STATE`` holds the status ``doctor`` shows, the store of finished runs, what is installed,
and the memories that make later runs cheaper or richer (which run last recorded each node,
ComfyUI's node objects by id, input plans per node class, the executor's result flags).
Every module of ``capture`` reaches them through ``STATE`` or is handed them, and
``STATE.reset()`` forgets them all at once.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .inputs import InputPlans
from .recorder import RunStore, current_run

log = logging.getLogger("runtime_metadata")


@dataclass
class CaptureStatus:
    """What is installed, what was skipped and why capture may be off; shown by ``doctor``."""

    generation: str = "not installed"
    installed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    active: bool = False
    disabled_reason: str | None = None
    runs_captured: int = 0


@dataclass(frozen=True)
class RunSettings:
    """What a run starting now needs from the configuration, read once per run."""

    enabled: bool = True
    log_dir: str | None = None
    max_runs: int = 64
    log_performance: bool = False
    plugin: str = ""
    environment: dict[str, str] = field(default_factory=dict)
    worker_id: str | None = None
    #: ComfyUI's folder for an output type ("output", "temp"), to record where images are.
    folder_of: Callable[[str], str | None] | None = None


#: The per-node function's result flags known from the start (March 2024 returns a bool).
KNOWN_FLAGS: dict[Any, str | None] = {True: "SUCCESS", False: "FAILURE"}


class CaptureState:
    """Everything capture remembers between calls, in this process."""

    def __init__(self) -> None:
        self.status = CaptureStatus()
        #: Finished runs by prompt id (kept across ``reset``: they are data, not capture's state).
        self.store = RunStore()
        #: Per node id, the captured run that last recorded its inputs (see ``carry``).
        self.last_run: dict[str, str] = {}
        #: March 2024: id(node object) -> (storage key, node id, class_type) for ComfyUI's
        #: object storage; every hit is checked against the storage (see ``hooks.CallHook``).
        self.object_index: dict[int, tuple[Any, str, str]] = {}
        #: How each input of each node class is recorded (see ``inputs``).
        self.inputs = InputPlans()
        #: ExecutionResult members seen, by value -> their name (see ``hooks.NodeHook``).
        self.flags: dict[Any, str | None] = dict(KNOWN_FLAGS)
        #: The wrappers in place, newest last (see ``wrapping``).
        self.installed: list[Any] = []
        #: A save node asked for capture "on" regardless of the configuration.
        self.forced = False

    def reset(self) -> None:
        """Forget an earlier fault and every memory, as if the process had just started.

        Containers are cleared in place: the hot path holds them under names of its own.
        Call it with nothing installed (``wrapping.reset`` uninstalls first).
        """
        status = self.status
        status.disabled_reason = None
        status.skipped = []
        status.notes = []
        status.generation = "not installed"
        status.runs_captured = 0
        self.last_run.clear()
        self.object_index.clear()
        self.inputs.clear()
        self.flags.clear()
        self.flags.update(KNOWN_FLAGS)
        self.forced = False


STATE = CaptureState()
STATUS = STATE.status
STORE = STATE.store


def fault(where: str, exc: BaseException) -> None:
    """Switch capture off for the process after a bug in capture code; log it once."""
    if STATUS.disabled_reason is None:
        STATUS.disabled_reason = f"{where}: {type(exc).__name__}: {exc}"
        log.error(
            "[runtime-metadata] capture switched off after an internal error in %s; "
            "ComfyUI runs continue unaffected.\n%s",
            where,
            "".join(traceback.format_exception(exc)),
        )
    STATUS.active = False
    if current_run.get() is not None:
        current_run.set(None)
