"""Whole-run capture overhead on a real ComfyUI: capture on vs off, alternating in one process.

Worst case for capture: a chain of 200 trivial integer nodes (ComfyUI itself spends tens of
microseconds per such node). Each round runs the chain once with the hooks uninstalled (the
setup, timed separately) and once with them installed (the benchmarked call), so both see
the same machine state. Every run changes the first node's value, so no node is cached.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

N_NODES = 200
ROUNDS = 60


def chain(start: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {"0": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": start, "b": 1, "op": "add"}}}
    for i in range(1, N_NODES):
        prompt[str(i)] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": [str(i - 1), 0], "b": 1, "op": "add"}}
    return prompt


def test_chain_of_200_int_nodes_capture_on_vs_off(benchmark, comfy, monkeypatch) -> None:
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture = comfy.plugin.capture
    executor = comfy.executor
    last = str(N_NODES - 1)
    counter = iter(range(1, 10_000_000))
    off_ns: list[int] = []

    def run(prompt_id: str) -> None:
        executor.execute(chain(next(counter)), prompt_id, {}, [last])
        assert executor.success

    def off_round() -> tuple[tuple[Any, ...], dict[str, Any]]:
        capture.hooks.reset()  # originals restored: ComfyUI exactly as without the plugin
        t0 = time.perf_counter_ns()
        run("off")
        off_ns.append(time.perf_counter_ns() - t0)
        capture.install(comfy.execution, "bench")
        return (), {}

    def on_round() -> None:
        run("on")

    for _ in range(5):  # warm both paths
        off_round()
        on_round()
    off_ns.clear()
    benchmark.pedantic(on_round, setup=off_round, rounds=ROUNDS, iterations=1)
    capture.hooks.reset()

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
        f"\n{N_NODES}-node chain: off {off_median * 1e3:.2f} ms, on {on_median * 1e3:.2f} ms "
        f"(x{on_median / off_median:.3f}); capture adds {added / N_NODES * 1e6:.2f} us/node, "
        f"ComfyUI spends {off_median / N_NODES * 1e6:.1f} us/node"
    )
    # The run with capture really was captured (the benchmark measured what it claims).
    from runtime_metadata.events.log import read_log

    events = read_log(capture.STORE.get("on")).events
    assert sum(type(e).__name__ == "NodeInputs" for e in events) == N_NODES
