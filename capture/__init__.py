"""Everything that touches ComfyUI internals: wrap points, the recorder, summaries.

Rooms: ``detect`` (which executor generation, which functions to wrap), ``wrapping``
(transparent wrappers, install/uninstall), ``hooks`` (what each wrap point records),
``inputs`` (how each input is recorded), ``carry`` (cached nodes' inputs from earlier runs),
``recorder`` (a run's events and the store of finished runs), ``summary`` (values and
secrets), ``state`` (what capture keeps for the process), ``comfy`` (ComfyUI's facilities).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from .. import config
from ..version import __version__
from . import comfy, wrapping
from .listeners import RunEnd, RunListener, add_run_listener, remove_run_listener
from .recorder import Recorder, current_run
from .state import STATE, STATUS, STORE, CaptureStatus, RunSettings, fault
from .wrapping import is_installed, is_ours, reset, uninstall

log = logging.getLogger("runtime_metadata")

__all__ = [
    "STATE",
    "STATUS",
    "STORE",
    "CaptureStatus",
    "Recorder",
    "RunEnd",
    "RunListener",
    "add_run_listener",
    "current_run",
    "fault",
    "install",
    "install_into_comfyui",
    "is_installed",
    "is_ours",
    "remove_run_listener",
    "reset",
    "set_default_log_dir",
    "uninstall",
]


#: The log folder when ``runtime_hooks.log_dir`` names none (the routes module sets it: a folder
#: in ComfyUI's user directory while the history is on, so that the catch-up has the logs).
_default_log_dir: list[Callable[[], str | None]] = [lambda: None]


def set_default_log_dir(folder: Callable[[], str | None]) -> None:
    """Where runs keep their logs when the configuration names no folder (asked once per run)."""
    _default_log_dir[0] = folder


def run_settings() -> RunSettings:
    """One configuration read per run."""
    cfg = config.get()
    return RunSettings(
        enabled=cfg.hooks_enabled or STATE.forced,
        log_dir=cfg.log_dir or _default_log_dir[0](),
        max_runs=cfg.max_runs,
        log_performance=cfg.debug and cfg.log_performance,
        plugin=__version__,
        environment=comfy.environment(),
        worker_id=cfg.worker_id or comfy.default_worker_id(),
        folder_of=comfy.folder_of,
    )


def install(execution: Any, comfyui_version: str = "") -> CaptureStatus:
    """Wrap ``execution``'s wrap points, each run reading the configuration (``run_settings``)."""
    return wrapping.install(execution, comfyui_version, settings=run_settings)


def install_into_comfyui(force: bool = False) -> CaptureStatus:
    """Install the hooks into the running ComfyUI (if enabled, or ``force``); never raises."""
    if force:
        STATE.forced = True
    if not (force or config.get().hooks_enabled):
        return STATUS
    try:
        execution = comfy.execution_module()
        if execution is None:
            STATUS.skipped = ["execution module not importable: not inside ComfyUI"]
            return STATUS
        status = install(execution, comfy.comfyui_version())
        if status.installed:
            log.info("[runtime-metadata] capture installed (%s): %s", status.generation, ", ".join(status.installed))
        return status
    except Exception as exc:  # a plugin must never stop ComfyUI from starting
        fault("install", exc)
        return STATUS


def install_if_enabled_now() -> None:
    """Install the hooks when the configuration has been switched on since start-up.

    Called for each submitted prompt (before it is queued), so editing ``config.json`` takes
    effect from the next prompt without a restart; while capture stays off, the executor is
    never touched.
    """
    if not is_installed() and STATUS.disabled_reason is None and config.get().hooks_enabled:
        install_into_comfyui()


def status_report() -> dict[str, Any]:
    """What capture is doing and why, for ``doctor`` and the status route."""
    return {
        "plugin": __version__,
        "capture": dataclasses.asdict(STATUS),
        "config": config.public(config.get()),  # credentials in the history URL hidden
        "config_file": str(config.config_path()),
        "runs_kept": STORE.ids()[-5:],
    }


def live_run() -> Any:
    """The recorder of the run executing in this context, if any."""
    return current_run.get()
