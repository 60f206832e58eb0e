"""Many ComfyUI workers, one history in a real PostgreSQL: every run once, an outage loses nothing.

The workers are real CPU ComfyUI servers on this machine; the database is Debian's PostgreSQL
started for the module (``tests/test_history_postgres.PostgresServer``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from runtime_metadata.harness import Installation
from runtime_metadata.harness.postgres import PostgresServer

from .test_history_server import chain_prompt, ensure_in_comfyui, env_for, get, request, wait_for


@pytest.fixture(scope="module")
def pg() -> PostgresServer:
    server = PostgresServer().start()
    yield server
    server.destroy()


@pytest.fixture(scope="module")
def farm_ready(installation: Installation) -> Installation:
    ensure_in_comfyui(installation, "sqlalchemy", "SQLAlchemy>=2.0")
    ensure_in_comfyui(installation, "psycopg", "psycopg[binary]>=3.1")
    return installation


def test_every_worker_writes_to_one_database_and_every_worker_shows_them_all(
    farm_ready, start_comfy, pg, tmp_path_factory
):
    url = pg.create_database()
    workers = []
    for name in ("farm-a", "farm-b", "farm-c"):
        workdir = tmp_path_factory.mktemp(name)
        workers.append(
            start_comfy(
                env=env_for(workdir, AAA_METADATA_HISTORY_URL=url, AAA_METADATA_WORKER_ID=name), workdir=workdir
            )
        )

    def run_two(index: int) -> list[str]:
        server = workers[index]
        ids = [server.queue(chain_prompt(3, f"f{index}", start=100 * index + k)) for k in range(2)]
        for pid in ids:
            server.wait(pid)
        return ids

    with ThreadPoolExecutor(3) as pool:  # the workers run at the same time
        ran = [pid for ids in pool.map(run_two, range(3)) for pid in ids]
    first = workers[0]
    page = wait_for(lambda: (p := get(first, "/runtime_metadata/runs")[1]).get("total") == 6 and p, what="6 runs")
    assert sorted(r["prompt_id"] for r in page["runs"]) == sorted(ran)
    for server in workers:  # any worker shows every worker's runs
        assert get(server, "/runtime_metadata/runs?limit=500")[1]["total"] == 6
        assert get(server, "/runtime_metadata/workers")[1]["workers"] == ["farm-a", "farm-b", "farm-c"]
    only_b = get(first, "/runtime_metadata/runs?worker=farm-b")[1]
    assert only_b["total"] == 2 and {r["worker_id"] for r in only_b["runs"]} == {"farm-b"}
    # A run of worker b, asked on worker a: its nodes, but its log is on b's disk.
    b_run = only_b["runs"][0]["prompt_id"]
    status, body = get(first, f"/runtime_metadata/runs/{b_run}")
    assert status == 200 and body["worker_id"] == "farm-b" and body["log_available"] is False
    status, body = get(first, f"/runtime_metadata/runs/{b_run}/log")
    assert status == 404 and "farm-b" in body["error"]
    assert request(workers[1], "GET", f"/runtime_metadata/runs/{b_run}/log")[0] == 200
    # The command line reads the same database.
    out = subprocess.run(
        [sys.executable, "-m", "runtime_metadata", "stats", "--db", url, "--json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    assert report["runs"] == 6 and "IntMathRuntimeMetadata" in {c["class_type"] for c in report["classes"]}
    status = get(first, "/runtime_metadata/status")[1]["history"]
    assert status["backend"] == "postgresql" and pg.password not in json.dumps(status)
    for server in workers:
        assert pg.password not in server.log_text()


def test_postgresql_stopped_mid_series_then_restarted_loses_no_run_and_duplicates_none(
    farm_ready, start_comfy, pg, tmp_path
):
    url = pg.create_database()
    server = start_comfy(env=env_for(tmp_path, AAA_METADATA_HISTORY_URL=url), workdir=tmp_path)
    ids = []
    for k in range(2):
        ids.append(server.queue(chain_prompt(3, "before", start=1000 + k)))
        server.wait(ids[-1])
    wait_for(lambda: get(server, "/runtime_metadata/runs")[1].get("total") == 2, what="2 runs before the outage")
    pg.stop()
    try:
        for k in range(3):  # the user's runs go on while the database is down
            ids.append(server.queue(chain_prompt(3, "during", start=2000 + k)))
            assert server.wait(ids[-1])["status"]["status_str"] == "success"
        history = wait_for(
            lambda: (h := get(server, "/runtime_metadata/status")[1]["history"])["last_error"] and h,
            what="the outage in the status",
        )
        assert history["behind"] is True
    finally:
        pg.start()
    ids.append(server.queue(chain_prompt(3, "after", start=3000)))
    server.wait(ids[-1])
    page = wait_for(
        lambda: (p := get(server, "/runtime_metadata/runs?limit=50")[1]).get("total") == 6 and p,
        timeout=120,
        what="the catch-up after the restart",
    )
    assert sorted(r["prompt_id"] for r in page["runs"]) == sorted(ids)  # each once
    assert all(r["status"] == "success" and r["nodes_executed"] == 5 for r in page["runs"])
    time.sleep(1)
    assert get(server, "/runtime_metadata/status")[1]["history"]["behind"] is False
