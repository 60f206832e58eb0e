"""The history's settings: validated like the others, and a URL's password never shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from runtime_metadata import config, errors

from .test_config import write


@pytest.fixture
def cfg_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "config.json"
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(path))
    for _, env_name in config.KEYS.values():
        monkeypatch.delenv(env_name, raising=False)
    errors.forget_reports()
    return path


def test_the_history_settings_default_to_sqlite_in_the_user_directory_and_10000_runs(cfg_file: Path) -> None:
    got = config.get()
    assert (got.history_url, got.history_max_runs, got.worker_id, got.log_max_mb) == (None, 10_000, None, 1024)


def test_the_history_keys_are_read_from_the_file_and_the_environment_wins(cfg_file: Path, monkeypatch) -> None:
    write(
        cfg_file,
        {
            "runtime_hooks": {
                "history_url": "postgresql://u:pw@db/h",
                "history_max_runs": 5,
                "worker_id": "gpu-1",
                "log_max_mb": 0,
            }
        },
    )
    got = config.get()
    assert (got.history_url, got.history_max_runs, got.worker_id, got.log_max_mb) == (
        "postgresql://u:pw@db/h",
        5,
        "gpu-1",
        0,
    )
    monkeypatch.setenv("AAA_METADATA_HISTORY_URL", "off")
    monkeypatch.setenv("AAA_METADATA_WORKER_ID", "gpu-2")
    monkeypatch.setenv("AAA_METADATA_HISTORY_MAX_RUNS", "0")
    got = config.get()
    assert (got.history_url, got.worker_id, got.history_max_runs) == (config.HISTORY_OFF, "gpu-2", 0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("history_url", "not a url with password hunter2"),
        ("history_url", 5),
        ("history_max_runs", -1),
        ("history_max_runs", "many"),
        ("worker_id", "x" * 201),
        ("worker_id", "tab\there"),
        ("log_max_mb", -5),
    ],
)
def test_a_bad_history_value_is_reported_once_and_replaced_by_its_default(
    cfg_file: Path, caplog, key: str, value: object
) -> None:
    write(cfg_file, {"runtime_hooks": {key: value}})
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        got = config.get()
        config.load()
    assert got == config.Config()
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1 and f"runtime_hooks.{key}" in reports[0]
    assert "hunter2" not in reports[0]  # a URL that does not parse may still hold a password


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://farm:s3cr%40t@db:5432/h", "postgresql+psycopg://farm:***@db:5432/h"),
        ("postgresql://farm:pa/ss@db/h", "postgresql://farm:***@db/h"),
        ("postgresql://farm:p@ss@db/h?sslmode=require", "postgresql://farm:***@db/h?sslmode=require"),
        ("postgresql://db/h?user=farm&password=s3cret", "postgresql://db/h?user=farm&password=***"),
        ("postgresql://farm@db/h", "postgresql://farm@db/h"),
        ("sqlite:////home/me/history.sqlite", "sqlite:////home/me/history.sqlite"),
        (None, None),
    ],
)
def test_a_history_urls_password_is_hidden(url: str | None, shown: str | None) -> None:
    assert config.hide_password(url) == shown


def test_what_doctor_and_the_status_route_show_never_holds_the_password(cfg_file: Path) -> None:
    write(cfg_file, {"runtime_hooks": {"history_url": "postgresql://farm:s3cret@db/h"}})
    described = {key: value for key, _, value, _ in config.describe()}
    assert described["runtime_hooks.history_url"] == "postgresql://farm:***@db/h"
    public = config.public(config.get())
    assert public["history_url"] == "postgresql://farm:***@db/h"
    assert "s3cret" not in json.dumps(public) + json.dumps(described, default=str)
