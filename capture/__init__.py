"""Everything that touches ComfyUI internals: wrap points, the recorder, summaries."""

from __future__ import annotations

import logging
from typing import Any

from .. import config
from ..version import __version__
from . import comfy, hooks
from .hooks import STATUS, STORE, CaptureStatus, fault, install, uninstall
from .recorder import Recorder, current_run

log = logging.getLogger("runtime_metadata")

__all__ = [
    "STATUS",
    "STORE",
    "CaptureStatus",
    "Recorder",
    "current_run",
    "fault",
    "install",
    "install_into_comfyui",
    "run_log",
    "uninstall",
]


def _report_run(rec: Recorder) -> None:
    cfg = config.get()
    if cfg.debug and cfg.log_performance:
        calls = rec.hook_calls
        total = rec.hook_total_ns / 1e6
        avg = total / calls if calls else 0.0
        log.info(
            "[AAA Metadata Hooks] Performance: %s... - %d calls, total=%.2fms, avg=%.3fms, max=%.3fms",
            rec.prompt_id[:8],
            calls,
            total,
            avg,
            rec.hook_max_ns / 1e6,
        )


#: Set when a save node asked for capture "on" regardless of the configuration.
_forced = [False]

hooks._settings.update(
    enabled=lambda: config.get().hooks_enabled or _forced[0],
    log_dir=lambda: config.get().log_dir,
    max_runs=lambda: config.get().max_runs,
    plugin_version=lambda: __version__,
    environment=comfy.environment,
    on_run_finished=_report_run,
)


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
        "config": dataclasses.asdict(config.get()),
        "config_file": str(config.config_path()),
        "runs_kept": STORE.ids()[-5:],
    }


def run_log(prompt_id: str) -> bytes | None:
    """The log of a run: the live one if it is executing in this context, else a kept one."""
    rec = current_run.get()
    if rec is not None and rec.prompt_id == prompt_id:
        return rec.snapshot()
    return STORE.get(prompt_id)


def live_run() -> Any:
    """The recorder of the run executing in this context, if any."""
    return current_run.get()
