"""Everything that touches ComfyUI internals: wrap points, the recorder, summaries."""

from __future__ import annotations

import logging
from typing import Any

from .. import config
from ..version import __version__
from . import comfy, hooks
from .hooks import STATUS, STORE, CaptureStatus, fault, install, uninstall
from .listeners import RunEnd, RunListener, add_run_listener, remove_run_listener
from .recorder import Recorder, current_run

log = logging.getLogger("runtime_metadata")

__all__ = [
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
    "remove_run_listener",
    "uninstall",
]


#: Set when a save node asked for capture "on" regardless of the configuration.
_forced = [False]


def _run_settings() -> hooks.RunSettings:
    """One configuration read per run."""
    cfg = config.get()
    return hooks.RunSettings(
        enabled=cfg.hooks_enabled or _forced[0],
        log_dir=cfg.log_dir,
        max_runs=cfg.max_runs,
        log_performance=cfg.debug and cfg.log_performance,
        plugin=__version__,
        environment=comfy.environment(),
        worker_id=cfg.worker_id or comfy.default_worker_id(),
        folder_of=comfy.folder_of,
    )


hooks.run_settings = _run_settings


def install_into_comfyui(force: bool = False) -> CaptureStatus:
    """Install the hooks into the running ComfyUI (if enabled, or ``force``); never raises."""
    if force:
        _forced[0] = True
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
    if not hooks._installed and STATUS.disabled_reason is None and config.get().hooks_enabled:
        install_into_comfyui()


def status_report() -> dict[str, Any]:
    """What capture is doing and why, for ``doctor`` and the status route."""
    import dataclasses

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
