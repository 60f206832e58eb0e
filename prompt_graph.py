"""The prompt graph as ComfyUI submits it, read the one way every part of the package reads it.

A prompt maps node ids to ``{"class_type": str, "inputs": {name: value}}``; an input value
that is a link is ``[node_id, output_index]`` (ComfyUI's ``graph_utils.is_link``). Prompts
come from outside (a client, a log, an image), so every reader here accepts any shape and
answers with the neutral value (no node, no inputs, ``"?"``) instead of raising. Pure: no
I/O, no ComfyUI.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

#: The class type given for a node that is not in the prompt (or has none).
UNKNOWN_CLASS = "?"


def is_link(value: Any) -> TypeGuard[list[Any]]:
    """Whether an input value is a link ``[node_id, output_index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def class_type(prompt: Mapping[str, Any], node_id: str, default: str = UNKNOWN_CLASS) -> str:
    """The node's ``class_type`` as text; ``default`` for a node not in the prompt."""
    node = prompt.get(node_id)
    return str(node.get("class_type", default)) if isinstance(node, dict) else default


def inputs_of(prompt: Mapping[str, Any], node_id: str) -> Mapping[str, Any]:
    """The node's inputs (empty for a node not in the prompt, or inputs not shaped as a dict)."""
    node = prompt.get(node_id)
    inputs = node.get("inputs") if isinstance(node, dict) else None
    return inputs if isinstance(inputs, dict) else {}


def read_node(prompt: Mapping[str, Any], node_id: str) -> tuple[str, Mapping[str, Any]] | None:
    """The node's class type and inputs, read once (as ``class_type`` and ``inputs_of`` do); None
    for a node not in the prompt."""
    node = prompt.get(node_id)
    if not isinstance(node, dict):
        return None
    inputs = node.get("inputs")
    return str(node.get("class_type", UNKNOWN_CLASS)), inputs if isinstance(inputs, dict) else {}


def sources(inputs: Mapping[str, Any]) -> Iterator[str]:
    """The ids of the nodes that ``inputs`` link to, in input order."""
    for value in inputs.values():
        if is_link(value):
            yield str(value[0])


def ancestors(prompt: Mapping[str, Any], node_id: str) -> set[str]:
    """Every node whose output reaches ``node_id`` through links in the prompt graph."""
    seen: set[str] = set()
    stack = [node_id]
    while stack:
        for src in sources(inputs_of(prompt, stack.pop())):
            if src not in seen:
                seen.add(src)
                stack.append(src)
    return seen
