"""The history in a real PostgreSQL (Debian's, started for this module): issue 12's table.

| what | goal | here |
| --- | --- | --- |
| ingest, runs of 200 nodes, 4 concurrent writers (processes, one run per transaction) | >= 500 runs/s | ``runs_per_s`` |
| backfill from the logs into PostgreSQL | >= 200,000 events/s | ``events_per_s`` |
| runs page (50) with 100,000 runs from 8 workers | <= 50 ms | ``median_ms`` |
| p95 per class type over the last 10,000 runs, same history | <= 500 ms | ``median_ms`` |

CI runs the small variant (10,000 runs in the history); ``RTM_BENCH_LARGE=1`` the large one
(100,000 runs, 20 million node rows: tens of minutes to fill on 2 cores). Each figure is
reported beside a baseline measured in the same run (``extra_info``).
"""

from __future__ import annotations

import multiprocessing
import statistics
import time

import pytest
from sqlalchemy import text
from test_bench_history import CLASSES, LARGE, N_NODES, log_bytes, many_rows, run_events  # bench/ is on sys.path

from runtime_metadata.harness.postgres import PostgresServer
from runtime_metadata.history.rebuild import log_files, rebuild
from runtime_metadata.history.store import HistoryStore

WRITERS = 4
RUNS_PER_WRITER = 250 if LARGE else 60
HISTORY_RUNS = 100_000 if LARGE else 10_000


@pytest.fixture(scope="module")
def pg():
    server = PostgresServer().start()
    yield server
    server.destroy()


def _writer(url: str, worker: str, count: int, ready, go) -> None:
    rows = many_rows(count, prefix=worker)  # this writer's own worker id
    store = HistoryStore(url)
    store.count()  # connected before the clock starts
    ready.set()
    go.wait()
    for r in rows:  # as a live writer does: one run per transaction
        store.write([r])
    store.close()


def test_ingest_from_4_concurrent_writers(benchmark, pg):
    ctx = multiprocessing.get_context("fork")

    def setup():
        url = pg.create_database()
        HistoryStore(url).migrate()
        go = ctx.Event()
        readies = [ctx.Event() for _ in range(WRITERS)]
        procs = [
            ctx.Process(target=_writer, args=(url, f"w{n}", RUNS_PER_WRITER, readies[n], go)) for n in range(WRITERS)
        ]
        for p in procs:
            p.start()
        for r in readies:
            r.wait(120)
        return (procs, go, url), {}

    urls = []

    def run(procs, go, url):
        go.set()
        for p in procs:
            p.join(600)
        urls.append(url)

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    store = HistoryStore(urls[-1])
    assert store.count() == WRITERS * RUNS_PER_WRITER
    store.close()
    total = WRITERS * RUNS_PER_WRITER
    median = benchmark.stats.stats.median
    benchmark.extra_info.update(
        writers=WRITERS, runs=total, nodes_per_run=N_NODES, runs_per_s=round(total / median, 1), goal_runs_per_s=500
    )
    print(f"\nPostgreSQL ingest, {WRITERS} writers: {total / median:,.0f} runs/s of {N_NODES} nodes")


def test_backfill_from_logs_into_postgres(benchmark, pg, tmp_path):
    for i in range(300 if LARGE else 100):
        (tmp_path / f"run-{i}.rtlog").write_bytes(log_bytes(run_events(i)))
    paths = log_files(tmp_path)
    reports = []

    def setup():
        store = HistoryStore(pg.create_database())
        store.migrate()
        return (store,), {}

    cpu: list[float] = []

    def run(store):
        c = time.process_time()
        reports.append(rebuild(store, paths))
        cpu.append(time.process_time() - c)  # the plugin's CPU, not PostgreSQL's
        store.close()

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    events = reports[-1].events
    assert reports[-1].written == len(paths)
    median = benchmark.stats.stats.median
    per_cpu = events / statistics.median(cpu)
    benchmark.extra_info.update(
        runs=len(paths),
        events=events,
        events_per_s=round(events / median),
        events_per_cpu_s=round(per_cpu),
        goal_events_per_s=200_000,
    )
    print(f"\nbackfill into PostgreSQL: {events / median:,.0f} events/s ({per_cpu:,.0f} per CPU second of the writer)")


@pytest.fixture(scope="module")
def farm_history(pg):
    """HISTORY_RUNS runs of 200 nodes from 8 workers, in one PostgreSQL database."""
    store = HistoryStore(pg.create_database())
    store.migrate()
    batch = 1000
    for start in range(0, HISTORY_RUNS, batch):
        store.write(many_rows(batch, workers=8, first=start))
    with store.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    yield store
    store.close()


def _trivial_ms(store: HistoryStore) -> float:
    times = []
    for _ in range(50):
        t = time.perf_counter()
        with store.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def test_runs_page_with_many_runs_from_8_workers(benchmark, farm_history):
    base = _trivial_ms(farm_history)
    page = benchmark(farm_history.runs_page, limit=50, offset=0, worker="bench-3")
    assert len(page["runs"]) == 50 and page["total"] == HISTORY_RUNS // 8
    whole = farm_history.runs_page(limit=50)
    assert whole["total"] == HISTORY_RUNS
    median = benchmark.stats.stats.median * 1e3
    benchmark.extra_info.update(
        runs=HISTORY_RUNS, workers=8, median_ms=round(median, 3), trivial_ms=round(base, 3), goal_ms=50
    )


def test_p95_per_class_over_the_last_10000_runs(benchmark, farm_history):
    base = _trivial_ms(farm_history)
    cpu: list[float] = []

    def stats_timed():
        c = time.process_time()
        got = farm_history.stats(last=10_000)
        cpu.append(time.process_time() - c)
        return got

    stats = benchmark.pedantic(stats_timed, rounds=5, iterations=1)
    assert stats["runs"] == 10_000 and len(stats["classes"]) == len(CLASSES)
    median = benchmark.stats.stats.median * 1e3
    benchmark.extra_info.update(
        runs=HISTORY_RUNS, last=10_000, median_ms=round(median, 3), client_cpu_ms=round(statistics.median(cpu) * 1e3, 1),
        trivial_ms=round(base, 3), goal_ms=500,
    )  # fmt: skip
    print(
        f"\np95 per class over the last 10,000 runs: {median:.0f} ms ({statistics.median(cpu) * 1e3:.0f} ms of CPU here)"
    )
