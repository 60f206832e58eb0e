"""Start and stop a headless ComfyUI server with our plugin loaded, and talk to it over HTTP.

Stdlib only (urllib, subprocess, socket), so it runs in any interpreter; ComfyUI itself runs
in `installation.python`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from .provision import Installation, supports_flag

_Server = TypeVar("_Server", bound="ComfyServer")

DEFAULT_STARTUP_TIMEOUT = 120.0
DEFAULT_PROMPT_TIMEOUT = 300.0
LOG_NAME = "comfyui.log"
# The folder name under custom_nodes/ is the module name the March-2024 ComfyUI imports the
# plugin as (nodes.load_custom_node puts it in sys.modules under that name; ComfyUI 2025+ uses
# the folder's whole path instead); the package's own name keeps any absolute
# `runtime_metadata.*` import inside the plugin pointing at the same copy there.
DEFAULT_NODE_NAME = "runtime_metadata"

# Loopback requests must never go through an HTTP proxy configured in the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ComfyServerError(RuntimeError):
    """A ComfyUI server failed to start, died, or answered unexpectedly."""


class ComfyStartupError(ComfyServerError):
    """The server did not become ready (it exited, timed out or failed to load the plugin)."""


class PromptRejected(ComfyServerError):
    """ComfyUI refused a prompt (HTTP 400); `body` holds its JSON error body."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(f"ComfyUI rejected the prompt (HTTP {status}): {json.dumps(body)[:4000]}")


class PromptTimeout(ComfyServerError, TimeoutError):
    """A queued prompt did not reach the history in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on host that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _link_node_pack(link: Path, target: Path) -> None:
    """Make ``link`` a symlink to the node pack ``target`` (replacing a stale symlink)."""
    if link.is_symlink() or link.exists():
        if link.is_symlink() and link.resolve() == target:
            return
        if link.is_symlink() or link.is_file():
            link.unlink()
        else:
            raise ComfyStartupError(f"{link} exists and is not a symlink; not replacing it")
    link.symlink_to(target, target_is_directory=True)


class ComfyServer:
    """A headless ComfyUI process with plugin_dir in its custom_nodes; a context manager."""

    host = "127.0.0.1"

    def __init__(
        self,
        installation: Installation,
        plugin_dir: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        node_name: str = DEFAULT_NODE_NAME,
        require_plugin: bool = True,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        model_dirs: Mapping[str, Path | Sequence[Path]] | None = None,
        extra_args: Sequence[str] = (),
        extra_nodes: Mapping[str, Path] | None = None,
        load_first: Mapping[str, Path] | None = None,
        load_last: Mapping[str, Path] | None = None,
    ) -> None:
        self.installation = installation
        self.plugin_dir = Path(plugin_dir).resolve()
        self.env = dict(env or {})
        self.node_name = node_name
        self.require_plugin = require_plugin
        self.startup_timeout = startup_timeout
        self.model_dirs = dict(model_dirs or {})
        self.extra_args = list(extra_args)
        #: Other custom-node packs to load beside the plugin, by folder name (tests use this).
        self.extra_nodes = {name: Path(p).resolve() for name, p in (extra_nodes or {}).items()}
        #: Packs ComfyUI imports before / after the plugin and extra_nodes (each group from a
        #: custom_nodes folder of its own, listed first / last); within one folder ComfyUI
        #: imports in the file system's order.
        self.load_first = {name: Path(p).resolve() for name, p in (load_first or {}).items()}
        self.load_last = {name: Path(p).resolve() for name, p in (load_last or {}).items()}
        # The workdir is never deleted, not even a temp one we made: it holds the outputs and
        # the log, which callers read after stop() (the demo prints the saved image's path).
        self._given_workdir = Path(workdir).resolve() if workdir is not None else None
        self._workdir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.client_id = uuid.uuid4().hex
        self.startup_seconds: float | None = None

    # ----------------------------------------------------------------- lifecycle

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> ComfyServer:
        """Launch ComfyUI and block until it answers HTTP (raises ComfyStartupError otherwise)."""
        if self._proc is not None:
            raise ComfyServerError("server already started")
        if not (self.installation.root / "main.py").is_file():
            raise ComfyStartupError(f"no main.py in {self.installation.root}")
        started = time.perf_counter()
        self._prepare_workdir()
        try:
            # free_port() can race with another process grabbing the port before ComfyUI binds
            # it; ComfyUI then exits with EADDRINUSE and we simply try another port.
            for attempt in range(3):
                self._port = free_port(self.host)
                self._launch()
                try:
                    self._wait_ready()
                    break
                except ComfyStartupError:
                    address_in_use = "address already in use" in self.log_text().lower()
                    self._terminate()
                    if not (address_in_use and attempt < 2):
                        raise
            if self.require_plugin:
                problem = self.plugin_load_error()
                if problem is not None:
                    raise ComfyStartupError(problem)
        except BaseException:
            self._terminate()  # never leave a half-started server behind (Ctrl-C included)
            raise
        self.startup_seconds = time.perf_counter() - started
        return self

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after `grace` seconds); idempotent."""
        self._terminate(grace)

    def _terminate(self, grace: float = 10.0) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            # ComfyUI runs in its own session (start_new_session) so the whole group goes.
            self._signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=30)
        self._proc = None

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.killpg(proc.pid, sig)

    def _prepare_workdir(self) -> None:
        # A restarted server reuses its workdir, so outputs and logs accumulate in one place.
        workdir = self._given_workdir or self._workdir
        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="comfyui-runtime-metadata-")).resolve()
        self._workdir = workdir
        groups = {
            "custom_nodes_first": self.load_first,
            "custom_nodes": {self.node_name: self.plugin_dir, **self.extra_nodes},
            "custom_nodes_last": self.load_last,
        }
        for name in ("output", "input", "temp", "user", *groups):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        for folder, packs in groups.items():
            for name, target in packs.items():
                _link_node_pack(workdir / folder / name, target)
        # ComfyUI (this March-2024 version) has no --custom-nodes flag, but main.py feeds every
        # key of an --extra-model-paths-config file to folder_paths.add_model_folder_path, and
        # nodes.load_custom_nodes() scans every "custom_nodes" folder.  That adds our folder
        # next to ComfyUI's own custom_nodes/ without touching the (cached, shared) install.
        # JSON is valid YAML, so json.dumps quotes paths safely.
        # ComfyUI imports the packs of its custom_nodes folders in the order they are listed.
        folders = [workdir / folder for folder, packs in groups.items() if packs]
        section: dict[str, str] = {"custom_nodes": "\n".join(str(f) for f in folders)}
        for kind, paths in self.model_dirs.items():
            items = [paths] if isinstance(paths, (str, Path)) else list(paths)
            section[kind] = "\n".join(str(Path(p).resolve()) for p in items)
        (workdir / "extra_model_paths.yaml").write_text(
            json.dumps({"runtime_metadata_harness": section}, indent=2) + "\n"
        )

    def command(self) -> list[str]:
        """Return the command line used to launch ComfyUI (valid once started)."""
        workdir = self.workdir
        return [
            str(self.installation.python),
            str(self.installation.root / "main.py"),
            "--cpu",
            "--listen",
            self.host,
            "--port",
            str(self.port),
            "--output-directory",
            str(workdir / "output"),
            "--input-directory",
            str(workdir / "input"),
            # main.py appends "temp" itself (and rmtree()s it at start and exit), so passing
            # the workdir makes ComfyUI use <workdir>/temp.
            "--temp-directory",
            str(workdir),
            "--extra-model-paths-config",
            str(workdir / "extra_model_paths.yaml"),
            "--disable-auto-launch",
            *self._private_user_dir(workdir),
            *self.extra_args,
        ]

    def _private_user_dir(self, workdir: Path) -> list[str]:
        # ComfyUI 2025+ keeps settings, workflows and a SQLite database in its user directory,
        # by default inside the (cached, shared) install: each server gets its own.
        args: list[str] = []
        root = self.installation.root
        if supports_flag(root, "--user-directory"):
            args += ["--user-directory", str(workdir / "user")]
        if supports_flag(root, "--database-url"):
            args += ["--database-url", f"sqlite:///{workdir / 'user' / 'comfyui.db'}"]
        return args

    def _launch(self) -> None:
        workdir = self.workdir
        log_path = workdir / LOG_NAME
        if log_path.exists() and log_path.stat().st_size:
            # Keep the previous run's log when a workdir is reused (e.g. restart tests).
            os.replace(log_path, workdir / f"{LOG_NAME}.previous")
        # Inherited PYTHONPATH/PYTHONHOME would leak the caller's packages into ComfyUI's venv;
        # callers can still set them explicitly through `env`.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONUNBUFFERED"] = "1"  # so the log file is live, and complete if it crashes
        env.update(self.env)
        with open(log_path, "wb") as log_handle:  # the child keeps its own copy of the fd
            self._proc = subprocess.Popen(
                self.command(),
                # cwd is the workdir so that anything a node writes to a relative path stays
                # out of the shared install; main.py imports its modules from its own folder.
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                # Its own session: Ctrl-C in a terminal reaches only us (stop() then ends it
                # cleanly), and stop() can signal the whole process group.
                start_new_session=True,
            )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            proc = self._proc
            assert proc is not None
            code = proc.poll()
            if code is not None:
                raise ComfyStartupError(f"ComfyUI exited with code {code} during startup\n{self._log_tail_block()}")
            try:
                status, _ = self._request("GET", "/system_stats", timeout=5)
                if status == 200:
                    return
            except (OSError, ValueError):
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise ComfyStartupError(
                    f"ComfyUI did not answer on {self.url} within {self.startup_timeout:.0f}s\n{self._log_tail_block()}"
                )
            time.sleep(0.1)  # a refused connection costs nothing; poll often

    # ----------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The TCP port ComfyUI listens on."""
        if self._port is None:
            raise ComfyServerError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def workdir(self) -> Path:
        """The folder holding output/, input/, temp/, custom_nodes/ and the log."""
        workdir = self._workdir or self._given_workdir
        if workdir is None:
            raise ComfyServerError("server not started (and no workdir was given)")
        return workdir

    @property
    def output_dir(self) -> Path:
        """ComfyUI's output directory (where SaveImage writes)."""
        return self.workdir / "output"

    @property
    def input_dir(self) -> Path:
        """ComfyUI's input directory (where LoadImage reads)."""
        return self.workdir / "input"

    @property
    def log_path(self) -> Path:
        """The file that receives ComfyUI's stdout and stderr."""
        return self.workdir / LOG_NAME

    @property
    def pid(self) -> int | None:
        """The ComfyUI process id, or None when not running."""
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        """True while the ComfyUI process is alive."""
        return self._proc is not None and self._proc.poll() is None

    # ----------------------------------------------------------------- logs

    def log_text(self) -> str:
        """Return everything ComfyUI has printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except (OSError, ComfyServerError):
            return ""

    def _log_tail_block(self, lines: int = 60) -> str:
        tail = "\n".join(self.log_text().splitlines()[-lines:])
        where = self.log_path if self._workdir is not None else "?"
        return f"--- last {lines} lines of {where} ---\n{tail}"

    def plugin_load_error(self) -> str | None:
        """Return a description of why ComfyUI failed to load the plugin, or None if it loaded."""
        node_path = os.path.join(str(self.workdir / "custom_nodes"), self.node_name)
        # nodes.load_custom_nodes() logs "<secs> seconds: <path>" or
        # "<secs> seconds (IMPORT FAILED): <path>" for every custom node it tried.
        for line in self.log_text().splitlines():
            if line.rstrip().endswith(f": {node_path}") and " seconds" in line:
                if "IMPORT FAILED" not in line:
                    return None
                break
        return f"ComfyUI did not load the plugin {self.plugin_dir} (as {node_path})\n{self._log_tail_block()}"

    # ----------------------------------------------------------------- HTTP API

    def _request(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with _OPENER.open(request, timeout=timeout) as response:
                return response.status, _decode(response.read())
        except urllib.error.HTTPError as error:
            return error.code, _decode(error.read())

    def _api(self, method: str, path: str, body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
        # Like _request, but a dead or unreachable server becomes a ComfyServerError that
        # carries the server log, which is where the reason is.
        try:
            return self._request(method, path, body, timeout)
        except OSError as error:
            state = "running" if self.is_running() else "not running"
            raise ComfyServerError(
                f"{method} {path} failed ({error}); ComfyUI is {state}\n{self._log_tail_block(30)}"
            ) from error

    def get_json(self, path: str, timeout: float = 30.0) -> Any:
        """GET a ComfyUI endpoint and return its decoded JSON (raises on non-200)."""
        status, body = self._api("GET", path, timeout=timeout)
        if status != 200:
            raise ComfyServerError(f"GET {path} answered HTTP {status}: {body!r}"[:4000])
        return body

    def post_json(self, path: str, body: Any = None, timeout: float = 30.0) -> Any:
        """POST JSON to a ComfyUI endpoint and return its decoded answer (raises on non-200)."""
        status, answer = self._api("POST", path, {} if body is None else body, timeout=timeout)
        if status != 200:
            raise ComfyServerError(f"POST {path} answered HTTP {status}: {answer!r}"[:4000])
        return answer

    def interrupt(self) -> None:
        """Press ComfyUI's interrupt button (POST /interrupt): the running node stops at its next check."""
        self.post_json("/interrupt")

    def object_info(self) -> dict[str, Any]:
        """Return GET /object_info: every node class ComfyUI knows, with its inputs."""
        info = self.get_json("/object_info", timeout=60)
        assert isinstance(info, dict)
        return info

    def queue(
        self,
        prompt: Mapping[str, Any],
        extra_data: Mapping[str, Any] | None = None,
        client_id: str | None = None,
    ) -> str:
        """POST /prompt and return the prompt_id; raises PromptRejected on HTTP 400."""
        payload = {
            "prompt": prompt,
            "extra_data": dict(extra_data or {}),
            "client_id": client_id or self.client_id,
        }
        status, body = self._api("POST", "/prompt", payload)
        if status == 400:
            raise PromptRejected(status, body)
        if status != 200 or not isinstance(body, dict) or "prompt_id" not in body:
            raise ComfyServerError(f"POST /prompt answered HTTP {status}: {body!r}\n{self._log_tail_block(30)}")
        return str(body["prompt_id"])

    def wait(self, prompt_id: str, timeout: float = DEFAULT_PROMPT_TIMEOUT) -> dict[str, Any]:
        """Poll GET /history/{prompt_id} until it appears and return that entry (with "status")."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        quoted = urllib.parse.quote(prompt_id, safe="")
        while True:
            try:
                status, body = self._request("GET", f"/history/{quoted}")
            except OSError:
                status, body = 0, None  # dead (checked next) or a transient hiccup (retried)
            if status == 200 and isinstance(body, dict) and prompt_id in body:
                entry = body[prompt_id]
                assert isinstance(entry, dict)
                return entry
            if not self.is_running():
                raise ComfyServerError(f"ComfyUI died while running prompt {prompt_id}\n{self._log_tail_block()}")
            if time.monotonic() > deadline:
                raise PromptTimeout(f"prompt {prompt_id} not finished after {timeout:.0f}s\n{self._log_tail_block(30)}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def run(
        self,
        prompt: Mapping[str, Any],
        extra_data: Mapping[str, Any] | None = None,
        timeout: float = DEFAULT_PROMPT_TIMEOUT,
    ) -> dict[str, Any]:
        """Queue a prompt, wait for it, and return its history entry."""
        return self.wait(self.queue(prompt, extra_data), timeout=timeout)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text
