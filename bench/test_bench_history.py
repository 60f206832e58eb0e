"""The run history's own costs, without a server: rebuild from logs, ingest, and the route queries.

Each reports its figure (events/s, runs/s, ms) and a ratio to a baseline measured in the same
run (``extra_info``). Sizes: ``RTM_BENCH_LARGE=1`` runs the large variants (outside CI).

* rebuild: 200-node runs folded from their log files into SQLite (goal: 200,000 events/s),
  against reading the same files alone;
* ingest: one writer, runs of 200 nodes into SQLite, one transaction per run (reported);
* queries with 10,000 runs of 200 nodes: a runs page of 50 (goal: 20 ms) and the statistics
  per class type over the last 1,000 runs (goal: 200 ms), against a trivial query.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from pathlib import Path

import msgspec
import pytest

from runtime_metadata.events.log import MemoryLog, paused_gc, read_log
from runtime_metadata.events.schema import HookStats, NodeFinished, NodeInputs, NodeStarted, RunFinished, RunStarted
from runtime_metadata.history.rebuild import log_files, rebuild
from runtime_metadata.history.store import HistoryStore
from runtime_metadata.projections.history import RunRows, history_rows, run_id

LARGE = os.environ.get("RTM_BENCH_LARGE") == "1"
N_NODES = 200
#: Class types in a bench run (a real graph has a few dozen kinds of node).
CLASSES = [f"Class{i:02d}" for i in range(20)]
T0 = 1_760_000_000_000_000_000


def run_events(index: int, worker: str = "bench-1", rng: random.Random | None = None) -> list:
    """A 200-node run: each node's inputs, a duration from 5 us to 50 ms, cycling over 20 classes."""
    rng = rng or random.Random(index)
    prompt = {
        str(i): {"class_type": CLASSES[i % len(CLASSES)], "inputs": {"a": [str(i - 1), 0] if i else 1, "b": i}}
        for i in range(N_NODES)
    }
    events: list = [
        RunStarted(f"run-{index}", T0 + index * 10**9, 0, prompt, None, "ComfyUI bench", "0.1", {}, "c", worker)
    ]
    t = 1000
    for i in range(N_NODES):
        d = int(rng.lognormvariate(11, 1.2))  # median ~60 us, a long tail
        events += [
            NodeStarted(str(i), CLASSES[i % len(CLASSES)], t),
            NodeInputs(str(i), t, {"a": [i], "b": [i]}, 1),
            NodeFinished(str(i), t + d, "executed"),
        ]
        t += d + 500
    return [*events, HookStats(2 * N_NODES, 400_000, 9_000), RunFinished(t + 1000, "success")]


def log_bytes(events: list) -> bytes:
    log = MemoryLog()
    log.append(events[0])
    log.extend(events[1:-2])
    log.append(events[-2])
    log.append(events[-1])
    return log.to_bytes()


def many_rows(count: int, workers: int = 1, first: int = 0, prefix: str = "bench") -> list[RunRows]:
    """Runs ``first`` .. ``first + count - 1`` (distinct ids, starts, spread over ``workers``), built
    from a few folded templates: fast to make in the hundreds of thousands."""
    templates = [history_rows(run_events(i)) for i in range(8)]
    out = []
    for i in range(first, first + count):
        rows = templates[i % len(templates)]
        worker = f"{prefix}-{i % workers + 1}"
        started = T0 + i * 10**9
        run = msgspec.structs.replace(
            rows.run,
            run_id=run_id(worker, f"run-{i}", started),
            prompt_id=f"run-{i}",
            worker_id=worker,
            started_ns=started,
        )
        out.append(RunRows(run, rows.nodes, rows.classes))
    return out


@pytest.fixture(scope="module")
def log_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bench-logs")
    for i in range(400 if LARGE else 100):
        (folder / f"run-{i}.rtlog").write_bytes(log_bytes(run_events(i)))
    return folder


def test_rebuild_from_logs_into_sqlite(benchmark, log_folder, tmp_path):
    paths = log_files(log_folder)
    reads = []
    for _ in range(3):
        t = time.perf_counter()
        with paused_gc():
            events = sum(len(read_log(p.read_bytes()).events) for p in paths)
        reads.append(time.perf_counter() - t)
    counter = iter(range(1000))

    def setup():
        store = HistoryStore(f"sqlite:///{tmp_path}/r{next(counter)}.sqlite")
        store.migrate()
        return (store,), {}

    reports = []
    cpu: list[float] = []

    def run(store):
        c = time.process_time()
        reports.append(rebuild(store, paths))
        cpu.append(time.process_time() - c)  # this process's CPU: the figure without other load
        store.close()

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    assert all(r.written == len(paths) and r.events == events for r in reports)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        runs=len(paths),
        events=events,
        events_per_s=round(events / median),
        read_only_events_per_s=round(events / statistics.median(reads)),
        ratio_to_reading_alone=round(median / statistics.median(reads), 2),
        events_per_cpu_s=round(events / statistics.median(cpu)),
        goal_events_per_s=200_000,
    )
    print(
        f"\nrebuild: {events / median:,.0f} events/s ({len(paths)} runs of {N_NODES} nodes); reading alone {events / statistics.median(reads):,.0f}/s"
    )


def test_ingest_into_sqlite_from_one_writer(benchmark, tmp_path):
    rows = many_rows(200)
    counter = iter(range(1000))

    def setup():
        store = HistoryStore(f"sqlite:///{tmp_path}/i{next(counter)}.sqlite")
        store.migrate()
        return (store,), {}

    def run(store):
        for r in rows:  # as the live writer does with one run at a time
            store.write([r])
        store.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(runs=len(rows), nodes_per_run=N_NODES, runs_per_s=round(len(rows) / median, 1))
    print(f"\nSQLite ingest, one writer: {len(rows) / median:,.0f} runs/s of {N_NODES} nodes")


@pytest.fixture(scope="module")
def big_history(tmp_path_factory) -> HistoryStore:
    """10,000 runs of 200 nodes in SQLite (2 million node rows)."""
    store = HistoryStore(f"sqlite:///{tmp_path_factory.mktemp('big')}/h.sqlite")
    store.migrate()
    rows = many_rows(10_000)
    for i in range(0, len(rows), 500):
        store.write(rows[i : i + 500])
    yield store
    store.close()


def _trivial(store: HistoryStore) -> float:
    from sqlalchemy import text

    times = []
    for _ in range(50):
        t = time.perf_counter()
        with store.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def test_runs_page_of_50_with_10000_runs(benchmark, big_history):
    base = _trivial(big_history)
    page = benchmark(big_history.runs_page, limit=50, offset=100)
    assert len(page["runs"]) == 50 and page["total"] == 10_000
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        median_ms=round(median * 1e3, 3), trivial_ms=round(base * 1e3, 3), ratio=round(median / base, 1), goal_ms=20
    )


def test_stats_per_class_over_the_last_1000_of_10000_runs(benchmark, big_history):
    base = _trivial(big_history)
    stats = benchmark(big_history.stats, last=1000)
    assert stats["runs"] == 1000 and len(stats["classes"]) == len(CLASSES)
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        median_ms=round(median * 1e3, 3), trivial_ms=round(base * 1e3, 3), ratio=round(median / base, 1), goal_ms=200
    )
