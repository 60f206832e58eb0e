"""Configuration: defaults <- config.json <- environment, validated, re-read on change."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from runtime_metadata import config, errors


@pytest.fixture
def cfg_file(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "config.json"
    monkeypatch.setenv(config.CONFIG_PATH_ENV, str(path))
    for _, env_name in config.KEYS.values():
        monkeypatch.delenv(env_name, raising=False)
    errors.forget_reports()
    return path


def write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    # Make sure the mtime differs even on coarse file systems.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (1 + int(st.st_mtime_ns % 7))))


def test_no_file_means_defaults(cfg_file: Path) -> None:
    assert config.get() == config.Config()
    assert config.get().hooks_enabled is False and config.get().inline_size_limit_kb == 32


def test_the_aaa_file_keys_are_read(cfg_file: Path) -> None:
    write(
        cfg_file,
        {
            "runtime_hooks": {
                "enabled": True,
                "log_disagreements": True,
                "log_performance": True,
                "inline_size_limit_kb": 8,
            },
            "debug": {"enabled": True},
            "metadata": {"enable_hash_cache": False},
        },
    )
    assert config.get() == config.Config(
        hooks_enabled=True,
        log_disagreements=True,
        log_performance=True,
        inline_size_limit_kb=8,
        debug=True,
        enable_hash_cache=False,
    )


def test_environment_beats_the_file(cfg_file: Path, monkeypatch) -> None:
    write(cfg_file, {"runtime_hooks": {"enabled": False, "inline_size_limit_kb": 8}})
    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_INLINE_SIZE_LIMIT_KB", "100")
    got = config.get()
    assert got.hooks_enabled is True and got.inline_size_limit_kb == 100


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "", "\x00\xff"])
def test_a_broken_file_means_defaults_and_one_report(cfg_file: Path, caplog, text: str) -> None:
    write(cfg_file, text)
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        assert config.get() == config.Config()
        config.load()
    reports = [r.getMessage() for r in caplog.records]
    assert len(reports) == 1 and "using defaults" in reports[0]


def test_a_bad_value_is_reported_once_and_replaced_by_its_default(cfg_file: Path, caplog) -> None:
    write(cfg_file, {"runtime_hooks": {"enabled": "maybe", "inline_size_limit_kb": -3, "log_performance": True}})
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        got = config.load()
        config.load()
    assert got.hooks_enabled is False and got.inline_size_limit_kb == 32 and got.log_performance is True
    messages = sorted(r.getMessage() for r in caplog.records)
    assert len(messages) == 2
    assert "runtime_hooks.enabled: expected true/false, got 'maybe'; using the default False" in messages[0]
    assert "runtime_hooks.inline_size_limit_kb: -3 is out of range; using the default 32" in messages[1]


def test_a_bad_environment_value_names_the_variable(cfg_file: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("AAA_METADATA_MAX_RUNS", "lots")
    with caplog.at_level(logging.WARNING, logger="runtime_metadata"):
        assert config.get().max_runs == 64
    assert "AAA_METADATA_MAX_RUNS" in caplog.records[0].getMessage()


def test_the_file_is_re_read_when_it_changes(cfg_file: Path) -> None:
    write(cfg_file, {"runtime_hooks": {"enabled": False}})
    assert config.get().hooks_enabled is False
    write(cfg_file, {"runtime_hooks": {"enabled": True}})
    assert config.get().hooks_enabled is True
    cfg_file.unlink()
    assert config.get().hooks_enabled is False
