"""The reconciler, made faster, gives exactly what it gave: every view, source, disagreement.

Images embed ``ai_info`` as the reconciler built it, and ``replay --check`` compares documents
byte for byte, so the reconciler may change how it computes, never what. ``oracle_generation``
holds the walk and the reconciler as they were before one walk served all three views (kept
verbatim). Hypothesis feeds both prompts (the example workflows rewired and extended, and
random graphs of every rule kind, with cycles, missing nodes and switches), runs of them
(cached, skipped, batch lists, cut texts, values that differ from the prompt's) and rule tables
with odd paths; results must be equal, and their JSON identical with and without sorted keys.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime_metadata.capture.summary import cut
from runtime_metadata.events.schema import (
    AnyEvent,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from runtime_metadata.projections.reconcile import reconcile
from runtime_metadata.projections.rules import RULES, SAME, Const, In, Lora, Node, Sampler, Switch, TextEncoder, extend
from runtime_metadata.projections.runtime import project
from runtime_metadata.projections.workflow import StaticValues, parse_generation, walk_generation
from runtime_metadata.prompt_graph import is_link

from . import oracle_generation as oracle
from .cases import WORKFLOWS, load

#: Input names per class, as the rules read them (and a few they ignore).
CLASSES: dict[str, tuple[str, ...]] = {
    "KSampler": (
        "seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "denoise",
        "model",
        "positive",
        "negative",
        "latent_image",
    ),
    "KSamplerAdvanced": (
        "noise_seed",
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "add_noise",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
        "model",
        "positive",
        "negative",
        "latent_image",
    ),
    "SamplerCustom": (
        "noise_seed",
        "cfg",
        "add_noise",
        "model",
        "positive",
        "negative",
        "sampler",
        "sigmas",
        "latent_image",
    ),
    "SamplerCustomAdvanced": ("noise", "guider", "sampler", "sigmas", "latent_image"),
    "CFGGuider": ("cfg", "model", "positive", "negative"),
    "DualCFGGuider": ("cfg_conds", "cfg_cond2_negative", "model", "cond1", "cond2", "negative"),
    "RandomNoise": ("noise_seed",),
    "DisableNoise": (),
    "KSamplerSelect": ("sampler_name",),
    "SamplerLMS": (),
    "BasicScheduler": ("scheduler", "steps", "denoise", "model"),
    "KarrasScheduler": ("steps",),
    "SplitSigmas": ("sigmas",),
    "CheckpointLoaderSimple": ("ckpt_name",),
    "VAELoader": ("vae_name",),
    "LoraLoader": ("lora_name", "strength_model", "strength_clip", "model", "clip"),
    "LoraLoaderModelOnly": ("lora_name", "strength_model", "model"),
    "CLIPSetLastLayer": ("stop_at_clip_layer", "clip"),
    "CLIPTextEncode": ("text", "clip"),
    "CLIPTextEncodeSDXL": ("text_g", "text_l", "clip"),
    "CLIPTextEncodeFlux": ("clip_l", "t5xxl", "guidance", "clip"),
    "FluxGuidance": ("guidance", "conditioning"),
    "ConditioningCombine": ("conditioning_1", "conditioning_2"),
    "ConditioningSetArea": ("conditioning",),
    "ControlNetApplyAdvanced": ("positive", "negative"),
    "EmptyLatentImage": ("width", "height", "batch_size"),
    "EmptyHunyuanLatentVideo": ("width", "height", "batch_size", "length"),
    "VAEEncode": ("pixels", "vae"),
    "VAEDecode": ("samples", "vae"),
    "LoadImage": ("image",),
    "SaveImageRuntimeMetadata": ("images", "filename_prefix"),
    "PreviewImage": ("images",),
    "PrimitiveInt": ("value",),
    "PrimitiveString": ("value",),
    "IntMathRuntimeMetadata": ("a", "b", "op"),
    "StringConcatenate": ("string_a", "string_b", "delimiter"),
    "SwitchRuntimeMetadata": ("select", "on_1", "on_2"),
    "LatentUpscale": ("samples", "width"),
    "Weird": ("images", "image", "samples", "model", "clip", "conditioning", "x", "y", "z"),
    "WeirdSwitch": ("pick", "a", "b"),
}
CLASS_NAMES = sorted(CLASSES)

LONG_TEXT = "a lighthouse at dusk, " * 12
LITERALS = st.one_of(
    st.integers(-3, 40),
    st.sampled_from([0.0, 1.0, 7.0, 7.5, 1e300, float("nan"), -0.0]),
    st.sampled_from(
        ["euler", "karras", "enable", "disable", "add", "max", "on_1", "", "20", LONG_TEXT, "x.safetensors"]
    ),
    st.booleans(),
    st.none(),
    st.builds(lambda: [1, 2, 3]),
    st.builds(lambda: {"type": "object"}),
)

#: Rule tables: the built-in one, and ones with paths that nest oddly or take the names the
#: walk itself writes (``loras``, ``positive``, ``passes``), digits, and a switch without a guess.
ODD_RULES = [
    RULES,
    extend(
        {
            "Weird": Node(
                fields={"sampler.seed": "x", "extra.deep.path": "y", "flag": Const(True), "clip_skip": In("z", repr)},
                follow={"images": "image", "samples": "latent", "model": "model", "clip": "clip"},
            ),
            "WeirdSwitch": Switch("pick", {1: "a", 2: "b"}, default=None, guess=None),
        }
    ),
    extend(
        {
            "Weird": Node(
                fields={"loras": "x", "positive": "y", "passes": "z"}, follow={"images": "image", "samples": SAME}
            ),
            "WeirdSwitch": Switch("pick", {1: "a"}, default="b", guess="b"),
        }
    ),
    extend(
        {
            "Weird": Node(fields={"sampler": "x", "sampler.steps": "y", "size.1": "z"}, follow={"images": "image"}),
            "CLIPTextEncode": TextEncoder(text=("text", "x"), fields={"size": "y"}),
        }
    ),
    extend(
        {
            "Weird": Sampler(fields={"sampler.seed": "x", "a[1]": "y"}, follow={"model": "model", "samples": "latent"}),
            "LoraLoader": Lora(strength_clip=None),
        }
    ),
]


@st.composite
def link_or_literal(draw: st.DrawFn, ids: list[str]) -> Any:
    if ids and draw(st.integers(0, 9)) < 6:
        return [draw(st.sampled_from(ids)), draw(st.sampled_from([0, 0, 0, 1, 2]))]
    return draw(LITERALS)


@st.composite
def random_prompt(draw: st.DrawFn) -> dict[str, Any]:
    """Nodes of every rule kind linking mostly to earlier nodes, sometimes later (cycles) or nowhere."""
    n = draw(st.integers(1, 24))
    prompt: dict[str, Any] = {}
    for i in range(n):
        class_type = draw(st.sampled_from(CLASS_NAMES))
        earlier = [str(j) for j in range(i)] or ["missing"]
        pool = earlier + (["missing", str(i + 1)] if draw(st.integers(0, 9)) == 0 else [])
        inputs = {}
        for name in CLASSES[class_type]:
            if draw(st.integers(0, 9)) == 0:
                continue  # an input missing altogether
            inputs[name] = draw(link_or_literal(pool))
        prompt[str(i)] = {"class_type": class_type, "inputs": inputs}
    save = str(n)
    prompt[save] = {
        "class_type": "SaveImageRuntimeMetadata",
        "inputs": {"images": [str(draw(st.integers(0, n - 1))), 0]},
    }
    return prompt


#: Classes spliced into a workflow's links: switches (the views may route them differently),
#: the odd tables' nodes, and nodes that pass a link on.
SPLICED = [
    "SwitchRuntimeMetadata",
    "SwitchRuntimeMetadata",
    "WeirdSwitch",
    "Weird",
    "Weird",
    "LoraLoader",
    "PrimitiveInt",
]


@st.composite
def rewired_workflow(draw: st.DrawFn) -> dict[str, Any]:
    """An example workflow with nodes spliced into its links, inputs rewired, literals changed, nodes added."""
    prompt = load(draw(st.sampled_from(sorted(p.stem for p in WORKFLOWS.glob("*.json")))))
    for k in range(draw(st.integers(0, 3))):
        links = sorted(
            (nid, name) for nid, node in prompt.items() for name, raw in node["inputs"].items() if is_link(raw)
        )
        if not links:
            break
        nid, name = draw(st.sampled_from(links))
        class_type = draw(st.sampled_from(SPLICED))
        ids = sorted(prompt)
        inputs = {n: draw(link_or_literal(ids)) for n in CLASSES[class_type]}
        carrier = draw(st.sampled_from([n for n in CLASSES[class_type] if n not in ("select", "pick")]))
        inputs[carrier] = prompt[nid]["inputs"][name]
        if "select" in inputs or "pick" in inputs:
            inputs["select" if "select" in inputs else "pick"] = draw(
                st.one_of(st.sampled_from([1, 2, 3, "x"]), link_or_literal(ids))
            )
        prompt[f"s{k}"] = {"class_type": class_type, "inputs": inputs}
        prompt[nid]["inputs"][name] = [f"s{k}", 0]
    ids = sorted(prompt)
    for k in range(draw(st.integers(0, 3))):
        class_type = draw(st.sampled_from(CLASS_NAMES))
        inputs = {name: draw(link_or_literal(ids)) for name in CLASSES[class_type]}
        prompt[f"n{k}"] = {"class_type": class_type, "inputs": inputs}
    ids = sorted(prompt)
    for _ in range(draw(st.integers(0, 3))):
        node = prompt[draw(st.sampled_from(ids))]
        if node["inputs"]:
            name = draw(st.sampled_from(sorted(node["inputs"])))
            node["inputs"][name] = draw(link_or_literal(ids))
    return prompt


PROMPTS = st.one_of(rewired_workflow(), random_prompt())


def save_nodes(prompt: dict[str, Any]) -> list[str]:
    return sorted(k for k, v in prompt.items() if v["class_type"] in ("SaveImageRuntimeMetadata", "PreviewImage"))


@st.composite
def a_run(draw: st.DrawFn, prompt: dict[str, Any]) -> list[AnyEvent]:
    """What a run of ``prompt`` could log: each node ran (as the prompt says or not), was cached, or not run."""
    events: list[AnyEvent] = [RunStarted("p", 1, 0, prompt, None, "ComfyUI test", "0.1.0")]
    t = 0
    order = draw(st.permutations(sorted(prompt)))
    for nid in order:
        node = prompt[nid]
        t += 10
        fate = draw(st.sampled_from(["ran", "ran", "ran", "ran", "cached", "cached_from", "skipped"]))
        if fate == "skipped":
            continue
        if fate.startswith("cached"):
            events.append(NodeCached(nid, node["class_type"], t, "earlier" if fate == "cached_from" else None))
            if fate == "cached":
                continue
        inputs: dict[str, list[Any]] = {}
        for name, raw in node["inputs"].items():
            how = draw(st.integers(0, 9))
            if how == 0:
                continue  # not recorded
            if is_link(raw) or how == 1:
                value = draw(st.one_of(LITERALS, st.builds(lambda: {"type": "object"})))
            else:
                value = raw
            if isinstance(value, str) and len(value) > 40 and draw(st.booleans()):
                value = cut(value, 30)  # as capture summarises a long text
            inputs[name] = [value] if draw(st.integers(0, 7)) else [value, draw(LITERALS)]
        if fate == "ran":
            events.append(NodeStarted(nid, node["class_type"], t))
        events.append(NodeInputs(nid, t + 1, inputs, 1))
        if fate == "ran":
            events.append(NodeFinished(nid, t + 5, "executed"))
    events.append(RunFinished(t + 10, "success"))
    return events


def encoded(value: Any) -> tuple[bytes, bytes]:
    """JSON as the document holds it (sorted keys) and in the order the dicts were built."""
    return msgspec.json.encode(value, order="sorted"), msgspec.json.encode(value)


def assert_same_reconciliation(prompt: dict[str, Any], state: Any, saved_by: str, rules: Any, list_index: Any) -> None:
    # Each gets its own copy: with a table whose paths collide, ``nest`` writes into values.
    try:
        expected = oracle.reconcile(
            copy.deepcopy(prompt), copy.deepcopy(state), saved_by, rules=rules, list_index=list_index
        )
    except Exception as exc:  # a rule table the old reconciler could not nest: the new one fails alike
        with pytest.raises(type(exc)):
            reconcile(copy.deepcopy(prompt), copy.deepcopy(state), saved_by, rules=rules, list_index=list_index)
        return
    got = reconcile(copy.deepcopy(prompt), copy.deepcopy(state), saved_by, rules=rules, list_index=list_index)
    assert got == expected
    assert encoded(got) == encoded(expected)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(PROMPTS, st.data())
def test_the_reconciler_equals_the_three_walk_oracle_on_generated_prompts_and_runs(prompt, data):
    rules = data.draw(st.sampled_from(ODD_RULES))
    saved_by = data.draw(st.sampled_from(save_nodes(prompt) + [data.draw(st.sampled_from(sorted(prompt)))]))
    list_index = data.draw(st.one_of(st.none(), st.integers(0, 2)))
    assert_same_reconciliation(prompt, None, saved_by, rules, None)
    state = project(None, data.draw(a_run(prompt)))
    assert_same_reconciliation(prompt, state, saved_by, rules, list_index)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(PROMPTS, st.data())
def test_the_walk_equals_the_oracles_walk_for_every_view(prompt, data):
    rules = data.draw(st.sampled_from(ODD_RULES))
    saved_by = data.draw(st.sampled_from(save_nodes(prompt)))
    state = project(None, data.draw(a_run(prompt)))
    ran = oracle.RuntimeValues(state)
    for values in (StaticValues(prompt, rules), ran, oracle.MergedValues(prompt, ran, rules)):
        assert walk_generation(prompt, saved_by, values, rules) == oracle.walk_generation(
            prompt, saved_by, values, rules
        )
    try:
        expected = oracle.values_of(oracle.walk_generation(prompt, saved_by, oracle.StaticValues(prompt, rules), rules))
    except Exception as exc:
        with pytest.raises(type(exc)):
            parse_generation(prompt, saved_by, rules=rules)
        return
    assert encoded(parse_generation(prompt, saved_by, rules=rules)) == encoded(expected)


def full_run(prompt: dict[str, Any], cached: set[str], overrides: dict[str, dict[str, Any]]) -> list[AnyEvent]:
    events: list[AnyEvent] = [RunStarted("p", 1, 0, prompt, None, "ComfyUI test", "0.1.0")]
    for i, (nid, node) in enumerate(prompt.items()):
        if nid in cached:
            events.append(NodeCached(nid, node["class_type"], i))
            continue
        inputs = {
            k: [overrides.get(nid, {}).get(k, {"type": "object"} if is_link(v) else v)]
            for k, v in node["inputs"].items()
        }
        events += [
            NodeStarted(nid, node["class_type"], i),
            NodeInputs(nid, i, inputs, 1),
            NodeFinished(nid, i + 1, "executed"),
        ]
    events.append(RunFinished(len(prompt) + 1, "success"))
    return events


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_every_example_workflow_reconciles_as_before(name):
    prompt = load(name)
    ids = sorted(prompt)
    runs = [
        full_run(prompt, set(), {}),
        full_run(prompt, set(ids[::3]), {}),
        full_run(prompt, set(ids[1::2]), {nid: {k: 3 for k in n["inputs"]} for nid, n in prompt.items()}),
    ]
    for saved_by in save_nodes(prompt):
        assert_same_reconciliation(copy.deepcopy(prompt), None, saved_by, RULES, None)
        for events in runs:
            assert_same_reconciliation(prompt, project(None, events), saved_by, RULES, None)
            assert_same_reconciliation(prompt, project(None, events), saved_by, RULES, 1)
    assert json.loads(json.dumps(prompt)) == load(name)  # nothing mutated the prompt
