"""The background writer: live rows equal rebuilt rows; outages, a full queue and retention lose nothing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from runtime_metadata.capture.listeners import RunEnd
from runtime_metadata.events.log import MemoryLog
from runtime_metadata.history import writer as writer_module
from runtime_metadata.history.rebuild import log_files, rebuild
from runtime_metadata.history.store import HistoryStore
from runtime_metadata.history.writer import HistoryWriter, Limits, prune_logs

from .test_history_store import T0, chain_run, dump


def finished_run(folder: Path, i: int, worker: str = "w1", durations=None) -> RunEnd:
    """A run's end as capture announces it, its log kept in ``folder``."""
    log = MemoryLog()
    log.extend(chain_run(f"p{i}", worker, T0 + i * 1000, durations=durations or [1000 + i, 2000]))
    data = log.to_bytes()
    path = folder / f"p{i}.rtlog"
    path.write_bytes(data)
    return RunEnd(f"p{i}", "c1", data, path)


@pytest.fixture
def logs(tmp_path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def fast_retry(monkeypatch):
    monkeypatch.setattr(writer_module, "RETRY_S", 0.05)
    monkeypatch.setattr(writer_module, "RETRY_MAX_S", 0.2)


def eventually(condition, timeout: float = 30.0) -> bool:
    """Poll ``condition`` until it holds (the writer works in its own thread)."""
    done = threading.Event()
    for _ in range(int(timeout / 0.05)):
        if condition():
            return True
        done.wait(0.05)
    return bool(condition())


def test_the_live_rows_are_the_rows_a_rebuild_from_the_logs_gives(tmp_path, logs):
    pushed = []
    writer = HistoryWriter(f"sqlite:///{tmp_path}/live.sqlite", "w1", logs, on_rows=[lambda r, e: pushed.append(r)])
    ends = [finished_run(logs, i) for i in range(20)]
    for end in ends:
        writer.submit(end)
    assert writer.wait_idle()
    assert writer.status()["written"] == 20 and writer.status()["last_error"] is None
    assert sorted(r.run.prompt_id for r in pushed) == sorted(f"p{i}" for i in range(20))
    rebuilt = HistoryStore(f"sqlite:///{tmp_path}/rebuilt.sqlite")
    rebuilt.migrate()
    assert rebuild(rebuilt, log_files(logs)).written == 20
    assert dump(writer.store) == dump(rebuilt)
    writer.stop()
    rebuilt.close()


def test_an_unreachable_database_is_caught_up_from_the_logs_once_it_is_back(tmp_path, logs, fast_retry, caplog):
    blocker = tmp_path / "db"
    blocker.write_text("a file where the database folder should be")
    writer = HistoryWriter(f"sqlite:///{blocker}/h.sqlite", "w1", logs)
    for i in range(5):
        writer.submit(finished_run(logs, i))
    assert writer.wait_idle()
    status = writer.status()
    assert status["behind"] is True and status["written"] == 0 and status["last_error"]
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1  # once, not per run
    blocker.unlink()  # the database is back
    for i in range(5, 8):
        writer.submit(finished_run(logs, i))
    assert eventually(lambda: writer.status()["written"] == 8 and writer.status()["behind"] is False)
    assert writer.store.count("w1") == 8
    writer.stop()


def test_a_full_queue_loses_no_run(tmp_path, logs, fast_retry, caplog):
    gate = threading.Event()
    writer = HistoryWriter(
        f"sqlite:///{tmp_path}/h.sqlite", "w1", logs, on_rows=[lambda r, e: gate.wait(10)], queue_runs=2
    )
    for i in range(10):  # the first blocks the thread in the callback; two wait; the rest overflow
        writer.submit(finished_run(logs, i))
    assert writer.status()["dropped"] >= 6
    assert len([r for r in caplog.records if "queue full" in r.getMessage()]) == 1
    gate.set()
    assert eventually(lambda: writer.store is not None and writer.store.count("w1") == 10)
    writer.stop()


def test_retention_keeps_the_newest_runs_and_only_deletes_logs_already_in_the_history(tmp_path, logs):
    writer = HistoryWriter(
        f"sqlite:///{tmp_path}/h.sqlite", "w1", logs, limits=lambda: Limits(max_runs=3, log_max_bytes=0)
    )
    for i in range(writer_module.PRUNE_EVERY):
        writer.submit(finished_run(logs, i))
    assert writer.wait_idle()
    assert [r["prompt_id"] for r in writer.store.runs_page()["runs"]] == [f"p{i}" for i in (49, 48, 47)]
    writer.stop()


def test_old_logs_go_first_and_never_one_the_history_lacks(logs):
    for i in range(6):
        finished_run(logs, i)
    sizes = {p.name: p.stat().st_size for p in logs.iterdir()}
    import os

    for i, name in enumerate(sorted(sizes, key=lambda n: int(n[1:-6]))):
        os.utime(logs / name, ns=(T0 + i, T0 + i))
    keep_bytes = sum(sizes.values()) - sizes["p0.rtlog"] - sizes["p2.rtlog"] - sizes["p3.rtlog"]
    in_history = {"p0.rtlog", "p2.rtlog", "p3.rtlog", "p4.rtlog"}  # p1 not yet: never deleted
    assert prune_logs(logs, keep_bytes, in_history) == 3
    assert sorted(p.name for p in logs.iterdir()) == ["p1.rtlog", "p4.rtlog", "p5.rtlog"]
    assert prune_logs(logs, 1, set()) == 0


def test_without_a_database_the_rows_still_reach_the_callbacks(logs):
    pushed = []
    writer = HistoryWriter(None, "w1", logs, on_rows=[lambda r, e: pushed.append((r.run.prompt_id, e.client_id))])
    writer.submit(finished_run(logs, 1))
    assert writer.wait_idle()
    assert pushed == [("p1", "c1")] and writer.status()["enabled"] is False and writer.status()["behind"] is False
    writer.stop()


def test_the_catch_up_skips_runs_already_in_the_history_whichever_worker_id_wrote_them(tmp_path, logs):
    store = HistoryStore(f"sqlite:///{tmp_path}/h.sqlite")
    store.migrate()
    # This folder's runs were written when the worker was "host:8188" (its id follows the port) ...
    mine = [finished_run(logs, i, worker="host:8188") for i in range(3)]
    rebuild(store, [e.log_path for e in mine])
    # ... and another worker of the same database ran a reused prompt id: same file name, its folder.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    rebuild(store, [finished_run(elsewhere, 9, worker="gpu-2").log_path])
    reused_here = finished_run(logs, 9, worker="host:8188")  # not in the history yet
    stored = store.stored_logs()
    assert [writer_module._in_history(e.log_path, stored, "host:9999") for e in mine] == [True] * 3
    assert writer_module._in_history(reused_here.log_path, stored, "host:9999") is False
    writer = HistoryWriter(f"sqlite:///{tmp_path}/h.sqlite", "host:9999", logs)
    writer.start()
    assert writer.wait_tried() and writer.wait_idle()
    assert eventually(lambda: store.count("host:8188") == 4)
    assert store.count("host:8188") == 4 and store.count("gpu-2") == 1 and writer.written == 1
    writer.stop()
    store.close()


def test_runs_wait_while_comfyui_is_busy_and_go_as_soon_as_it_is_idle(tmp_path, logs):
    busy = threading.Event()
    busy.set()
    pushed = []
    writer = HistoryWriter(
        f"sqlite:///{tmp_path}/h.sqlite", "w1", logs, on_rows=[lambda r, e: pushed.append(r)], busy=busy.is_set
    )
    writer.submit(finished_run(logs, 1))
    threading.Event().wait(0.5)
    assert pushed == []  # nothing folded, pushed or written while the next prompt runs
    busy.clear()
    assert eventually(lambda: len(pushed) == 1 and writer.written == 1, timeout=10)
    writer.stop()


def test_a_busy_comfyui_delays_runs_at_most_defer_max_s(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(writer_module, "DEFER_MAX_S", 0.3)
    writer = HistoryWriter(f"sqlite:///{tmp_path}/h.sqlite", "w1", logs, busy=lambda: True)
    writer.submit(finished_run(logs, 1))
    assert eventually(lambda: writer.written == 1, timeout=10)
    writer.stop()
