"""Walking a prompt graph costs time linear in its nodes and links, whatever its shape.

A DAG in which one node feeds two inputs of the next (a diamond) is legal in ComfyUI and
appears in real graphs (a computed seed used twice). Following links without remembering
what was already computed doubles the work at every such node, so these tests build long
diamond chains and count the work done on node data, never wall time: a count of calls to
the rule's function (the parser) or of comparisons of node data (the cache signature).
Property tests check that the linear versions agree with simple recursive references on
small random DAGs.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import CodeType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_metadata.capture.carry import graph_signature
from runtime_metadata.events.schema import AnyEvent, NodeFinished, NodeStarted, RunStarted
from runtime_metadata.projections.document import build_document, parser_document
from runtime_metadata.projections.rules import RULES, Compute, PassThrough, Switch, extend, int_math
from runtime_metadata.projections.runtime import project, runtime_document
from runtime_metadata.projections.workflow import (
    COMPUTED_UPSTREAM,
    PARSER,
    UNFOLLOWABLE,
    Choice,
    StaticValues,
    Val,
    is_link,
    parse_generation,
    unknown_value,
    walk_generation,
)

from .cases import load
from .test_reconcile import run_events


class WorkBudgetExceeded(BaseException):
    """Raised from inside the code under test when it does more work than the bound allows.

    A BaseException, so the parser's ``except Exception`` around rule functions cannot swallow it.
    """


@contextmanager
def calls_bounded(code: CodeType, limit: int) -> Iterator[list[int]]:
    """Count calls of the function with ``code``; abort the code under test past ``limit``."""
    count = [0]

    def tracer(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is code:
            count[0] += 1
            if count[0] > limit:
                raise WorkBudgetExceeded(f"more than {limit} calls of {code.co_name}")

    sys.settrace(tracer)
    try:
        yield count
    finally:
        sys.settrace(None)


def diamond_chain(n: int, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """txt2img whose seed comes from ``n`` IntMath nodes, each taking both operands from the previous."""
    prompt = load("txt2img") if base is None else base
    prompt["100"] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": 7, "b": 0, "op": "add"}}
    for i in range(1, n):
        link = [str(99 + i), 0]
        prompt[str(100 + i)] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": link, "b": link, "op": "max"}}
    prompt["3"]["inputs"]["seed"] = [str(99 + n), 0]
    return prompt


# ---------------------------------------------------------------------------------------------
# The static parser


@pytest.mark.parametrize("n", [40, 2000])
def test_a_chain_of_diamonds_computes_each_node_once_in_the_static_parse(n):
    prompt = diamond_chain(n)
    with calls_bounded(int_math.__code__, n) as count:
        generation = parse_generation(prompt, "9")
    # Followed to the end however long the chain (no depth limit cuts a legal graph short).
    assert generation["sampler"]["seed"] == 7
    assert count[0] == n


def test_the_parser_document_capture_off_stays_linear():
    n = 300
    with calls_bounded(int_math.__code__, 2 * n):
        doc = parser_document(diamond_chain(n), "9", {"comfyui": "test"}, "0.1.0")
    assert doc.ai_info.generation["sampler"]["seed"] == 7


def test_the_save_nodes_document_capture_on_stays_linear():
    n = 300
    prompt = diamond_chain(n)
    events: list[AnyEvent] = run_events(prompt, resolved={"3": {"seed": 7}})
    # The parser view and the merged view each resolve the chain once.
    with calls_bounded(int_math.__code__, 3 * n):
        doc = build_document(events, "9")
    assert doc.ai_info.parser["sampler"]["seed"] == 7
    assert doc.ai_info.generation["sampler"]["seed"] == 7
    assert doc.ai_info.disagreements == []


def test_a_cycle_of_links_is_reported_as_unfollowable_not_looped():
    prompt = load("txt2img")
    prompt["100"] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": ["101", 0], "b": 1, "op": "add"}}
    prompt["101"] = {"class_type": "PrimitiveInt", "inputs": {"value": ["100", 0]}}
    prompt["3"]["inputs"]["seed"] = ["101", 0]
    value = StaticValues(prompt).value("3", "seed")
    assert value is not None
    assert value.unknown in (UNFOLLOWABLE, COMPUTED_UPSTREAM)
    assert value.value.startswith("unknown (linked from node 10")


# A simple reference: the link-following rules written as plain recursion, without memo.
# Exponential on diamonds, so only run on small graphs.


class NaiveValues:
    """What ``StaticValues`` answers, by direct recursion (the specification)."""

    def __init__(self, prompt: dict[str, Any], rules: Any = RULES) -> None:
        self.prompt = prompt
        self.rules = rules

    def _inputs(self, node_id: str) -> dict[str, Any]:
        node = self.prompt.get(node_id)
        inputs = node.get("inputs") if isinstance(node, dict) else None
        return inputs if isinstance(inputs, dict) else {}

    def value(self, node_id: str, name: str) -> Val | None:
        inputs = self._inputs(node_id)
        if name not in inputs:
            return None
        value, unknown, guessed = self.resolve(inputs[name])
        return Val(value, PARSER, (node_id,), unknown, guessed)

    def const(self, node_id: str, value: Any) -> Val | None:
        return Val(value, PARSER, (node_id,))

    def choose(self, node_id: str, rule: Switch) -> Choice | None:
        selected = self.value(node_id, rule.select)
        if selected is None or selected.unknown is not None:
            return Choice(rule.guess, True) if rule.guess is not None else None
        branch = rule.branch(selected.value)
        return Choice(branch, selected.guessed) if branch is not None else None

    def resolve(self, raw: Any) -> tuple[Any, str | None, bool]:
        if not is_link(raw):
            return raw, None, False
        src, index = str(raw[0]), raw[1]
        node = self.prompt.get(src)
        if not isinstance(node, dict):
            return unknown_value(src, None), UNFOLLOWABLE, False
        class_type = str(node.get("class_type", "?"))
        inputs = self._inputs(src)
        rule = self.rules.get(class_type)
        if isinstance(rule, PassThrough):
            name = rule.outputs.get(index)
            if name is not None and name in inputs:
                return self.resolve(inputs[name])
        elif isinstance(rule, Switch) and index == 0:
            choice = self.choose(src, rule)
            if choice is not None and choice.input in inputs:
                value, unknown, guessed = self.resolve(inputs[choice.input])
                return value, unknown, guessed or choice.guessed
        elif isinstance(rule, Compute) and index == 0:
            args, guessed, known = {}, False, True
            for name in rule.inputs:
                if name not in inputs:
                    known = False
                    break
                value, unknown, g = self.resolve(inputs[name])
                if unknown is not None:
                    known = False
                    break
                args[name] = value
                guessed = guessed or g
            if known:
                try:
                    return rule.fn(**args), None, guessed
                except Exception:
                    pass
        return unknown_value(src, class_type), COMPUTED_UPSTREAM, False


#: The value-carrying classes the parser follows, plus one it does not know.
VALUE_CLASSES = ["IntMathRuntimeMetadata", "PrimitiveInt", "SwitchRuntimeMetadata", "StringConcatenate", "Unknown"]


@st.composite
def value_dags(draw: st.DrawFn) -> dict[str, Any]:
    """Random value nodes ``v1..vN`` linking only to earlier ones (plus dangling links)."""
    n = draw(st.integers(1, 12))
    prompt: dict[str, Any] = {}

    def operand(i: int, literals: st.SearchStrategy[Any]) -> Any:
        choices = [literals, st.just(["missing", 0])]
        if i > 1:
            choices.append(st.builds(lambda j, out: [f"v{j}", out], st.integers(1, i - 1), st.sampled_from([0, 0, 1])))
        return draw(st.one_of(*choices))

    ints = st.integers(-3, 3) | st.sampled_from([1.0, 2.5, "x", True])
    for i in range(1, n + 1):
        class_type = draw(st.sampled_from(VALUE_CLASSES))
        if class_type == "IntMathRuntimeMetadata":
            ops = st.sampled_from(["add", "multiply", "max", "floor_divide", "bogus"])
            inputs = {"a": operand(i, ints), "b": operand(i, ints), "op": operand(i, ops)}
        elif class_type == "PrimitiveInt":
            inputs = {"value": operand(i, ints)}
        elif class_type == "SwitchRuntimeMetadata":
            inputs = {"select": operand(i, st.sampled_from([1, 2])), "on_1": operand(i, ints), "on_2": operand(i, ints)}
        elif class_type == "StringConcatenate":
            texts = st.sampled_from(["a", "b", 3])
            inputs = {"string_a": operand(i, texts), "string_b": operand(i, texts), "delimiter": operand(i, texts)}
        else:
            inputs = {"x": operand(i, ints)}
        # Now and then an input is missing altogether.
        if draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans()):
            inputs.pop(draw(st.sampled_from(sorted(inputs))))
        prompt[f"v{i}"] = {"class_type": class_type, "inputs": inputs}
    return prompt


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value_dags())
def test_static_values_agree_with_plain_recursion_on_random_dags(prompt):
    fast, naive = StaticValues(prompt), NaiveValues(prompt)
    for node_id, node in prompt.items():
        for name in node["inputs"]:
            assert fast.value(node_id, name) == naive.value(node_id, name)
        rule = RULES.get(node["class_type"])
        if isinstance(rule, Switch):
            assert fast.choose(node_id, rule) == naive.choose(node_id, rule)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value_dags(), st.data())
def test_the_whole_walk_agrees_with_plain_recursion_on_random_dags(values, data):
    prompt = load("txt2img")
    prompt.update(values)
    ids = sorted(values)
    sampler = prompt["3"]["inputs"]
    for name in ("seed", "steps", "cfg", "sampler_name"):
        if data.draw(st.booleans()):
            sampler[name] = [data.draw(st.sampled_from(ids)), 0]
    rules: Any = RULES
    assert walk_generation(prompt, "9", StaticValues(prompt, rules), rules) == walk_generation(
        prompt, "9", NaiveValues(prompt, rules), rules
    )


def test_a_custom_compute_rule_is_called_once_per_node_in_a_wide_diamond_lattice():
    # Every node links to both of the two nodes before it: a lattice of diamonds.
    calls = [0]

    def add(a: Any, b: Any) -> Any:
        calls[0] += 1
        if calls[0] > 10_000:
            raise WorkBudgetExceeded("the lattice was recomputed")
        return (a + b) % 1000

    rules: Any = extend({"Add": Compute(("a", "b"), add)})
    prompt: dict[str, Any] = {"0": {"class_type": "Add", "inputs": {"a": 1, "b": 0}}}
    prompt["1"] = {"class_type": "Add", "inputs": {"a": ["0", 0], "b": 1}}
    for i in range(2, 500):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": [str(i - 2), 0]}}
    value = StaticValues(prompt, rules).value("499", "a")
    assert value is not None and value.unknown is None
    assert calls[0] == 499  # nodes 0..498, each once
    expected = [1, 2]  # node 0 is 1 + 0, node 1 is node 0 + 1
    for _ in range(2, 499):
        expected.append((expected[-1] + expected[-2]) % 1000)
    assert value.value == expected[498]


# ---------------------------------------------------------------------------------------------
# The cache signature (runs on ComfyUI's executor thread, for every cached node)


class CountedStr(str):
    """A class type that counts how often it is compared or hashed."""

    counter = [0]
    limit = 10**9

    def _tick(self) -> None:
        CountedStr.counter[0] += 1
        if CountedStr.counter[0] > CountedStr.limit:
            raise WorkBudgetExceeded("node data compared more often than the bound")

    def __eq__(self, other: object) -> bool:
        self._tick()
        return str.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._tick()
        return str.__ne__(self, other)

    def __hash__(self) -> int:
        self._tick()
        return str.__hash__(self)


def counted_diamonds(n: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": {"class_type": CountedStr("PrimitiveInt"), "inputs": {"value": 1}}}
    for i in range(1, n):
        link = [str(i - 1), 0]
        prompt[str(i)] = {
            "class_type": CountedStr("IntMathRuntimeMetadata"),
            "inputs": {"a": link, "b": link, "op": "add"},
        }
    return prompt


def test_comparing_and_hashing_signatures_of_diamond_chains_is_linear():
    n = 60
    CountedStr.counter[0] = 0
    CountedStr.limit = 10 * n
    try:
        a = graph_signature(counted_diamonds(n), str(n - 1), {})
        b = graph_signature(counted_diamonds(n), str(n - 1), {})
        assert a == b
        assert hash(a) == hash(b)
        changed = counted_diamonds(n)
        changed["0"]["inputs"]["value"] = 2
        assert graph_signature(changed, str(n - 1), {}) != a
    finally:
        CountedStr.limit = 10**9


def test_a_signature_of_a_thousands_deep_chain_sees_a_change_at_its_root():
    # A depth cut would make two different graphs look alike (and wrongly carry inputs over).
    n = 5000
    prompt = {str(i): {"class_type": "PrimitiveInt", "inputs": {"value": [str(i - 1), 0]}} for i in range(1, n)}
    prompt["0"] = {"class_type": "PrimitiveInt", "inputs": {"value": 1}}
    other = {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in prompt.items()}
    other["0"]["inputs"]["value"] = 2
    assert graph_signature(prompt, str(n - 1), {}) != graph_signature(other, str(n - 1), {})
    assert graph_signature(prompt, str(n - 1), {}) == graph_signature(dict(prompt), str(n - 1), {})


def reference_signature(prompt: dict[str, Any], node_id: str, path: tuple[str, ...] = ()) -> Any:
    """A node and everything upstream, as nested tuples: the specification, by plain recursion."""
    node = prompt.get(node_id)
    if not isinstance(node, dict):
        return ("missing", node_id)
    if node_id in path:
        return ("cycle", node_id)
    items = []
    for name, value in sorted((node.get("inputs") or {}).items()):
        if isinstance(value, list) and len(value) == 2 and isinstance(value[1], int):
            items.append((name, "link", value[1], reference_signature(prompt, str(value[0]), (*path, node_id))))
        else:
            items.append((name, "value", repr(value)))
    return (node.get("class_type"), tuple(items))


def test_a_cycle_never_gives_a_signature_equal_to_anything():
    # ComfyUI refuses to run a cycle; carrying inputs over on such a graph would prove nothing.
    prompt = {
        "1": {"class_type": "A", "inputs": {"x": ["2", 0]}},
        "2": {"class_type": "A", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "A", "inputs": {"x": ["2", 0]}},
    }
    for node_id in ("1", "2", "3"):
        assert graph_signature(prompt, node_id, {}) != graph_signature(prompt, node_id, {})


@st.composite
def signature_dags(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(1, 9))
    prompt: dict[str, Any] = {}
    for i in range(n):
        inputs: dict[str, Any] = {}
        for name in draw(st.lists(st.sampled_from(["a", "b", "c"]), max_size=3, unique=True)):
            if i and draw(st.booleans()):
                inputs[name] = [str(draw(st.integers(0, i - 1))), draw(st.integers(0, 1))]
            else:
                inputs[name] = draw(st.sampled_from([0, 1, "x", 1.0, None, ["99", 0], [1, 2, 3]]))
        prompt[str(i)] = {"class_type": draw(st.sampled_from(["A", "B"])), "inputs": inputs}
    return prompt


@st.composite
def mutated(draw: st.DrawFn, prompt: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``prompt`` with maybe one node's class, literal or link changed, or renamed ids."""
    other = {k: {"class_type": v["class_type"], "inputs": dict(v["inputs"])} for k, v in prompt.items()}
    node_id = draw(st.sampled_from(sorted(other)))
    node = other[node_id]
    what = draw(st.sampled_from(["none", "class", "input"]))
    if what == "class":
        node["class_type"] = draw(st.sampled_from(["A", "B"]))
    elif what == "input" and node["inputs"]:
        # Links only to earlier nodes, so the graph stays a DAG as ComfyUI requires.
        earlier = [["missing", 0]] + [[str(j), out] for j in range(int(node_id)) for out in (0, 1)]
        name = draw(st.sampled_from(sorted(node["inputs"])))
        node["inputs"][name] = draw(st.sampled_from([0, 1, "x", *earlier]))
    return other


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_signatures_are_equal_exactly_when_the_reference_says_so(data):
    a = data.draw(signature_dags())
    b = data.draw(mutated(a))
    memo_a: dict[str, Any] = {}
    memo_b: dict[str, Any] = {}
    for node_id in sorted(a):
        expected = reference_signature(a, node_id) == reference_signature(b, node_id)
        assert (graph_signature(a, node_id, memo_a) == graph_signature(b, node_id, memo_b)) is expected


# ---------------------------------------------------------------------------------------------
# The runtime document's scope: nodes expanded from nodes expanded from a prompt node


class CountedNodes(dict):  # type: ignore[type-arg]
    """A run's node records that count every lookup (the work of deciding a node's scope)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lookups = 0

    def get(self, key: Any, default: Any = None) -> Any:
        self.lookups += 1
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self.lookups += 1
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.lookups += 1
        return super().__contains__(key)


def nested_expansion(depth: int) -> list[AnyEvent]:
    """A run whose node 2 expands into a node that expands into another, ``depth`` levels deep."""
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1}},
        "2": {"class_type": "Expanding", "inputs": {"x": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
        "4": {"class_type": "Elsewhere", "inputs": {}},
    }
    events: list[AnyEvent] = [RunStarted("p", 1, 0, prompt)]
    parent = "2"
    for level in range(depth):
        nid = f"2.{level}"
        events.append(NodeStarted(nid, "Inner", level, display_id="2", parent_id=parent))
        events.append(NodeFinished(nid, level + 1, "executed"))
        parent = nid
    # The same depth under a node that is not an ancestor of the save node: all out of scope.
    parent = "4"
    for level in range(depth):
        nid = f"4.{level}"
        events.append(NodeStarted(nid, "Inner", level, display_id="4", parent_id=parent))
        events.append(NodeFinished(nid, level + 1, "executed"))
        parent = nid
    return events


def test_the_scope_of_deeply_nested_expanded_nodes_costs_linear_work():
    depth = 400
    state = project(None, nested_expansion(depth))
    state.nodes = CountedNodes(state.nodes)
    doc = runtime_document(state, saved_by="3")
    assert [n["id"] for n in doc["nodes"]] == [f"2.{level}" for level in range(depth)]
    # Walking each node's parent chain anew is depth²/2 lookups per chain (160,000 here).
    assert state.nodes.lookups <= 4 * 2 * depth
