"""The history: the fold from a log to rows, and the database that keeps them (real SQLite files).

The store tests form a contract suite over the backends: each runs on a SQLite file and, in
``test_history_postgres.py``, on a real PostgreSQL server.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading

import msgspec
import pytest
from sqlalchemy import create_engine, text

from runtime_metadata.events.log import write_log_file
from runtime_metadata.events.schema import (
    HookStats,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
    SavedImage,
)
from runtime_metadata.history.rebuild import fold_file, log_files, rebuild
from runtime_metadata.history.schema import SCHEMA_VERSION, SchemaTooNew
from runtime_metadata.history.store import HistoryStore
from runtime_metadata.projections.history import NodeRow, bucket, bucket_value, history_rows, run_id

from .conftest import run_events

T0 = 1_700_000_000_000_000_000


def chain_run(
    prompt_id: str,
    worker: str | None = "w1",
    start: int = T0,
    durations: list[int] | None = None,
    status: str = "success",
    class_type: str = "Add",
    finished: bool = True,
) -> list:
    """A run of a chain of nodes, each taking the given duration (ns), one after the other."""
    durations = durations or [1000, 2000, 3000]
    prompt = {str(i + 1): {"class_type": class_type, "inputs": {"a": i}} for i in range(len(durations))}
    events: list = [RunStarted(prompt_id, start, 0, prompt, None, "ComfyUI t", "0.1.0", {}, "c1", worker)]
    t = 100
    for i, d in enumerate(durations):
        nid = str(i + 1)
        events += [
            NodeStarted(nid, class_type, t),
            NodeInputs(nid, t, {"a": [i]}, 1),
            NodeFinished(nid, t + d, "executed"),
        ]
        t += d + 10
    if finished:
        events += [HookStats(2 * len(durations), 500, 40), RunFinished(t, status)]
    return events


# --------------------------------------------------------------------------- the fold


def test_a_runs_rows_say_what_the_log_says():
    events = run_events()
    events[0] = msgspec.structs.replace(events[0], client_id="tab-1", worker_id="gpu-7")
    events[-1] = RunFinished(2_100_000, "success", images=[SavedImage("4", "t_00001_.png", "", "output", "/o/t.png")])
    rows = history_rows(events, log_name="p-1.rtlog")
    run = rows.run
    assert run.run_id == run_id("gpu-7", "p-1", T0)
    assert (run.worker_id, run.prompt_id, run.client_id, run.status) == ("gpu-7", "p-1", "tab-1", "success")
    assert (run.started_ns, run.finished_ns, run.wall_ns) == (T0, T0 + 2_099_000, 2_099_000)
    assert (run.nodes_executed, run.nodes_cached, run.nodes_failed) == (3, 1, 0)
    assert (run.hook_ns, run.hook_calls, run.events, run.log_name) == (4_600, 9, 13, "p-1.rtlog")
    assert run.images == [
        {"node_id": "4", "path": "/o/t.png", "filename": "t_00001_.png", "subfolder": "", "type": "output"}
    ]
    assert [s["node_id"] for s in run.saves] == ["4"]
    assert set(run.saves[0]) == {"node_id", "generation", "disagreements"}
    assert rows.nodes[0] == NodeRow(
        0, "3", None, None, "CheckpointLoaderSimple", "cached", None, None, None, None, None, None, None
    )
    assert rows.nodes[2] == NodeRow(
        2, "2", None, None, "EmptyImage", "executed", 1_000_000, 3_000, 1,
        {"batch_size": 1, "color": 0, "height": 48, "width": 64}, None, None, None,
    )  # fmt: skip
    assert [(c.class_type, c.nodes, c.count, c.total_ns, c.max_ns) for c in rows.classes] == [
        ("CheckpointLoaderSimple", 1, 0, 0, 0),
        ("EmptyImage", 1, 1, 1_000_000, 1_000_000),
        ("IntMathRuntimeMetadata", 1, 1, 1_000, 1_000),
        ("SaveImageRuntimeMetadata", 1, 1, 1_000_000, 1_000_000),
    ]
    assert rows.classes[1].buckets == [bucket(1_000_000)]


def test_a_log_that_does_not_name_its_worker_takes_the_one_given():
    rows = history_rows(run_events(), worker_id="from-cli")
    assert rows.run.worker_id == "from-cli" and rows.run.client_id is None


def test_the_fold_is_pure_and_a_log_without_a_start_has_no_rows():
    events = chain_run("p")
    assert history_rows(events, "w") == history_rows(list(events), "w")
    assert history_rows(events[1:], "w") is None


def test_a_log_cut_short_is_a_running_run_with_what_it_has():
    rows = history_rows(chain_run("p", durations=[5, 6], finished=False))
    assert rows.run.status == "running" and rows.run.finished_ns is None and rows.run.wall_ns is None
    assert [n.status for n in rows.nodes] == ["executed", "executed"]


@pytest.mark.parametrize("ns", [1, 2, 999, 1000, 123_456, 10**9, 3_600 * 10**9])
def test_a_bucket_stands_for_its_durations_within_1_1_percent(ns):
    assert abs(bucket_value(bucket(ns)) - ns) / ns <= 0.0109
    assert bucket(0) == -1 and bucket_value(-1) == 0.0


# --------------------------------------------------------------------------- the store contract


class StoreContract:
    """What every history backend must do; subclasses provide ``make_store``."""

    @pytest.fixture
    def store(self, request) -> HistoryStore:
        store = self.make_store(request)
        store.migrate()
        yield store
        store.close()

    def make_store(self, request) -> HistoryStore:  # pragma: no cover
        raise NotImplementedError

    def test_migration_creates_the_schema_once(self, store):
        assert store.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
        with store.connect() as conn:
            assert conn.execute(text("SELECT version FROM rtm_schema")).scalar() == SCHEMA_VERSION

    def test_a_database_migrated_by_a_newer_plugin_is_refused_untouched(self, store):
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE rtm_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
        with pytest.raises(SchemaTooNew, match="update the plugin"):
            store.migrate()

    def test_writing_is_idempotent_by_run(self, store):
        rows = [history_rows(chain_run(f"p{i}", start=T0 + i)) for i in range(5)]
        assert store.write(rows) == 5
        assert store.write(rows) == 0
        assert store.write(list(reversed(rows[:2]))) == 0
        assert store.count() == 5
        with store.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM rtm_nodes")).scalar() == 15

    def test_a_longer_log_of_the_same_run_replaces_a_partial_one(self, store):
        partial = history_rows(chain_run("p", durations=[5, 6, 7], finished=False)[:5])
        assert store.write([partial]) == 1
        assert store.run("p")["status"] == "running" and len(store.run("p")["nodes"]) == 2
        whole = history_rows(chain_run("p", durations=[5, 6, 7]))
        assert store.write([partial]) == 0
        assert store.write([whole]) == 1
        got = store.run("p")
        assert got["status"] == "success" and len(got["nodes"]) == 3
        assert store.count() == 1

    def test_two_workers_with_one_prompt_id_and_one_worker_running_an_id_twice_keep_every_run(self, store):
        a = history_rows(chain_run("same", worker="a", durations=[1_000_000]))
        b = history_rows(chain_run("same", worker="b", durations=[2_000_000]))
        a_again = history_rows(chain_run("same", worker="a", start=T0 + 5, durations=[3_000_000]))
        assert store.write([a, b]) == 2
        assert store.write([a_again]) == 1
        assert store.count() == 3
        assert store.run("same", worker="b")["nodes"][0]["duration_ms"] == 2.0
        newest_a = store.run("same", worker="a")
        assert newest_a["nodes"][0]["duration_ms"] == 3.0 and newest_a["runs_with_this_prompt_id"] == 2
        older = store.run("same", worker="a", run_id=a.run.run_id)
        assert older["nodes"][0]["duration_ms"] == 1.0 and older["run_id"] == str(a.run.run_id)
        assert store.workers() == ["a", "b"]

    def test_the_runs_page_is_newest_first_filtered_and_counted(self, store):
        rows = []
        for i in range(30):
            status = "error" if i % 3 == 0 else "success"
            worker = "w2" if i % 2 else "w1"
            ct = "Special" if i % 5 == 0 else "Add"
            rows.append(history_rows(chain_run(f"p{i}", worker, T0 + i * 1000, status=status, class_type=ct)))
        random.Random(1).shuffle(rows)
        store.write(rows)
        page = store.runs_page(limit=4, offset=2)
        assert [r["prompt_id"] for r in page["runs"]] == ["p27", "p26", "p25", "p24"]
        assert (page["total"], page["limit"], page["offset"]) == (30, 4, 2)
        errors = store.runs_page(limit=50, status="error")
        assert [r["prompt_id"] for r in errors["runs"]] == [f"p{i}" for i in range(27, -1, -3)]
        assert errors["total"] == 10
        special_w1 = store.runs_page(class_type="Special", worker="w1")
        assert [r["prompt_id"] for r in special_w1["runs"]] == ["p20", "p10", "p0"] and special_w1["total"] == 3
        assert store.runs_page(class_type="Nothing")["total"] == 0
        first = page["runs"][0]
        assert first["started_at"] == "2023-11-14T22:13:20.000Z".replace("Z", "+00:00")
        # Three nodes of 1, 2 and 3 µs, 10 ns apart, from 100 ns after the start: 6.13 µs.
        assert first["wall_ms"] == 0.006 and first["nodes_executed"] == 3

    def test_a_run_has_its_nodes_in_order_with_inputs_and_its_saves(self, store):
        store.write([history_rows(run_events(), "w1", "p-1.rtlog")])
        got = store.run("p-1")
        assert [(n["node_id"], n["status"], n["duration_ms"], n["start_ms"]) for n in got["nodes"]] == [
            ("3", "cached", None, None),
            ("1", "executed", 0.001, 0.001),
            ("2", "executed", 1.0, 0.003),
            ("4", "executed", 1.0, 1.004),
        ]
        assert got["nodes"][2]["inputs"] == {"batch_size": 1, "color": 0, "height": 48, "width": 64}
        assert got["saves"][0]["node_id"] == "4" and got["log_name"] == "p-1.rtlog"
        assert store.run("nope") is None and store.run("p-1", worker="other") is None

    def test_stats_per_class_are_within_a_bucket_of_the_exact_percentiles(self, store):
        rng = random.Random(7)
        runs, everything = [], {"A": [], "B": []}
        for i in range(40):
            da = [rng.randint(1_000, 5_000_000) for _ in range(6)]
            db = [rng.randint(10, 900) for _ in range(3)]
            everything["A"] += da
            everything["B"] += db
            events = chain_run(f"a{i}", start=T0 + 2 * i, durations=da, class_type="A")
            runs.append(history_rows(events))
            runs.append(history_rows(chain_run(f"b{i}", start=T0 + 2 * i + 1, durations=db, class_type="B")))
        store.write(runs)
        got = store.stats(last=1000)
        assert got["runs"] == 80
        by_class = {c["class_type"]: c for c in got["classes"]}
        for ct, values in everything.items():
            values.sort()
            row = by_class[ct]
            assert row["count"] == len(values) and row["max_ms"] == round(values[-1] / 1e6, 3)
            for p, key in ((0.5, "p50_ms"), (0.95, "p95_ms")):
                exact = values[math.ceil(p * len(values)) - 1] / 1e6
                assert abs(row[key] - exact) <= exact * 0.011 + 0.0005, (ct, key, row[key], exact)
        only_b = store.stats(last=10, class_type="B")
        assert [c["class_type"] for c in only_b["classes"]] == ["B"] and only_b["classes"][0]["count"] == 15
        assert store.stats(last=1000, worker="nobody") == {"classes": [], "runs": 0}

    def test_retention_drops_a_workers_oldest_runs_and_their_nodes(self, store):
        store.write([history_rows(chain_run(f"p{i}", "w1", T0 + i)) for i in range(10)])
        store.write([history_rows(chain_run("other", "w2"))])
        assert store.prune("w1", keep=4) == 6
        assert store.prune("w1", keep=0) == 0  # 0 keeps everything
        assert [r["prompt_id"] for r in store.runs_page(worker="w1")["runs"]] == ["p9", "p8", "p7", "p6"]
        assert store.count("w2") == 1
        with store.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM rtm_nodes")).scalar() == 5 * 3
            assert conn.execute(text("SELECT count(*) FROM rtm_run_classes")).scalar() == 5

    def test_rebuild_from_logs_gives_the_rows_of_the_runs_written_directly(self, store, tmp_path):
        folder = tmp_path / "logs"
        folder.mkdir()
        expected = []
        for i in range(12):
            events = chain_run(f"r{i}", "w1", T0 + i, durations=[i + 1, 2 * i + 1])
            write_log_file(folder / f"r{i}.rtlog", events)
            expected.append(history_rows(events, None, f"r{i}.rtlog"))
        (folder / "junk.rtlog").write_bytes(b"not a log, whatever it is")
        report = rebuild(store, log_files(folder))
        assert (report.files, report.runs, report.written, report.events) == (
            13,
            12,
            12,
            12 * 9,
        )  # a start, 3 events per node, stats, the end
        assert report.problems == ["junk.rtlog: skipped (not a runtime-metadata log: bad magic bytes)"]
        assert dump(store) == dump_rows(expected)
        again = rebuild(store, log_files(folder))
        assert again.written == 0 and store.count() == 12


def test_rebuild_refuses_a_fifo_among_its_logs_instead_of_blocking(tmp_path):
    # A FIFO named like a log (or a device) must cost one problem line, never a stalled rebuild.
    fifo = tmp_path / "stuck.rtlog"
    os.mkfifo(fifo)
    good = tmp_path / "good.rtlog"
    write_log_file(good, chain_run("g"))
    done: list = []
    worker = threading.Thread(target=lambda: done.append(fold_file(fifo, None)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # the old reader blocks opening the FIFO: release it before failing
        with open(fifo, "wb"):
            pass
        worker.join(timeout=10)
        pytest.fail("fold_file blocked on a FIFO")
    assert done == [(None, "stuck.rtlog: skipped (not a runtime-metadata log: not a regular file)")]
    rows, problem = fold_file(good, None)
    assert problem is None and rows is not None and rows.run.prompt_id == "g"


def dump(store: HistoryStore) -> dict:
    """Every row of every table, in a comparable form (the stored JSON decoded)."""
    out = {}
    with store.connect() as conn:
        for table, order in (
            ("rtm_runs", "id"),
            ("rtm_nodes", "run_id, seq"),
            ("rtm_run_classes", "run_id, class_type"),
        ):
            rows = [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY {order}"))]
            for row in rows:
                for key in ("images", "saves", "inputs", "buckets"):
                    if row.get(key) is not None:
                        row[key] = json.loads(row[key])
            out[table] = rows
    return out


def dump_rows(rows: list) -> dict:
    """What ``dump`` gives for a store holding exactly ``rows``, written into a scratch SQLite."""
    scratch = HistoryStore("sqlite://")
    scratch.migrate()
    scratch.write(rows)
    try:
        return dump(scratch)
    finally:
        scratch.close()


def test_a_version_1_history_is_migrated_with_its_histograms(tmp_path):
    from runtime_metadata.history import schema

    store = HistoryStore(f"sqlite:///{tmp_path}/v1.sqlite")
    rows = history_rows(chain_run("p", durations=[1000, 1000, 5000]))
    with store.engine.begin() as conn:  # what version 1 wrote: [bucket, count] pairs
        schema.metadata.create_all(conn, tables=[schema.schema_table])
        schema._v1(conn)
        conn.execute(schema.schema_table.insert(), {"version": 1})
    store.write([rows])
    pairs = [bucket(1000), 2, bucket(5000), 1]
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE rtm_run_classes SET buckets = :b"), {"b": json.dumps(pairs)})
    assert store.migrate() == (1, SCHEMA_VERSION)
    with store.connect() as conn:
        assert json.loads(conn.execute(text("SELECT buckets FROM rtm_run_classes")).scalar()) == rows.classes[0].buckets
    assert store.stats()["classes"][0]["count"] == 3
    store.close()


class TestSQLite(StoreContract):
    def make_store(self, request) -> HistoryStore:
        tmp = request.getfixturevalue("tmp_path")
        return HistoryStore(f"sqlite:///{tmp}/sub/history.sqlite")

    def test_the_file_is_in_wal_mode_in_a_folder_made_for_it(self, store, tmp_path):
        assert (tmp_path / "sub" / "history.sqlite").is_file()
        with create_engine(f"sqlite:///{tmp_path}/sub/history.sqlite").connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
