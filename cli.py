"""The ``runtime-metadata`` command: demo, inspect, replay, stats, doctor."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .errors import RuntimeMetadataError
from .events.log import paused_gc, read_log_file
from .events.schema import RunStarted
from .projections.document import build_document, encode_document, save_nodes
from .projections.runtime import project, runtime_document
from .projections.timing import timing_stats
from .writers.read import read_metadata

PACKAGE_DIR = Path(__file__).resolve().parent
EXAMPLES = PACKAGE_DIR / "examples"
SAVE_CLASSES = frozenset({"SaveImageRuntimeMetadata"})


def _print(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------- summaries


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def summarize_document(doc: dict[str, Any], prompt: dict[str, Any] | None = None) -> str:
    """A readable account of a runtime document: nodes, resolved values, timings."""
    rt = doc.get("runtime", doc)
    status = rt.get("status")
    if status == "running" and rt.get("saved_by"):
        status = "running (saved mid-run; the run's outcome and totals are in its log: replay/stats)"
    lines = [
        f"run {rt.get('prompt_id')}  started={rt.get('started_at')}  status={status}",
        f"ComfyUI: {rt.get('comfyui')}   plugin: {rt.get('plugin')}",
    ]
    saved = rt.get("saved_by") or {}
    if saved:
        lines.append(f"saved by node {saved.get('id')} ({saved.get('class_type')}); its ancestors, in run order:")
    for node in rt.get("nodes", []):
        took = f"{node['duration_ms']:.3f} ms" if "duration_ms" in node else node.get("status", "")
        lines.append(f"  #{node['id']:<6} {node['class_type']:<32} {took}")
        static = ((prompt or {}).get(node["id"]) or {}).get("inputs", {})
        for name, value in (node.get("inputs") or {}).items():
            linked = static.get(name)
            note = ""
            if isinstance(linked, list) and len(linked) == 2 and not isinstance(value, (dict, list)):
                note = f"   <- computed at run time by node {linked[0]} (the prompt only has a link)"
            lines.append(f"      {name} = {_short(value)}{note}")
        if "error" in node:
            lines.append(f"      error: {node['error']}")
    t = rt.get("timing", {})
    lines.append(
        f"timing: {t.get('executed_nodes')} executed, {t.get('cached_nodes')} cached, "
        f"node time {t.get('node_time_ms')} ms"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def cmd_inspect(args: argparse.Namespace) -> int:
    meta = read_metadata(args.image)
    for problem in meta.problems:
        print(f"{args.image}: {problem}", file=sys.stderr)
    if meta.document is None:
        if not Path(args.image).is_file():
            _print(f"{args.image}: no such file")
            return 1
        if meta.pointer is not None:
            _print(
                f"{args.image}: its document is in the sidecar {meta.pointer.get('file')!r}, which could not "
                "be used (see above); a sidecar has to stay next to its image, under the name it was saved with"
            )
            if meta.summary:
                _print("summary kept in the image:\n" + json.dumps(meta.summary, indent=1, sort_keys=True))
            return 1
        where = f"{meta.format} image" if meta.format else "not a PNG, JPEG or WebP image"
        _print(f"{args.image}: no runtime metadata ({where})")
        return 1
    if args.json:
        _print(encode_document(meta.document))
    else:
        if meta.pointer:
            _print(f"(document read from sidecar {meta.pointer.get('file')}, size and sha256 verified)")
        _print(summarize_document(meta.document, meta.prompt if isinstance(meta.prompt, dict) else None))
    return 0


def _replayed(
    path: str, node: str | None, list_index: int | None = None
) -> tuple[list[tuple[str, str]], list[str], dict[str, Any]]:
    result = read_log_file(path)
    warnings = []
    if result.damage:
        warnings.append(f"{path}: damaged log, {len(result.damage)} stretch(es) skipped:\n{result.describe_damage()}")
    saved = save_nodes(result.events, SAVE_CLASSES)
    nodes = ([node] if node in saved else []) if node else saved
    prompt: dict[str, Any] = next((e.prompt for e in result.events if isinstance(e, RunStarted)), {})
    with paused_gc(len(result.events) > 10_000):
        docs = [(n, encode_document(build_document(result.events, n, list_index))) for n in nodes]
    return docs, warnings, prompt


def cmd_replay(args: argparse.Namespace) -> int:
    if args.check:
        meta = read_metadata(args.check)
        if meta.document is None:
            _print(
                f"{args.check}: no runtime metadata to check against ({'; '.join(meta.problems) or 'none embedded'})"
            )
            return 2
        embedded = meta.document_text or ""  # exactly as stored, inline or in the sidecar
        saved_by = (meta.document.get("runtime") or {}).get("saved_by") or {}
        node = str(saved_by.get("id", ""))
        list_index = saved_by.get("list_index")
        if not node:
            _print(
                f"{args.check}: its document has no runtime block (saved with embed_runtime off, or without capture)"
            )
            return 2
        docs, warnings, _ = _replayed(args.log, node, list_index)
        if not docs:
            _print(
                f"{args.log}: node {node} never saved in this log (another run's log, or one cut short before the save)"
            )
            return 1
        for w in warnings:
            print(w, file=sys.stderr)
        rebuilt = docs[0][1]
        if rebuilt == embedded:
            _print(f"OK: replaying {args.log} rebuilds the document in {args.check} byte for byte")
            return 0
        at = next(
            (i for i, (a, b) in enumerate(zip(rebuilt, embedded, strict=False)) if a != b),
            min(len(rebuilt), len(embedded)),
        )
        _print(
            f"DIFFERENT at character {at}:\n  image : …{embedded[max(0, at - 40) : at + 40]}\n"
            f"  replay: …{rebuilt[max(0, at - 40) : at + 40]}"
        )
        return 1
    docs, warnings, prompt = _replayed(args.log, args.node)
    for w in warnings:
        print(w, file=sys.stderr)
    if not docs:
        what = f"node {args.node} never saved" if args.node else "no save node of this plugin ran"
        _print(f"{args.log}: {what} in this log")
        return 1
    for _, text in docs:
        _print(text if args.json else summarize_document(json.loads(text), prompt))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import config

    if args.url:
        import urllib.request

        url = args.url.rstrip("/") + "/runtime_metadata/status"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # user-given local URL
                report = json.load(response)
        except OSError as exc:
            _print(f"cannot reach {url}: {exc} (is ComfyUI running with this plugin loaded?)")
            return 2
        cap = report["capture"]
        _print(f"plugin {report['plugin']} in {cap['generation']}")
        state = "ON" if cap["active"] else "OFF"
        why = cap["disabled_reason"] or ("" if cap["active"] else "hooks not enabled in the configuration")
        _print(f"capture: {state}{' - ' + why if why else ''}; runs captured: {cap['runs_captured']}")
        for item in cap["installed"]:
            _print(f"  wrapped  {item}")
        for item in cap["skipped"]:
            _print(f"  skipped  {item}")
        for item in cap.get("notes") or ():
            _print(f"  note     {item}")
        _print(f"config file (in that ComfyUI): {report['config_file']}")
        for key, value in report["config"].items():
            _print(f"  {key} = {value!r}")
        return 0 if cap["active"] or not cap["disabled_reason"] else 1
    path = config.config_path()
    _print(
        f"config file: {path} ({'present' if path.exists() else 'absent'}; set {config.CONFIG_PATH_ENV} to use another)"
    )
    for key, env_name, value, source in config.describe():
        _print(f"  {key:<36} = {value!r:<8} from {source}   (env: {env_name})")
    _print("(add --url http://127.0.0.1:8188 to ask a running ComfyUI what capture is doing)")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    paths: list[Path] = []
    for item in args.logs:
        p = Path(item)
        paths += sorted(p.glob("*.rtlog")) if p.is_dir() else [p]
    docs = []
    for path in paths:
        try:
            result = read_log_file(path)
        except (OSError, RuntimeMetadataError) as exc:  # one bad file never hides the others
            print(f"{path}: skipped ({exc})", file=sys.stderr)
            continue
        if result.damage:
            print(f"{path}: damaged, {len(result.damage)} stretch(es) skipped", file=sys.stderr)
        with paused_gc(len(result.events) > 10_000):
            docs.append(runtime_document(project(None, result.events)))
    report = timing_stats(docs)
    if args.json:
        _print(json.dumps(report, indent=1, sort_keys=True))
        return 0
    _print(f"{report['runs']} runs, {report['nodes_executed']} node executions, {report['nodes_cached']} cached")
    wall = report["wall_ms"]
    if wall:
        _print(f"run wall time: median {wall['median']} ms, max {wall['max']} ms")
    hooks = report["hooks"]
    _print(
        f"capture overhead: {hooks['calls']} hook calls, {hooks['total_ms']} ms in all, max {hooks['max_ms']} ms, "
        f"{hooks['share'] * 100:.2f}% of run time"
    )
    _print(f"{'class_type':<36} {'calls':>7} {'total ms':>10} {'mean ms':>9} {'max ms':>9}")
    for ct, row in sorted(report["by_class"].items(), key=lambda kv: -kv[1]["total_ms"]):
        _print(f"{ct:<36} {row['calls']:>7} {row['total_ms']:>10.3f} {row['mean_ms']:>9.3f} {row['max_ms']:>9.3f}")
    return 0


# --------------------------------------------------------------------------- history (issue 10)


def _history_url(args: argparse.Namespace) -> str:
    """The history database to use: ``--db``, else the configuration's ``history_url``."""
    from . import config

    url = getattr(args, "db", None) or config.get().history_url
    if not url or url == config.HISTORY_OFF:
        raise RuntimeMetadataError(
            "no history database: give --db URL (the plugin's default is "
            "sqlite:///<ComfyUI user directory>/runtime_metadata/history.sqlite)"
        )
    return str(url)


def cmd_history_rebuild(args: argparse.Namespace) -> int:
    """Fold every event log of a folder into the history (runs already there are kept as they are)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .config import hide_password
    from .history.rebuild import log_files, rebuild
    from .history.store import HistoryStore, describe_error

    url = _history_url(args)
    store = HistoryStore(url)
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
        print(problem, file=sys.stderr)
    _print(
        f"{report.files} logs, {report.runs} runs ({report.events} events) in {report.seconds:.2f} s "
        f"({report.events_per_second:,.0f} events/s): {report.written} written, "
        f"{report.runs - report.written} already in {hide_password(url)}"
    )
    return 1 if report.problems else 0


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
    from .harness.provision import ensure_comfyui
    from .harness.server import ComfyServer

    started = time.monotonic()
    install = ensure_comfyui(comfyui_path=args.comfyui, log=lambda m: _print(f"[demo] {m}"))
    _print(f"[demo] ComfyUI: {install.label} at {install.root}")
    prompt, workflow = _load_example()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="runtime-metadata-demo-")).resolve()
    logs = workdir / "runtime-logs"
    env = {"AAA_METADATA_ENABLE_HOOKS": "1", "AAA_METADATA_LOG_DIR": str(logs)}
    with ComfyServer(install, PACKAGE_DIR, env=env, workdir=workdir) as server:
        _print(f"[demo] server up at {server.url} in {server.startup_seconds:.1f} s; queueing the example workflow")
        prompt_id = server.queue(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
        entry = server.wait(prompt_id)
        output_dir = server.output_dir
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
    return check


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(prog="runtime-metadata", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the built-in example on a real ComfyUI and show what was captured")
    demo.add_argument("--comfyui", help="use this ComfyUI folder (default: $COMFYUI_PATH, else provision one)")
    demo.add_argument("--workdir", help="keep the server's output here (default: a temporary folder)")
    demo.set_defaults(func=cmd_demo)
    inspect_ = sub.add_parser("inspect", help="print the runtime metadata embedded in an image")
    inspect_.add_argument("image")
    inspect_.add_argument("--json", action="store_true", help="print the embedded document as JSON")
    inspect_.set_defaults(func=cmd_inspect)
    replay = sub.add_parser("replay", help="rebuild the runtime document from a saved event log")
    replay.add_argument("log")
    replay.add_argument("--json", action="store_true", help="print the canonical JSON document")
    replay.add_argument("--node", help="the save node whose document to rebuild (default: every one)")
    replay.add_argument("--check", metavar="IMAGE", help="verify the image's document is rebuilt byte for byte")
    replay.set_defaults(func=cmd_replay)
    stats = sub.add_parser("stats", help="timing statistics over saved event logs (files or folders)")
    stats.add_argument("logs", nargs="+")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_stats)
    doctor = sub.add_parser("doctor", help="show the configuration, or a running ComfyUI's capture status")
    doctor.add_argument("--url", help="ComfyUI's address, e.g. http://127.0.0.1:8188")
    doctor.set_defaults(func=cmd_doctor)
    add_history_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``runtime-metadata`` command."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (RuntimeMetadataError, OSError) as exc:
        print(f"runtime-metadata: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
