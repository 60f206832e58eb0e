"""Extraction rules: which input of which node class means what under ``ai_info.generation``.

One table, ``RULES``, maps a ComfyUI ``class_type`` to a rule. The static parser
(``projections.workflow``) and the runtime projection (``projections.reconcile``) walk the same
prompt graph with the same table; the first reads values from the prompt JSON, the second
from the inputs the run resolved, so the two can be compared field by field.

The walk starts at a save node and follows links upward. Every link is followed in a *role*,
which says what the walk is looking for on that side of the graph:

==========  ==============================================================================
image       pixels that end in the saved image (save node ``images``, image filters)
latent      the latent a sampler produced or started from (``VAEDecode.samples``)
source      pixels encoded into a latent (``VAEEncode.pixels``: img2img, pixel hires fix)
vae         the VAE that decoded the image
model       a sampler's model: LoRA loaders, model patches, the checkpoint
clip        a text encoder's CLIP: ``CLIPSetLastLayer`` (clip skip), LoRA loaders
positive    a sampler's positive conditioning  \\ polarity comes from the sampler input
negative    a sampler's negative conditioning  / the walk came through, never from titles
sampler     parts of a custom sampler: noise, guider, sampler and sigmas nodes
==========  ==============================================================================

Fields reached in the roles model, clip, positive, negative and sampler belong to the sampling
pass being described; fields reached in image, latent, source and vae belong to the whole
generation. Within a scope the first node the walk reaches claims a field (the walk is
depth-first in the order the rules list their inputs), so nearer nodes win.

Rule kinds (frozen dataclasses):

``Node(fields, follow, roles, outputs)``
    contributes ``fields`` and continues through the inputs named in ``follow``.
``Sampler(...)``
    a ``Node`` that starts a sampling pass when reached as a latent (KSampler and friends).
``Lora(name, strength_model, strength_clip)``
    one entry of ``loras`` when reached as a model; passes the CLIP through when reached as clip.
``TextEncoder(text, fields)``
    the prompt text of whichever polarity reached it.
``Switch(select, branches, default, guess)``
    continues through the input that the value of ``select`` picks.
``PassThrough(outputs)``
    output ``i`` *is* input ``outputs[i]`` (primitives, reroutes): values and the walk go through.
``Compute(inputs, fn)``
    output is ``fn(**inputs)``; the parser computes it when every input is known statically.

A field source is an input name, ``Const(value)`` (a value the class itself implies, such as
``KarrasScheduler`` meaning scheduler ``"karras"``) or ``In(name, transform)`` (an input
normalised the same way for both views). A class with no rule is walked through the input
named after the role (``FALLBACK_FOLLOW``), so model patches, latent upscales and most
conditioning nodes of other packs need no entry.

Extending for another node pack: build a new table and pass it as ``rules=`` to
``workflow.parse_generation`` / ``reconcile.reconcile``::

    from runtime_metadata.projections.rules import RULES, Node, PassThrough, Switch, extend

    my_rules = extend({
        # an alias: this sampler has KSampler's inputs
        "KSampler (Efficient)": RULES["KSampler"],
        # a loader with its own input name
        "UnetLoaderGGUF": Node(fields={"model": "unet_name"}, roles=frozenset({"model"})),
        # an integer primitive from another pack
        "Seed (rgthree)": PassThrough({0: "seed"}),
        # a selector whose inputs are input1, input2, ... picked by an INT "select"
        "ImpactSwitch": Switch("select", {i: f"input{i}" for i in range(1, 10)}, guess="input1"),
    })

``RULES`` itself is read-only, so one caller's additions never leak into another's.
Canonical field paths in use: ``model``, ``vae``, ``clip_skip``, ``guidance``,
``sampler.{name, scheduler, steps, cfg, seed, denoise, add_noise, start_step, end_step,
return_leftover_noise, cfg_cond2_negative, neg_scale}``, ``size.{width, height}``,
``batch_size``, ``frames``, ``init_image``; ``loras`` and ``positive``/``negative`` come from
the ``Lora`` and ``TextEncoder`` kinds. A new path is just a new string. Transforms get
whatever a source holds (an int, a batch list item, an unexpected string) and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

#: This package's own node classes, by the names ComfyUI knows them (``nodes.py`` registers them).
SAVE_NODE = "SaveImageRuntimeMetadata"
INT_MATH_NODE = "IntMathRuntimeMetadata"
SWITCH_NODE = "SwitchRuntimeMetadata"

SAME = "same"
"""A ``follow`` role meaning: keep the role (and polarity) the node was reached in."""

ROLES = frozenset({"image", "latent", "source", "vae", "model", "clip", "positive", "negative", "sampler"})
PASS_ROLES = frozenset({"model", "clip", "positive", "negative", "sampler"})
"""Roles whose fields describe one sampling pass rather than the whole generation."""


@dataclass(frozen=True)
class Const:
    """A field value implied by the node class itself, not read from an input."""

    value: Any


@dataclass(frozen=True)
class In:
    """An input whose value is normalised by ``transform`` (identically in both views)."""

    name: str
    transform: Callable[[Any], Any]


FieldSource = str | Const | In


@dataclass(frozen=True)
class Node:
    """A node that contributes ``fields`` and lets the walk continue through ``follow``."""

    fields: Mapping[str, FieldSource] = field(default_factory=dict)
    #: input name -> role to continue in (``SAME`` keeps the current role and polarity)
    follow: Mapping[str, str] = field(default_factory=dict)
    #: roles in which ``fields`` apply; None means any (a checkpoint names the model only as MODEL)
    roles: frozenset[str] | None = None
    #: output index -> the ``follow`` inputs that output carries; None means all of them
    outputs: Mapping[int, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Sampler(Node):
    """A node that denoises a latent: reached as a latent it starts a new sampling pass."""


@dataclass(frozen=True)
class Lora:
    """A LoRA loader: one ``loras`` entry on the model path, a pass-through on the CLIP path."""

    name: str = "lora_name"
    strength_model: str = "strength_model"
    strength_clip: str | None = "strength_clip"
    model: str = "model"
    clip: str | None = "clip"


@dataclass(frozen=True)
class TextEncoder:
    """A text encoder: its ``text`` inputs are the prompt of the polarity that reached it."""

    text: tuple[str, ...] = ("text",)
    fields: Mapping[str, FieldSource] = field(default_factory=dict)
    clip: str | None = "clip"


@dataclass(frozen=True)
class Switch:
    """A selector: the value of ``select`` picks the input the output comes from."""

    select: str
    branches: Mapping[Any, str]
    #: the input used for select values not in ``branches`` (None: the walk stops)
    default: str | None = None
    #: the input the parser follows when it cannot compute ``select`` (None: it stops)
    guess: str | None = None

    def branch(self, selected: Any) -> str | None:
        """The input that ``selected`` picks."""
        try:
            return self.branches.get(selected, self.default)
        except TypeError:  # an unhashable summary (a batch list) picks nothing
            return None


@dataclass(frozen=True)
class PassThrough:
    """A node whose output ``i`` is its input ``outputs[i]`` unchanged."""

    outputs: Mapping[int, str]


@dataclass(frozen=True)
class Compute:
    """A node whose output is ``fn(**inputs)``; ``fn`` must be pure and may raise."""

    inputs: tuple[str, ...]
    fn: Callable[..., Any]


Rule = Node | Sampler | Lora | TextEncoder | Switch | PassThrough | Compute

FALLBACK_FOLLOW: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "image": ("images", "image", "pixels"),
        "source": ("image", "images", "pixels"),
        "latent": ("samples", "latent", "latent_image"),
        "vae": ("vae",),
        "model": ("model",),
        "clip": ("clip",),
        "positive": ("positive", "conditioning", "conditioning_to", "conditioning_1"),
        "negative": ("negative", "conditioning", "conditioning_to", "conditioning_1"),
        "sampler": ("sigmas", "sampler"),
    }
)
"""For a class with no rule: the first of these inputs that is a link is followed, same role."""


def _int(value: Any) -> int:
    # ComfyUI's validation turns integral FLOAT/str widget values into int before the run.
    if isinstance(value, bool):
        raise TypeError("a boolean is not an INT operand")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    raise TypeError(f"not an INT: {value!r}")


#: ``IntMathRuntimeMetadata``'s operations, in the order its ``op`` widget lists them.
INT_MATH_OPS = ("add", "subtract", "multiply", "floor_divide", "modulo", "min", "max")


def int_math(a: Any, b: Any, op: Any) -> int:
    """What ``IntMathRuntimeMetadata`` returns: the node computes its output with this function."""
    x, y = _int(a), _int(b)
    if op == "add":
        return x + y
    if op == "subtract":
        return x - y
    if op == "multiply":
        return x * y
    if op == "floor_divide":
        return x // y if y else 0
    if op == "modulo":
        return x % y if y else 0
    if op == "min":
        return min(x, y)
    if op == "max":
        return max(x, y)
    raise ValueError(f"unknown op {op!r}")


def string_concatenate(string_a: Any, string_b: Any, delimiter: Any) -> str:
    """What ComfyUI's ``StringConcatenate`` returns."""
    if not all(isinstance(s, str) for s in (string_a, string_b, delimiter)):
        raise TypeError("StringConcatenate takes strings")
    return str(delimiter.join((string_a, string_b)))


def clip_skip(stop_at_clip_layer: Any) -> Any:
    """A1111's "Clip skip" from ComfyUI's ``stop_at_clip_layer`` (-2 means clip skip 2)."""
    if isinstance(stop_at_clip_layer, int) and not isinstance(stop_at_clip_layer, bool):
        return -stop_at_clip_layer
    return stop_at_clip_layer


def enabled(value: Any) -> Any:
    """``"enable"``/``"disable"`` as booleans, so KSamplerAdvanced and SamplerCustom agree."""
    if value == "enable":
        return True
    if value == "disable":
        return False
    return value


_KSAMPLER = {
    "sampler.name": "sampler_name",
    "sampler.scheduler": "scheduler",
    "sampler.steps": "steps",
    "sampler.cfg": "cfg",
}
_SAMPLER_INPUTS = {"model": "model", "positive": "positive", "negative": "negative"}
_SIZE = {"size.width": "width", "size.height": "height", "batch_size": "batch_size"}
_VIDEO_SIZE = {**_SIZE, "frames": "length"}
_MODEL_ONLY = frozenset({"model"})
_DECODE = Node(follow={"vae": "vae", "samples": "latent"})  # vae first: the last decode's VAE wins
_ENCODE = Node(follow={"pixels": "source"})
_SAVE = Node(follow={"images": "image"})
_CONDITIONING = Node(follow={"conditioning": SAME})
_PRIMITIVE = PassThrough({0: "value"})


def _scheduler(name: str, *fields: str) -> Node:
    return Node(fields={"sampler.scheduler": Const(name), **{f"sampler.{f}": f for f in fields}})


def _sampler_const(name: str) -> Node:
    return Node(fields={"sampler.name": Const(name)})


_RULES: dict[str, Rule] = {
    # Samplers
    "KSampler": Sampler(
        fields={**_KSAMPLER, "sampler.seed": "seed", "sampler.denoise": "denoise"},
        follow={**_SAMPLER_INPUTS, "latent_image": "latent"},
    ),
    "KSamplerAdvanced": Sampler(
        fields={
            **_KSAMPLER,
            "sampler.seed": "noise_seed",
            "sampler.add_noise": In("add_noise", enabled),
            "sampler.start_step": "start_at_step",
            "sampler.end_step": "end_at_step",
            "sampler.return_leftover_noise": In("return_with_leftover_noise", enabled),
        },
        follow={**_SAMPLER_INPUTS, "latent_image": "latent"},
    ),
    "SamplerCustom": Sampler(
        fields={
            "sampler.seed": "noise_seed",
            "sampler.cfg": "cfg",
            "sampler.add_noise": In("add_noise", enabled),
        },
        follow={
            **_SAMPLER_INPUTS,
            "sampler": "sampler",
            "sigmas": "sampler",
            "latent_image": "latent",
        },
    ),
    "SamplerCustomAdvanced": Sampler(
        follow={
            "noise": "sampler",
            "guider": "sampler",
            "sampler": "sampler",
            "sigmas": "sampler",
            "latent_image": "latent",
        },
    ),
    # Parts of a custom sampler: guiders, noise, sampler selection, sigmas
    "CFGGuider": Node(fields={"sampler.cfg": "cfg"}, follow=_SAMPLER_INPUTS),
    "BasicGuider": Node(follow={"model": "model", "conditioning": "positive"}),
    "DualCFGGuider": Node(
        fields={"sampler.cfg": "cfg_conds", "sampler.cfg_cond2_negative": "cfg_cond2_negative"},
        follow={"model": "model", "cond1": "positive", "cond2": "positive", "negative": "negative"},
    ),
    "PerpNegGuider": Node(fields={"sampler.cfg": "cfg", "sampler.neg_scale": "neg_scale"}, follow=_SAMPLER_INPUTS),
    "RandomNoise": Node(fields={"sampler.seed": "noise_seed", "sampler.add_noise": Const(True)}),
    "DisableNoise": Node(fields={"sampler.add_noise": Const(False)}),
    "KSamplerSelect": Node(fields={"sampler.name": "sampler_name"}),
    "SamplerEulerAncestral": _sampler_const("euler_ancestral"),
    "SamplerLMS": _sampler_const("lms"),
    "SamplerDPMPP_SDE": _sampler_const("dpmpp_sde"),
    "SamplerDPMPP_2M_SDE": _sampler_const("dpmpp_2m_sde"),
    "SamplerDPMPP_3M_SDE": _sampler_const("dpmpp_3m_sde"),
    "SamplerDPMPP_2S_Ancestral": _sampler_const("dpmpp_2s_ancestral"),
    "BasicScheduler": Node(
        fields={
            "sampler.scheduler": "scheduler",
            "sampler.steps": "steps",
            "sampler.denoise": "denoise",
        }
    ),
    "KarrasScheduler": _scheduler("karras", "steps"),
    "ExponentialScheduler": _scheduler("exponential", "steps"),
    "PolyexponentialScheduler": _scheduler("polyexponential", "steps"),
    "LaplaceScheduler": _scheduler("laplace", "steps"),
    "VPScheduler": _scheduler("vp", "steps"),
    "BetaSamplingScheduler": _scheduler("beta", "steps"),
    "SDTurboScheduler": _scheduler("sd_turbo", "steps", "denoise"),
    "AlignYourStepsScheduler": _scheduler("align_your_steps", "steps", "denoise"),
    "GITSScheduler": _scheduler("gits", "steps", "denoise"),
    "SplitSigmas": Node(follow={"sigmas": SAME}),
    "SplitSigmasDenoise": Node(follow={"sigmas": SAME}),
    "FlipSigmas": Node(follow={"sigmas": SAME}),
    # Models
    "CheckpointLoaderSimple": Node(fields={"model": "ckpt_name"}, roles=_MODEL_ONLY),
    "CheckpointLoader": Node(fields={"model": "ckpt_name"}, roles=_MODEL_ONLY),
    "unCLIPCheckpointLoader": Node(fields={"model": "ckpt_name"}, roles=_MODEL_ONLY),
    "ImageOnlyCheckpointLoader": Node(fields={"model": "ckpt_name"}, roles=_MODEL_ONLY),
    "UNETLoader": Node(fields={"model": "unet_name"}, roles=_MODEL_ONLY),
    "VAELoader": Node(fields={"vae": "vae_name"}, roles=frozenset({"vae"})),
    "LoraLoader": Lora(),
    "LoraLoaderModelOnly": Lora(strength_clip=None, clip=None),
    "CLIPSetLastLayer": Node(fields={"clip_skip": In("stop_at_clip_layer", clip_skip)}, follow={"clip": "clip"}),
    # Text encoders and conditioning
    "CLIPTextEncode": TextEncoder(),
    "CLIPTextEncodeSDXL": TextEncoder(text=("text_g", "text_l")),
    "CLIPTextEncodeSDXLRefiner": TextEncoder(),
    "CLIPTextEncodeSD3": TextEncoder(text=("clip_l", "clip_g", "t5xxl")),
    "CLIPTextEncodeFlux": TextEncoder(text=("clip_l", "t5xxl"), fields={"guidance": "guidance"}),
    "CLIPTextEncodeHunyuanDiT": TextEncoder(text=("bert", "mt5xl")),
    "FluxGuidance": Node(fields={"guidance": "guidance"}, follow={"conditioning": SAME}),
    "ConditioningCombine": Node(follow={"conditioning_1": SAME, "conditioning_2": SAME}),
    "ConditioningConcat": Node(follow={"conditioning_to": SAME, "conditioning_from": SAME}),
    "ConditioningAverage": Node(follow={"conditioning_to": SAME, "conditioning_from": SAME}),
    "ConditioningSetArea": _CONDITIONING,
    "ConditioningSetAreaPercentage": _CONDITIONING,
    "ConditioningSetAreaStrength": _CONDITIONING,
    "ConditioningSetMask": _CONDITIONING,
    "ConditioningSetTimestepRange": _CONDITIONING,
    "ConditioningZeroOut": _CONDITIONING,
    "ControlNetApply": _CONDITIONING,
    # Two conditioning outputs: output 0 carries the positive input, output 1 the negative.
    "ControlNetApplyAdvanced": Node(
        follow={"positive": SAME, "negative": SAME}, outputs={0: ("positive",), 1: ("negative",)}
    ),
    "ControlNetApplySD3": Node(
        follow={"positive": SAME, "negative": SAME}, outputs={0: ("positive",), 1: ("negative",)}
    ),
    # Latents
    "EmptyLatentImage": Node(fields=_SIZE),
    "EmptySD3LatentImage": Node(fields=_SIZE),
    "EmptyHunyuanLatentVideo": Node(fields=_VIDEO_SIZE),
    "EmptyLTXVLatentVideo": Node(fields=_VIDEO_SIZE),
    "EmptyMochiLatentVideo": Node(fields=_VIDEO_SIZE),
    "EmptyCosmosLatentVideo": Node(fields=_VIDEO_SIZE),
    "VAEEncode": _ENCODE,
    "VAEEncodeTiled": _ENCODE,
    "VAEEncodeForInpaint": _ENCODE,
    "VAEDecode": _DECODE,
    "VAEDecodeTiled": _DECODE,
    "LoadImage": Node(fields={"init_image": "image"}, roles=frozenset({"source"})),
    # Save nodes (where the walk starts)
    SAVE_NODE: _SAVE,
    "SaveImage": _SAVE,
    "PreviewImage": _SAVE,
    # Values: primitives, this plugin's helper nodes, string building
    "PrimitiveInt": _PRIMITIVE,
    "PrimitiveFloat": _PRIMITIVE,
    "PrimitiveString": _PRIMITIVE,
    "PrimitiveStringMultiline": _PRIMITIVE,
    "PrimitiveBoolean": _PRIMITIVE,
    INT_MATH_NODE: Compute(("a", "b", "op"), int_math),
    "StringConcatenate": Compute(("string_a", "string_b", "delimiter"), string_concatenate),
    # output = on_1 if select == 1 else on_2; the select widget defaults to 1, so that is the guess.
    SWITCH_NODE: Switch("select", {1: "on_1"}, default="on_2", guess="on_1"),
}

RULES: Mapping[str, Rule] = MappingProxyType(_RULES)
"""The built-in table (read-only); see ``extend`` for adding entries."""


def extend(extra: Mapping[str, Rule], base: Mapping[str, Rule] = RULES) -> Mapping[str, Rule]:
    """A new read-only table: ``base`` with ``extra`` added (``extra`` wins on a clash)."""
    return MappingProxyType({**base, **extra})
