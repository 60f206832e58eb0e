"""What the whole-run benchmarks share: the worst-case graph and the on/off report."""

from __future__ import annotations

import statistics
from typing import Any

#: A chain of this many trivial integer nodes: ComfyUI's cheapest nodes, capture's worst case.
N_NODES = 200


def chain(start: int, sink: str | None = None) -> dict[str, Any]:
    """The chain, its first value ``start`` (new each run, so no node is cached).

    ``sink``: an output node class to end it with (a server runs only prompts that have one).
    """
    prompt: dict[str, Any] = {"0": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": start, "b": 1, "op": "add"}}}
    for i in range(1, N_NODES):
        prompt[str(i)] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": [str(i - 1), 0], "b": 1, "op": "add"}}
    if sink is not None:
        prompt["sink"] = {"class_type": sink, "inputs": {"value": [str(N_NODES - 1), 0]}}
    return prompt


def report(benchmark: Any, off_ns: list[int], label: str) -> None:
    """Store and print the "on" rounds (the benchmark) against the "off" rounds timed beside them."""
    on_median = benchmark.stats.stats.median
    off_median = statistics.median(off_ns) / 1e9
    added = on_median - off_median
    benchmark.extra_info.update(
        nodes=N_NODES,
        off_median_ms=round(off_median * 1e3, 3),
        on_median_ms=round(on_median * 1e3, 3),
        ratio_on_to_off=round(on_median / off_median, 4),
        added_us_per_node=round(added / N_NODES * 1e6, 3),
        comfyui_us_per_node=round(off_median / N_NODES * 1e6, 2),
    )
    print(
        f"\n{label}{N_NODES}-node chain: off {off_median * 1e3:.2f} ms, on {on_median * 1e3:.2f} ms "
        f"(x{on_median / off_median:.3f}); capture adds {added / N_NODES * 1e6:.2f} us/node, "
        f"ComfyUI spends {off_median / N_NODES * 1e6:.1f} us/node"
    )
