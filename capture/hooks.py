"""Wrap points on ComfyUI's executor: detection, install/uninstall, and the hooks themselves.

Four wrap points, each found and checked with ``inspect.signature`` at install time so both
executor generations (March-2024 ``recursive_execute`` and the async executor of 2025-26) are
served by the same hooks:

=========  ===================================  ==========================================
name       where                                what it records
=========  ===================================  ==========================================
run        ``PromptExecutor.execute``           run start/end, status, hook overhead
message    ``PromptExecutor.add_message``       ComfyUI's own list of cached nodes
node       ``execution.execute`` or             which node is executing; failures before
           ``execution.recursive_execute``      its function is called
call       ``execution.get_output_data``        resolved inputs, start/end of the node call
=========  ===================================  ==========================================

Contract: a wrapper passes every argument through, returns what the wrapped function
returned and re-raises what it raised. Capture code never raises into ComfyUI: any exception
in it is logged once and switches capture off for the rest of the process.
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events.schema import NodeCached, NodeFinished, NodeInputs, NodeStarted
from .recorder import Recorder, RunStore, current_node, current_run
from .summary import REDACTED, summarize_inputs

log = logging.getLogger("runtime_metadata")

MARK = "__runtime_metadata_hook__"
_perf = time.perf_counter_ns

#: Hidden input types whose values are the whole prompt/workflow: never copied into events.
_HIDDEN_SKIP = frozenset({"PROMPT", "EXTRA_PNGINFO", "DYNPROMPT"})
#: Hidden input types that carry credentials.
_HIDDEN_SECRET = frozenset({"AUTH_TOKEN_COMFY_ORG", "API_KEY_COMFY_ORG"})


@dataclass
class CaptureStatus:
    """What is installed, what was skipped and why capture may be off; shown by ``doctor``."""

    generation: str = "not installed"
    installed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    active: bool = False
    disabled_reason: str | None = None
    runs_captured: int = 0


STATUS = CaptureStatus()
STORE = RunStore()
#: Callables returning per-run settings; set by ``configure`` (kept here so capture needs no config import).
_settings: dict[str, Callable[[], Any]] = {}


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
    run = current_run.get()
    if run is not None:
        current_run.set(None)


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if index < len(args):
        return args[index]
    return kwargs.get(name, default)


# --------------------------------------------------------------------------- the hooks


class Hook:
    """One wrap point's capture logic; ``begin``/``end`` never raise."""

    name = "hook"

    def __init__(self, params: list[str]) -> None:
        self.index = {p: i for i, p in enumerate(params)}

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:  # pragma: no cover
        raise NotImplementedError

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:  # pragma: no cover
        raise NotImplementedError


class RunHook(Hook):
    """``PromptExecutor.execute``: opens and closes the run's recorder."""

    name = "run"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            if not _settings.get("enabled", lambda: True)():
                return None
            ix = self.index
            prompt = _arg(args, kwargs, ix["prompt"], "prompt", {})
            prompt_id = str(_arg(args, kwargs, ix["prompt_id"], "prompt_id", ""))
            extra = _arg(args, kwargs, ix.get("extra_data", 99), "extra_data", None) or {}
            pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
            workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
            rec = Recorder(
                prompt_id,
                prompt if isinstance(prompt, dict) else {},
                workflow,
                STATUS.generation,
                _settings.get("plugin_version", lambda: "")(),
                _settings.get("log_dir", lambda: None)(),
                _settings.get("environment", dict)(),
            )
            token = current_run.set(rec)
            return rec, token, args[0] if args else None
        except Exception as exc:  # noqa: BLE001 - capture must never break the run
            fault("run: start", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, token, executor = ctx
        try:
            current_run.reset(token)
        except ValueError:  # reset from another context; the run is over either way
            current_run.set(None)
        try:
            status, etype, emsg = _run_outcome(executor, exc)
            data = rec.finish(status, etype, emsg)
            STORE.limit = max(1, int(_settings.get("max_runs", lambda: STORE.limit)()))
            STORE.put(rec.prompt_id, data)
            STATUS.runs_captured += 1
            report = _settings.get("on_run_finished")
            if report is not None:
                report(rec)
        except Exception as exc2:  # noqa: BLE001
            fault("run: end", exc2)


def _run_outcome(executor: Any, exc: BaseException | None) -> tuple[str, str | None, str | None]:
    """success / error / interrupted, from ComfyUI's own status messages."""
    if exc is not None:
        kind = "interrupted" if "Interrupt" in type(exc).__name__ else "error"
        return kind, type(exc).__name__, str(exc)[:2000]
    for event, data in reversed(getattr(executor, "status_messages", None) or []):
        if event == "execution_interrupted":
            return "interrupted", None, None
        if event == "execution_error" and isinstance(data, dict):
            return "error", str(data.get("exception_type")), str(data.get("exception_message"))[:2000]
    if getattr(executor, "success", True) is False:
        return "error", None, None
    return "success", None, None


class MessageHook(Hook):
    """``PromptExecutor.add_message``: ComfyUI announces which nodes it serves from cache."""

    name = "message"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        try:
            if _arg(args, kwargs, self.index["event"], "event") == "execution_cached":
                t0 = _perf()
                data = _arg(args, kwargs, self.index["data"], "data", {}) or {}
                for node_id in data.get("nodes") or ():
                    nid = str(node_id)
                    rec.append(NodeCached(nid, rec.class_type(nid), t0))
                rec.charge(t0)
        except Exception as exc:  # noqa: BLE001
            fault("message: cached nodes", exc)
        return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        pass


class NodeHook(Hook):
    """The per-node function: sets the executing node; records failures before the call."""

    name = "node"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        try:
            node_id = str(_arg(args, kwargs, self.index["current_item"], "current_item"))
            return rec, node_id, current_node.set(node_id)
        except Exception as exc:  # noqa: BLE001
            fault("node: start", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, node_id, token = ctx
        try:
            current_node.reset(token)
        except ValueError:
            current_node.set(None)
        if node_id in rec.started or rec.finished:
            return
        try:
            # The node failed before its function was called (e.g. while fetching inputs).
            t0 = _perf()
            if exc is not None:
                rec.append(NodeFinished(node_id, t0, _failure_status(exc), type(exc).__name__, str(exc)[:2000]))
            elif isinstance(result, tuple) and len(result) >= 2 and _is_failure(result[0]):
                error = result[1] if isinstance(result[1], dict) else {}
                if str(error.get("node_id")) == node_id:
                    ex = result[2] if len(result) > 2 else None
                    status = _failure_status(ex) if ex is not None else "failed"
                    rec.append(
                        NodeFinished(
                            node_id,
                            t0,
                            status,
                            error.get("exception_type") or (type(ex).__name__ if ex else None),
                            (error.get("exception_message") or (str(ex) if ex else None) or "")[:2000] or None,
                        )
                    )
            rec.charge(t0)
        except Exception as exc2:  # noqa: BLE001
            fault("node: end", exc2)


def _is_failure(flag: Any) -> bool:
    """The first item of execute()'s result: True/False (2024) or ExecutionResult (modern)."""
    if flag is True:
        return False
    if flag is False:
        return True
    return getattr(flag, "name", "") == "FAILURE"


def _failure_status(exc: BaseException) -> str:
    return "interrupted" if "Interrupt" in type(exc).__name__ else "failed"


class CallHook(Hook):
    """``get_output_data``: the node function called with its resolved inputs."""

    name = "call"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        t0 = _perf()
        try:
            ix = self.index
            if "unique_id" in ix:
                node_id = str(_arg(args, kwargs, ix["unique_id"], "unique_id"))
            else:
                node_id = current_node.get() or "?"
            obj = _arg(args, kwargs, ix["obj"], "obj")
            inputs = _arg(args, kwargs, ix["input_data_all"], "input_data_all") or {}
            skip, secret = _hidden_names(type(obj))
            values = summarize_inputs(inputs, skip)
            for name in secret:
                if name in values:
                    values[name] = [REDACTED]
            rec.started.add(node_id)
            rec.append(NodeStarted(node_id, rec.class_type(node_id, obj), t0))
            rec.append(NodeInputs(node_id, _perf(), values, _calls(obj, inputs)))
            rec.charge(t0)
            return rec, node_id
        except Exception as exc:  # noqa: BLE001
            fault("call: inputs", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, node_id = ctx
        t0 = _perf()
        try:
            if exc is None:
                rec.append(NodeFinished(node_id, t0, "executed"))
            else:
                rec.append(NodeFinished(node_id, t0, _failure_status(exc), type(exc).__name__, str(exc)[:2000]))
            rec.charge(t0)
        except Exception as exc2:  # noqa: BLE001
            fault("call: end", exc2)


_hidden_cache: dict[type, tuple[frozenset[str], frozenset[str]]] = {}


def _hidden_names(cls: type) -> tuple[frozenset[str], frozenset[str]]:
    """(inputs to leave out, inputs to redact) from the node class's hidden inputs; cached."""
    got = _hidden_cache.get(cls)
    if got is None:
        skip: set[str] = set()
        secret: set[str] = set()
        try:
            hidden = (cls.INPUT_TYPES() or {}).get("hidden") or {}  # type: ignore[attr-defined]
            for name, kind in hidden.items():
                kind = str(getattr(kind, "value", kind)).upper()
                if kind in _HIDDEN_SKIP:
                    skip.add(name)
                elif kind in _HIDDEN_SECRET:
                    secret.add(name)
        except Exception:  # noqa: BLE001 - V3 nodes or odd packs: fall back to name rules
            pass
        got = _hidden_cache[cls] = (frozenset(skip), frozenset(secret))
    return got


def _calls(obj: Any, inputs: dict[str, Any]) -> int:
    """How many times ComfyUI will call the node function for these inputs."""
    if getattr(obj, "INPUT_IS_LIST", False):
        return 1
    longest = 0
    for values in inputs.values():
        n = len(values) if isinstance(values, list) else 1
        if n > longest:
            longest = n
    return max(longest, 1)


# --------------------------------------------------------------------------- wrapping


def make_wrapper(original: Callable[..., Any], hook: Hook) -> Callable[..., Any]:
    """A wrapper around ``original`` that runs ``hook`` and is otherwise transparent."""
    state = {"passthrough": False}

    if inspect.iscoroutinefunction(original):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if state["passthrough"] or not STATUS.active:
                return await original(*args, **kwargs)
            ctx = hook.begin(args, kwargs)
            if ctx is None:
                return await original(*args, **kwargs)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                hook.end(ctx, None, exc)
                raise
            hook.end(ctx, result, None)
            return result

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            if state["passthrough"] or not STATUS.active:
                return original(*args, **kwargs)
            ctx = hook.begin(args, kwargs)
            if ctx is None:
                return original(*args, **kwargs)
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                hook.end(ctx, None, exc)
                raise
            hook.end(ctx, result, None)
            return result

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        try:
            setattr(wrapper, attr, getattr(original, attr))
        except (AttributeError, TypeError):
            pass
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(wrapper, MARK, state)
    return wrapper


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
class _Installed:
    owner: Any
    attr: str
    wrapper: Callable[..., Any]
    original: Callable[..., Any]


_installed: list[_Installed] = []


@dataclass(frozen=True)
class WrapPoint:
    """A function to wrap, where it lives, and the parameters the hook needs."""

    name: str
    owner: Any
    attr: str
    params: tuple[str, ...]
    hook: type[Hook]


def wrap_points(execution: Any) -> tuple[list[WrapPoint], list[str]]:
    """The wrap points this ``execution`` module offers, and those it lacks (with why)."""
    points: list[WrapPoint] = []
    skipped: list[str] = []
    executor = getattr(execution, "PromptExecutor", None)
    node_attr = "execute" if callable(getattr(execution, "execute", None)) else "recursive_execute"
    candidates = [
        ("run", executor, "execute", ("self", "prompt", "prompt_id"), RunHook),
        ("message", executor, "add_message", ("self", "event", "data"), MessageHook),
        ("node", execution, node_attr, ("current_item",), NodeHook),
        ("call", execution, "get_output_data", ("obj", "input_data_all"), CallHook),
    ]
    for name, owner, attr, needs, hook in candidates:
        func = getattr(owner, attr, None) if owner is not None else None
        if not callable(func):
            skipped.append(f"{name}: {attr} not found")
            continue
        try:
            params = list(inspect.signature(func).parameters)
        except (TypeError, ValueError) as exc:
            skipped.append(f"{name}: signature of {attr} unreadable ({exc})")
            continue
        missing = [p for p in needs if p not in params]
        if missing:
            skipped.append(f"{name}: {attr}{tuple(params)} lacks {', '.join(missing)}")
            continue
        points.append(WrapPoint(name, owner, attr, tuple(params), hook))
    return points, skipped


def describe_generation(execution: Any) -> str:
    """A short label for the executor generation found."""
    if callable(getattr(execution, "recursive_execute", None)):
        return "2024 (recursive_execute)"
    node = getattr(execution, "execute", None)
    if inspect.iscoroutinefunction(node):
        return "2025+ (async execute)"
    if callable(node):
        return "2024-25 (execute, sync)"
    return "unknown"


def install(execution: Any, comfyui_version: str = "") -> CaptureStatus:
    """Wrap every wrap point ``execution`` offers; idempotent. Returns the status."""
    if _installed:
        STATUS.active = STATUS.disabled_reason is None
        return STATUS
    points, skipped = wrap_points(execution)
    STATUS.skipped = skipped
    STATUS.generation = f"ComfyUI {comfyui_version or 'unknown version'}, executor {describe_generation(execution)}"
    if not any(p.name == "run" for p in points):
        STATUS.skipped.append("run: without it no run can be keyed by prompt_id; nothing installed")
        log.warning("[runtime-metadata] capture not installed: %s", "; ".join(STATUS.skipped))
        return STATUS
    for point in points:
        current = getattr(point.owner, point.attr)
        if is_ours(current):
            continue
        wrapper = make_wrapper(current, point.hook(list(point.params)))
        setattr(point.owner, point.attr, wrapper)
        _installed.append(_Installed(point.owner, point.attr, wrapper, current))
        STATUS.installed.append(f"{point.name}: {getattr(point.owner, '__name__', point.owner)}.{point.attr}")
    STATUS.active = STATUS.disabled_reason is None
    if skipped:
        log.warning("[runtime-metadata] capture installed without: %s", "; ".join(skipped))
    return STATUS


def reset() -> None:
    """Uninstall and forget an earlier fault, as if the process had just started."""
    uninstall()
    STATUS.disabled_reason = None
    STATUS.skipped = []
    STATUS.generation = "not installed"
    STATUS.runs_captured = 0


def uninstall() -> None:
    """Remove the wrappers: restore the original, or go pass-through if wrapped on top."""
    while _installed:
        item = _installed.pop()
        if getattr(item.owner, item.attr, None) is item.wrapper:
            setattr(item.owner, item.attr, item.original)
        else:
            getattr(item.wrapper, MARK)["passthrough"] = True
    STATUS.installed = []
    STATUS.active = False
