"""``runtime-metadata history rebuild`` and ``stats --db``: real SQLite files, real log files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_metadata import cli
from runtime_metadata.events.log import write_log_file
from runtime_metadata.history.store import HistoryStore

from .test_history_store import T0, chain_run


@pytest.fixture
def no_config(monkeypatch, tmp_path):
    monkeypatch.setenv("AAA_METADATA_CONFIG", str(tmp_path / "absent.json"))
    monkeypatch.delenv("AAA_METADATA_HISTORY_URL", raising=False)


def make_logs(folder: Path, n: int) -> None:
    folder.mkdir(exist_ok=True)
    for i in range(n):
        write_log_file(folder / f"r{i}.rtlog", chain_run(f"r{i}", "w1", T0 + i))


def test_rebuild_writes_each_run_once_and_says_what_it_did(no_config, tmp_path, capsys):
    make_logs(tmp_path / "logs", 4)
    url = f"sqlite:///{tmp_path}/h.sqlite"
    assert cli.main(["history", "rebuild", str(tmp_path / "logs"), "--db", url]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 logs, 4 runs (48 events)") and "4 written, 0 already in" in out
    make_logs(tmp_path / "logs", 6)
    assert cli.main(["history", "rebuild", str(tmp_path / "logs"), "--db", url]) == 0
    assert "2 written, 4 already in" in capsys.readouterr().out
    store = HistoryStore(url)
    assert store.count("w1") == 6
    store.close()


def test_rebuild_reports_a_damaged_log_and_exits_1(no_config, tmp_path, capsys):
    make_logs(tmp_path / "logs", 2)
    data = (tmp_path / "logs" / "r1.rtlog").read_bytes()
    (tmp_path / "logs" / "r1.rtlog").write_bytes(data[:-3])
    assert cli.main(["history", "rebuild", str(tmp_path / "logs"), "--db", f"sqlite:///{tmp_path}/h.sqlite"]) == 1
    captured = capsys.readouterr()
    assert "r1.rtlog: damaged, 1 stretch(es) skipped" in captured.err
    assert "2 written" in captured.out  # what could be read is kept (a running run)


def test_rebuild_without_a_database_says_how_to_name_one(no_config, tmp_path, capsys):
    make_logs(tmp_path / "logs", 1)
    assert cli.main(["history", "rebuild", str(tmp_path / "logs")]) == 2
    assert "give --db URL" in capsys.readouterr().err


def test_an_unreachable_database_is_one_line_without_its_password(no_config, tmp_path, capsys):
    make_logs(tmp_path / "logs", 1)
    url = "postgresql://farm:hunter2-secret@127.0.0.1:9/h"  # port 9 (discard): nothing listens
    assert cli.main(["history", "rebuild", str(tmp_path / "logs"), "--db", url]) == 2
    err = capsys.readouterr().err
    assert "postgresql://farm:***@127.0.0.1:9/h" in err and "OperationalError" in err
    assert "hunter2" not in err


def test_stats_of_a_history_database(no_config, tmp_path, capsys):
    make_logs(tmp_path / "logs", 5)
    url = f"sqlite:///{tmp_path}/h.sqlite"
    assert cli.main(["history", "rebuild", str(tmp_path / "logs"), "--db", url]) == 0
    capsys.readouterr()
    assert cli.main(["stats", "--db", url, "--last", "3", "--json"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 3 and [c["class_type"] for c in report["classes"]] == ["Add"]
    assert report["classes"][0]["count"] == 9 and report["classes"][0]["max_ms"] == 0.003
    assert cli.main(["stats", "--db", url, "--worker", "w1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"5 runs in {url} (worker w1)") and "Add" in out
    assert cli.main(["stats", "--db", url, "--last", "0"]) == 2


def test_stats_db_given_a_path_instead_of_a_url_is_one_line(tmp_path, capsys) -> None:
    assert cli.main(["stats", "--db", str(tmp_path / "history.sqlite")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("runtime-metadata: --db: expected a URL such as sqlite:///path")


def test_stats_db_reads_and_never_creates_a_database(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere" / "history.sqlite"
    assert cli.main(["stats", "--db", f"sqlite:///{missing}"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"runtime-metadata: history sqlite:///{missing}: no such file {str(missing)!r}"
    assert not missing.parent.exists()


def test_stats_db_without_the_postgresql_driver_says_what_to_install(monkeypatch, capsys) -> None:
    from runtime_metadata.history import store

    def no_driver(url: str) -> None:  # what create_engine raises without psycopg installed
        raise ModuleNotFoundError("No module named 'psycopg'", name="psycopg")

    monkeypatch.setattr(store, "HistoryStore", no_driver)
    assert cli.main(["stats", "--db", "postgresql://u:secret@127.0.0.1:1/x"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "runtime-metadata: history postgresql://u:***@127.0.0.1:1/x: the driver psycopg is not installed "
        "(pip install 'comfyui-runtime-metadata[postgresql]')"
    )
