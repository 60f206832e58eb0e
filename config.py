"""Configuration: built-in defaults <- ``config.json`` <- environment variables.

The file's keys are compatible with the AAA Metadata System's ``config.json``. A missing or
broken file means defaults; a bad value is reported once and replaced by its default. The
file is re-read whenever it changes (checked by mtime at each run and each save), so no
restart is needed.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from .errors import report_once

#: Environment variable naming another config file (tests, shared installs).
CONFIG_PATH_ENV = "AAA_METADATA_CONFIG"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent / "config.json"


@dataclass(frozen=True)
class Config:
    """Every setting, with its default."""

    hooks_enabled: bool = False
    log_disagreements: bool = False
    log_performance: bool = False
    inline_size_limit_kb: int = 32
    log_dir: str | None = None
    max_runs: int = 64
    debug: bool = False
    enable_hash_cache: bool = True
    #: Run history: None = SQLite in ComfyUI's user directory, "off" = none, else a SQLAlchemy URL.
    history_url: str | None = None
    #: Runs of this worker kept in the history (oldest dropped first); 0 keeps them all.
    history_max_runs: int = 10_000
    #: This ComfyUI's name in a shared history; None = hostname:port.
    worker_id: str | None = None
    #: Event logs kept in the log folder, in MB (oldest runs already in the history go first); 0 = all.
    log_max_mb: int = 1024


#: field -> (path in config.json, environment variable)
KEYS: dict[str, tuple[tuple[str, str], str]] = {
    "hooks_enabled": (("runtime_hooks", "enabled"), "AAA_METADATA_ENABLE_HOOKS"),
    "log_disagreements": (("runtime_hooks", "log_disagreements"), "AAA_METADATA_LOG_DISAGREEMENTS"),
    "log_performance": (("runtime_hooks", "log_performance"), "AAA_METADATA_LOG_PERFORMANCE"),
    "inline_size_limit_kb": (("runtime_hooks", "inline_size_limit_kb"), "AAA_METADATA_INLINE_SIZE_LIMIT_KB"),
    "log_dir": (("runtime_hooks", "log_dir"), "AAA_METADATA_LOG_DIR"),
    "max_runs": (("runtime_hooks", "max_finished_runs"), "AAA_METADATA_MAX_RUNS"),
    "debug": (("debug", "enabled"), "AAA_METADATA_DEBUG"),
    "enable_hash_cache": (("metadata", "enable_hash_cache"), "AAA_METADATA_ENABLE_HASH_CACHE"),
    "history_url": (("runtime_hooks", "history_url"), "AAA_METADATA_HISTORY_URL"),
    "history_max_runs": (("runtime_hooks", "history_max_runs"), "AAA_METADATA_HISTORY_MAX_RUNS"),
    "worker_id": (("runtime_hooks", "worker_id"), "AAA_METADATA_WORKER_ID"),
    "log_max_mb": (("runtime_hooks", "log_max_mb"), "AAA_METADATA_LOG_MAX_MB"),
}

#: Numbers where 0 means "no limit" (the others must be at least 1, except the inline size).
_ZERO_ALLOWED = frozenset({"inline_size_limit_kb", "history_max_runs", "log_max_mb"})
#: A worker id is shown in routes and filtered on: printable, short.
MAX_WORKER_ID = 200
_URL_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\+[A-Za-z0-9_]+)?://")
HISTORY_OFF = "off"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

_cache: tuple[Any, Config] | None = None
_lock = threading.Lock()


def _coerce(name: str, value: Any, source: str) -> Any:
    """``value`` as the type of field ``name``; raises ValueError with a readable reason."""
    default = getattr(Config, name)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, str)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError(f"{source}: expected true/false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool):
            raise ValueError(f"{source}: expected a number, got {value!r}")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError(f"{source}: expected a number, got {value!r}") from None
        if number < (0 if name in _ZERO_ALLOWED else 1):
            raise ValueError(f"{source}: {number} is out of range")
        return number
    if name == "history_url":
        return parse_history_url(value, source)
    if name == "worker_id":
        return _worker_id(value, source)
    # optional path
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{source}: expected a folder path, got {value!r}")
    return os.path.expanduser(value)


def parse_history_url(value: Any, source: str) -> str | None:
    """A history URL as the configuration takes it (None, "off" or a URL); ValueError, naming ``source``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f'{source}: expected a database URL or "off", got a {type(value).__name__}')
    text = value.strip()
    if text.lower() in ("off", "none", "false", "0", "no"):
        return HISTORY_OFF
    if not _URL_FORM.match(text):
        # Never echo the value: it may hold a password.
        raise ValueError(f'{source}: expected a URL such as sqlite:///path or postgresql://host/db, or "off"')
    return text


def _worker_id(value: Any, source: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.isprintable() or len(value.strip()) > MAX_WORKER_ID:
        raise ValueError(f"{source}: expected a printable name of at most {MAX_WORKER_ID} characters")
    return value.strip() or None


_SECRET_QUERY = re.compile(r"(?i)\b(password|passwd|pwd|sslpassword|secret|token|api_key)=([^&;]*)")


def hide_password(url: str | None) -> str | None:
    """``url`` with its password (and password-like query values) replaced by ``***``."""
    if not url:
        return url
    scheme, sep, rest = url.partition("://")
    if not sep:
        return _SECRET_QUERY.sub(r"\1=***", url)
    query = rest.find("?")
    # The user info ends at the last "@" before the query (a password may hold "/" or "@").
    at = rest.rfind("@", 0, query if query >= 0 else len(rest))
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon and "/" not in user:
            rest = f"{user}:***{rest[at:]}"
    return scheme + "://" + _SECRET_QUERY.sub(r"\1=***", rest)


def public(cfg: Config) -> dict[str, Any]:
    """The settings as shown to users (status route, ``doctor``): credentials hidden."""
    values = {f.name: getattr(cfg, f.name) for f in fields(Config)}
    values["history_url"] = hide_password(cfg.history_url)
    return values


def config_path() -> Path:
    """The config file in force."""
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


#: Environment variable naming the plugin's cache folder (model hashes; the harness's ComfyUI).
CACHE_DIR_ENV = "RUNTIME_METADATA_CACHE"


def cache_dir() -> Path:
    """The plugin's own cache folder: ``$RUNTIME_METADATA_CACHE``, else ``~/.cache/runtime-metadata``."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "runtime-metadata"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        report_once(f"cannot read {path} as UTF-8 text ({exc}); using defaults")
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
        report_once(f"{path} is not valid JSON ({exc}); using defaults")
        return {}
    if not isinstance(data, dict):
        report_once(f"{path} must hold a JSON object; using defaults")
        return {}
    return data


def load(path: Path | None = None, environ: dict[str, str] | None = None) -> Config:
    """Build the configuration now, from ``path`` and ``environ`` (defaults: the real ones)."""
    path = path or config_path()
    env = os.environ if environ is None else environ
    data = _read_file(path)
    values: dict[str, Any] = {}
    for f in fields(Config):
        (section, key), env_name = KEYS[f.name]
        if env_name in env:
            raw, source = env[env_name], f"environment variable {env_name}"
        else:
            block = data.get(section)
            if not isinstance(block, dict) or key not in block:
                continue
            raw, source = block[key], f"{path.name}: {section}.{key}"
        try:
            values[f.name] = _coerce(f.name, raw, source)
        except ValueError as exc:
            report_once(f"{exc}; using the default {getattr(Config, f.name)!r}")
    return Config(**values)


def get() -> Config:
    """The current configuration, re-read when the file or the environment changed."""
    global _cache
    path = config_path()
    try:
        st = path.stat()
        stamp: Any = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (str(path), None, None)
    env_names = [k[1] for k in KEYS.values()]
    stamp = (stamp, tuple(os.environ.get(n) for n in env_names))
    with _lock:
        if _cache is not None and _cache[0] == stamp:
            return _cache[1]
        cfg = load(path)
        _cache = (stamp, cfg)
        return cfg


def describe() -> list[tuple[str, str, Any, str]]:
    """(config.json key, environment variable, value in force, where it came from) per setting."""
    cfg = get()
    path = config_path()
    data = _read_file(path)
    rows = []
    for f in fields(Config):
        (section, key), env_name = KEYS[f.name]
        if env_name in os.environ:
            source = f"environment {env_name}"
        elif isinstance(data.get(section), dict) and key in data[section]:
            source = path.name
        else:
            source = "default"
        value = hide_password(cfg.history_url) if f.name == "history_url" else getattr(cfg, f.name)
        rows.append((f"{section}.{key}", env_name, value, source))
    return rows
