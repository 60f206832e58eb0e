"""Whole-run capture overhead on a real ComfyUI: capture on vs off, alternating in one process.

Worst case for capture: 200 trivial integer nodes, in chains of 10 (ComfyUI itself spends tens
of microseconds per such node; see ``overhead.CHAIN_LENGTH`` for why not one chain). Each round
runs the graph once with the hooks uninstalled (the
setup, timed separately) and once with them installed (the benchmarked call), so both see
the same machine state. Every run changes the chains' first values, so no node is cached.
"""

from __future__ import annotations

import time
from typing import Any

from overhead import N_NODES, chain, chain_ends, report, rounds_within  # bench/comfyui/overhead.py (on sys.path)

ROUNDS = 60
BUDGET_S = 60.0  # for the timed rounds, where a chain takes seconds (ComfyUI 0.3.64)


def test_chain_of_200_int_nodes_capture_on_vs_off(benchmark, comfy, monkeypatch) -> None:
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    capture = comfy.plugin.capture
    executor = comfy.executor
    ends = chain_ends()
    counter = iter(range(1, 10_000_000))
    off_ns: list[int] = []

    def run(prompt_id: str) -> None:
        executor.execute(chain(next(counter)), prompt_id, {}, ends)
        assert executor.success

    def off_round() -> tuple[tuple[Any, ...], dict[str, Any]]:
        capture.reset()  # originals restored: ComfyUI exactly as without the plugin
        t0 = time.perf_counter_ns()
        run("off")
        off_ns.append(time.perf_counter_ns() - t0)
        capture.install(comfy.execution, "bench")
        return (), {}

    def on_round() -> None:
        run("on")

    for _ in range(3):  # warm both paths
        off_round()
        t0 = time.perf_counter_ns()
        on_round()
        round_s = (time.perf_counter_ns() - t0) / 1e9 + off_ns[-1] / 1e9
    off_ns.clear()
    rounds = rounds_within(BUDGET_S, round_s, ROUNDS)
    benchmark.extra_info["rounds"] = rounds
    benchmark.pedantic(on_round, setup=off_round, rounds=rounds, iterations=1)
    capture.reset()

    report(benchmark, off_ns, "")
    # The run with capture really was captured (the benchmark measured what it claims).
    from runtime_metadata.events.log import read_log

    events = read_log(capture.STORE.get("on")).events
    assert sum(type(e).__name__ == "NodeInputs" for e in events) == N_NODES
