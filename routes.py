"""ComfyUI-server glue: the JSON routes under ``/runtime_metadata/``, the per-run push, the history.

With ``capture/`` the only code that touches ComfyUI (its ``PromptServer``); the contract
(``API.md``, the README's routes section) is what the ``web/`` extension is built on.

* Every query parameter is checked: an unknown name or a bad value gets HTTP 400 with
  ``{"error": ...}``, an unknown run 404. Database work runs in a worker thread, never on
  ComfyUI's event loop.
* The history is read-only here, except ``POST /runtime_metadata/config``, which writes
  ``config.json`` as a user would (atomically, validated, other keys kept).
* A run's log is served only from this worker's log folder, only under the file name the
  history recorded for that very run, and only if that file resolves inside the folder.
* Database URLs are shown with their password hidden; the driver's errors likewise.
* One websocket message per run, when it ends (``runtime_metadata.run``, from the history
  writer's thread through ComfyUI's thread-safe ``send_sync``): never one per node.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import capture, config
from .capture import comfy
from .capture.listeners import RunEnd
from .errors import RuntimeMetadataError
from .events.log import iter_log
from .events.schema import RUN_STATUSES, RunStarted
from .projections.history import RunRows

log = logging.getLogger("runtime_metadata")

PREFIX = "/runtime_metadata"
PUSH_EVENT = "runtime_metadata.run"
PACKAGE_DIR = Path(__file__).resolve().parent
DASHBOARD = PACKAGE_DIR / "web" / "dashboard.html"
#: Folder of the history and default log folder, inside ComfyUI's user directory.
USER_SUBDIR = "runtime_metadata"
#: Longest text a filter (class type, worker, prompt id) may be.
MAX_FILTER_CHARS = 255
#: A config.json larger than this is not one a user wrote: refuse to rewrite it.
MAX_CONFIG_BYTES = 1 << 20
RUN_FILTER_STATUSES = (*RUN_STATUSES, "running")


class BadRequest(Exception):
    """A parameter that is not acceptable; its text is the 400's error."""


# --------------------------------------------------------------------------- plugin state


class Plugin:
    """What the routes share: the history writer, this worker's id and log folder."""

    def __init__(self) -> None:
        self.writer: Any = None  # history.writer.HistoryWriter, once set up
        self.worker_id: str = ""
        self.log_dir: Path | None = None
        self.history_error: str | None = None
        self.server: Any = None


PLUGIN = Plugin()


def default_folder() -> Path | None:
    """``<ComfyUI user directory>/runtime_metadata``, where the history and logs go by default."""
    user = comfy.user_directory()
    return Path(user) / USER_SUBDIR if user else None


def history_url(cfg: config.Config) -> str | None:
    """The history database in force: the configured URL, or SQLite in the user directory."""
    if cfg.history_url == config.HISTORY_OFF:
        return None
    if cfg.history_url:
        return cfg.history_url
    folder = default_folder()
    return "sqlite:///" + str(folder / "history.sqlite") if folder is not None else None


def log_folder(cfg: config.Config) -> str | None:
    """The log folder in force: ``log_dir``, else (with the history on) the default folder's ``logs``."""
    if cfg.log_dir:
        return cfg.log_dir
    if cfg.history_url == config.HISTORY_OFF:
        return None
    folder = default_folder()
    return str(folder / "logs") if folder is not None else None


def start_history(cfg: config.Config, server: Any = None) -> Any:
    """Create the history writer (started with the first run or at once when capture is on)."""
    PLUGIN.server = server
    PLUGIN.worker_id = cfg.worker_id or comfy.default_worker_id()
    folder = log_folder(cfg)
    PLUGIN.log_dir = Path(folder) if folder else None
    capture.set_default_log_dir(lambda: log_folder(config.get()))
    url = history_url(cfg)
    try:
        import sqlalchemy  # noqa: F401 - the history needs it; the push does not
    except ImportError:
        PLUGIN.history_error = "SQLAlchemy is not installed (pip install -r requirements.txt): history off"
        log.warning("[runtime-metadata] %s", PLUGIN.history_error)
        url = None
    from .history.writer import HistoryWriter, Limits

    def limits() -> Limits:
        now = config.get()
        return Limits(max_runs=now.history_max_runs, log_max_bytes=now.log_max_mb << 20)

    writer = HistoryWriter(url, PLUGIN.worker_id, PLUGIN.log_dir, limits, on_rows=[push_run], busy=comfyui_busy)
    PLUGIN.writer = writer
    capture.add_run_listener(writer.submit)
    if cfg.hooks_enabled and url is not None:
        writer.start()  # catch up from the logs now rather than at the first run
    return writer


def comfyui_busy() -> bool:
    """True while ComfyUI has a prompt running or queued (its own count, both generations)."""
    queue = getattr(PLUGIN.server, "prompt_queue", None)
    remaining = getattr(queue, "get_tasks_remaining", None)
    return bool(remaining()) if callable(remaining) else False


# --------------------------------------------------------------------------- the push


def push_payload(rows: RunRows) -> dict[str, Any]:
    """The websocket message of a finished run: its status and per-node summary."""
    run = rows.run
    return {
        "prompt_id": run.prompt_id,
        "run_id": str(run.run_id),
        "worker_id": run.worker_id,
        "status": run.status,
        "wall_ms": _ms(run.wall_ns),
        "nodes": [
            {
                "node_id": n.node_id,
                "display_id": n.display_id,
                "parent_id": n.parent_id,
                "class_type": n.class_type,
                "status": n.status,
                "duration_ms": _ms(n.duration_ns),
                "start_ms": _ms(n.start_ns),
            }
            for n in rows.nodes
        ],
    }


def push_run(rows: RunRows, end: RunEnd) -> None:
    """Send the run's summary to the client that queued it (to every client when none did)."""
    server = PLUGIN.server
    if server is None or not callable(getattr(server, "send_sync", None)):
        return
    server.send_sync(PUSH_EVENT, push_payload(rows), end.client_id)


def _ms(ns: int | None) -> float | None:
    return None if ns is None else round(ns / 1e6, 3)


# --------------------------------------------------------------------------- parameters


_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f]*$")


def _params(request: Any, allowed: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """The query parameters, each checked by its parser; unknown or repeated names refused."""
    query = request.query
    out: dict[str, Any] = {}
    for name in query:
        if name not in allowed:
            raise BadRequest(f"unknown parameter {name[:40]!r} (allowed: {', '.join(sorted(allowed))})")
        values = query.getall(name)
        if len(values) != 1:
            raise BadRequest(f"parameter {name!r} given {len(values)} times")
        out[name] = allowed[name](values[0])
    return out


def _int(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", text):
            raise BadRequest(f"{name} must be a whole number from {low} to {high}")
        value = int(text)
        if not low <= value <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}")
        return value

    return parse


def _text(name: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if not text or len(text) > MAX_FILTER_CHARS or not _PRINTABLE.match(text):
            raise BadRequest(f"{name} must be 1 to {MAX_FILTER_CHARS} printable characters")
        return text

    return parse


def _status(text: str) -> str:
    if text not in RUN_FILTER_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(RUN_FILTER_STATUSES)}")
    return text


def _run_id(text: str) -> int:
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) >= 1 << 63:
        raise BadRequest("run_id must be the run_id of a run (a decimal number)")
    return int(text)


def _prompt_id(request: Any) -> str:
    return _text("prompt id")(request.match_info.get("prompt_id", ""))


# --------------------------------------------------------------------------- responses


def _json(data: Any, status: int = 200) -> Any:
    from aiohttp import web

    return web.json_response(data, status=status)


def _error(status: int, message: str) -> Any:
    return _json({"error": message}, status)


async def _in_thread(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, lambda: func(*args, **kwargs))


def _store() -> Any:
    """The open history, or raises LookupError with why there is none."""
    writer = PLUGIN.writer
    if writer is None or writer.url is None:
        raise LookupError(PLUGIN.history_error or "the history is off (runtime_hooks.history_url = off)")
    if writer.store is None:
        writer.wait_tried(10)
    if writer.store is None:
        raise LookupError(f"history database unavailable: {writer.status()['last_error']}")
    return writer.store


def _guarded(handler: Callable[..., Any]) -> Callable[..., Any]:
    """400 for bad parameters, 503 when the history cannot answer; never a traceback page."""

    async def wrapped(request: Any) -> Any:
        try:
            return await handler(request)
        except BadRequest as exc:
            return _error(400, str(exc))
        except LookupError as exc:
            return _error(503, str(exc))
        except Exception as exc:
            from .history.store import describe_error

            url = PLUGIN.writer.url if PLUGIN.writer is not None else ""
            log.warning("[runtime-metadata] %s %s failed: %s", request.method, request.path, describe_error(exc, url))
            return _error(503, f"history unavailable: {describe_error(exc, url or '')}")

    wrapped.__name__ = handler.__name__
    return wrapped


# --------------------------------------------------------------------------- handlers


def status_document() -> dict[str, Any]:
    """The status route's body: capture status, configuration (credentials hidden), history."""
    report = capture.status_report()
    writer = PLUGIN.writer
    history = writer.status() if writer is not None else {"enabled": False}
    if PLUGIN.history_error:
        history["last_error"] = PLUGIN.history_error
    report["history"] = history
    return report


async def get_status(request: Any) -> Any:
    _params(request, {})
    return _json(status_document())


async def post_config(request: Any) -> Any:
    _params(request, {})
    if request.content_type != "application/json":
        return _error(415, "send the configuration change as application/json")
    raw = await request.content.read(MAX_CONFIG_BYTES + 1)
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    hooks = body.get("runtime_hooks") if isinstance(body, dict) else None
    if not isinstance(body, dict) or set(body) != {"runtime_hooks"} or not isinstance(hooks, dict):
        raise BadRequest('expected {"runtime_hooks": {"enabled": true|false}}')
    if set(hooks) != {"enabled"} or not isinstance(hooks["enabled"], bool):
        raise BadRequest("only runtime_hooks.enabled can be changed here, as true or false")
    await _in_thread(write_config_enabled, config.config_path(), hooks["enabled"])
    if hooks["enabled"]:
        capture.install_if_enabled_now()
    return _json(status_document())


def write_config_enabled(path: Path, enabled: bool) -> None:
    """Set ``runtime_hooks.enabled`` in ``config.json`` atomically, keeping every other key."""
    from .writers.atomic import atomic_open

    data: dict[str, Any] = {}
    if path.exists():
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise BadRequest(f"{path.name} is larger than {MAX_CONFIG_BYTES} bytes; not rewriting it")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            raise BadRequest(f"{path.name} is not valid JSON; fix or remove it first (not overwritten)") from None
        if not isinstance(data, dict):
            raise BadRequest(f"{path.name} does not hold a JSON object; not overwritten")
    block = data.get("runtime_hooks")
    if block is not None and not isinstance(block, dict):
        raise BadRequest(f"{path.name}: runtime_hooks is not an object; not overwritten")
    data["runtime_hooks"] = {**(block or {}), "enabled": enabled}
    with atomic_open(path) as fh:
        fh.write((json.dumps(data, indent=2) + "\n").encode("utf-8"))


_RUNS_PARAMS = {
    "limit": _int("limit", 1, 500),
    "offset": _int("offset", 0, 1_000_000_000),
    "status": _status,
    "class_type": _text("class_type"),
    "worker": _text("worker"),
}


async def get_runs(request: Any) -> Any:
    p = _params(request, _RUNS_PARAMS)
    store = await _in_thread(_store)
    page = await _in_thread(
        store.runs_page,
        limit=p.get("limit", 50),
        offset=p.get("offset", 0),
        status=p.get("status"),
        class_type=p.get("class_type"),
        worker=p.get("worker"),
    )
    return _json(page)


async def get_run(request: Any) -> Any:
    p = _params(request, {"worker": _text("worker"), "run_id": _run_id})
    prompt_id = _prompt_id(request)
    store = await _in_thread(_store)
    run = await _in_thread(store.run, prompt_id, worker=p.get("worker"), run_id=p.get("run_id"))
    if run is None:
        return _error(404, f"no run with prompt id {prompt_id[:80]!r} in the history")
    run["log_available"] = await _in_thread(_kept_log, run) is not None
    run.pop("log_name", None)
    return _json(run)


async def get_run_log(request: Any) -> Any:
    from aiohttp import web

    p = _params(request, {"worker": _text("worker"), "run_id": _run_id})
    prompt_id = _prompt_id(request)
    store = await _in_thread(_store)
    run = await _in_thread(store.run, prompt_id, worker=p.get("worker"), run_id=p.get("run_id"))
    if run is None:
        return _error(404, f"no run with prompt id {prompt_id[:80]!r} in the history")
    path = await _in_thread(_kept_log, run)
    if path is None:
        where = "" if run["worker_id"] == PLUGIN.worker_id else f" (it ran on worker {run['worker_id']!r})"
        return _error(404, f"the event log of this run is not kept here{where}")
    data = await _in_thread(path.read_bytes)
    return web.Response(
        body=data,
        content_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{path.name}"'},
    )


def _kept_log(run: dict[str, Any]) -> Path | None:
    """The run's own log file in this worker's log folder, or None.

    Only a plain file name the history recorded, resolving inside the log folder, whose first
    event is this very run's start (a later run may have reused the name after retention).
    """
    name = run.get("log_name")
    folder = PLUGIN.log_dir
    if folder is None or not isinstance(name, str) or run.get("worker_id") != PLUGIN.worker_id:
        return None
    if name != Path(name).name or not name.endswith(".rtlog") or name.startswith("."):
        return None
    try:
        root = folder.resolve(strict=True)
        path = (root / name).resolve(strict=True)
    except OSError:
        return None
    if path.parent != root or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
    except OSError:
        return None
    try:
        first = next((e for e in iter_log(head) if isinstance(e, RunStarted)), None)
    except RuntimeMetadataError:  # not a log (any more)
        return None
    if first is None or first.prompt_id != run["prompt_id"] or first.worker_id not in (None, run["worker_id"]):
        return None
    return path


async def get_stats(request: Any) -> Any:
    p = _params(
        request, {"last": _int("last", 1, 100_000), "class_type": _text("class_type"), "worker": _text("worker")}
    )
    store = await _in_thread(_store)
    stats = await _in_thread(
        store.stats, last=p.get("last", 1000), class_type=p.get("class_type"), worker=p.get("worker")
    )
    return _json(stats)


async def get_workers(request: Any) -> Any:
    _params(request, {})
    store = await _in_thread(_store)
    return _json({"workers": await _in_thread(store.workers), "this_worker": PLUGIN.worker_id})


async def get_compare(request: Any) -> Any:
    p = _params(
        request, {"a": _text("a"), "b": _text("b"), "worker_a": _text("worker_a"), "worker_b": _text("worker_b")}
    )
    if "a" not in p or "b" not in p:
        raise BadRequest("give both a and b (prompt ids)")
    store = await _in_thread(_store)
    a = await _in_thread(store.run, p["a"], worker=p.get("worker_a"))
    b = await _in_thread(store.run, p["b"], worker=p.get("worker_b"))
    for which, run in (("a", a), ("b", b)):
        if run is None:
            return _error(404, f"no run with prompt id {p[which][:80]!r} ({which}) in the history")
    return _json({"a": _summary(a), "b": _summary(b), "nodes": compare_nodes(a["nodes"], b["nodes"])})


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k not in ("nodes", "saves", "log_name")}


def compare_nodes(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes of two runs side by side, by node id: the first run's order, then nodes only the second had."""
    by_a = {n["node_id"]: n for n in a}
    by_b = {n["node_id"]: n for n in b}
    rows = []
    for nid in dict.fromkeys([*by_a, *by_b]):
        left, right = by_a.get(nid), by_b.get(nid)
        da = left["duration_ms"] if left else None
        db = right["duration_ms"] if right else None
        rows.append(
            {
                "node_id": nid,
                "class_type": (left or right or {}).get("class_type"),
                "a": {"status": left["status"], "duration_ms": da} if left else None,
                "b": {"status": right["status"], "duration_ms": db} if right else None,
                "delta_ms": round(db - da, 3) if da is not None and db is not None else None,
            }
        )
    return rows


_LIB_FILE = re.compile(r"^[A-Za-z0-9_-]{1,64}\.js$")


async def get_lib(request: Any) -> Any:
    """The dashboard page's ES modules (``web/lib/*.js``), which it imports relative to itself."""
    from aiohttp import web

    _params(request, {})
    name = request.match_info.get("name", "")
    path = DASHBOARD.parent / "lib" / name
    if not _LIB_FILE.match(name) or not path.is_file():
        return _error(404, "no such module")
    return web.FileResponse(path, headers={"Content-Type": "text/javascript", "Cache-Control": "no-cache"})


async def get_dashboard(request: Any) -> Any:
    from aiohttp import web

    _params(request, {})
    if not DASHBOARD.is_file():
        return _error(404, "the dashboard page is not installed (web/dashboard.html)")
    return web.FileResponse(DASHBOARD, headers={"Cache-Control": "no-cache"})


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    ("GET", "/status", get_status),
    ("POST", "/config", post_config),
    ("GET", "/runs", get_runs),
    ("GET", "/runs/{prompt_id}", get_run),
    ("GET", "/runs/{prompt_id}/log", get_run_log),
    ("GET", "/stats", get_stats),
    ("GET", "/workers", get_workers),
    ("GET", "/compare", get_compare),
    ("GET", "/dashboard", get_dashboard),
    ("GET", "/lib/{name}", get_lib),
]


def register(routes: Any) -> None:
    """Add every route to an aiohttp ``RouteTableDef`` (ComfyUI's ``PromptServer.instance.routes``)."""
    for method, path, handler in ROUTES:
        routes.route(method, PREFIX + path)(_guarded(handler))


def setup() -> bool:
    """Inside ComfyUI: register the routes and start the history; False if there is no server."""
    server = sys.modules.get("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None)
    routes = getattr(instance, "routes", None)
    try:
        start_history(config.get(), instance)
    except Exception:  # the history is never worth a failed ComfyUI start
        log.warning("[runtime-metadata] run history not started", exc_info=True)
    if routes is None:
        return False
    register(routes)
    return True
