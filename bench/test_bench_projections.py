"""Fold + reconcile of a 500-node run, beside the raw msgspec decode of the same events.

The graph is the worst case for the walk: every node lies on the save node's path (a chain of
490 LoRA loaders, each walked twice, as MODEL and as CLIP), and the walk runs three times
(parser, runtime, merged). Run: ``pytest bench/test_bench_projections.py --benchmark-only``;
events/second and the ratio to the decode baseline go to ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from runtime_metadata.events.schema import (
    AnyEvent,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from runtime_metadata.projections.reconcile import reconcile
from runtime_metadata.projections.runtime import project

N_LORAS = 490
SAVE = "save"
STRUCTURE = {"type": "object"}
_medians: dict[str, float] = {}


def _prompt() -> dict[str, Any]:
    def n(class_type: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": class_type, "inputs": inputs}

    prompt = {
        "ckpt": n("CheckpointLoaderSimple", ckpt_name="model.safetensors"),
        "skip": n("CLIPSetLastLayer", clip=["ckpt", 1], stop_at_clip_layer=-2),
        "base": n("PrimitiveInt", value=1000),
        "seed": n("IntMathRuntimeMetadata", a=["base", 0], b=7, op="add"),
    }
    model, clip = ["ckpt", 0], ["skip", 0]
    for i in range(N_LORAS):
        prompt[f"l{i}"] = n(
            "LoraLoader",
            model=model,
            clip=clip,
            lora_name=f"lora_{i}.safetensors",
            strength_model=0.5,
            strength_clip=0.25,
        )
        model, clip = [f"l{i}", 0], [f"l{i}", 1]
    prompt |= {
        "pos": n("CLIPTextEncode", text="a lighthouse at dusk, " * 20, clip=clip),
        "neg": n("CLIPTextEncode", text="blurry", clip=clip),
        "latent": n("EmptyLatentImage", width=1024, height=1024, batch_size=1),
        "ks": n(
            "KSampler",
            seed=["seed", 0],
            steps=30,
            cfg=6.5,
            sampler_name="dpmpp_2m",
            scheduler="karras",
            denoise=1.0,
            model=model,
            positive=["pos", 0],
            negative=["neg", 0],
            latent_image=["latent", 0],
        ),
        "decode": n("VAEDecode", samples=["ks", 0], vae=["ckpt", 2]),
        SAVE: n("SaveImageRuntimeMetadata", images=["decode", 0], filename_prefix="bench"),
    }
    assert len(prompt) == 500
    return prompt


def _events(prompt: dict[str, Any]) -> list[AnyEvent]:
    events: list[AnyEvent] = [RunStarted("p", 1, 0, prompt, None, "ComfyUI bench", "0.1.0")]
    for i, (nid, node) in enumerate(prompt.items()):
        inputs = {k: [STRUCTURE if isinstance(v, list) else v] for k, v in node["inputs"].items()}
        if nid == "ks":
            inputs["seed"] = [1007]
        events += [
            NodeStarted(nid, node["class_type"], i * 10),
            NodeInputs(nid, i * 10 + 1, inputs, 1),
            NodeFinished(nid, i * 10 + 5, "executed"),
        ]
    events.append(RunFinished(len(prompt) * 10, "success"))
    return events


@pytest.fixture(scope="module")
def run() -> tuple[dict[str, Any], list[AnyEvent]]:
    prompt = _prompt()
    return prompt, _events(prompt)


def _ratio(benchmark: Any, name: str, baseline: str, n_events: int) -> None:
    _medians[name] = benchmark.stats.stats.median
    benchmark.extra_info["events_per_second"] = round(n_events / benchmark.stats.stats.median)
    if baseline in _medians:
        ratio = _medians[name] / _medians[baseline]
        benchmark.extra_info["ratio_to_" + baseline] = round(ratio, 3)
        print(f"\n{name}: {ratio:.2f}x {baseline}")


def test_baseline_msgspec_decode_500_nodes(benchmark, run):
    """Baseline: msgspec decoding the same events from one msgpack array, nothing else."""
    _, events = run
    blob = msgspec.msgpack.encode(events)
    decoder = msgspec.msgpack.Decoder(list[AnyEvent])
    assert decoder.decode(blob) == events
    benchmark(decoder.decode, blob)
    _ratio(benchmark, "baseline_decode_500", "baseline_decode_500", len(events))


def test_fold_and_reconcile_500_nodes(benchmark, run):
    """Production path after decoding: fold the events, then parser + runtime + merged walks."""
    prompt, events = run

    def fold_and_reconcile() -> dict[str, Any]:
        return reconcile(prompt, project(None, events), SAVE)

    doc = benchmark(fold_and_reconcile)
    assert len(doc.generation["loras"]) == N_LORAS
    assert doc.generation["sampler"]["seed"] == 1007
    assert doc.disagreements == []
    _ratio(benchmark, "fold_and_reconcile_500", "baseline_decode_500", len(events))


def test_reconcile_only_500_nodes(benchmark, run):
    """The reconciler alone, on an already folded state (what a second save node pays)."""
    prompt, events = run
    state = project(None, events)
    benchmark(reconcile, prompt, state, SAVE)
    _ratio(benchmark, "reconcile_500", "baseline_decode_500", len(events))
