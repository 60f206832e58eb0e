"""The history on a real PostgreSQL (Debian's ``postgresql``): the store contract, concurrency, security.

The server is ``harness.postgres.PostgresServer``: initdb/pg_ctl in a temporary folder, a free
port, 127.0.0.1 only, a password; stopped and deleted at the end of the session.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from runtime_metadata import config
from runtime_metadata.harness.postgres import PostgresServer
from runtime_metadata.history.schema import SCHEMA_VERSION
from runtime_metadata.history.store import HistoryStore
from runtime_metadata.projections.history import history_rows

from .test_history_store import T0, StoreContract, chain_run, dump


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.destroy()


class TestPostgreSQL(StoreContract):
    def make_store(self, request) -> HistoryStore:
        server: PostgresServer = request.getfixturevalue("postgres")
        return HistoryStore(server.create_database())


def test_postgresql_and_sqlite_hold_the_same_rows(postgres, tmp_path):
    rows = [history_rows(chain_run(f"p{i}", f"w{i % 3}", T0 + i, durations=[1000 + i, 7])) for i in range(30)]
    pg = HistoryStore(postgres.create_database())
    lite = HistoryStore(f"sqlite:///{tmp_path}/h.sqlite")
    for store in (pg, lite):
        store.migrate()
        assert store.write(rows) == 30
    assert dump(pg) == dump(lite)
    assert pg.runs_page(limit=7, offset=3, worker="w1") == lite.runs_page(limit=7, offset=3, worker="w1")
    assert pg.stats(last=20) == lite.stats(last=20)
    pg.close()
    lite.close()


def test_workers_writing_at_once_lose_nothing_and_never_overwrite_each_other(postgres):
    """Four writers, each its own worker, all running the same prompt ids at the same time."""
    url = postgres.create_database()
    HistoryStore(url).migrate()
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        store = HistoryStore(url)
        try:
            for i in range(25):
                store.write([history_rows(chain_run(f"shared-{i}", name, T0 + i, durations=[i + 1]))])
                # The catch-up of the same log a moment later: no duplicate.
                store.write([history_rows(chain_run(f"shared-{i}", name, T0 + i, durations=[i + 1]))])
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=worker, args=(f"gpu-{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    store = HistoryStore(url)
    assert store.count() == 100 and store.workers() == ["gpu-0", "gpu-1", "gpu-2", "gpu-3"]
    for n in range(4):
        run = store.run("shared-7", worker=f"gpu-{n}")
        assert (
            run["worker_id"] == f"gpu-{n}"
            and run["nodes"][0]["duration_ms"] == 0.0
            and run["runs_with_this_prompt_id"] == 1
        )
    assert store.runs_page(limit=500)["total"] == 100
    store.close()


def test_the_same_run_written_by_two_processes_at_once_is_one_run(postgres):
    url = postgres.create_database()
    HistoryStore(url).migrate()
    rows = [history_rows(chain_run(f"p{i}", "w", T0 + i)) for i in range(40)]
    barrier = threading.Barrier(3)
    written: list[int] = []

    def write() -> None:
        store = HistoryStore(url)
        barrier.wait()
        written.append(store.write(rows))
        store.close()

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = HistoryStore(url)
    assert store.count() == 40 and sum(written) == 40
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rtm_nodes")).scalar() == 40 * 3
    store.close()


def test_workers_migrating_at_once_make_one_schema(postgres):
    url = postgres.create_database()
    results: list[tuple[int, int]] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        store = HistoryStore(url)
        barrier.wait()
        results.append(store.migrate())
        store.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    v = SCHEMA_VERSION
    assert sorted(results) == [(0, v), (v, v), (v, v), (v, v)]


def test_the_password_never_shows(postgres):
    url = postgres.create_database()
    store = HistoryStore(url)
    assert postgres.password not in store.shown_url and "***" in store.shown_url
    assert config.hide_password(url) == store.shown_url
    store.close()
    wrong = url.replace(postgres.password, postgres.password + "-wrong")
    from runtime_metadata.history.store import describe_error

    with pytest.raises(Exception) as caught:
        HistoryStore(wrong).migrate()
    line = describe_error(caught.value, wrong)
    assert "password authentication failed" in line and postgres.password not in line
