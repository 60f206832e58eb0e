"""The static parser on DAGs full of diamonds, at 500, 1,000 and 2,000 nodes: time per node.

Half of each graph is a lattice of IntMath nodes feeding the sampler's seed (node i adds nodes
i-1 and i-2: every node closes a diamond), the other half a lattice of ConditioningCombine
nodes feeding the positive prompt, over two text encoders. Following links without memo costs
2^depth on such graphs; linear parsing keeps the time per node flat. ``extra_info`` has
``us_per_node`` and ``per_node_ratio_to_500`` (this size's time per node over the 500-node
graph's, measured in the same run). Run: ``pytest bench/test_bench_parser.py --benchmark-only``.
"""

from __future__ import annotations

from typing import Any

import pytest

from runtime_metadata.projections.reconcile import reconcile
from runtime_metadata.projections.workflow import parse_generation

SIZES = (500, 1000, 2000)
SAVE = "save"
_per_node: dict[tuple[str, int], float] = {}


def diamond_prompt(size: int) -> dict[str, Any]:
    """A txt2img graph of ``size`` nodes whose seed and positive prompt come through diamond lattices."""

    def n(class_type: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": class_type, "inputs": inputs}

    prompt: dict[str, Any] = {
        "ckpt": n("CheckpointLoaderSimple", ckpt_name="model.safetensors"),
        "neg": n("CLIPTextEncode", text="blurry", clip=["ckpt", 1]),
        "latent": n("EmptyLatentImage", width=512, height=512, batch_size=1),
        "t0": n("CLIPTextEncode", text="a lighthouse", clip=["ckpt", 1]),
        "t1": n("CLIPTextEncode", text="at dusk", clip=["ckpt", 1]),
        "v0": n("IntMathRuntimeMetadata", a=1, b=0, op="add"),
        "v1": n("IntMathRuntimeMetadata", a=["v0", 0], b=1, op="add"),
    }
    lattice = (size - len(prompt) - 4) // 2
    for i in range(2, lattice):
        prompt[f"v{i}"] = n("IntMathRuntimeMetadata", a=[f"v{i - 1}", 0], b=[f"v{i - 2}", 0], op="add")
        # Kept small: the value is checked, and Python's big integers would cost more than the walk.
        prompt[f"m{i}"] = n("IntMathRuntimeMetadata", a=[f"v{i}", 0], b=1000, op="modulo")
        prompt[f"v{i}"]["inputs"]["a"] = [f"m{i - 1}", 0] if i > 2 else ["v1", 0]
    prompt["c0"] = n("ConditioningCombine", conditioning_1=["t0", 0], conditioning_2=["t1", 0])
    prompt["c1"] = n("ConditioningCombine", conditioning_1=["c0", 0], conditioning_2=["t1", 0])
    i = 2
    while len(prompt) < size - 3:
        prompt[f"c{i}"] = n("ConditioningCombine", conditioning_1=[f"c{i - 1}", 0], conditioning_2=[f"c{i - 2}", 0])
        i += 1
    last_value = f"m{lattice - 1}"
    prompt["ks"] = n(
        "KSampler",
        seed=[last_value, 0],
        steps=20,
        cfg=7.0,
        sampler_name="euler",
        scheduler="normal",
        denoise=1.0,
        model=["ckpt", 0],
        positive=[f"c{i - 1}", 0],
        negative=["neg", 0],
        latent_image=["latent", 0],
    )
    prompt["decode"] = n("VAEDecode", samples=["ks", 0], vae=["ckpt", 2])
    prompt[SAVE] = n("SaveImageRuntimeMetadata", images=["decode", 0], filename_prefix="bench")
    assert len(prompt) == size
    return prompt


def expected_seed(prompt: dict[str, Any]) -> int:
    """The seed, computed in the lattice's own order (a plain loop, no graph walk)."""
    values: dict[str, int] = {}
    for nid, node in prompt.items():
        if node["class_type"] != "IntMathRuntimeMetadata":
            continue
        a, b = (values[x[0]] if isinstance(x, list) else x for x in (node["inputs"]["a"], node["inputs"]["b"]))
        values[nid] = a + b if node["inputs"]["op"] == "add" else a % b
    return values[prompt["ks"]["inputs"]["seed"][0]]


def _record(benchmark: Any, kind: str, size: int) -> None:
    per_node = benchmark.stats.stats.median / size
    _per_node[(kind, size)] = per_node
    benchmark.extra_info["us_per_node"] = round(per_node * 1e6, 3)
    # The fastest round too: on a shared machine the median moves with the neighbours' load.
    benchmark.extra_info["min_us_per_node"] = round(benchmark.stats.stats.min / size * 1e6, 3)
    if (kind, SIZES[0]) in _per_node:
        ratio = per_node / _per_node[(kind, SIZES[0])]
        benchmark.extra_info["per_node_ratio_to_500"] = round(ratio, 3)
        print(f"\n{kind} {size} nodes: {per_node * 1e6:.2f} us/node, x{ratio:.2f} the 500-node graph's")


@pytest.mark.parametrize("size", SIZES)
def test_static_parse_of_diamond_dags(benchmark, size: int) -> None:
    """``parse_generation``: the parser alone, as the save node runs it with capture off."""
    prompt = diamond_prompt(size)
    generation = benchmark(parse_generation, prompt, SAVE)
    assert generation["sampler"]["seed"] == expected_seed(prompt)
    assert generation["positive"] == "a lighthouse\nat dusk"
    _record(benchmark, "parse", size)


@pytest.mark.parametrize("size", SIZES)
def test_parser_document_of_diamond_dags(benchmark, size: int) -> None:
    """``reconcile`` without a run: what the save node embeds with capture off."""
    prompt = diamond_prompt(size)
    doc = benchmark(reconcile, prompt, None, SAVE)
    assert doc.generation["sampler"]["seed"] == expected_seed(prompt)
    _record(benchmark, "parser_document", size)
