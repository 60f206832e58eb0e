"""Where the history and the logs go by default, and the push's shape (the routes module's pure parts)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from runtime_metadata import config, routes
from runtime_metadata.projections.history import history_rows

from .test_history_store import chain_run


@pytest.fixture
def user_dir(monkeypatch, tmp_path) -> Path:
    """ComfyUI's folder_paths as 0.3.64 has it (get_user_directory), pointing at a temporary folder."""
    fake = types.ModuleType("folder_paths")
    fake.get_user_directory = lambda: str(tmp_path / "user")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    return tmp_path / "user"


def test_by_default_history_and_logs_live_in_comfyuis_user_directory(user_dir):
    cfg = config.Config()
    assert routes.history_url(cfg) == f"sqlite:///{user_dir}/runtime_metadata/history.sqlite"
    assert routes.log_folder(cfg) == str(user_dir / "runtime_metadata" / "logs")


def test_a_configured_url_or_folder_wins_and_off_keeps_no_logs_unless_asked(user_dir):
    pg = config.Config(history_url="postgresql://farm:pw@db/h", log_dir="/data/logs")
    assert routes.history_url(pg) == "postgresql://farm:pw@db/h" and routes.log_folder(pg) == "/data/logs"
    off = config.Config(history_url=config.HISTORY_OFF)
    assert routes.history_url(off) is None and routes.log_folder(off) is None
    assert routes.log_folder(config.Config(history_url=config.HISTORY_OFF, log_dir="/x")) == "/x"


def test_the_2024_comfyui_user_directory_is_a_module_variable(monkeypatch, tmp_path):
    fake = types.ModuleType("folder_paths")
    fake.user_directory = str(tmp_path / "u")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    assert routes.log_folder(config.Config()) == str(tmp_path / "u" / "runtime_metadata" / "logs")


def test_outside_comfyui_there_is_no_default(monkeypatch):
    monkeypatch.delitem(sys.modules, "folder_paths", raising=False)
    assert routes.history_url(config.Config()) is None and routes.log_folder(config.Config()) is None


def test_the_push_carries_the_per_node_summary_and_nothing_else():
    rows = history_rows(chain_run("p", "w", durations=[1_500_000, 2_000_000]))
    payload = routes.push_payload(rows)
    assert set(payload) == {"prompt_id", "run_id", "worker_id", "status", "wall_ms", "nodes"}
    assert payload["nodes"] == [
        {"node_id": "1", "display_id": None, "parent_id": None, "class_type": "Add", "status": "executed",
         "duration_ms": 1.5, "start_ms": 0.0},
        {"node_id": "2", "display_id": None, "parent_id": None, "class_type": "Add", "status": "executed",
         "duration_ms": 2.0, "start_ms": 1.5},
    ]  # fmt: skip
    assert payload["run_id"] == str(rows.run.run_id)


def test_compare_lines_up_nodes_by_id():
    a = [{"node_id": "1", "class_type": "A", "status": "executed", "duration_ms": 1.0},
         {"node_id": "2", "class_type": "B", "status": "cached", "duration_ms": None}]  # fmt: skip
    b = [{"node_id": "2", "class_type": "B", "status": "executed", "duration_ms": 4.0},
         {"node_id": "3", "class_type": "C", "status": "executed", "duration_ms": 2.5}]  # fmt: skip
    got = routes.compare_nodes(a, b)
    assert [(r["node_id"], r["delta_ms"]) for r in got] == [("1", None), ("2", None), ("3", None)]
    assert got[1]["a"] == {"status": "cached", "duration_ms": None} and got[1]["b"]["duration_ms"] == 4.0
    assert got[0]["b"] is None and got[2]["a"] is None
