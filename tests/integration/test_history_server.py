"""The run history on a real ComfyUI server: the routes, the websocket push, restarts, outages.

Each test talks HTTP (and the websocket, through a small stdlib client below) to a real CPU
ComfyUI with the plugin loaded, and checks what it says against the run's own event log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from runtime_metadata.events.log import read_log_file
from runtime_metadata.harness import ComfyServer, Installation
from runtime_metadata.harness.websocket import WebSocket
from runtime_metadata.projections.history import history_rows

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
WORKER = "itest-a"


# --------------------------------------------------------------------------- helpers


def ensure_in_comfyui(installation: Installation, module: str, requirement: str) -> None:
    """Install ``requirement`` into ComfyUI's venv unless ``module`` imports there already."""
    probe = [str(installation.python), "-c", f"import {module}"]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return
    install = installation.root.parent  # <cache>/comfyui-0.3.64: its lock is <cache>/comfyui-0.3.64.lock
    lock = install.parent / f"{install.name}.lock"
    with open(lock, "a+") as handle:  # the provisioning lock: never pip-install beside it
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        if subprocess.run(probe, capture_output=True).returncode != 0:
            subprocess.run([str(installation.python), "-m", "pip", "install", "--quiet", requirement], check=True)


@pytest.fixture(scope="session")
def history_ready(installation: Installation) -> Installation:
    """ComfyUI's venv with SQLAlchemy (the plugin's requirements.txt; the 2024 ComfyUI lacks it)."""
    ensure_in_comfyui(installation, "sqlalchemy", "SQLAlchemy>=2.0")
    return installation


def request(server: ComfyServer, method: str, path: str, body: bytes | None = None, headers=None):
    """(status, content type, body bytes) of one HTTP request."""
    req = urllib.request.Request(server.url + path, data=body, method=method, headers=headers or {})
    try:
        with _OPENER.open(req, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def get(server: ComfyServer, path: str) -> tuple[int, Any]:
    status, ctype, data = request(server, "GET", path)
    assert "application/json" in ctype, (path, status, ctype, data[:200])
    return status, json.loads(data)


def chain_prompt(n: int, prefix: str = "hist", start: int = 8) -> dict[str, Any]:
    """n integer nodes (the plugin's Int Math) feeding an image that the plugin's save node writes."""
    prompt: dict[str, Any] = {
        "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": start, "b": 0, "op": "add"}},
    }
    for i in range(2, n + 1):
        prompt[str(i)] = {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": [str(i - 1), 0], "b": 1, "op": "add"}}
    prompt["100"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": [str(n), 0], "height": 8, "batch_size": 1, "color": 0},
    }
    prompt["101"] = {
        "class_type": "SaveImageRuntimeMetadata",
        "inputs": {"images": ["100", 0], "filename_prefix": prefix},
    }
    return prompt


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def env_for(workdir: Path, **extra: str) -> dict[str, str]:
    return {
        "AAA_METADATA_ENABLE_HOOKS": "1",
        "AAA_METADATA_CONFIG": str(workdir / "config.json"),
        "AAA_METADATA_LOG_DIR": str(workdir / "rtlogs"),
        "AAA_METADATA_HISTORY_URL": f"sqlite:///{workdir}/history.sqlite",
        "AAA_METADATA_WORKER_ID": WORKER,
        **extra,
    }


@pytest.fixture(scope="module")
def served(history_ready, start_comfy, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("history")
    (workdir / "config.json").write_text(json.dumps({"debug": {"enabled": False}, "custom": {"kept": 1}}))
    server = start_comfy(env=env_for(workdir), workdir=workdir)
    return server, workdir


# --------------------------------------------------------------------------- tests


def test_a_run_reaches_the_history_the_routes_and_one_websocket_message(served):
    server, workdir = served
    client_id = uuid.uuid4().hex
    ws = WebSocket(server.url, client_id)
    try:
        prompt_id = server.queue(chain_prompt(6), client_id=client_id)
        push = None
        deadline = time.monotonic() + 120
        while push is None and time.monotonic() < deadline:
            message = ws.receive(5)
            if message and message.get("type") == "runtime_metadata.run" and message["data"]["prompt_id"] == prompt_id:
                push = message["data"]
        assert push is not None, [m.get("type") for m in ws.messages]
        while ws.receive(1.5) is not None:  # anything else this run sends
            pass
        pushes = [m for m in ws.messages if m.get("type") == "runtime_metadata.run"]
        assert len(pushes) == 1  # one message per run, never one per node
    finally:
        ws.close()
    server.wait(prompt_id)
    # What the run's own log says, folded as the history does.
    log_file = workdir / "rtlogs" / f"{prompt_id}.rtlog"
    rows = history_rows(read_log_file(log_file).events, log_name=log_file.name)
    expected_nodes = [(n.node_id, n.class_type, n.status, round(n.duration_ns / 1e6, 3)) for n in rows.nodes]
    assert [(n["node_id"], n["class_type"], n["status"], n["duration_ms"]) for n in push["nodes"]] == expected_nodes
    assert push["status"] == "success" and push["worker_id"] == WORKER and len(push["nodes"]) == 8

    status, page = get(server, "/runtime_metadata/runs?limit=5")
    assert status == 200
    run = next(r for r in page["runs"] if r["prompt_id"] == prompt_id)
    assert (run["status"], run["worker_id"], run["client_id"]) == ("success", WORKER, client_id)
    assert (run["nodes_executed"], run["nodes_cached"], run["nodes_failed"]) == (8, 0, 0)
    assert run["wall_ms"] == round(rows.run.wall_ns / 1e6, 3) and run["hook_ms"] > 0
    [image] = run["images"]
    assert image["node_id"] == "101" and image["type"] == "output" and image["filename"].startswith("hist_")
    assert Path(image["path"]) == server.output_dir / image["subfolder"] / image["filename"]
    assert Path(image["path"]).is_file()

    status, detail = get(server, f"/runtime_metadata/runs/{prompt_id}")
    assert status == 200 and detail["log_available"] is True
    assert [(n["node_id"], n["class_type"], n["status"], n["duration_ms"]) for n in detail["nodes"]] == expected_nodes
    assert detail["nodes"][1]["inputs"] == {"a": 8, "b": 1, "op": "add"}  # 8 came from node 1 at run time
    assert [s["node_id"] for s in detail["saves"]] == ["101"]
    assert "log_name" not in detail

    status, ctype, data = request(server, "GET", f"/runtime_metadata/runs/{prompt_id}/log")
    assert status == 200 and ctype == "application/octet-stream" and data == log_file.read_bytes()

    status, stats = get(server, "/runtime_metadata/stats?last=10&class_type=IntMathRuntimeMetadata")
    assert status == 200 and stats["classes"][0]["class_type"] == "IntMathRuntimeMetadata"
    assert stats["classes"][0]["count"] >= 6


@pytest.mark.parametrize(
    ("path", "code", "says"),
    [
        ("/runtime_metadata/runs?limit=0", 400, "limit"),
        ("/runtime_metadata/runs?limit=abc", 400, "limit"),
        ("/runtime_metadata/runs?limit=10&limit=20", 400, "2 times"),
        ("/runtime_metadata/runs?status=weird", 400, "status"),
        ("/runtime_metadata/runs?sort=1", 400, "unknown parameter"),
        ("/runtime_metadata/runs?worker=%00x", 400, "worker"),
        ("/runtime_metadata/stats?last=-1", 400, "last"),
        ("/runtime_metadata/runs/nope", 404, "no run"),
        ("/runtime_metadata/runs/nope/log", 404, "no run"),
        ("/runtime_metadata/runs/..%2F..%2F..%2Fetc%2Fpasswd/log", 404, "no run"),
        ("/runtime_metadata/runs/x?run_id=abc", 400, "run_id"),
        ("/runtime_metadata/compare?a=x", 400, "both"),
        ("/runtime_metadata/lib/..%2F..%2Fconfig.py", 404, "no such module"),
        ("/runtime_metadata/status?x=1", 400, "unknown parameter"),
    ],
)
def test_every_parameter_is_checked_and_answers_in_json(served, path, code, says):
    server, _ = served
    status, body = get(server, path)
    assert status == code and says in body["error"], body


def test_no_log_outside_the_log_folder_is_ever_served(served):
    server, workdir = served
    prompt_id = server.queue(chain_prompt(2, "trav"))
    server.wait(prompt_id)
    wait_for(lambda: get(server, f"/runtime_metadata/runs/{prompt_id}")[0] == 200, what="the run in the history")
    secret = workdir / "outside.rtlog"
    secret.write_bytes((workdir / "rtlogs" / f"{prompt_id}.rtlog").read_bytes())  # a real log, outside
    (workdir / "rtlogs" / "link.rtlog").symlink_to(secret)
    db = sqlite3.connect(workdir / "history.sqlite")
    try:
        for name in ("../outside.rtlog", str(secret), "link.rtlog", "..", ".hidden.rtlog"):
            with db:
                db.execute("UPDATE rtm_runs SET log_name = ? WHERE prompt_id = ?", (name, prompt_id))
            status, body = get(server, f"/runtime_metadata/runs/{prompt_id}/log")
            assert status == 404, (name, body)
            assert get(server, f"/runtime_metadata/runs/{prompt_id}")[1]["log_available"] is False
        # Another run's log under this run's name is not this run's log either.
        other = server.queue(chain_prompt(3, "other"))
        server.wait(other)
        with db:
            db.execute("UPDATE rtm_runs SET log_name = ? WHERE prompt_id = ?", (f"{other}.rtlog", prompt_id))
        assert get(server, f"/runtime_metadata/runs/{prompt_id}/log")[0] == 404
    finally:
        with db:
            db.execute("UPDATE rtm_runs SET log_name = ? WHERE prompt_id = ?", (f"{prompt_id}.rtlog", prompt_id))
        db.close()
    assert request(server, "GET", f"/runtime_metadata/runs/{prompt_id}/log")[0] == 200


def test_the_capture_toggle_writes_config_json_atomically_keeping_other_keys(served):
    server, workdir = served
    config_file = workdir / "config.json"
    body = json.dumps({"runtime_hooks": {"enabled": False}}).encode()
    status, _, data = request(server, "POST", "/runtime_metadata/config", body, {"Content-Type": "application/json"})
    assert status == 200
    written = json.loads(config_file.read_text())
    assert written == {"debug": {"enabled": False}, "custom": {"kept": 1}, "runtime_hooks": {"enabled": False}}
    assert json.loads(data)["config"]["hooks_enabled"] is True  # the environment still says 1: it wins
    for bad, code in (
        (b'{"runtime_hooks": {"enabled": "yes"}}', 400),
        (b'{"runtime_hooks": {"enabled": true, "log_dir": "/tmp"}}', 400),
        (b"[1]", 400),
        (b"{not json", 400),
    ):
        status, ctype, data = request(
            server, "POST", "/runtime_metadata/config", bad, {"Content-Type": "application/json"}
        )
        assert status == code and "error" in json.loads(data), bad
    status, _, _ = request(server, "POST", "/runtime_metadata/config", body, {"Content-Type": "text/plain"})
    assert status == 415
    assert json.loads(config_file.read_text())["runtime_hooks"] == {"enabled": False}
    assert [p.name for p in workdir.iterdir() if p.name.startswith(".rm-tmp-")] == []


def test_the_status_route_shows_the_history(served):
    server, workdir = served
    status, body = get(server, "/runtime_metadata/status")
    assert status == 200
    history = body["history"]
    assert history["enabled"] is True and history["backend"] == "sqlite" and history["worker_id"] == WORKER
    assert history["url"] == f"sqlite:///{workdir}/history.sqlite" and history["last_error"] is None


def test_the_history_survives_a_restart_and_catches_up_from_logs_it_lacks(history_ready, start_comfy, tmp_path):
    server = start_comfy(env=env_for(tmp_path), workdir=tmp_path)
    ids = [server.queue(chain_prompt(3, f"r{i}", start=10 + i)) for i in range(3)]  # nothing cached
    for pid in ids:
        server.wait(pid)
    wait_for(lambda: get(server, "/runtime_metadata/runs")[1]["total"] == 3, what="3 runs in the history")
    server.stop()
    db = sqlite3.connect(tmp_path / "history.sqlite")
    with db:  # as if the history had missed the last run (database down while it ended)
        (run_id,) = db.execute("SELECT id FROM rtm_runs WHERE prompt_id = ?", (ids[-1],)).fetchone()
        for table, column in (("rtm_nodes", "run_id"), ("rtm_run_classes", "run_id"), ("rtm_runs", "id")):
            db.execute(f"DELETE FROM {table} WHERE {column} = ?", (run_id,))
    db.close()
    server.start()
    page = wait_for(
        lambda: (p := get(server, "/runtime_metadata/runs")[1])["total"] == 3 and p, what="the missing run back"
    )
    assert sorted(r["prompt_id"] for r in page["runs"]) == sorted(ids)
    assert get(server, f"/runtime_metadata/runs/{ids[-1]}")[1]["nodes_executed"] == 5


def test_an_unreachable_database_never_touches_a_run_nor_shows_its_password(history_ready, start_comfy, tmp_path):
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://farm:hunter2-s3cret@127.0.0.1:{port}/history"
    server = start_comfy(env=env_for(tmp_path, AAA_METADATA_HISTORY_URL=url), workdir=tmp_path)
    prompt_id = server.queue(chain_prompt(3, "down"))
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert (tmp_path / "rtlogs" / f"{prompt_id}.rtlog").is_file()  # the truth is kept for the catch-up
    status, body = get(server, "/runtime_metadata/status")
    history = body["history"]
    assert history["url"] == f"postgresql://farm:***@127.0.0.1:{port}/history"
    wait_for(lambda: get(server, "/runtime_metadata/status")[1]["history"]["last_error"], what="the error")
    status, runs = get(server, "/runtime_metadata/runs")
    assert status == 503 and "unavailable" in runs["error"]
    everything = json.dumps(get(server, "/runtime_metadata/status")[1]) + json.dumps(runs) + server.log_text()
    assert "hunter2" not in everything
    with contextlib.suppress(Exception):
        server.stop()
    assert "hunter2" not in server.log_text()


def test_with_nothing_configured_the_history_and_logs_go_to_comfyuis_user_directory(
    history_ready, start_comfy, tmp_path
):
    """No history URL, no log folder: SQLite and the logs in ComfyUI's user directory, no set-up."""
    if "--user-directory" not in (history_ready.root / "comfy" / "cli_args.py").read_text():
        pytest.skip("this ComfyUI has no --user-directory: its user directory is inside the shared install")
    user = tmp_path / "user"
    user.mkdir()
    env = {"AAA_METADATA_ENABLE_HOOKS": "1", "AAA_METADATA_CONFIG": str(tmp_path / "config.json")}
    server = start_comfy(env=env, workdir=tmp_path, extra_args=["--user-directory", str(user)])
    prompt_id = server.queue(chain_prompt(2, "default"))
    server.wait(prompt_id)
    wait_for(lambda: get(server, f"/runtime_metadata/runs/{prompt_id}")[0] == 200, what="the run in the history")
    folder = user / "runtime_metadata"
    assert (folder / "history.sqlite").is_file() and (folder / "logs" / f"{prompt_id}.rtlog").is_file()
    history = get(server, "/runtime_metadata/status")[1]["history"]
    assert history["url"] == f"sqlite:///{folder / 'history.sqlite'}" and history["log_dir"] == str(folder / "logs")
    with sqlite3.connect(folder / "history.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
