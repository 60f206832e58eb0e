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
from collections.abc import Mapping
from typing import Any

import msgspec

from ..events.values import is_cut, is_cut_of
from .rules import RULES, Rule, Switch
from .runtime import RunState
from .workflow import (
    COMPUTED_UPSTREAM,
    PARSER,
    RUNTIME,
    UNFOLLOWABLE,
    Choice,
    StaticValues,
    Val,
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
