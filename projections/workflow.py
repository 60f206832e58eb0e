"""The static parser: ``ai_info.generation`` as the prompt JSON alone describes it.

The walk (``walk_generation``) is shared with the runtime projection: it starts at a save
node, follows the prompt's links upward in roles (see ``rules``), and asks a ``Values``
source for every field it reaches. ``StaticValues`` is the parser's source: literals as they
are; a linked widget followed through primitives, switches whose select it can compute and
``Compute`` nodes whose inputs it knows; otherwise the string
``"unknown (linked from node N, ClassName)"``, N being the node whose output it could not
compute (never the class name as the value).

Decisions the parser makes:

* A switch whose select it cannot compute: it follows ``Switch.guess`` (for this plugin's
  switch, ``on_1``, the select widget's default), so a parser-only document still describes
  a generation; every field behind it is flagged ``guessed`` (source ``parser-guess``).
* Several samplers: the one nearest the saved image (the last pass) is the generation;
  samplers that fed its latent (a base before its refiner, a first pass before a hires fix)
  go to ``passes``, earliest first. Size, batch size and init image come from the origin of
  the latent chain and belong to the whole generation.
* LoRAs are listed in application order (nearest the checkpoint first); strength 0 is kept.
* Several text encoders reaching one polarity (combine, concat, average): their texts joined
  by a newline in walk order (the combiner's first input first), repeats and empty parts
  dropped. Polarity is the sampler input the conditioning reaches, never a title.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

import msgspec

from ..prompt_graph import inputs_of, is_link, read_node
from .rules import (
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

PARSER = "parser"
RUNTIME = "runtime"
MIXED = "mixed"

COMPUTED_UPSTREAM = "value computed upstream"
UNFOLLOWABLE = "parser could not follow a link"

#: A followed link: (value, why it is unknown or None, reached through a guessed switch).
_Resolved = tuple[Any, str | None, bool]


class Val(msgspec.Struct, frozen=True):
    """One field's value and where it came from."""

    value: Any
    source: str  # PARSER | RUNTIME | MIXED (a joined text whose parts came from both)
    nodes: tuple[str, ...]  # the node(s) whose inputs hold the value
    unknown: str | None = None  # set when the parser could not know it: the cause
    guessed: bool = False  # reached through a switch branch the parser guessed


class Choice(NamedTuple):
    """The input a switch continues through, and whether that was a guess."""

    input: str
    guessed: bool


class Values(Protocol):
    """A source of field values for the walk."""

    def value(self, node_id: str, name: str) -> Val | None:
        """The value of input ``name`` of ``node_id``; None when this source has none."""
        ...

    def const(self, node_id: str, value: Any) -> Val | None:
        """A value the class implies, if this source counts ``node_id`` at all."""
        ...

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        """The input switch ``node_id`` continues through; None when unknown to this source."""
        ...


def unknown_value(node_id: str, class_type: str | None) -> str:
    """The parser's stand-in for a value computed by ``node_id`` (None: a missing node)."""
    return f"unknown (linked from node {node_id}, {class_type or 'not in prompt'})"


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


#: How a view gets one field's value: (node id, the node's inputs, the input's name or None for
#: a value the class implies, the input's transform or None, the implied value, whether the
#: walk reached the node through a switch branch the parser guessed).
Claim = tuple[str, Mapping[str, Any], str | None, Callable[[Any], Any] | None, Any, bool]


class PassPlan:
    """The claims of one sampling pass."""

    __slots__ = ("fields", "loras", "texts")

    def __init__(self) -> None:
        self.fields: dict[str, Claim] = {}
        self.loras: list[dict[str, Claim]] = []  # nearest the sampler first
        self.texts: dict[str, list[Claim]] = {}  # polarity -> the encoders' text inputs


class Plan:
    """Where the walk went: which node owns each field, and the switch choices that routed it.

    Which node owns a field depends only on the prompt, the rules and the choices made at
    the switches the walk crossed, never on values (a claim with no value still blocks later
    nodes). So a plan serves every view that makes the same choices at those switches.
    """

    __slots__ = ("passes", "switches", "top")

    def __init__(self) -> None:
        self.top: dict[str, Claim] = {}
        self.passes: list[PassPlan] = []
        #: every switch the walk crossed, with the choice that routed it
        self.switches: list[tuple[str, Switch, Choice | None]] = []


# A step of the walk: node, output index reached, role, pass index, behind a guessed switch.
_Frame = tuple[str, int, str, int, bool]


def plan_generation(
    prompt: Mapping[str, Any],
    saved_by: str,
    choose: Callable[[str, Switch], Choice | None],
    rules: Mapping[str, Rule] = RULES,
) -> Plan:
    """Walk the links up from ``saved_by`` in roles, switches routed by ``choose``: who owns each field."""
    plan = Plan()
    top = plan.top
    passes = plan.passes
    samplers: set[str] = set()
    seen: set[tuple[str, int, str, int]] = set()
    stack: list[_Frame] = [(str(saved_by), 0, "image", -1, False)]
    pop, push = stack.pop, stack.append
    lora_fields: dict[int, dict[str, FieldSource]] = {}  # per Lora rule (by id): its entry's fields
    while stack:
        nid, index, role, p, guessed = pop()
        in_pass = role in PASS_ROLES
        # Fields of the whole generation do not depend on the pass that led there.
        key = (nid, index, role, p if in_pass else -1)
        if key in seen:
            continue
        seen.add(key)
        node = read_node(prompt, nid)
        if node is None:
            continue
        kind, inputs = node
        rule = rules.get(kind)
        scope = passes[p].fields if in_pass and p >= 0 else top
        nxt: list[_Frame] = []
        # Classes tested most frequent first (a LoRA chain is the longest stretch of most
        # graphs); only Sampler must come before Node, its base class.
        match rule:
            case Lora():
                # One link followed, so pushed straight onto the stack (``_follow`` inline).
                if role == "model" and p >= 0:
                    item = lora_fields.get(id(rule))
                    if item is None:
                        item = lora_fields[id(rule)] = _lora_fields(rule)
                    entry: dict[str, Claim] = {}
                    _claim(entry, nid, inputs, item, guessed)
                    passes[p].loras.append(entry)
                    raw = inputs.get(rule.model)
                elif role == "clip":
                    raw = inputs.get(rule.clip) if rule.clip is not None else None
                else:
                    continue
                if is_link(raw):
                    push((str(raw[0]), raw[1], role, p, guessed))
                continue
            case Sampler() if role == "latent":
                if nid not in samplers:
                    samplers.add(nid)
                    passes.append(PassPlan())
                    at = len(passes) - 1
                    _claim(passes[at].fields, nid, inputs, rule.fields, guessed)
                    for name, to_role in rule.follow.items():
                        _follow(nxt, inputs, name, role if to_role == SAME else to_role, at, guessed)
            case Node():
                if rule.roles is None or role in rule.roles:
                    _claim(scope, nid, inputs, rule.fields, guessed)
                carried = rule.follow.keys() if rule.outputs is None else rule.outputs.get(index, ())
                for name in carried:
                    to_role = rule.follow.get(name, SAME)
                    _follow(nxt, inputs, name, role if to_role == SAME else to_role, p, guessed)
            case TextEncoder():
                if role in ("positive", "negative") and p >= 0:
                    parts = passes[p].texts.setdefault(role, [])
                    parts.extend((nid, inputs, name, None, None, guessed) for name in rule.text if name in inputs)
                    _claim(scope, nid, inputs, rule.fields, guessed)
                    _follow(nxt, inputs, rule.clip, "clip", p, guessed)
            case Switch():
                choice = choose(nid, rule)
                plan.switches.append((nid, rule, choice))
                if choice is not None:
                    _follow(nxt, inputs, choice.input, role, p, guessed or choice.guessed)
            case PassThrough():
                _follow(nxt, inputs, rule.outputs.get(index), role, p, guessed)
            case Compute():
                pass
            case _:
                for name in FALLBACK_FOLLOW.get(role, ()):
                    if is_link(inputs.get(name)):
                        _follow(nxt, inputs, name, role, p, guessed)
                        break
        # Pushed in reverse so the stack pops them in the order the rule lists them (depth-first).
        if nxt:
            if len(nxt) == 1:
                push(nxt[0])
            else:
                stack.extend(reversed(nxt))
    return plan


def _lora_fields(rule: Lora) -> dict[str, FieldSource]:
    """The fields of one ``loras`` entry, as the rule names their inputs."""
    item: dict[str, FieldSource] = {"name": rule.name, "strength_model": rule.strength_model}
    if rule.strength_clip is not None:
        item["strength_clip"] = rule.strength_clip
    return item


def walk_generation(
    prompt: Mapping[str, Any],
    saved_by: str,
    values: Values,
    rules: Mapping[str, Rule] = RULES,
) -> dict[str, Val]:
    """Every field reachable from ``saved_by``, as ``path -> Val``; ``values``' gaps left out."""
    return evaluate(plan_generation(prompt, saved_by, values.choose, rules), values)


def evaluate(plan: Plan, values: Values) -> dict[str, Val]:
    """The fields of a plan as ``values`` gives them, as ``path -> Val``; gaps left out."""
    top = {path: claimed(claim, values) for path, claim in plan.top.items()}
    passes = []
    for planned in plan.passes:
        sampling = _Pass()
        sampling.fields = {path: claimed(claim, values) for path, claim in planned.fields.items()}
        sampling.loras = [{k: claimed(c, values) for k, c in entry.items()} for entry in planned.loras]
        sampling.texts = {role: [claimed(c, values) for c in parts] for role, parts in planned.texts.items()}
        passes.append(sampling)
    return _flatten(top, passes)


def claimed(claim: Claim, values: Values) -> Val | None:
    """One claim's value from ``values`` (transformed, and flagged when reached through a guess)."""
    nid, _, name, transform, implied, guessed = claim
    if name is None:
        return mark_guessed(values.const(nid, implied), guessed)
    value = values.value(nid, name)
    if transform is not None:
        value = transformed(value, transform)
    return mark_guessed(value, guessed)


def transformed(value: Val | None, transform: Callable[[Any], Any]) -> Val | None:
    """``value`` normalised by an ``In`` source's transform (each item of a batch list); gaps and unknowns as they are."""
    if value is None or value.unknown is not None:
        return value
    out = [transform(v) for v in value.value] if isinstance(value.value, list) else transform(value.value)
    return msgspec.structs.replace(value, value=out)


def _follow(nxt: list[_Frame], inputs: Mapping[str, Any], name: str | None, role: str, p: int, guessed: bool) -> None:
    """Queue the node that input ``name`` links to, to be walked in ``role``."""
    raw = inputs.get(name) if name is not None else None
    if is_link(raw):
        nxt.append((str(raw[0]), raw[1], role, p, guessed))


def mark_guessed(value: Val | None, guessed: bool) -> Val | None:
    """``value`` flagged as reached through a guessed switch branch, when ``guessed``."""
    if value is None or not guessed or value.guessed:
        return value
    return msgspec.structs.replace(value, guessed=True)


def _claim(
    scope: dict[str, Claim],
    nid: str,
    inputs: Mapping[str, Any],
    fields: Mapping[str, FieldSource],
    guessed: bool,
) -> None:
    """Claim each field not yet claimed in ``scope``: the first node reached owns it."""
    for path, source in fields.items():
        if path in scope:
            continue
        if isinstance(source, Const):
            scope[path] = (nid, inputs, None, None, source.value, guessed)
        elif isinstance(source, In):
            if source.name in inputs:
                scope[path] = (nid, inputs, source.name, source.transform, None, guessed)
        elif source in inputs:
            # A claim with no value still blocks later nodes, so every view keeps the same owner.
            scope[path] = (nid, inputs, source, None, None, guessed)


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
            flat[prefix + polarity] = join_texts(parts)


def join_texts(parts: list[Val | None]) -> Val | None:
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


def parse_generation(prompt: Mapping[str, Any], saved_by: str, *, rules: Mapping[str, Rule] = RULES) -> dict[str, Any]:
    """``ai_info.generation`` for the save node ``saved_by`` from the prompt JSON alone."""
    return values_of(walk_generation(prompt, saved_by, StaticValues(prompt, rules), rules))
