"""The reconciler: one ``ai_info.generation`` from the parser and the run, and where they differ.

Three walks over the same prompt links (``workflow.walk_generation``), one rules table:

* **parser**: switches decided by the prompt (or guessed), values from the prompt JSON;
* **runtime**: switches decided by the select value the run used, values the run resolved
  (``RunState.nodes[id].inputs[name]``: item 0 when the list has one item, else the list).
  Nodes that were cached or never ran contribute nothing, and a switch the run did not
  record (cached) stops this walk;
* **merged**: the run's switch decisions where it has them, else the parser's; for each
  field the run's value where it has one, else the prompt's. So when the run switched to a
  branch whose nodes were cached, the merged document holds that branch's prompt values,
  not the values of the branch the parser expected.

Every merged field has a source: ``runtime``, ``parser``, ``parser-guess`` (behind a switch
whose branch the parser guessed and the run did not confirm) or ``mixed`` (a joined prompt
text whose parts came from both).

A disagreement is a field whose parser value and merged value differ (the merged value is
the run's value, or the prompt's value along the run's route). Equal values never differ:
7 and 7.0, ``"20"`` and 20 (ComfyUI's validation converts widget strings), and a text the
capture summary cut and the full text it was cut from. Nothing derived from the clock or the
save itself (file names, timings) is a generation field, so none can differ. A parser
``unknown (linked ...)`` against a run value *is* a disagreement (cause "value computed
upstream"): it is exactly what static parsing misses. An unknown the run could not fill
either (the node was cached) is not a disagreement but an ``Unresolved`` entry with its cause.

Disagreements are returned as data; logging them is the caller's choice
(``format_disagreement`` gives the line users grep for).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from ..events.values import is_cut, is_cut_of
from ..prompt_graph import is_link
from .rules import RULES, Rule, Switch
from .runtime import RunState
from .workflow import (
    COMPUTED_UPSTREAM,
    PARSER,
    RUNTIME,
    UNFOLLOWABLE,
    Choice,
    Claim,
    PassPlan,
    Plan,
    StaticValues,
    Val,
    evaluate,
    join_texts,
    mark_guessed,
    plan_generation,
    transformed,
    values_of,
    walk_generation,
)

GENERATION_PATH = "ai_info.generation"
"""Where the generation dict sits in the embedded document; disagreement paths start with it."""

PARSER_GUESS = "parser-guess"

# Why a parser value and the run's differ.
SWITCH_BRANCH = "switch picked another branch"
CHANGED_AT_RUN = "value changed at run time"
BATCH_LIST = "node ran over a list of values"
# Why a value stayed unknown.
NODE_CACHED = "node was cached"
NODE_NOT_RUN = "node did not run"
INPUT_NOT_RECORDED = "input not recorded"
NO_RUNTIME = "no runtime capture"

CAUSES = (COMPUTED_UPSTREAM, SWITCH_BRANCH, UNFOLLOWABLE, CHANGED_AT_RUN, BATCH_LIST)
UNRESOLVED_CAUSES = (NODE_CACHED, NODE_NOT_RUN, INPUT_NOT_RECORDED, NO_RUNTIME)

#: Characters of each value shown in a disagreement log line.
LOG_VALUE_CHARS = 50
LOG_PREFIX = "[MetadataSaveImage]"


class Disagreement(msgspec.Struct, frozen=True):
    """A generation field where the parser and the run differ, and why."""

    path: str
    parser: Any
    runtime: Any
    cause: str


class Unresolved(msgspec.Struct, frozen=True):
    """A generation field that is still unknown after the merge, and why."""

    path: str
    value: Any
    cause: str


class Reconciliation(msgspec.Struct, frozen=True):
    """Both views, the merge, the source of every merged field, and the differences.

    It is the document's ``ai_info`` as it is embedded (see ``document.Document``).
    """

    generation: dict[str, Any]
    sources: dict[str, str]
    parser: dict[str, Any]
    runtime: dict[str, Any] | None
    disagreements: list[Disagreement]
    unresolved: list[Unresolved]


class RuntimeValues:
    """Values the run resolved; for a cached node, those of the captured run that computed it."""

    def __init__(self, state: RunState, list_index: int | None = None) -> None:
        self._nodes = state.nodes
        # Which item of a batch list this image is: ComfyUI calls a node once per item and
        # repeats the last item of a shorter list, so item i (or the last) is this image's.
        self._index = list_index

    def inputs(self, node_id: str) -> dict[str, list[Any]] | None:
        """The node's resolved inputs; None for a node that did not run (or was cached unseen)."""
        rec = self._nodes.get(node_id)
        if rec is None or (rec.status == "cached" and rec.cached_from is None):
            return None
        return rec.inputs

    def value(self, node_id: str, name: str) -> Val | None:
        """The resolved input: item 0 of a one-item list, else the whole batch list."""
        inputs = self.inputs(node_id)
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
        return Val(value, RUNTIME, (node_id,)) if self.inputs(node_id) is not None else None

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
        #: The prompt's values, its links routed through these switch choices.
        self.static = StaticValues(prompt, rules, choose=self.choose)

    def value(self, node_id: str, name: str) -> Val | None:
        """The run's value, completed from the prompt when the capture summary cut a text."""
        ran = self._runtime.value(node_id, name)
        if ran is None:
            return self.static.value(node_id, name)
        if isinstance(ran.value, str) and is_cut(ran.value):
            static = self.static.value(node_id, name)
            if static is not None and isinstance(static.value, str) and is_cut_of(ran.value, static.value):
                return Val(static.value, RUNTIME, ran.nodes)
        return ran

    def const(self, node_id: str, value: Any) -> Val | None:
        """A class-implied value (the run's if the node ran)."""
        return self._runtime.const(node_id, value) or self.static.const(node_id, value)

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        """The run's choice; the prompt's (maybe a guess) for a switch the run did not record."""
        return self._runtime.choose(node_id, rule) or self.static.choose(node_id, rule)


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
    static = StaticValues(prompt, rules)
    plan = plan_generation(prompt, saved_by, static.choose, rules)
    if state is None:
        return _from_plan(plan, static, None, None, None) or _from_views(evaluate(plan, static), None, None, None)
    ran = RuntimeValues(state, list_index)
    merged = MergedValues(prompt, ran, rules)
    if all(ran.choose(nid, rule) == choice == merged.choose(nid, rule) for nid, rule, choice in plan.switches):
        # The run routed every switch as the prompt does (always so without switches): one walk
        # serves all three views.
        done = _from_plan(plan, static, ran, merged, state)
        if done is not None:
            return done
        runtime, merged_flat = evaluate(plan, ran), evaluate(plan, merged)
    else:
        runtime = walk_generation(prompt, saved_by, ran, rules)
        merged_flat = walk_generation(prompt, saved_by, merged, rules)
    return _from_views(evaluate(plan, static), runtime, merged_flat, state)


def _from_views(
    parser: dict[str, Val], runtime: dict[str, Val] | None, merged: dict[str, Val] | None, state: RunState | None
) -> Reconciliation:
    """The reconciliation of three walks' fields (``merged`` None: the parser's)."""
    if merged is None:
        merged = parser
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


# --- one walk for the three views -------------------------------------------------------------
#
# When the views share a plan, each field's three values are computed together, the nested
# dicts are built straight from the plan's structure (no path is written out and parsed back),
# and the paths come out in ``_path_key`` order from that structure (no sort of every path).
# Both hold only for rule paths that nest as plain dicts and cannot meet the names the walk
# writes itself; any other table takes ``_from_views``.

#: A field's values in the three views: parser, runtime (None without a run), merged.
_Triple = tuple[Val | None, Val | None, Val | None]
#: One part of the document: its fields (top-level or a pass's), LoRAs and prompt texts.
_Section = tuple[dict[str, _Triple], list[dict[str, _Triple]], dict[str, _Triple]]

#: Names the walk writes itself (``loras[i]``, ``positive``, ``negative``, ``passes[i]``).
_WALK_NAMES = frozenset({"loras", "positive", "negative", "passes"})
_FIELD, _LORAS, _TEXT, _PASSES = range(4)


def _rule_paths(plan: Plan) -> dict[str, tuple[str, ...]] | None:
    """Each rule path the plan claims, split at its dots; None if one would not nest as plain dicts.

    That is a path with brackets, a digit segment (sorted as a number), a first segment the
    walk writes itself, or a path that is a prefix of another (a value where a dict goes).
    """
    paths = set(plan.top)
    for sampling in plan.passes:
        paths.update(sampling.fields)
    split: dict[str, tuple[str, ...]] = {}
    for path in paths:
        segments = tuple(path.split("."))
        if "[" in path or "]" in path or segments[0] in _WALK_NAMES or any(s.isdigit() for s in segments):
            return None
        split[path] = segments
    for segments in split.values():
        for k in range(1, len(segments)):
            if ".".join(segments[:k]) in split:
                return None
    return split


def _from_plan(
    plan: Plan,
    static: StaticValues,
    ran: RuntimeValues | None,
    merged: MergedValues | None,
    state: RunState | None,
) -> Reconciliation | None:
    """The reconciliation from one plan shared by the views; None when its paths need ``_from_views``."""
    split = _rule_paths(plan)
    if split is None:
        return None
    values = _triples(static, ran, merged)
    passes = plan.passes
    fields = dict(plan.top)
    if passes:
        fields.update(passes[0].fields)  # a pass's field wins over the same path found outside it
    sections = [_section(fields, passes[0] if passes else None, values)]
    sections += [_section(sampling.fields, sampling, values) for sampling in reversed(passes[1:])]

    sources: dict[str, str] = {}
    disagreements: list[Disagreement] = []
    unresolved: list[Unresolved] = []
    for path, (p, _, m) in _in_path_order(sections, split):
        if m is not None:
            sources[path] = _source(m)
            if p is None or not same(p.value, m.value):
                disagreements.append(
                    Disagreement(f"{GENERATION_PATH}.{path}", None if p is None else p.value, m.value, _cause(p, m))
                )
            if m.unknown is not None:
                unresolved.append(Unresolved(path, m.value, _unresolved_cause(m, state)))
        elif p is not None:
            disagreements.append(Disagreement(f"{GENERATION_PATH}.{path}", p.value, None, _cause(p, None)))
    return Reconciliation(
        generation=_nested(sections, 2, split),
        sources=sources,
        parser=_nested(sections, 0, split),
        runtime=None if ran is None else _nested(sections, 1, split),
        disagreements=disagreements,
        unresolved=unresolved,
    )


def _triples(
    static: StaticValues, ran: RuntimeValues | None, merged: MergedValues | None
) -> Callable[[Claim], _Triple]:
    """A claim's values in the three views, as ``claimed`` gives them from each view's ``Values``."""
    parser_value = static.value
    merged_static = merged.static.value if merged is not None else None

    def values(claim: Claim) -> _Triple:
        nid, inputs, name, transform, implied, guessed = claim
        p: Val | None
        r: Val | None
        m: Val | None
        if name is None:
            p = Val(implied, PARSER, (nid,))
            r = None if ran is None else ran.const(nid, implied)
            m = p if r is None else r
        else:
            raw = inputs[name]
            linked = isinstance(raw, list) and is_link(raw)  # the type test spares literals a call
            p = parser_value(nid, name) if linked else Val(raw, PARSER, (nid,))
            if ran is None or merged_static is None:
                r, m = None, p
            else:
                # MergedValues.value, with the prompt's literal shared with the parser view, and
                # RuntimeValues.value's usual case (one item) inline.
                ran_inputs = ran.inputs(nid)
                items = ran_inputs.get(name) if ran_inputs is not None else None
                if not items:
                    r = None
                elif len(items) == 1:
                    r = Val(items[0], RUNTIME, (nid,))
                else:
                    r = ran.value(nid, name)
                if r is None:
                    m = merged_static(nid, name) if linked else p
                elif isinstance(r.value, str) and is_cut(r.value):
                    full = merged_static(nid, name) if linked else p
                    if full is not None and isinstance(full.value, str) and is_cut_of(r.value, full.value):
                        m = Val(full.value, RUNTIME, r.nodes)
                    else:
                        m = r
                else:
                    m = r
            if transform is not None:
                # Each view transforms its own value, as separate walks did (without a run the
                # merged view is the parser's).
                p = transformed(p, transform)
                if ran is None:
                    m = p
                else:
                    m = transformed(m, transform)
                    r = transformed(r, transform)
        if guessed:
            return mark_guessed(p, True), mark_guessed(r, True), mark_guessed(m, True)
        return p, r, m

    return values


def _section(fields: dict[str, Claim], sampling: PassPlan | None, values: Callable[[Claim], _Triple]) -> _Section:
    """A section's claims evaluated, in the walk's order (prompt texts joined per view)."""
    fields_t = {path: values(claim) for path, claim in fields.items()}
    if sampling is None:
        return fields_t, [], {}
    loras = [{k: values(c) for k, c in entry.items()} for entry in reversed(sampling.loras)]
    texts: dict[str, _Triple] = {}
    for polarity in ("positive", "negative"):
        parts = sampling.texts.get(polarity)
        if parts is not None:
            triples = [values(c) for c in parts]
            texts[polarity] = (
                join_texts([t[0] for t in triples]),
                join_texts([t[1] for t in triples]),
                join_texts([t[2] for t in triples]),
            )
    return fields_t, loras, texts


def _nested(sections: list[_Section], view: int, split: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """One view's generation dict, as ``nest`` builds it from the flattened walk (same key order)."""
    out = _nested_section(sections[0], view, split)
    passes: list[dict[str, Any]] | None = None
    for j, section in enumerate(sections[1:]):
        sub = _nested_section(section, view, split)
        if sub:
            if passes is None:
                passes = out["passes"] = []
            if len(passes) < j:  # a pass with nothing keeps its place
                passes.extend({} for _ in range(j - len(passes)))
            passes.append(sub)
    return out


def _nested_section(section: _Section, view: int, split: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    fields, loras, texts = section
    out: dict[str, Any] = {}
    for path, triple in fields.items():
        value = triple[view]
        if value is None:
            continue
        segments = split[path]
        if len(segments) == 1:
            out[path] = value.value
            continue
        here = out
        for segment in segments[:-1]:
            here = here.setdefault(segment, {})
        here[segments[-1]] = value.value
    items: list[dict[str, Any]] | None = None
    for i, entry in enumerate(loras):
        lora = {k: t[view].value for k, t in entry.items() if t[view] is not None}  # type: ignore[union-attr]
        if lora:
            if items is None:
                items = out["loras"] = []
            if len(items) < i:  # a LoRA with nothing keeps its place
                items.extend({} for _ in range(i - len(items)))
            items.append(lora)
    for polarity, triple in texts.items():
        value = triple[view]
        if value is not None:
            out[polarity] = value.value
    return out


def _in_path_order(sections: list[_Section], split: dict[str, tuple[str, ...]]) -> list[tuple[str, _Triple]]:
    """Every field of the sections as (path, values), in ``_path_key`` order, from their structure.

    Rule paths hold no digit segment and no name the walk writes, so a path's first segment
    orders it against the walk's own blocks (``loras``, ``passes``, the prompt texts), and
    segments of words compare as ``_path_key`` compares them.
    """
    out: list[tuple[str, _Triple]] = []
    _section_in_order(out, sections[0], "", split, sections[1:])
    return out


def _section_in_order(
    out: list[tuple[str, _Triple]],
    section: _Section,
    prefix: str,
    split: dict[str, tuple[str, ...]],
    passes: list[_Section],
) -> None:
    fields, loras, texts = section
    keyed: list[tuple[tuple[str, ...], int, str]] = [(split[path], _FIELD, path) for path in fields]
    if loras:
        keyed.append((("loras",), _LORAS, ""))
    keyed += [((polarity,), _TEXT, polarity) for polarity in texts]
    if passes:
        keyed.append((("passes",), _PASSES, ""))
    keyed.sort()
    for _, kind, path in keyed:
        if kind == _FIELD:
            out.append((prefix + path, fields[path]))
        elif kind == _LORAS:
            for i, entry in enumerate(loras):
                out += [(f"{prefix}loras[{i}].{k}", entry[k]) for k in sorted(entry)]
        elif kind == _TEXT:
            out.append((prefix + path, texts[path]))
        else:
            for j, sampling in enumerate(passes):
                _section_in_order(out, sampling, f"passes[{j}].", split, [])


def _show(value: Any) -> str:
    if value is None:
        return "absent"
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode("utf-8")
    # One line per disagreement, whatever the prompt text holds.
    text = text.replace("\n", " ")
    return text if len(text) <= LOG_VALUE_CHARS else text[: LOG_VALUE_CHARS - 1] + "…"


def format_disagreement(d: Disagreement) -> str:
    """The log line for one disagreement, each value cut to ``LOG_VALUE_CHARS`` characters."""
    return f"{LOG_PREFIX} Disagreement at '{d.path}': parser={_show(d.parser)} → runtime={_show(d.runtime)}"
