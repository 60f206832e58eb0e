"""Wrapping: transparent wrappers around ComfyUI's functions, installed and removed safely.

Contract: a wrapper passes every argument through, returns what the wrapped function
returned and re-raises what it raised; its hook's ``begin``/``end`` never raise (a fault in
them switches capture off, see ``state.fault``). Wrappers chain on top of whatever is
installed (other packs wrap the same functions), mark themselves (``MARK``), are never
installed twice, and on removal give back the original, or become pass-through where
another pack has wrapped on top of them since.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .detect import NO_NODE_HOOK_NOTE, describe_generation, needs_node_hook, wrap_points
from .hooks import HOOKS, Hook
from .state import STATE, STATUS, CaptureStatus, RunSettings, fault

log = logging.getLogger("runtime_metadata")

MARK = "__runtime_metadata_hook__"


def make_wrapper(original: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    """A wrapper around ``original`` that runs ``hook`` and is otherwise transparent."""
    state = {"passthrough": False}
    begin = hook.begin
    end = hook.end

    if inspect.iscoroutinefunction(original):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if state["passthrough"] or not STATUS.active:
                return await original(*args, **kwargs)
            ctx = begin(args, kwargs)
            if ctx is None:
                return await original(*args, **kwargs)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                end(ctx, None, exc)
                raise
            end(ctx, result, None)
            return result

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            if state["passthrough"] or not STATUS.active:
                return original(*args, **kwargs)
            ctx = begin(args, kwargs)
            if ctx is None:
                return original(*args, **kwargs)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                end(ctx, None, exc)
                raise
            if type(result) is not tuple and inspect.isawaitable(result):
                # A plain function in front of a coroutine function (another pack's sync
                # wrapper around modern ComfyUI's async execute): end when it completes.
                # A future is returned as it is (callers may cancel it or ask if it is done).
                add_done_callback = getattr(result, "add_done_callback", None)
                if callable(add_done_callback):
                    add_done_callback(lambda fut: _end_from_future(hook, ctx, fut))
                    return result
                return _end_when_awaited(hook, ctx, result)
            end(ctx, result, None)
            return result

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(wrapper, attr, getattr(original, attr))
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(wrapper, MARK, state)
    return wrapper


def _end_from_future(hook: Hook, ctx: Any, fut: Any) -> None:
    """Done-callback: end the hook with the future's outcome (never raises)."""
    try:
        if fut.cancelled():
            hook.end(ctx, None, asyncio.CancelledError())
        elif fut.exception() is not None:
            hook.end(ctx, None, fut.exception())
        else:
            hook.end(ctx, fut.result(), None)
    except Exception as exc:
        fault(f"{hook.name}: end", exc)


async def _end_when_awaited(hook: Hook, ctx: Any, awaitable: Any) -> Any:
    try:
        result = await awaitable
    except BaseException as exc:
        hook.end(ctx, None, exc)
        raise
    hook.end(ctx, result, None)
    return result


def is_ours(func: Any) -> bool:
    """True when ``func`` or anything it wraps is one of this plugin's wrappers."""
    seen = 0
    while func is not None and seen < 64:
        mark = getattr(func, MARK, None)
        if isinstance(mark, dict) and not mark.get("passthrough"):
            return True
        func = getattr(func, "__wrapped__", None)
        seen += 1
    return False


@dataclass
class Installed:
    """A wrapper in place: where, and the function it wraps."""

    owner: Any
    attr: str
    wrapper: Callable[..., Any]
    original: Callable[..., Any]


def install(
    execution: Any, comfyui_version: str = "", settings: Callable[[], RunSettings] = RunSettings
) -> CaptureStatus:
    """Wrap every wrap point ``execution`` offers; idempotent. Returns the status.

    ``settings`` is called at the start of every run for what it needs from the
    configuration (``capture.install`` passes the one that reads ``config.json``).
    """
    if STATE.installed:
        STATUS.active = STATUS.disabled_reason is None
        return STATUS
    assumed: list[str] = []
    points, skipped = wrap_points(execution, assumed)
    STATUS.skipped = skipped
    STATUS.generation = f"ComfyUI {comfyui_version or 'unknown version'}, executor {describe_generation(execution)}"
    if not any(p.name == "run" for p in points):
        STATUS.skipped.append("run: without it no run can be keyed by prompt_id; nothing installed")
        log.warning("[runtime-metadata] capture not installed: %s", "; ".join(STATUS.skipped))
        return STATUS
    node_hook = needs_node_hook(execution)
    STATUS.notes = ([] if node_hook else [NO_NODE_HOOK_NOTE]) + assumed
    for point in points:
        current = getattr(point.owner, point.attr)
        if is_ours(current):
            continue
        hook = HOOKS[point.name](list(point.params), node_hook, settings=settings, restore=uninstall)
        wrapper = make_wrapper(current, hook)
        setattr(point.owner, point.attr, wrapper)
        STATE.installed.append(Installed(point.owner, point.attr, wrapper, current))
        STATUS.installed.append(f"{point.name}: {getattr(point.owner, '__name__', point.owner)}.{point.attr}")
    STATUS.active = STATUS.disabled_reason is None
    if skipped:
        log.warning("[runtime-metadata] capture installed without: %s", "; ".join(skipped))
    return STATUS


def reset() -> None:
    """Uninstall and forget an earlier fault, as if the process had just started.

    Finished runs stay in the store (see ``state.CaptureState``).
    """
    uninstall()
    STATE.reset()


def is_installed() -> bool:
    """True while wrappers of this plugin are in place."""
    return bool(STATE.installed)


def uninstall() -> None:
    """Remove the wrappers: restore the original, or go pass-through if wrapped on top."""
    installed = STATE.installed
    while installed:
        item = installed.pop()
        if getattr(item.owner, item.attr, None) is item.wrapper:
            setattr(item.owner, item.attr, item.original)
        else:
            getattr(item.wrapper, MARK)["passthrough"] = True
    STATUS.installed = []
    STATUS.active = False
