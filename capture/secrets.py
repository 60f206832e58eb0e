"""Credentials kept out of what a save node writes: ComfyUI's own ``prompt`` and ``workflow`` too.

ComfyUI's ``prompt`` and ``workflow`` chunks copy every widget value, so a key typed into an API
node's STRING widget travels with every image. Capture already keeps credentials out of the
event log (``summary.scrub_secrets``); this module finds every credential a save can see and
takes it out of the prompt, the UI workflow and any other JSON or text about to be written:

- inputs whose names look like credentials (``api_key``, ``auth_token``…), literal or fed by a
  string node (that node's strings all count as secrets), as ``scrub_secrets`` finds them;
- the values of ComfyUI's sensitive ``extra_data`` keys (its account token and API key, handed
  to nodes that declare the hidden inputs ``AUTH_TOKEN_COMFY_ORG`` / ``API_KEY_COMFY_ORG``);
- in the UI workflow, whose widget values are positional, the widgets of credential-named
  inputs, mapped through the node's definition the way ComfyUI's frontend maps them;
- and every other place one of those values appears (a key pasted into a prompt as well).

Everything is replaced by the same ``[redacted]`` marker, so an image still loads into ComfyUI
with the key field to fill in again. Nothing here mutates its input: ComfyUI keeps running on
the prompt it was given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable
from itertools import repeat
from typing import Any

import msgspec

from .summary import REDACTED, Scrubbed, is_secret_name, redact_text, scrub_secrets

#: ComfyUI's ``execution.SENSITIVE_EXTRA_DATA_KEYS`` (0.3.x): values it never echoes back.
SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")
#: Secrets at least this long are redacted inside longer text too; shorter ones only where a
#: whole value equals them (a one-letter "key" must not blank every "a" of a workflow).
MIN_EMBEDDED_SECRET = 6
#: The frontend's widget types whose values a workflow stores (others are sockets).
_WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
#: Values of the seed "control after generate" widget the frontend adds after a seed.
_CONTROL_VALUES = frozenset({"fixed", "increment", "decrement", "randomize"})

#: How a class's input definitions are found (``INPUT_TYPES()``); None when unknown.
InputTypes = Callable[[str], "dict[str, Any] | None"]


def plain_secrets(values: Iterable[Any]) -> frozenset[str]:
    """The non-empty strings among ``values`` (hidden inputs may be None or absent)."""
    return frozenset(v for v in values if isinstance(v, str) and v)


def redact_json(value: Any, secrets: Collection[str]) -> Any:
    """``value`` (JSON data, or msgspec Structs holding it) with every secret replaced, in
    strings and keys; never mutated.

    Returns ``value`` itself when nothing had to change, so the common case copies nothing;
    whether anything has to is answered first on the value's JSON text, at C speed.
    """
    secrets = [s for s in secrets if s]
    if not secrets:
        return value
    finder = _Finder(secrets)
    if not finder.maybe_in(value):
        return value
    return finder.redact(value)


_json = msgspec.json.Encoder().encode


class _Finder:
    """Every secret, as one search: whole values for short ones, substrings for the others."""

    def __init__(self, secrets: list[str]) -> None:
        self.whole = frozenset(secrets)
        self.embedded = sorted((s for s in secrets if len(s) >= MIN_EMBEDDED_SECRET), key=len, reverse=True)
        self._search = re.compile("|".join(map(re.escape, self.embedded))).search if self.embedded else None
        # JSON escapes character by character, so a string holding a secret holds its escaped
        # form in the JSON text; a short secret must be a whole string, quotes included.
        forms = [_json(s)[1:-1] for s in self.embedded]
        forms += [_json(s) for s in secrets if len(s) < MIN_EMBEDDED_SECRET]
        self._in_text = re.compile(b"|".join(map(re.escape, forms))).search

    def maybe_in(self, value: Any) -> bool:
        """False only when no secret can be inside ``value``."""
        try:
            text = _json(value)
        except Exception:  # not plain JSON (objects, huge ints...): every part is looked at
            return True
        return self._in_text(text) is not None

    def redact(self, value: Any) -> Any:
        """``value`` with the secrets replaced (containers copied only where something changed)."""
        if type(value) is str:
            if value in self.whole:
                return REDACTED
            search = self._search
            return value if search is None or search(value) is None else redact_text(value, self.embedded)
        if type(value) is list:
            part = self._part if len(value) >= _PRUNE_FROM else self.redact
            items = [part(v) for v in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else items
        if type(value) is dict:
            part = self._part if len(value) >= _PRUNE_FROM else self.redact
            pairs = [((self.redact(k) if type(k) is str else k), part(v)) for k, v in value.items()]
            if all(nk is k and nv is v for (nk, nv), (k, v) in zip(pairs, value.items(), strict=True)):
                return value
            return dict(pairs)
        if isinstance(value, msgspec.Struct):  # a typed document: each field, the Struct kept
            changed = {}
            for name in value.__struct_fields__:
                old = getattr(value, name)
                new = self.redact(old)
                if new is not old:
                    changed[name] = new
            return msgspec.structs.replace(value, **changed) if changed else value
        if isinstance(value, (list, tuple, dict, str)):  # subclasses, tuples: rebuilt as plain JSON
            return self.redact(json.loads(json.dumps(value, default=str)))
        return value

    def _part(self, value: Any) -> Any:
        """An item of a large container: skipped whole when its JSON text holds no secret."""
        kind = type(value)
        if (kind is dict or kind is list) and not self.maybe_in(value):
            return value
        return self.redact(value)


#: Containers this large have each item checked as JSON text before it is walked: a workflow
#: of 200 nodes is then walked only where a secret is (about 10x faster than every value).
_PRUNE_FROM = 8


class WidgetLayout:
    """Where a node class keeps credentials among its positional widget values.

    ``names`` lists the widget values in the order ComfyUI's frontend stores them (a seed-like
    INT widget is followed by its "control after generate" value, named None: inputs with
    ``control_after_generate`` and inputs named ``seed`` or ``noise_seed``, as the frontend
    does); ``secret`` the STRING widgets named like credentials; ``choices`` the class's combo
    options, kept only for classes with a credential widget.
    """

    __slots__ = ("choices", "names", "secret")

    def __init__(self, names: list[str | None], choices: frozenset[str], secret: frozenset[str]) -> None:
        self.names = names
        self.choices = choices
        self.secret = secret

    @classmethod
    def of(cls, input_types: Any) -> WidgetLayout | None:
        """The layout of a class from its ``INPUT_TYPES()``; None when it has no credential."""
        if not isinstance(input_types, dict):
            return None
        names: list[str | None] = []
        choices: set[str] = set()
        secret: set[str] = set()
        for section in ("required", "optional"):
            group = input_types.get(section)
            if not isinstance(group, dict):
                continue
            for name, spec in group.items():
                kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
                options = spec[1] if isinstance(spec, (list, tuple)) and len(spec) > 1 else None
                options = options if isinstance(options, dict) else {}
                if isinstance(kind, (list, tuple)):
                    choices.update(c for c in kind if isinstance(c, str))
                elif kind == "COMBO":
                    choices.update(c for c in options.get("options", ()) if isinstance(c, str))
                elif not isinstance(kind, str) or kind not in _WIDGET_TYPES or options.get("forceInput"):
                    continue
                names.append(str(name))
                if kind == "STRING" and is_secret_name(str(name)):  # a number or a switch holds no key
                    secret.add(str(name))
                if kind == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed")):
                    names.append(None)
        if not secret:
            return None
        return cls(names, frozenset(choices), frozenset(secret))

    def redact(self, values: list[Any]) -> list[Any]:
        """``values`` (a node's ``widgets_values``) with the credential widgets blanked."""
        if len(self.names) == len(values):  # the frontend's own rule for mapping values to names
            return [
                REDACTED if n in self.secret and isinstance(v, str) and v else v
                for n, v in zip(self.names, values, strict=True)
            ]
        # A layout the definition does not explain (widgets added by an extension, a newer
        # version of the pack): every free-text value may be the key, so none is kept.
        return [
            REDACTED if isinstance(v, str) and v and v not in self.choices and v not in _CONTROL_VALUES else v
            for v in values
        ]


#: Class type -> its layout (None: no credential widget), for the life of the process: input
#: names do not change, and ComfyUI's own validation calls INPUT_TYPES far more often.
_layouts: dict[str, WidgetLayout | None] = {}
#: Classes remembered at most (packs that generate class names must not grow memory).
MAX_LAYOUTS = 4096


def _layout(kind: str, input_types: InputTypes) -> WidgetLayout | None:
    if kind in _layouts:
        return _layouts[kind]
    try:
        layout = WidgetLayout.of(input_types(kind))
    except Exception:  # a pack's INPUT_TYPES may raise: its values are still redacted by value
        layout = None
    if len(_layouts) >= MAX_LAYOUTS:
        _layouts.clear()
    _layouts[kind] = layout
    return layout


def _blank(name: Any, value: Any) -> Any:
    return REDACTED if isinstance(name, str) and is_secret_name(name) and isinstance(value, str) and value else value


def _node_lists(workflow: dict[str, Any]) -> list[tuple[Any, list[Any]]]:
    """(owner, its node list) for a UI workflow's graph and each of its subgraph definitions."""
    found: list[tuple[Any, list[Any]]] = []
    if isinstance(workflow.get("nodes"), list):
        found.append((workflow, workflow["nodes"]))
    definitions = workflow.get("definitions")
    if isinstance(definitions, dict) and isinstance(definitions.get("subgraphs"), list):
        found.extend(
            (sub, sub["nodes"])
            for sub in definitions["subgraphs"]
            if isinstance(sub, dict) and isinstance(sub.get("nodes"), list)
        )
    return found


def redact_workflow(workflow: Any, secrets: Collection[str], input_types: InputTypes) -> Any:
    """The UI workflow with credential widgets blanked and every known secret replaced."""
    if isinstance(workflow, dict):
        replaced: dict[int, dict[str, Any]] = {}  # id of an owner -> its copy with new nodes
        for owner, nodes in _node_lists(workflow):
            new = _redacted_nodes(nodes, input_types)
            if new is not None:
                replaced[id(owner)] = {**owner, "nodes": new}
        if replaced:
            workflow = _rebuilt(workflow, replaced)
    return redact_json(workflow, secrets)


_UNSEEN = WidgetLayout([], frozenset(), frozenset())


def _redacted_nodes(nodes: list[Any], input_types: InputTypes) -> list[Any] | None:
    """A copy of a workflow's node list with credential widgets blanked; None if none has one.

    Runs for every captured run, so the usual answer (no class of the graph has a credential
    input, no widgets stored by name) is found at C speed: the set of class types, then one
    lookup per class, and the set of the widget values' types.
    """
    layouts = _layouts
    try:
        kinds = set(map(dict.get, nodes, repeat("type")))
        by_name = dict in set(map(type, map(dict.get, nodes, repeat("widgets_values"))))
    except TypeError:  # a node that is not a dict, or an unhashable type: look at each node
        pass
    else:
        if not by_name and not any(_layout(k, input_types) for k in kinds if type(k) is str):
            return None
    out: list[Any] | None = None
    for i, node in enumerate(nodes):
        if type(node) is not dict:
            continue
        values = node.get("widgets_values")
        if not values:
            continue
        if type(values) is list:
            kind = node.get("type")
            if type(kind) is not str:
                continue
            layout = layouts.get(kind, _UNSEEN)
            if layout is _UNSEEN:
                layout = _layout(kind, input_types)
            if layout is None:
                continue
            new = {**node, "widgets_values": layout.redact(values)}
        elif type(values) is dict and any(type(k) is str and is_secret_name(k) for k in values):
            new = {**node, "widgets_values": {k: _blank(k, v) for k, v in values.items()}}  # by name
        else:
            continue
        if out is None:
            out = list(nodes)
        out[i] = new
    return out


def _rebuilt(workflow: dict[str, Any], replaced: dict[int, dict[str, Any]]) -> dict[str, Any]:
    out = replaced.get(id(workflow), dict(workflow))
    definitions = workflow.get("definitions")
    if isinstance(definitions, dict) and isinstance(definitions.get("subgraphs"), list):
        subs = [replaced.get(id(sub), sub) for sub in definitions["subgraphs"]]
        if any(a is not b for a, b in zip(subs, definitions["subgraphs"], strict=True)):
            out["definitions"] = {**definitions, "subgraphs": subs}
    return out


def scrub_run(prompt: Any, workflow: Any, known: Collection[str], input_types: InputTypes) -> Scrubbed:
    """A prompt and its UI workflow free of credentials, and what was found (see the module).

    ``known``: secrets the caller already has (ComfyUI's hidden credentials, the run's).
    """
    scrubbed = scrub_secrets(prompt, None)
    secrets = frozenset(known) | scrubbed.secrets
    return Scrubbed(
        redact_json(scrubbed.prompt, secrets),
        redact_workflow(workflow, secrets, input_types),
        scrubbed.secret_nodes,
        secrets,
    )


def extra_data_secrets(extra_data: Any) -> frozenset[str]:
    """The values of ComfyUI's sensitive ``extra_data`` keys (its account token, API key)."""
    if not isinstance(extra_data, dict):
        return frozenset()
    return plain_secrets(extra_data.get(key) for key in SENSITIVE_EXTRA_DATA_KEYS)


def redact_for_image(
    prompt: Any, extra_pnginfo: Any, known: Collection[str], input_types: InputTypes
) -> tuple[Any, Any, frozenset[str]]:
    """ComfyUI's prompt and extra_pnginfo free of credentials, and every secret found.

    ``known``: secrets the caller already has (the run's, ComfyUI's hidden credentials).
    """
    workflow = extra_pnginfo.get("workflow") if isinstance(extra_pnginfo, dict) else None
    scrubbed = scrub_run(prompt, workflow, known, input_types)
    secrets = scrubbed.secrets
    if isinstance(extra_pnginfo, dict):
        extra_pnginfo = {
            k: scrubbed.workflow if k == "workflow" else redact_json(v, secrets) for k, v in extra_pnginfo.items()
        }
    else:
        extra_pnginfo = redact_json(extra_pnginfo, secrets)
    return scrubbed.prompt, extra_pnginfo, secrets
