"""The extraction rules: one read-only, extensible table for core nodes, in step with nodes.py."""

from __future__ import annotations

import pytest

from runtime_metadata.nodes import IntMathRuntimeMetadata
from runtime_metadata.projections.rules import (
    PASS_ROLES,
    ROLES,
    RULES,
    SAME,
    Compute,
    Const,
    In,
    Lora,
    Node,
    PassThrough,
    Sampler,
    Switch,
    TextEncoder,
    clip_skip,
    enabled,
    extend,
    int_math,
    string_concatenate,
)

REQUIRED = {
    Node: [
        "CheckpointLoaderSimple",
        "CheckpointLoader",
        "UNETLoader",
        "VAELoader",
        "CLIPSetLastLayer",
        "EmptyLatentImage",
        "EmptySD3LatentImage",
        "CFGGuider",
        "BasicGuider",
        "DualCFGGuider",
        "BasicScheduler",
        "KarrasScheduler",
        "KSamplerSelect",
        "RandomNoise",
        "VAEEncode",
        "VAEDecode",
        "ConditioningCombine",
        "ControlNetApplyAdvanced",
        "LoadImage",
    ],
    Sampler: ["KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"],
    Lora: ["LoraLoader", "LoraLoaderModelOnly"],
    TextEncoder: ["CLIPTextEncode", "CLIPTextEncodeSDXL", "CLIPTextEncodeSDXLRefiner"],
    Switch: ["SwitchRuntimeMetadata"],
    Compute: ["IntMathRuntimeMetadata"],
    PassThrough: ["PrimitiveInt", "PrimitiveString"],
}


@pytest.mark.parametrize(("kind", "class_type"), [(kind, ct) for kind, names in REQUIRED.items() for ct in names])
def test_the_table_covers_the_core_nodes_with_the_right_kind(kind, class_type):
    assert isinstance(RULES[class_type], kind)


def test_every_role_named_in_the_table_is_a_known_role():
    for class_type, rule in RULES.items():
        if isinstance(rule, Node):
            assert set(rule.follow.values()) <= ROLES | {SAME}, class_type
            assert rule.roles is None or rule.roles <= ROLES, class_type
            if rule.outputs is not None:
                assert {n for names in rule.outputs.values() for n in names} <= set(rule.follow)
    assert PASS_ROLES < ROLES


def test_the_samplers_map_their_widgets_to_the_canonical_fields():
    assert RULES["KSampler"].fields == {
        "sampler.name": "sampler_name",
        "sampler.scheduler": "scheduler",
        "sampler.steps": "steps",
        "sampler.cfg": "cfg",
        "sampler.seed": "seed",
        "sampler.denoise": "denoise",
    }
    advanced = RULES["KSamplerAdvanced"].fields
    assert advanced["sampler.seed"] == "noise_seed"
    assert advanced["sampler.start_step"] == "start_at_step"
    assert advanced["sampler.end_step"] == "end_at_step"
    assert advanced["sampler.add_noise"] == In("add_noise", enabled)
    assert RULES["KarrasScheduler"].fields == {
        "sampler.scheduler": Const("karras"),
        "sampler.steps": "steps",
    }
    assert RULES["RandomNoise"].fields["sampler.seed"] == "noise_seed"


def test_a_checkpoint_names_the_model_only_when_reached_as_a_model():
    # Reached through its CLIP or VAE output it must not claim "model" for that path.
    assert RULES["CheckpointLoaderSimple"].roles == frozenset({"model"})


#: (a, b) -> what each op gives, written out: the node and the parser both compute with int_math.
INT_MATH_CASES = {
    (17, 5): {"add": 22, "subtract": 12, "multiply": 85, "floor_divide": 3, "modulo": 2, "min": 5, "max": 17},
    (-17, 5): {"add": -12, "subtract": -22, "multiply": -85, "floor_divide": -4, "modulo": 3, "min": -17, "max": 5},
    (5, 0): {"add": 5, "subtract": 5, "multiply": 0, "floor_divide": 0, "modulo": 0, "min": 0, "max": 5},
    (2**40, 3): {
        "add": 2**40 + 3,
        "subtract": 2**40 - 3,
        "multiply": 3 * 2**40,
        "floor_divide": 366503875925,
        "modulo": 1,
        "min": 3,
        "max": 2**40,
    },
}


@pytest.mark.parametrize(("a", "b"), sorted(INT_MATH_CASES))
def test_the_int_math_node_and_the_parser_compute_the_same_values(a, b):
    expected = INT_MATH_CASES[(a, b)]
    assert tuple(expected) == IntMathRuntimeMetadata.OPS  # every op the node offers
    assert {op: IntMathRuntimeMetadata().compute(a, b, op)[0] for op in expected} == expected
    assert {op: int_math(a, b, op) for op in expected} == expected


def test_int_math_rejects_what_it_cannot_compute():
    with pytest.raises(ValueError):
        int_math(1, 2, "power")
    with pytest.raises(TypeError):
        int_math("1", 2, "add")
    with pytest.raises(TypeError):
        int_math(True, 2, "add")
    assert int_math(16.0, 4, "multiply") == 64  # ComfyUI's validation makes an integral FLOAT an INT


def test_the_switch_rule_mirrors_the_node_on_1_if_select_is_1_else_on_2():
    switch = RULES["SwitchRuntimeMetadata"]
    assert switch.select == "select"
    assert [switch.branch(s) for s in (1, 2, 0, 7, 1.0)] == ["on_1", "on_2", "on_2", "on_2", "on_1"]
    assert switch.branch([1, 2]) is None  # a batch list picks no single branch
    assert switch.guess == "on_1"


def test_transforms_normalise_values_for_both_views_alike():
    assert [clip_skip(v) for v in (-1, -2, -24, "x")] == [1, 2, 24, "x"]
    assert [enabled(v) for v in ("enable", "disable", True, False)] == [True, False, True, False]
    assert string_concatenate("a", "b", ", ") == "a, b"
    with pytest.raises(TypeError):
        string_concatenate("a", 1, "")


def test_the_table_is_read_only_and_extend_returns_a_new_one():
    with pytest.raises(TypeError):
        RULES["MyNode"] = Node()  # type: ignore[index]
    mine = extend({"KSampler (Efficient)": RULES["KSampler"], "Seed (rgthree)": PassThrough({0: "seed"})})
    assert mine["KSampler (Efficient)"] is RULES["KSampler"]
    assert "Seed (rgthree)" not in RULES
    with pytest.raises(TypeError):
        mine["x"] = Node()  # type: ignore[index]
    overridden = extend({"KSampler": Node()})
    assert overridden["KSampler"] == Node()
    assert isinstance(RULES["KSampler"], Sampler)
