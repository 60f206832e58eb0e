"""Turn live input values into small, JSON-safe summaries at call time.

Events must never hold a reference to a tensor, a model or any other live object, so every
value is summarised when the node is called: scalars as they are (long strings cut), tensors
as ``{"type", "shape", "dtype"}``, sequences as their length plus the first items, anything
else as its type name. This runs for every input of every node, so the common case (an int,
a float or a short string) is one dict lookup.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from ..events.values import cut as cut_text
from ..prompt_graph import is_link

REDACTED = "[redacted]"
#: Strings longer than this are cut (prompts stay readable; embedded blobs do not bloat logs).
MAX_STRING = 4096
#: How many items of a list or tuple are kept.
MAX_ITEMS = 8
#: How deep nested lists/dicts are followed before they become a type name.
MAX_DEPTH = 3

_SCALARS = frozenset({int, float, bool, type(None)})
#: Name parts that mark a credential wherever they stand.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "secret",
        "secrets",
        "credential",
        "credentials",
        "cookie",
        "cookies",
        "apikey",
        "authorization",
        "auth",
        "bearer",
    }
)
#: Adjacent parts that mark one ("api_key", "privateKey", "session-id").
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key"), ("session", "id")})
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_secret_cache: dict[str, bool] = {}


def _looks_secret(name: str) -> bool:
    # Whole name parts, not substrings: "auth_token" and "apiKey" are credentials,
    # "max_tokens", "author" and "token_normalization" are not.
    parts = [p for p in _SPLIT.split(_CAMEL.sub(r"\1_\2", name).lower()) if p]
    if not parts:
        return False
    if parts[-1] == "token" or any(p in _SECRET_WORDS for p in parts):
        return True
    return any(pair in _SECRET_PAIRS for pair in pairwise(parts))


def is_secret_name(name: str) -> bool:
    """True for input names that look like credentials (``api_key``, ``auth_token``, ...)."""
    hit = _secret_cache.get(name)
    if hit is None:
        if len(_secret_cache) > 10_000:  # pathological node packs; keep memory flat
            _secret_cache.clear()
        hit = _secret_cache[name] = _looks_secret(name)
    return hit


def cut(text: str, limit: int = MAX_STRING) -> str:
    """``text`` cut to ``limit`` characters (``MAX_STRING`` by default), saying how long it was."""
    return cut_text(text, limit)


def summarize(value: Any, depth: int = 0) -> Any:
    """A JSON-safe summary of ``value`` that keeps no reference to it."""
    kind = type(value)
    if kind in _SCALARS:
        if kind is float and value != value:  # NaN is not valid JSON
            return "NaN"
        if kind is float and value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if kind is str:
        return value if len(value) <= MAX_STRING else cut(value)
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype"):
        try:
            dims = [int(d) for d in shape]
        except (TypeError, ValueError):
            dims = []
        return {"type": _type_name(value), "shape": dims, "dtype": str(value.dtype)}
    if depth < MAX_DEPTH:
        if kind is list or kind is tuple:
            items = [summarize(v, depth + 1) for v in value[:MAX_ITEMS]]
            if len(value) <= MAX_ITEMS:
                return items
            return {"type": kind.__name__, "len": len(value), "head": items}
        if kind is dict and len(value) <= MAX_ITEMS and all(type(k) is str for k in value):
            return {k: (REDACTED if is_secret_name(k) else summarize(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, (int, float, str)):  # subclasses such as IntEnum or numpy scalars
        return summarize(_plain(value), depth)
    return {"type": _type_name(value)}


def _plain(value: Any) -> Any:
    """The builtin scalar behind a scalar subclass."""
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    return None


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def summarize_values(values: Any) -> list[Any]:
    """One input's values as ComfyUI passes them (a list, one item per batch element), summarised."""
    if type(values) is not list:
        values = [values]
    if len(values) == 1:
        v = values[0]
        return [v if type(v) in _SCALARS and type(v) is not float else summarize(v)]
    return [summarize(v) for v in values]


def summarize_inputs(inputs: dict[str, Any]) -> dict[str, list[Any]]:
    """Summarise ComfyUI's ``input_data_all`` (name -> list of values), redacting secrets by name."""
    return {name: [REDACTED] if is_secret_name(name) else summarize_values(values) for name, values in inputs.items()}


@dataclass(frozen=True)
class Scrubbed:
    """A prompt and workflow safe to log, and what was found to keep out of later events."""

    prompt: Any
    workflow: Any
    #: Nodes whose output feeds a credential-named input: all their strings are redacted.
    secret_nodes: frozenset[str] = frozenset()
    #: The credential values themselves, to redact wherever else they turn up (error texts).
    secrets: frozenset[str] = frozenset()


def scrub_secrets(prompt: Any, workflow: Any) -> Scrubbed:
    """Copies of the prompt and the UI workflow with credentials redacted.

    A credential-named input (``api_key``, ``auth_token``…) loses its literal value (a string,
    or every string of a list or dict); when it is linked, the node that feeds it (a primitive or string node holding the key) loses all its
    literal strings instead. The UI workflow stores widget values without names, so every
    string equal to a secret found in the prompt is replaced wherever it appears. Untouched
    nodes are shared, not copied: the prompt is plain JSON that the log encodes at once.
    """
    if not isinstance(prompt, dict):
        return Scrubbed(prompt, workflow)
    # Most prompts have no credential-named input at all: find out with one set of names
    # (built in C) and return the prompt as it is, without walking it twice.
    names: set[Any] = set()
    for node in prompt.values():
        inputs = node.get("inputs") if type(node) is dict else None
        if type(inputs) is dict:
            names.update(inputs)
    if not any(is_secret_name(str(n)) for n in names):
        return Scrubbed(prompt, workflow)
    secrets: set[str] = set()
    sources: set[str] = set()
    clean: dict[str, Any] = dict(prompt)
    for node_id, node in prompt.items():
        inputs = node.get("inputs") if isinstance(node, dict) else None
        if not isinstance(inputs, dict):
            continue
        new_inputs = dict(inputs)
        for name, value in inputs.items():
            if not is_secret_name(str(name)):
                continue
            if is_link(value):
                sources.add(str(value[0]))
                continue
            secrets.update(_strings(value))  # a literal: every text in it is the secret
            new_inputs[name] = REDACTED
        if new_inputs != inputs:
            clean[node_id] = {**node, "inputs": new_inputs}
    for source in sources:
        node = clean.get(source)
        if not isinstance(node, dict):
            continue
        inputs = node.get("inputs")
        if not isinstance(inputs, dict):
            continue
        new_inputs = dict(inputs)
        for name, value in inputs.items():
            if isinstance(value, str):
                if value:
                    secrets.add(value)
                new_inputs[name] = REDACTED
        clean[source] = {**node, "inputs": new_inputs}
    if secrets:
        workflow = _replace_strings(workflow, secrets)
    return Scrubbed(clean, workflow, frozenset(sources), frozenset(secrets))


def cut_strings(value: Any, limit: int) -> Any:
    """A copy of JSON data with every string longer than ``limit`` cut (see ``cut``)."""
    if isinstance(value, str):
        return cut(value, limit) if len(value) > limit else value
    if isinstance(value, list):
        return [cut_strings(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: cut_strings(v, limit) for k, v in value.items()}
    return value


def redact_strings(values: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """``values`` with every string replaced: the inputs of a node that feeds a credential."""
    return {k: [REDACTED if isinstance(v, str) else v for v in vs] for k, vs in values.items()}


def redact_text(text: str, secrets: Collection[str]) -> str:
    """``text`` with every known secret value replaced (error messages may quote them).

    Every occurrence of every secret is found in the original text first, and overlapping
    occurrences (a key that is a prefix of another, two keys sharing characters) become one
    ``[redacted]``, so no part of a secret survives whatever order ``secrets`` iterates in,
    and a secret that spells part of the marker never rewrites a marker already written.
    """
    spans: list[tuple[int, int]] = []
    for secret in secrets:
        if not secret:
            continue
        start = text.find(secret)
        while start >= 0:
            spans.append((start, start + len(secret)))
            start = text.find(secret, start + 1)
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    at = 0
    start, end = spans[0]
    for s, e in spans[1:]:
        if s < end:  # overlaps the stretch so far: one marker for both
            end = max(end, e)
            continue
        out += (text[at:start], REDACTED)
        at, start, end = end, s, e
    out += (text[at:start], REDACTED, text[end:])
    return "".join(out)


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """The non-empty strings in JSON data (nested up to ``MAX_DEPTH``)."""
    if isinstance(value, str):
        if value:
            yield value
    elif depth < MAX_DEPTH and isinstance(value, (list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item, depth + 1)


def _replace_strings(value: Any, secrets: set[str]) -> Any:
    if isinstance(value, str):
        return REDACTED if value in secrets else value
    if isinstance(value, list):
        return [_replace_strings(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v, secrets) for k, v in value.items()}
    return value
