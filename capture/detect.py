"""Executor-generation detection: which functions to wrap, and how their arguments are read.

Every wrap point is found and checked with ``inspect.signature``, so the hooks serve each
executor generation ComfyUI has shipped (see ``hooks`` for what each point records):

=========  ===================================  ==========================================
name       where                                needs
=========  ===================================  ==========================================
run        ``PromptExecutor.execute``           ``prompt``, ``prompt_id``
message    ``PromptExecutor.add_message``       ``event``, ``data``
node       ``execution.execute`` (modern) or    ``current_item`` (not wrapped on the
           ``recursive_execute`` (2024)         March-2024 executor: ``needs_node_hook``)
call       ``execution.get_output_data``        ``obj``, ``input_data_all`` (+ ``unique_id``)
=========  ===================================  ==========================================

Where another pack has replaced a function by a ``(*args, **kwargs)`` wrapper that hides
ComfyUI's signature, ComfyUI's own argument order is assumed where the generation makes it
certain (``assumed_order``), and noted.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WrapPoint:
    """A function to wrap, where it lives, and the parameters the hook needs."""

    name: str
    owner: Any
    attr: str
    params: tuple[str, ...]


def _params(func: Any) -> list[str] | None:
    try:
        return list(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None


NO_NODE_HOOK_NOTE = (
    "node: recursive_execute left unwrapped (March 2024: node ids from object_storage, "
    "failures before a call from status messages)"
)


def needs_node_hook(execution: Any) -> bool:
    """False on the March-2024 executor: ``recursive_execute`` needs no wrapper of its own.

    There ``get_output_data(obj, input_data_all)`` has no node id, but ``recursive_execute``
    keeps every node object in ``object_storage`` under (node id, class_type), and ComfyUI
    reports a failure before a node's call through ``add_message`` with the node's id. So the
    call hook finds the node from its object and the message hook records those failures,
    which saves a wrapper layer per node of a recursion as deep as the graph.
    """
    node = getattr(execution, "recursive_execute", None)
    call = getattr(execution, "get_output_data", None)
    if not callable(node) or not callable(call) or callable(getattr(execution, "execute", None)):
        return True
    node_params, call_params = _params(node), _params(call)
    if node_params is None or call_params is None:
        return True
    # Another pack's (*args, **kwargs) wrapper around recursive_execute hides its parameters,
    # but this path needs nothing from them: the run hook checks the executor's storage.
    keeps_objects = "object_storage" in node_params or passes_everything_on(node)
    return not keeps_objects or "unique_id" in call_params


#: ComfyUI's own argument order at a wrap point, which its callers pass positionally
#: (``e.execute(prompt, prompt_id, extra_data, outputs)``, ``get_output_data(obj, inputs)``...).
#: Used when another pack has replaced the function by a ``(*args, **kwargs)`` wrapper whose
#: signature names nothing; the run hook checks the values it reads at every run.
COMFY_ORDER = {
    "run": ("self", "prompt", "prompt_id", "extra_data", "execute_outputs"),
    "message": ("self", "event", "data", "broadcast"),
}
#: ``get_output_data``'s order by generation: ``(obj, input_data_all, ...)`` until the async
#: executor (2024, and the sync ``execute`` of Aug 2024 - Jul 2025), then the node's ids first.
CALL_ORDER_SYNC = ("obj", "input_data_all")
CALL_ORDER_ASYNC = ("prompt_id", "unique_id", "obj", "input_data_all")
#: The async executor's per-node ``execute(server, dynprompt, caches, current_item, ...)``: its
#: leading parameters, unchanged by what later versions append (``ui_outputs``, ``asset_manager``).
NODE_ORDER_ASYNC = ("server", "dynprompt", "caches", "current_item")


def assumed_order(execution: Any, name: str) -> tuple[str, ...]:
    """ComfyUI's argument order at wrap point ``name``; () where the generation is not certain."""
    if name == "node":
        async_node = inspect.iscoroutinefunction(getattr(execution, "execute", None))
        return NODE_ORDER_ASYNC if async_node and not hasattr(execution, "recursive_execute") else ()
    if name != "call":
        return COMFY_ORDER.get(name, ())
    node = getattr(execution, "execute", None)
    if callable(getattr(execution, "recursive_execute", None)):
        return CALL_ORDER_SYNC
    if inspect.iscoroutinefunction(node):
        return CALL_ORDER_ASYNC
    params = _params(node) if callable(node) else None
    if params is not None and "current_item" in params:  # the sync executor, named as ComfyUI's
        return CALL_ORDER_SYNC
    return ()


def passes_everything_on(func: Any) -> bool:
    """True for a ``(*args, **kwargs)``-style wrapper: no parameter names what it receives."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    kinds = {p.kind for p in params if p.name != "self"}
    named = {inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD}
    return inspect.Parameter.VAR_POSITIONAL in kinds and not kinds & named


def wrap_points(execution: Any, notes: list[str] | None = None) -> tuple[list[WrapPoint], list[str]]:
    """The wrap points this ``execution`` module offers, and those it lacks (with why).

    ``notes`` receives a line per wrap point found behind another pack's ``(*args, **kwargs)``
    wrapper, where ComfyUI's own argument order (``assumed_order``) is assumed.
    """
    points: list[WrapPoint] = []
    skipped: list[str] = []
    executor = getattr(execution, "PromptExecutor", None)
    if callable(getattr(execution, "execute", None)):
        node_attr = "execute"
    elif callable(getattr(execution, "recursive_execute", None)):
        node_attr = "recursive_execute"
    else:
        node_attr = "execute or recursive_execute"  # reported as not found
    candidates = [
        ("run", executor, "execute", ("self", "prompt", "prompt_id")),
        ("message", executor, "add_message", ("self", "event", "data")),
        ("node", execution, node_attr, ("current_item",)),
        ("call", execution, "get_output_data", ("obj", "input_data_all")),
    ]
    needs_node = needs_node_hook(execution)
    if not needs_node:
        candidates = [c for c in candidates if c[0] != "node"]
    for name, owner, attr, needs in candidates:
        func = getattr(owner, attr, None) if owner is not None else None
        if not callable(func):
            skipped.append(f"{name}: {attr} not found")
            continue
        params = _params(func)
        if params is None:
            skipped.append(f"{name}: signature of {attr} unreadable")
            continue
        missing = [p for p in needs if p not in params]
        order = assumed_order(execution, name) if missing else ()
        if order and passes_everything_on(func):
            params = list(order)
            missing = []
            if notes is not None:
                notes.append(
                    f"{name}: {attr} is another pack's {attr}(*args, **kwargs) wrapper; "
                    f"ComfyUI's argument order {order} assumed and checked at each "
                    f"{'run' if name == 'run' else 'call'}"
                )
        if name == "call" and needs_node and "unique_id" not in params and "node" not in [p.name for p in points]:
            # Only the node hook could say which node a call is for: record nothing rather
            # than calls without their node.
            skipped.append(f"call: {attr} carries no node id and the node hook is not installed")
            continue
        if missing:
            skipped.append(f"{name}: {attr}{tuple(params)} lacks {', '.join(missing)}")
            continue
        points.append(WrapPoint(name, owner, attr, tuple(params)))
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
