"""The command line on real files: replay, stats, inspect, and what it says about bad input."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from runtime_metadata.canonical import encode_document
from runtime_metadata.cli import build_parser, main
from runtime_metadata.events.log import write_log_file
from runtime_metadata.events.schema import NodeFinished, NodeInputs, NodeStarted, RunFinished, RunStarted
from runtime_metadata.projections.document import build_document
from runtime_metadata.projections.timing import timing_stats
from runtime_metadata.version import __version__
from runtime_metadata.writers.save import save_image

from .conftest import run_events


def test_replay_prints_the_document_and_check_accepts_the_matching_image(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    image = tmp_path / "img.png"
    save_image(
        Image.new("RGB", (8, 8)),
        image,
        "png",
        prompt=run_events()[0].prompt,
        document=build_document(run_events(), "4"),
    )
    assert main(["replay", str(log), "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["runtime"]["saved_by"]["id"] == "4"
    assert main(["replay", str(log), "--check", str(image)]) == 0
    assert "byte for byte" in capsys.readouterr().out


def test_check_says_where_a_tampered_document_differs(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    doc = msgspec.to_builtins(build_document(run_events(), "4"))  # as JSON, to tamper with
    doc["runtime"]["nodes"][0]["inputs"]["a"] = 17
    image = tmp_path / "img.jpg"
    save_image(Image.new("RGB", (8, 8)), image, "jpeg", document=doc)
    assert main(["replay", str(log), "--check", str(image)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("DIFFERENT at character") and '"a":17' in out


def test_stats_aggregates_runs_by_class(tmp_path: Path, capsys) -> None:
    for i in range(3):
        write_log_file(tmp_path / f"r{i}.rtlog", run_events())
    assert main(["stats", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["runs"] == 3
    assert report["nodes_executed"] == 9 and report["nodes_cached"] == 3
    assert report["by_class"]["EmptyImage"] == {"calls": 3, "total_ms": 3.0, "mean_ms": 1.0, "max_ms": 1.0}
    assert report["hooks"]["calls"] == 27
    assert report["wall_ms"] == {"median": 2.099, "max": 2.099}


def test_a_damaged_log_is_reported_and_the_rest_still_replays(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    log.write_bytes(log.read_bytes()[:-5])
    assert main(["replay", str(log), "--json"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{log}: damaged, skipped bytes ")
    assert json.loads(captured.out)["runtime"]["status"] == "running"


def test_not_a_log_and_not_an_image_are_clear_errors(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "x.rtlog"
    bogus.write_bytes(b"hello world, definitely not a log")
    assert main(["replay", str(bogus)]) == 2
    assert "not a runtime-metadata log" in capsys.readouterr().err
    assert main(["inspect", str(bogus)]) == 2
    assert capsys.readouterr().err == f"{bogus}: not a PNG, JPEG or WebP image\n"


def test_check_compares_the_stored_bytes_inline_or_in_a_sidecar(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    doc = msgspec.to_builtins(build_document(run_events(), "4"))  # as JSON, to store by hand too
    sidecar_image = tmp_path / "side.webp"
    result = save_image(Image.new("RGB", (8, 8)), sidecar_image, "webp", document=doc, inline_size_limit_kb=0)
    assert result.sidecar is not None
    assert main(["replay", str(log), "--check", str(sidecar_image)]) == 0
    capsys.readouterr()
    # Same content, not the canonical bytes: a byte-for-byte check must say so.
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("runtime_metadata", json.dumps(doc, indent=1, sort_keys=True))
    pretty = tmp_path / "pretty.png"
    Image.new("RGB", (8, 8)).save(pretty, pnginfo=info)
    assert main(["replay", str(log), "--check", str(pretty)]) == 1
    assert capsys.readouterr().out.startswith("DIFFERENT at character 1")


# --- What users meet: one line per problem, exit codes, special files ---------------------------


def run_cli(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as users run it (a hang fails the test, never the run)."""
    return subprocess.run(
        [sys.executable, "-m", "runtime_metadata", *args], capture_output=True, text=True, timeout=timeout, **kw
    )


def saved_pair(tmp_path: Path, events: list | None = None, name: str = "img.png", **kw: Any) -> tuple[Path, Path]:
    """A log and the image its save node 4 wrote."""
    events = run_events() if events is None else events
    log = tmp_path / f"{events[0].prompt_id}.rtlog"
    write_log_file(log, events)
    image = tmp_path / name
    fmt = {"png": "png", "jpg": "jpeg", "webp": "webp"}[name.rsplit(".", 1)[1]]
    save_image(
        Image.new("RGB", (8, 8)), image, fmt, prompt=events[0].prompt, document=build_document(events, "4"), **kw
    )
    return log, image


@pytest.mark.parametrize("command", [["inspect"], ["replay"], ["stats"], ["replay", "LOG", "--check"]])
def test_a_missing_file_is_one_line_on_stderr_and_exit_2(tmp_path: Path, capsys, command: list[str]) -> None:
    missing = tmp_path / "missing.png"
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    argv = [str(log) if part == "LOG" else part for part in command] + [str(missing)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    if command == ["stats"]:
        assert captured.err == f"{missing}: no such file\nno log could be read (1 name given, none usable)\n"
    else:
        assert captured.err == f"{missing}: no such file\n"


def test_a_directory_is_called_a_directory(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert main(["inspect", str(folder)]) == 2
    assert capsys.readouterr().err == f"{folder} is a directory, not a file\n"
    assert main(["replay", str(folder)]) == 2
    assert capsys.readouterr().err == f"{folder} is a directory, not a file\n"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifos_are_refused_without_blocking_and_stats_reads_the_logs_around_one(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "a.png")
    os.mkfifo(tmp_path / "b.rtlog")
    write_log_file(tmp_path / "c.rtlog", run_events())
    for args, line in [
        (["inspect", str(tmp_path / "a.png")], f"{tmp_path / 'a.png'} is a FIFO (named pipe), not a file"),
        (["replay", str(tmp_path / "b.rtlog")], f"{tmp_path / 'b.rtlog'} is a FIFO (named pipe), not a file"),
    ]:
        out = run_cli(*args, timeout=30)
        assert (out.returncode, out.stdout, out.stderr) == (2, "", line + "\n")
    out = run_cli("stats", str(tmp_path), "--json", timeout=30)
    assert out.returncode == 0
    assert out.stderr == f"{tmp_path / 'b.rtlog'} is a FIFO (named pipe), not a file\n"
    assert json.loads(out.stdout)["runs"] == 1


def test_dev_zero_as_a_log_is_a_device_not_a_memory_error(capsys) -> None:
    assert main(["replay", "/dev/zero"]) == 2
    assert capsys.readouterr().err == "/dev/zero is a device, not a file\n"
    assert main(["stats", "/dev/zero"]) == 2
    assert (
        capsys.readouterr().err
        == "/dev/zero is a device, not a file\nno log could be read (1 name given, none usable)\n"
    )


def test_stats_exits_non_zero_when_nothing_could_be_read(tmp_path: Path, capsys) -> None:
    (tmp_path / "x.rtlog").write_bytes(b"not a log")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["stats", str(tmp_path / "x.rtlog"), str(empty)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{empty}: a folder with no .rtlog files",
        f"{tmp_path / 'x.rtlog'}: not a runtime-metadata log: 9 bytes, shorter than its header",
        "no log could be read (2 names given, none usable)",
    ]


def test_one_run_is_singular(tmp_path: Path, capsys) -> None:
    write_log_file(tmp_path / "r.rtlog", run_events())
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 run, 3 node executions, 1 cached\n")
    assert "9 hook calls" in out


# --- Documents and logs of the wrong shape -------------------------------------------------------


def image_with_document(path: Path, text: str) -> Path:
    info = PngInfo()
    info.add_itxt("runtime_metadata", text)
    Image.new("RGB", (4, 4)).save(path, pnginfo=info)
    return path


@pytest.mark.parametrize(
    ("document", "where"),
    [
        ({"runtime": []}, "Expected `object | null`, got `array` - at `$.runtime`"),
        ({"runtime": {"nodes": {}}}, "Expected `array`, got `object` - at `$.runtime.nodes`"),
        ({"runtime": {"nodes": [{"id": "1"}]}}, "Object missing required field `class_type` - at `$.runtime.nodes[0]`"),
        ({"runtime": {"saved_by": "4"}}, "Expected `object | null`, got `str` - at `$.runtime.saved_by`"),
        (
            {"runtime": {"timing": {"executed_nodes": "x"}}},
            "Expected `int | null`, got `str` - at `$.runtime.timing.executed_nodes`",
        ),
    ],
)
def test_a_document_of_the_wrong_shape_is_one_line_in_inspect_and_check(
    tmp_path: Path, capsys, document: Any, where: str
) -> None:
    image = image_with_document(tmp_path / "bad.png", json.dumps(document))
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    expected = f"{image}: its document has the wrong shape: {where}\n"
    for argv in (
        ["inspect", str(image)],
        ["inspect", str(image), "--json"],
        ["replay", str(log), "--check", str(image)],
    ):
        assert main(argv) == 2
        assert capsys.readouterr() == ("", expected)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
runtime_keys = st.sampled_from(["runtime", "nodes", "saved_by", "timing", "id", "class_type", "inputs", "status"])
documents = st.dictionaries(
    runtime_keys, json_values | st.dictionaries(runtime_keys, json_values, max_size=4), max_size=4
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(documents)
def test_any_embedded_document_gets_an_answer_never_a_traceback(tmp_path: Path, capsys, document: Any) -> None:
    image = image_with_document(tmp_path / "any.png", json.dumps(document))
    log = tmp_path / "p-1.rtlog"
    if not log.exists():
        write_log_file(log, run_events())
    for argv in (["inspect", str(image)], ["replay", str(log), "--check", str(image)]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code in (0, 1, 2)
        if code == 2:
            assert len(captured.err.splitlines()) == 1 and captured.out == ""


def events_with_prompt(prompt: Any) -> list:
    events = run_events()
    started = events[0]
    events[0] = RunStarted(started.prompt_id, started.wall_ns, started.t_ns, prompt, None, "ComfyUI test", "0.1.0")
    return events


@pytest.mark.parametrize(
    ("prompt", "problem"),
    [
        ({"4": 5}, "its prompt's node '4' is not a ComfyUI node: Expected `object`, got `int`"),
        (
            {"4": {"class_type": "SaveImageRuntimeMetadata", "inputs": [1]}},
            "its prompt's node '4' is not a ComfyUI node: Expected `object`, got `array` - at `$.inputs`",
        ),
        (
            {"4": {"class_type": ["x"], "inputs": {}}},
            "its prompt's node '4' is not a ComfyUI node: Expected `str`, got `array` - at `$.class_type`",
        ),
    ],
)
def test_a_log_whose_prompt_is_not_comfyuis_is_one_line(tmp_path: Path, capsys, prompt: Any, problem: str) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, events_with_prompt(prompt))
    assert main(["replay", str(log)]) == 2
    assert capsys.readouterr() == ("", f"{log}: {problem}\n")


prompt_nodes = st.dictionaries(
    st.sampled_from(["class_type", "inputs", "_meta"]),
    json_values | st.dictionaries(st.sampled_from(["images", "a", "seed"]), json_values, max_size=3),
    max_size=3,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["1", "2", "3", "4"]), prompt_nodes | json_values, max_size=4))
def test_any_prompt_in_a_log_gets_an_answer_never_a_traceback(tmp_path: Path, capsys, prompt: Any) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, events_with_prompt(prompt))
    for argv in (["replay", str(log)], ["replay", str(log), "--json"], ["stats", str(log)]):
        code = main(argv)
        captured = capsys.readouterr()
        assert code in (0, 1, 2)
        if code == 2:
            assert len(captured.err.splitlines()) == 1 and captured.out == ""


# --- Wording between commands --------------------------------------------------------------------


def test_check_against_another_runs_log_says_the_prompt_ids_differ(tmp_path: Path, capsys) -> None:
    _, image = saved_pair(tmp_path)
    other = tmp_path / "other.rtlog"
    write_log_file(other, events_with_prompt(run_events()[0].prompt)[:1] + run_events()[1:])
    events = run_events()
    started = events[0]
    events[0] = RunStarted("p-2", started.wall_ns, started.t_ns, started.prompt, None, "ComfyUI test", "0.1.0")
    write_log_file(other, events)
    assert main(["replay", str(other), "--check", str(image)]) == 1
    assert capsys.readouterr().out == (
        f"DIFFERENT: {image} was saved by run p-1, and {other} is the log of run p-2: give the log of the image's own run\n"
    )


@pytest.mark.parametrize("fmt", ["png", "jpg", "webp"])
def test_inspect_says_what_an_image_with_only_comfyuis_chunks_has(tmp_path: Path, capsys, fmt: str) -> None:
    image = tmp_path / f"comfy.{fmt}"
    save_image(
        Image.new("RGB", (8, 8)),
        image,
        {"png": "png", "jpg": "jpeg", "webp": "webp"}[fmt],
        prompt=run_events()[0].prompt,
        extra_pnginfo={"workflow": {"nodes": []}},
    )
    assert main(["inspect", str(image)]) == 1
    assert capsys.readouterr().out == (
        f"{image}: no runtime metadata; it has only ComfyUI's prompt and ComfyUI's workflow (saved by another save node)\n"
    )


def test_replays_hint_about_totals_points_to_stats(tmp_path: Path, capsys) -> None:
    log, _ = saved_pair(tmp_path)
    assert main(["replay", str(log)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "runtime-metadata stats LOG" in first and "replay" not in first


# --- General behaviour --------------------------------------------------------------------------


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"runtime-metadata {__version__}\n"


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    for i in range(3):
        write_log_file(tmp_path / f"r{i}.rtlog", run_events())
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime_metadata", "stats", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # like `| head` that has already gone
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert err == b""


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += all_parsers(sub)
    return found


def test_every_argument_has_help_and_no_help_text_has_markup() -> None:
    for parser in all_parsers(build_parser()):
        texts = [parser.description or "", parser.epilog or "", parser.format_help()]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), parser.prog
                continue
            assert action.help, f"{parser.prog}: {action.dest} has no help"
            texts.append(action.help)
        for text in texts:
            assert "``" not in text and ":func:" not in text and ".. " not in text, (parser.prog, text)


# --- Terminal injection ----------------------------------------------------------------------------

ESC = "\x1b]0;owned\x07\x1b[2J"
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]")


def hostile_events() -> list:
    """A run whose prompt id, class types and input values carry terminal escapes."""
    prompt = {
        "1": {"class_type": f"Evil{ESC}", "inputs": {"a": f"v{ESC}\r\u202e"}},
        "4": {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": ["1", 0]}},
    }
    return [
        RunStarted(f"p{ESC}", 1_700_000_000_000_000_000, 0, prompt, None, f"ComfyUI{ESC}", "0.1.0"),
        NodeStarted("1", f"Evil{ESC}", 10),
        NodeInputs("1", 11, {"a": [f"v{ESC}\r\u202e"], f"k{ESC}": [1]}, 1),
        NodeFinished("1", 20, "failed", f"E{ESC}", f"boom{ESC}\nforged line"),
        NodeStarted("4", "SaveImageRuntimeMetadata", 30),
        NodeInputs("4", 31, {"images": [{"type": "torch.Tensor"}]}, 1),
        NodeFinished("4", 40, "executed"),
        RunFinished(50, "success"),
    ]


def assert_escaped(text: str) -> None:
    assert not CONTROL.search(text), repr(text)
    assert "\\x1b" in text


def test_names_and_values_from_files_reach_the_terminal_escaped(tmp_path: Path, capsys) -> None:
    events = hostile_events()
    log = tmp_path / "evil.rtlog"
    write_log_file(log, events)
    image = tmp_path / "evil.png"
    save_image(Image.new("RGB", (8, 8)), image, "png", prompt=events[0].prompt, document=build_document(events, "4"))
    for argv in (
        ["inspect", str(image)],
        ["replay", str(log)],
        ["stats", str(log)],
        ["replay", str(log), "--check", str(image)],
    ):
        main(argv)
        captured = capsys.readouterr()
        if "--check" in argv:  # OK or DIFFERENT: nothing from the file is shown
            assert not CONTROL.search(captured.out + captured.err), repr(captured)
        else:
            assert_escaped(captured.out + captured.err)
        assert "forged line" not in captured.out.splitlines()


def test_a_sidecar_pointer_name_reaches_the_terminal_escaped(tmp_path: Path, capsys) -> None:
    pointer = {"file": f"x{ESC}.runtime.json.zst", "codec": "zstd", "bytes": 1, "sha256": "0" * 64, "content_bytes": 1}
    image = image_with_document(tmp_path / "p.png", json.dumps({"schema": 1, "sidecar": pointer, "summary": {}}))
    assert main(["inspect", str(image)]) == 1
    captured = capsys.readouterr()
    assert_escaped(captured.out + captured.err)


# --- doctor --url against real local servers ---------------------------------------------------------

STATUS = {
    "plugin": "0.1.0",
    "capture": {
        "generation": "ComfyUI test, executor 2024",
        "active": True,
        "disabled_reason": None,
        "runs_captured": 3,
        "installed": ["run: PromptExecutor.execute"],
        "skipped": [],
        "notes": [],
    },
    "config_file": "/x/config.json",
    "config": {"runtime_hooks.enabled": True},
    "runs_kept": [],
}


@contextlib.contextmanager
def http_server(respond: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A real TCP server on 127.0.0.1 that reads each request and lets ``respond`` answer it."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so that the loop sees ``stop``: closing does not wake accept()
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                with contextlib.suppress(OSError):
                    respond(conn, stop)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(10)


def answer(body: bytes, status: str = "200 OK") -> Callable[[socket.socket, threading.Event], None]:
    def respond(conn: socket.socket, stop: threading.Event) -> None:
        head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        conn.sendall(head.encode() + body)

    return respond


def drip(interval: float) -> Callable[[socket.socket, threading.Event], None]:
    """Answers one byte every ``interval`` seconds, for ever (a per-read timeout never fires)."""

    def respond(conn: socket.socket, stop: threading.Event) -> None:
        for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: yes\r\n"):
            conn.sendall(bytes([byte]))
            if stop.wait(interval):
                return

    return respond


def test_doctor_shows_a_real_servers_status_with_or_without_a_scheme(capsys) -> None:
    with http_server(answer(json.dumps(STATUS).encode())) as port:
        for url in (f"http://127.0.0.1:{port}", f"127.0.0.1:{port}", f"localhost:{port}/"):
            assert main(["doctor", "--url", url]) == 0
            out = capsys.readouterr().out
            assert out.splitlines()[:3] == [
                "plugin 0.1.0 in ComfyUI test, executor 2024",
                "capture: ON; runs captured: 3",
                "  wrapped  run: PromptExecutor.execute",
            ]


@pytest.mark.parametrize(
    ("respond", "problem"),
    [
        (answer(b"hello"), "the answer is not JSON (it starts 'hello')"),
        (answer(b"[1, 2]"), "the answer is not this plugin's status (Expected `object`, got `array`)"),
        (
            answer(json.dumps({**STATUS, "capture": []}).encode()),
            "the answer is not this plugin's status (Expected `object`, got `array` - at `$.capture`)",
        ),
        (answer(b"x" * (2 << 20)), "the answer is larger than 1048576 bytes; not this plugin's"),
        (
            answer(b"{}", "404 Not Found"),
            "the server answered 404 Not Found (is this plugin installed in that ComfyUI?)",
        ),
    ],
)
def test_doctor_checks_what_the_server_answers(capsys, respond: Any, problem: str) -> None:
    with http_server(respond) as port:
        assert main(["doctor", "--url", f"127.0.0.1:{port}"]) == 2
    url = f"http://127.0.0.1:{port}/runtime_metadata/status"
    assert capsys.readouterr() == ("", f"{url}: {problem}\n")


@pytest.mark.parametrize("interval", [5.0, 0.3])
def test_doctor_gives_up_on_a_server_that_drips_bytes(interval: float) -> None:
    with http_server(drip(interval)) as port:
        started = time.monotonic()
        out = run_cli("doctor", "--url", f"127.0.0.1:{port}", "--timeout", "2", timeout=60)
        took = time.monotonic() - started
    url = f"http://127.0.0.1:{port}/runtime_metadata/status"
    assert (out.returncode, out.stdout) == (2, "")
    assert out.stderr == f"{url}: no complete answer within 2 s (is it ComfyUI?)\n"
    assert took < 30  # the deadline, plus starting Python on a busy machine


def test_doctor_cannot_reach_a_closed_port_in_one_line(capsys) -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    assert main(["doctor", "--url", f"localhost:{port}"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1
    assert captured.err.startswith(f"cannot reach http://localhost:{port}/runtime_metadata/status: ")


def test_doctor_escapes_what_the_server_says(capsys) -> None:
    status = json.loads(json.dumps(STATUS))
    status["capture"]["installed"] = [f"run{ESC}"]
    status["capture"]["generation"] = f"gen{ESC}"
    with http_server(answer(json.dumps(status).encode())) as port:
        assert main(["doctor", "--url", f"127.0.0.1:{port}"]) == 0
    assert_escaped(capsys.readouterr().out)


# --- One set of key names, and documents of schema 1 still read and check -----------------------


def schema_1(doc: Any) -> dict[str, Any]:
    """What the plugin embedded before schema 2 (written out here, not by the code under test)."""
    legacy = json.loads(encode_document(doc))
    legacy["schema"] = legacy["runtime"]["schema"] = 1
    timing = legacy["runtime"]["timing"]
    timing["executed_nodes"] = timing.pop("nodes_executed")
    timing["cached_nodes"] = timing.pop("nodes_cached")
    return legacy


def test_the_document_and_stats_use_the_same_key_names(tmp_path: Path, capsys) -> None:
    log, image = saved_pair(tmp_path)
    assert main(["inspect", str(image), "--json"]) == 0
    timing = json.loads(capsys.readouterr().out)["runtime"]["timing"]
    assert main(["stats", str(log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (timing["nodes_executed"], timing["nodes_cached"]) == (2, 0)  # the save node's ancestors
    assert (report["nodes_executed"], report["nodes_cached"]) == (3, 1)  # the whole run, save node included
    assert "executed_nodes" not in timing and "cached_nodes" not in timing


def test_an_image_saved_with_schema_1_still_reads_and_checks_byte_for_byte(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    image = tmp_path / "old.png"
    legacy = schema_1(build_document(run_events(), "4"))
    save_image(Image.new("RGB", (8, 8)), image, "png", prompt=run_events()[0].prompt, document=legacy)
    assert main(["inspect", str(image)]) == 0
    assert "timing: 2 executed, 0 cached" in capsys.readouterr().out
    assert main(["replay", str(log), "--check", str(image)]) == 0
    assert capsys.readouterr().out.startswith("OK: replaying")
    stats = timing_stats(
        [{"timing": {"executed_nodes": 3, "cached_nodes": 1}}, {"timing": {"nodes_executed": 2, "nodes_cached": 5}}]
    )
    assert (stats["nodes_executed"], stats["nodes_cached"]) == (5, 6)


@pytest.mark.parametrize("value", ["0", "-1", "inf", "nan", "soon"])
def test_doctor_timeout_must_be_a_positive_number_of_seconds(capsys, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["doctor", "--url", "localhost:1", "--timeout", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("runtime-metadata doctor: error: argument --timeout: ")


def test_demo_on_a_folder_that_is_not_comfyui_is_one_line(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--comfyui", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"runtime-metadata: demo: {tmp_path / 'nowhere'} does not look like a ComfyUI folder: missing main.py, execution.py"
    ]


def test_demo_on_a_comfyui_that_does_not_start_is_one_line_with_its_log(tmp_path: Path, capsys) -> None:
    comfy = tmp_path / "ComfyUI"
    comfy.mkdir()
    (comfy / "main.py").write_text("raise SystemExit(3)\n")  # exits at once, as a broken install does
    (comfy / "execution.py").write_text("")
    assert main(["demo", "--comfyui", str(comfy), "--workdir", str(tmp_path / "w")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        "runtime-metadata: demo: ComfyUI exited with code 3 during startup "
        f"(ComfyUI's log: {tmp_path / 'w' / 'comfyui.log'})"
    )
