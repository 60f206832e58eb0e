"""Random-weight SD1.5 checkpoint, LoRA and VAE files, so real txt2img graphs run on the CPU.

Stdlib only, like provision.py: the files are written by `make_models.py` running under
ComfyUI's own interpreter (it needs torch, safetensors and ComfyUI's model classes); this module
caches them per machine, keyed by a recipe version, behind an flock so that concurrent test
sessions build them once:

    models = ensure_models(installation)
    ComfyServer(installation, plugin_dir, model_dirs=models.model_dirs())
    # then "ckpt_name": models.checkpoint_name, "lora_name": models.lora_name, ...

Files (fp16 safetensors): the checkpoint has SD1.5's 1130 tensors (UNet, CLIP-L text encoder,
VAE; 1.07 G parameters, ~2.1 GB), the LoRA is kohya-style rank 4 over 14 real SD1.5 layers
(UNet and text encoder, ~180 kB), the VAE is a standalone SD1.x VAE (~167 MB).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

# make_models.py imports torch/ComfyUI only inside its functions, so its constants are importable.
from .make_models import CHECKPOINT_NAME, LORA_NAME, VAE_NAME
from .provision import Installation, ProvisionError, _clean_env, _exclusive_lock, _file_sha256, default_cache_dir

# Bump when make_models.py changes what it writes; older caches are then rebuilt (and removed).
RECIPE_VERSION = 2
MODELS_DIRNAME = "models"
_SET_PREFIX = "sd15-random-v"
MARKER_NAME = ".built.json"
GENERATOR = Path(__file__).with_name("make_models.py")

_LAYOUT = {CHECKPOINT_NAME: "checkpoints", LORA_NAME: "loras", VAE_NAME: "vae"}


@dataclass(frozen=True)
class Models:
    """Where the generated files are; the names are what ComfyUI's loader nodes take."""

    root: Path
    checkpoints_dir: Path
    loras_dir: Path
    vae_dir: Path
    checkpoint_name: str
    lora_name: str
    vae_name: str
    # sha256 hex digest of each file, by file name (A1111's "AutoV2" hash is the first 10).
    sha256: Mapping[str, str] = field(default_factory=dict)
    # Sizes in bytes, by file name.
    sizes: Mapping[str, int] = field(default_factory=dict)

    @property
    def checkpoint_path(self) -> Path:
        return self.checkpoints_dir / self.checkpoint_name

    @property
    def lora_path(self) -> Path:
        return self.loras_dir / self.lora_name

    @property
    def vae_path(self) -> Path:
        return self.vae_dir / self.vae_name

    def model_dirs(self) -> dict[str, Path]:
        """The `model_dirs=` argument for ComfyServer."""
        return {"checkpoints": self.checkpoints_dir, "loras": self.loras_dir, "vae": self.vae_dir}


def _fingerprint() -> dict[str, object]:
    return {"recipe": RECIPE_VERSION, "files": sorted(_LAYOUT)}


def _load(target: Path) -> Models | None:
    """The Models in target if it is complete and current, else None."""
    try:
        recorded = json.loads((target / MARKER_NAME).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("fingerprint") != _fingerprint():
        return None
    for name, sub in _LAYOUT.items():
        path = target / sub / name
        if not path.is_file() or path.stat().st_size != recorded.get("sizes", {}).get(name):
            return None
    return Models(
        root=target,
        checkpoints_dir=target / "checkpoints",
        loras_dir=target / "loras",
        vae_dir=target / "vae",
        checkpoint_name=CHECKPOINT_NAME,
        lora_name=LORA_NAME,
        vae_name=VAE_NAME,
        sha256=dict(recorded.get("sha256", {})),
        sizes=dict(recorded.get("sizes", {})),
    )


def ensure_models(
    installation: Installation,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> Models:
    """Return the cached model files, generating them first (once per machine, ~15-30 s)."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    parent = cache / MODELS_DIRNAME
    target = parent / f"{_SET_PREFIX}{RECIPE_VERSION}"
    models = _load(target)  # fast path without the lock: the folder appears complete or not at all
    if models is not None:
        return models
    parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(parent / f"{_SET_PREFIX}{RECIPE_VERSION}.lock", log):
        models = _load(target)
        if models is not None:  # another process built them while we waited
            return models
        _build(installation, parent, target, log)
        models = _load(target)
        if models is None:
            raise ProvisionError(f"generated models in {target} but cannot read them back")
        _remove_older_recipes(parent, log)
    return models


def _build(installation: Installation, parent: Path, target: Path, log: Callable[[str], None]) -> None:
    started = time.perf_counter()
    log(f"Generating random-weight SD1.5 models into {target} (one-off: ~15-30 s, ~2.3 GB) ...")
    scratch = parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    raw = scratch / "raw"
    raw.mkdir(parents=True)
    try:
        proc = subprocess.run(
            [
                str(installation.python),
                str(GENERATOR),
                "--comfyui-root",
                str(installation.root),
                "--out",
                str(raw),
                "--recipe",
                str(RECIPE_VERSION),
            ],
            check=False,
            cwd=scratch,
            env=_clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
        )
        (scratch / "generate.log").write_text(f"{proc.stderr}\n--- stdout ---\n{proc.stdout}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr + proc.stdout).splitlines()[-40:])
            raise ProvisionError(
                f"{GENERATOR.name} failed (exit {proc.returncode}) under {installation.python}\n{tail}"
            )
        lines = proc.stdout.strip().splitlines()
        summary = json.loads(lines[-1]) if lines else {}
        sizes: dict[str, int] = {}
        digests: dict[str, str] = {}
        for name, sub in _LAYOUT.items():
            (scratch / sub).mkdir()
            dest = scratch / sub / name
            os.replace(raw / name, dest)
            sizes[name] = dest.stat().st_size
            digests[name] = _file_sha256(dest)
        raw.rmdir()
        marker = {
            "fingerprint": _fingerprint(),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "comfyui": str(installation.root),
            "sizes": sizes,
            "sha256": digests,
            "generator": summary,
        }
        (scratch / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n")
        if target.exists():  # an incomplete or outdated set: replace it
            shutil.rmtree(target)
        os.replace(scratch, target)  # atomic: the set exists complete or not at all
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    total = sum(sizes.values()) / 1e6
    seconds = time.perf_counter() - started
    log(f"Generated {len(sizes)} model files ({total:.0f} MB) in {seconds:.1f}s")


def _remove_older_recipes(parent: Path, log: Callable[[str], None]) -> None:
    for old in parent.glob(f"{_SET_PREFIX}*"):
        version = old.name[len(_SET_PREFIX) :].removesuffix(".lock")
        if not version.isdigit() or int(version) >= RECIPE_VERSION:
            continue
        if old.name.endswith(".lock"):
            old.unlink(missing_ok=True)
        elif old.is_dir():
            log(f"  removing models of an older recipe: {old}")
            shutil.rmtree(old, ignore_errors=True)
