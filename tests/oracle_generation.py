"""The reconciler and the generation walk as they were before one walk served all three views.

Kept verbatim (the oracle): ``tests/test_reconcile_equivalence.py`` checks that the reconciler
gives exactly what this gave, on generated prompts and runs and on ``tests/workflows/``. Only the
data types (``Val``, ``Choice``, ``Disagreement``...) and the rules come from the package, so that
results compare equal. Exponential nowhere: ``StaticValues`` here already memoised its links.
"""

# ruff: noqa
# mypy: ignore-errors
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from runtime_metadata.events.values import is_cut, is_cut_of
from runtime_metadata.projections.reconcile import (
    BATCH_LIST,
    CHANGED_AT_RUN,
    GENERATION_PATH,
    INPUT_NOT_RECORDED,
    NO_RUNTIME,
    NODE_CACHED,
    NODE_NOT_RUN,
    PARSER_GUESS,
    SWITCH_BRANCH,
    Disagreement,
    Reconciliation,
    Unresolved,
)
from runtime_metadata.projections.rules import (
    FALLBACK_FOLLOW,
    PASS_ROLES,
    RULES,
    SAME,
    Compute,
    Const,
    FieldSource,
    In,
    Lora,
    Node,
    PassThrough,
    Rule,
    Sampler,
    Switch,
    TextEncoder,
)
from runtime_metadata.projections.runtime import RunState
from runtime_metadata.projections.workflow import (
    COMPUTED_UPSTREAM,
    MIXED,
    PARSER,
    RUNTIME,
    UNFOLLOWABLE,
    Choice,
    Val,
    Values,
    unknown_value,
)
from runtime_metadata.prompt_graph import inputs_of, is_link, read_node

_Resolved = tuple[Any, str | None, bool]


class StaticValues:
    """Values from the prompt JSON: literals, and links followed as far as they can be computed."""

    def __init__(
        self,
        prompt: Mapping[str, Any],
        rules: Mapping[str, Rule] = RULES,
        choose: Callable[[str, Switch], Choice | None] | None = None,
    ) -> None:
        self._prompt = prompt
        self._rules = rules
        # The merged view routes value links through the run's switch choices.
        self._choose = choose if choose is not None else self.choose
        self._memo: dict[tuple[str, int], _Resolved] = {}
        self._active: set[tuple[str, int]] = set()  # outputs waiting for the outputs they need

    def value(self, node_id: str, name: str) -> Val | None:
        """The literal, or the followed link, of input ``name``."""
        inputs = inputs_of(self._prompt, node_id)
        if name not in inputs:
            return None
        value, unknown, guessed = self._resolve(inputs[name])
        return Val(value, PARSER, (node_id,), unknown, guessed)

    def const(self, node_id: str, value: Any) -> Val | None:
        """A class-implied value: the parser always has it."""
        return Val(value, PARSER, (node_id,))

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        """The branch the prompt selects, or the rule's guess when the select is not computable."""
        selected = self.value(node_id, rule.select)
        if selected is None or selected.unknown is not None:
            return Choice(rule.guess, True) if rule.guess is not None else None
        branch = rule.branch(selected.value)
        return Choice(branch, selected.guessed) if branch is not None else None

    def _resolve(self, raw: Any) -> _Resolved:
        if not is_link(raw):
            return raw, None, False
        return self._output(str(raw[0]), raw[1])

    def _output(self, src: str, index: int) -> _Resolved:
        """The value of output ``index`` of ``src``, each output computed once per parse.

        Iterative, with a memo: a DAG whose nodes feed several inputs of the next (diamonds)
        would otherwise be recomputed once per path, doubling at every diamond, and a chain
        of thousands of nodes would exhaust Python's recursion limit.
        """
        key = (src, index)
        done = self._memo.get(key)
        if done is not None:
            return done
        if key in self._active:  # asked again while computing it (from a switch's choose)
            return self._cycle(src)
        stack = [key]
        while stack:
            top = stack[-1]
            if top in self._memo:
                stack.pop()
                continue
            got = self._attempt(top)
            if isinstance(got, list):  # outputs it needs first
                self._active.add(top)
                stack.extend(got)
                continue
            self._memo[top] = got
            self._active.discard(top)
            stack.pop()
        return self._memo[key]

    def _cycle(self, src: str) -> _Resolved:
        node = read_node(self._prompt, src)
        return unknown_value(src, None if node is None else node[0]), UNFOLLOWABLE, False

    def _known(self, raw: Any, missing: list[tuple[str, int]]) -> _Resolved | None:
        """``raw`` resolved from what is computed already; None (and noted in ``missing``) if not yet."""
        if not is_link(raw):
            return raw, None, False
        key = (str(raw[0]), raw[1])
        done = self._memo.get(key)
        if done is not None:
            return done
        if key in self._active:  # a link back to an output being computed: a cycle
            return self._cycle(key[0])
        missing.append(key)
        return None

    def _attempt(self, key: tuple[str, int]) -> _Resolved | list[tuple[str, int]]:
        """The output's value, or the outputs it depends on that are not computed yet."""
        src, index = key
        node = read_node(self._prompt, src)
        if node is None:
            return unknown_value(src, None), UNFOLLOWABLE, False
        kind, inputs = node
        rule = self._rules.get(kind)
        missing: list[tuple[str, int]] = []
        if isinstance(rule, PassThrough):
            name = rule.outputs.get(index)
            if name is not None and name in inputs:
                got = self._known(inputs[name], missing)
                return missing if got is None else got
        elif isinstance(rule, Switch) and index == 0:
            # The select first, so that choosing (which reads it) finds it computed.
            if rule.select in inputs and self._known(inputs[rule.select], missing) is None:
                return missing
            choice = self._choose(src, rule)
            if choice is not None and choice.input in inputs:
                got = self._known(inputs[choice.input], missing)
                if got is None:
                    return missing
                value, unknown, guessed = got
                return value, unknown, guessed or choice.guessed
        elif isinstance(rule, Compute) and index == 0 and all(name in inputs for name in rule.inputs):
            args: dict[str, Any] = {}
            guessed = False
            known = True
            for name in rule.inputs:
                got = self._known(inputs[name], missing)
                if got is None or got[1] is not None:
                    known = False
                    continue
                args[name] = got[0]
                guessed = guessed or got[2]
            if missing:
                return missing
            if known:
                try:
                    return rule.fn(**args), None, guessed
                except Exception:  # operands the node itself would reject: value unknown
                    pass
        return unknown_value(src, kind), COMPUTED_UPSTREAM, False


class _Pass:
    """What the walk found for one sampling pass (values may be None: claimed, not known)."""

    __slots__ = ("fields", "loras", "texts")

    def __init__(self) -> None:
        self.fields: dict[str, Val | None] = {}
        self.loras: list[dict[str, Val | None]] = []  # nearest the sampler first
        self.texts: dict[str, list[Val | None]] = {}


# A step of the walk: node, output index reached, role, pass index, behind a guessed switch.
_Frame = tuple[str, int, str, int, bool]


def walk_generation(
    prompt: Mapping[str, Any],
    saved_by: str,
    values: Values,
    rules: Mapping[str, Rule] = RULES,
) -> dict[str, Val]:
    """Every field reachable from ``saved_by``, as ``path -> Val``; ``values``' gaps left out."""
    top: dict[str, Val | None] = {}
    passes: list[_Pass] = []
    samplers: set[str] = set()
    seen: set[tuple[str, int, str, int]] = set()
    stack: list[_Frame] = [(str(saved_by), 0, "image", -1, False)]
    while stack:
        nid, index, role, p, guessed = stack.pop()
        # Fields of the whole generation do not depend on the pass that led there.
        key = (nid, index, role, p if role in PASS_ROLES else -1)
        if key in seen:
            continue
        seen.add(key)
        node = read_node(prompt, nid)
        if node is None:
            continue
        kind, inputs = node
        rule = rules.get(kind)
        scope = passes[p].fields if role in PASS_ROLES and p >= 0 else top
        nxt: list[_Frame] = []
        match rule:
            case Switch():
                choice = values.choose(nid, rule)
                if choice is not None:
                    _follow(nxt, inputs, choice.input, role, p, guessed or choice.guessed)
            case PassThrough():
                _follow(nxt, inputs, rule.outputs.get(index), role, p, guessed)
            case Compute():
                pass
            case Lora():
                if role == "model" and p >= 0:
                    item = {"name": rule.name, "strength_model": rule.strength_model}
                    if rule.strength_clip is not None:
                        item["strength_clip"] = rule.strength_clip
                    entry: dict[str, Val | None] = {}
                    _claim(entry, nid, inputs, item, values, guessed)
                    passes[p].loras.append(entry)
                    _follow(nxt, inputs, rule.model, "model", p, guessed)
                elif role == "clip":
                    _follow(nxt, inputs, rule.clip, "clip", p, guessed)
            case TextEncoder():
                if role in ("positive", "negative") and p >= 0:
                    parts = passes[p].texts.setdefault(role, [])
                    for name in rule.text:
                        if name in inputs:
                            parts.append(_guess(values.value(nid, name), guessed))
                    _claim(scope, nid, inputs, rule.fields, values, guessed)
                    _follow(nxt, inputs, rule.clip, "clip", p, guessed)
            case Sampler() if role == "latent":
                if nid not in samplers:
                    samplers.add(nid)
                    passes.append(_Pass())
                    at = len(passes) - 1
                    _claim(passes[at].fields, nid, inputs, rule.fields, values, guessed)
                    for name, to_role in rule.follow.items():
                        _follow(nxt, inputs, name, role if to_role == SAME else to_role, at, guessed)
            case Node():
                if rule.roles is None or role in rule.roles:
                    _claim(scope, nid, inputs, rule.fields, values, guessed)
                carried = rule.follow.keys() if rule.outputs is None else rule.outputs.get(index, ())
                for name in carried:
                    to_role = rule.follow.get(name, SAME)
                    _follow(nxt, inputs, name, role if to_role == SAME else to_role, p, guessed)
            case _:
                for name in FALLBACK_FOLLOW.get(role, ()):
                    if is_link(inputs.get(name)):
                        _follow(nxt, inputs, name, role, p, guessed)
                        break
        # Reversed so the stack pops them in the order the rule lists them (depth-first).
        stack.extend(reversed(nxt))
    return _flatten(top, passes)


def _follow(nxt: list[_Frame], inputs: Mapping[str, Any], name: str | None, role: str, p: int, guessed: bool) -> None:
    """Queue the node that input ``name`` links to, to be walked in ``role``."""
    raw = inputs.get(name) if name is not None else None
    if is_link(raw):
        nxt.append((str(raw[0]), raw[1], role, p, guessed))


def _guess(value: Val | None, guessed: bool) -> Val | None:
    if value is None or not guessed or value.guessed:
        return value
    return msgspec.structs.replace(value, guessed=True)


def _claim(
    scope: dict[str, Val | None],
    nid: str,
    inputs: Mapping[str, Any],
    fields: Mapping[str, FieldSource],
    values: Values,
    guessed: bool,
) -> None:
    """Claim each field not yet claimed in ``scope``: the first node reached owns it."""
    for path, source in fields.items():
        if path in scope:
            continue
        if isinstance(source, Const):
            scope[path] = _guess(values.const(nid, source.value), guessed)
            continue
        name = source.name if isinstance(source, In) else source
        if name not in inputs:
            continue
        value = values.value(nid, name)
        if value is not None and isinstance(source, In) and value.unknown is None:
            fn = source.transform
            out = [fn(v) for v in value.value] if isinstance(value.value, list) else fn(value.value)
            value = msgspec.structs.replace(value, value=out)
        # A claim with no value still blocks later nodes, so every view keeps the same owner.
        scope[path] = _guess(value, guessed)


def _flatten(top: dict[str, Val | None], passes: list[_Pass]) -> dict[str, Val]:
    flat: dict[str, Val | None] = dict(top)
    if passes:
        _emit(flat, "", passes[0])
        for i, earlier in enumerate(reversed(passes[1:])):
            _emit(flat, f"passes[{i}].", earlier)
    return {path: v for path, v in flat.items() if v is not None}


def _emit(flat: dict[str, Val | None], prefix: str, sampling: _Pass) -> None:
    for path, value in sampling.fields.items():
        flat[prefix + path] = value
    for i, entry in enumerate(reversed(sampling.loras)):
        for key, value in entry.items():
            flat[f"{prefix}loras[{i}].{key}"] = value
    for polarity in ("positive", "negative"):
        parts = sampling.texts.get(polarity)
        if parts is not None:
            flat[prefix + polarity] = _join(parts)


def _join(parts: list[Val | None]) -> Val | None:
    """One prompt text from every encoder that reached a polarity; None if a part has no value."""
    known = [part for part in parts if part is not None]
    if not known or len(known) != len(parts):
        return None
    if len(known) == 1:
        return known[0]
    kept: list[str] = []
    for part in known:
        text = part.value if isinstance(part.value, str) else str(part.value)
        if text and text not in kept:
            kept.append(text)
    sources = {part.source for part in known}
    return Val(
        "\n".join(kept),
        sources.pop() if len(sources) == 1 else MIXED,
        tuple(dict.fromkeys(n for part in known for n in part.nodes)),
        next((part.unknown for part in known if part.unknown is not None), None),
        any(part.guessed for part in known),
    )


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"sampler.steps": 20, "loras[0].name": "a"}`` as nested dicts and lists."""
    root: dict[str, Any] = {}
    for path, value in flat.items():
        here: dict[str, Any] = root
        segments = path.split(".")
        last = len(segments) - 1
        for depth, segment in enumerate(segments):
            if not segment.endswith("]"):
                if depth == last:
                    here[segment] = value
                else:
                    here = here.setdefault(segment, {})
                continue
            key, _, index = segment[:-1].partition("[")
            items = here.setdefault(key, [])
            i = int(index)
            # A view that lacks an earlier item (a cached LoRA) keeps the indices aligned.
            while len(items) <= i:
                items.append({})
            if depth == last:
                items[i] = value
            else:
                here = items[i]
    return root


def values_of(flat: Mapping[str, Val]) -> dict[str, Any]:
    """The nested generation dict of a walk's result."""
    return nest({path: v.value for path, v in flat.items()})


class RuntimeValues:
    """Values the run resolved; for a cached node, those of the captured run that computed it."""

    def __init__(self, state: RunState, list_index: int | None = None) -> None:
        self._nodes = state.nodes
        # Which item of a batch list this image is: ComfyUI calls a node once per item and
        # repeats the last item of a shorter list, so item i (or the last) is this image's.
        self._index = list_index

    def _inputs(self, node_id: str) -> dict[str, list[Any]] | None:
        rec = self._nodes.get(node_id)
        if rec is None or (rec.status == "cached" and rec.cached_from is None):
            return None
        return rec.inputs

    def value(self, node_id: str, name: str) -> Val | None:
        """The resolved input: item 0 of a one-item list, else the whole batch list."""
        inputs = self._inputs(node_id)
        items = inputs.get(name) if inputs is not None else None
        if not items:
            return None
        if len(items) == 1:
            return Val(items[0], RUNTIME, (node_id,))
        if self._index is not None:
            return Val(items[min(self._index, len(items) - 1)], RUNTIME, (node_id,))
        return Val(list(items), RUNTIME, (node_id,))

    def const(self, node_id: str, value: Any) -> Val | None:
        """A class-implied value, for a node that ran."""
        return Val(value, RUNTIME, (node_id,)) if self._inputs(node_id) is not None else None

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        """The branch the select value the run used picks (a batch list picks none)."""
        selected = self.value(node_id, rule.select)
        if selected is None or isinstance(selected.value, list):
            return None
        branch = rule.branch(selected.value)
        return Choice(branch, False) if branch is not None else None


class MergedValues:
    """The run's values and switch choices where it has them, the prompt's elsewhere."""

    def __init__(self, prompt: Mapping[str, Any], runtime: RuntimeValues, rules: Mapping[str, Rule]) -> None:
        self._runtime = runtime
        self._static = StaticValues(prompt, rules, choose=self.choose)

    def value(self, node_id: str, name: str) -> Val | None:
        """The run's value, completed from the prompt when the capture summary cut a text."""
        ran = self._runtime.value(node_id, name)
        if ran is None:
            return self._static.value(node_id, name)
        if isinstance(ran.value, str) and is_cut(ran.value):
            static = self._static.value(node_id, name)
            if static is not None and isinstance(static.value, str) and is_cut_of(ran.value, static.value):
                return Val(static.value, RUNTIME, ran.nodes)
        return ran

    def const(self, node_id: str, value: Any) -> Val | None:
        """A class-implied value (the run's if the node ran)."""
        return self._runtime.const(node_id, value) or self._static.const(node_id, value)

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        """The run's choice; the prompt's (maybe a guess) for a switch the run did not record."""
        return self._runtime.choose(node_id, rule) or self._static.choose(node_id, rule)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def same(a: Any, b: Any) -> bool:
    """Whether two field values mean the same: 7 and 7.0, "20" and 20, a cut text and its source."""
    if a == b and type(a) is type(b):
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        x, y = _number(a), _number(b)
        return x is not None and y is not None and (x == y or math.isclose(x, y, rel_tol=1e-9))
    if isinstance(a, str) and isinstance(b, str):
        return is_cut_of(a, b) or is_cut_of(b, a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return False


def _cause(parser: Val | None, merged: Val | None) -> str:
    if parser is None or merged is None or parser.nodes != merged.nodes:
        # Both walks follow the same links; they reach different nodes only at a switch.
        return SWITCH_BRANCH
    if parser.unknown is not None:
        return parser.unknown
    if parser.guessed:
        return SWITCH_BRANCH
    if isinstance(merged.value, list) and not isinstance(parser.value, list):
        return BATCH_LIST
    return CHANGED_AT_RUN


def _path_key(path: str) -> tuple[tuple[int, int | str], ...]:
    # loras[10] sorts after loras[2].
    tokens = path.replace("]", "").replace("[", ".").split(".")
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in tokens)


def _source(value: Val) -> str:
    return PARSER_GUESS if value.source == PARSER and value.guessed else value.source


def _unresolved_cause(value: Val, state: RunState | None) -> str:
    if state is None:
        return NO_RUNTIME
    for node_id in value.nodes:
        rec = state.nodes.get(node_id)
        if rec is not None and rec.status == "cached":
            return NODE_CACHED
        if rec is None or rec.inputs is None:
            return NODE_NOT_RUN
    return INPUT_NOT_RECORDED


def reconcile(
    prompt: Mapping[str, Any],
    state: RunState | None,
    saved_by: str,
    *,
    rules: Mapping[str, Rule] = RULES,
    list_index: int | None = None,
) -> Reconciliation:
    """Parser view, runtime view and their merge for the save node ``saved_by``."""
    parser = walk_generation(prompt, saved_by, StaticValues(prompt, rules), rules)
    if state is None:
        merged, runtime = parser, None
    else:
        ran = RuntimeValues(state, list_index)
        runtime = walk_generation(prompt, saved_by, ran, rules)
        merged = walk_generation(prompt, saved_by, MergedValues(prompt, ran, rules), rules)
    paths = sorted(parser.keys() | merged.keys(), key=_path_key)
    disagreements = []
    for path in paths:
        p, m = parser.get(path), merged.get(path)
        if p is not None and m is not None and same(p.value, m.value):
            continue
        disagreements.append(
            Disagreement(
                f"{GENERATION_PATH}.{path}",
                None if p is None else p.value,
                None if m is None else m.value,
                _cause(p, m),
            )
        )
    return Reconciliation(
        generation=values_of(merged),
        sources={path: _source(merged[path]) for path in paths if path in merged},
        parser=values_of(parser),
        runtime=None if runtime is None else values_of(runtime),
        disagreements=disagreements,
        unresolved=[
            Unresolved(path, merged[path].value, _unresolved_cause(merged[path], state))
            for path in paths
            if path in merged and merged[path].unknown is not None
        ],
    )
