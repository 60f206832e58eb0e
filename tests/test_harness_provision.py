"""The harness's provisioning, without pip: where the modern ComfyUI comes from, how it is unpacked,
what is left out of its requirements, how an interrupted provisioning resumes, how tests skip."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from runtime_metadata.harness import provision
from runtime_metadata.harness.provision import ModernSource, ProvisionError, SourceMissing

COMFY_FILES = {"main.py": b"print('comfy')\n", "execution.py": b"# executor\n", "requirements.txt": b"torch\n"}


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty ../shared/comfyui/ and no COMFYUI_MODERN_SRC."""
    folder = tmp_path / "shared" / "comfyui"
    folder.mkdir(parents=True)
    monkeypatch.setattr(provision, "shared_comfyui_dir", lambda: folder)
    monkeypatch.delenv("COMFYUI_MODERN_SRC", raising=False)
    monkeypatch.delenv("COMFYUI_MODERN_CONSTRAINTS", raising=False)
    return folder


def tar_gz(path: Path, files: dict[str, bytes], top: str = "ComfyUI-x/") -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(top + name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_without_a_source_the_error_says_how_to_provide_one(shared: Path) -> None:
    with pytest.raises(SourceMissing) as missing:
        provision.modern_source()
    message = str(missing.value)
    assert "\n" not in message
    assert f"put {provision.MODERN_ARCHIVE} in {shared}/" in message and "COMFYUI_MODERN_SRC=" in message


def test_the_shared_archive_must_be_the_one_its_readme_names(shared: Path) -> None:
    tar_gz(shared / provision.MODERN_ARCHIVE, COMFY_FILES)
    with pytest.raises(ProvisionError) as wrong:
        provision.modern_source()
    assert not isinstance(wrong.value, SourceMissing)
    assert f"expected {provision.MODERN_SHA256}" in str(wrong.value)


def test_the_real_shared_archive_is_accepted_with_its_constraints() -> None:
    folder = provision.shared_comfyui_dir()
    if not (folder / provision.MODERN_ARCHIVE).is_file():
        pytest.skip(f"no {provision.MODERN_ARCHIVE} in {folder}")
    source = provision.modern_source()
    assert source.known and source.digest == provision.MODERN_SHA256
    assert source.constraints == folder / provision.MODERN_CONSTRAINTS
    assert provision._modern_recipe(source).dirname == f"comfyui-{provision.MODERN_VERSION}"


def test_a_named_archive_is_identified_by_its_digest_and_unpacked_without_its_top_folder(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tar_gz(tmp_path / "mine.tar.gz", {**COMFY_FILES, "comfy/sd.py": b"x = 1\n"})
    monkeypatch.setenv("COMFYUI_MODERN_SRC", str(archive))
    source = provision.modern_source()
    assert (source.kind, source.known) == ("archive", False)
    assert source.digest == hashlib.sha256(archive.read_bytes()).hexdigest()
    recipe = provision._modern_recipe(source)
    assert recipe.dirname == f"comfyui-modern-{source.digest[:12]}"
    root = tmp_path / "target" / "ComfyUI"
    root.parent.mkdir()
    assert provision._copy_source(source, root) == 4
    assert (root / "comfy" / "sd.py").read_text() == "x = 1\n"
    assert {p.name for p in root.iterdir()} >= {"main.py", "custom_nodes", "input", "output", "models"}


def test_a_zip_that_would_write_outside_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("ComfyUI/main.py", "")
        zipped.writestr("ComfyUI/../../escaped.py", "")
    source = ModernSource(archive, "archive", hashlib.sha256(archive.read_bytes()).hexdigest(), None)
    with pytest.raises(ProvisionError, match="unsafe path"):
        provision._copy_source(source, tmp_path / "out" / "ComfyUI")
    assert not (tmp_path / "escaped.py").exists()


def test_a_tar_that_would_write_outside_its_folder_is_refused(tmp_path: Path) -> None:
    archive = tar_gz(tmp_path / "evil.tar.gz", {"main.py": b"", "../escaped.py": b"x"}, top="")
    source = ModernSource(archive, "archive", hashlib.sha256(archive.read_bytes()).hexdigest(), None)
    (tmp_path / "out").mkdir()
    with pytest.raises(ProvisionError, match=r"unsafe path in evil\.tar\.gz"):  # tarfile's "data" filter
        provision._copy_source(source, tmp_path / "out" / "ComfyUI")
    assert not (tmp_path / "out" / "escaped.py").exists()


def test_a_named_folder_is_copied_without_history_outputs_weights_or_other_packs(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "MyComfyUI"
    for name, data in COMFY_FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    for name, size in ((".git/HEAD", 10), ("custom_nodes/pack/__init__.py", 10), ("output/a.png", 10)):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"x" * size)
    (src / "models" / "configs").mkdir(parents=True)
    (src / "models" / "configs" / "v1.yaml").write_text("model: {}\n")
    (src / "models" / "checkpoints").mkdir()
    (src / "models" / "checkpoints" / "big.safetensors").write_bytes(b"\0" * (provision._MODELS_FILE_LIMIT + 1))
    monkeypatch.setenv("COMFYUI_MODERN_SRC", str(src))
    source = provision.modern_source()
    assert source.kind == "folder"
    root = tmp_path / "target" / "ComfyUI"
    root.parent.mkdir()
    provision._copy_source(source, root)
    copied = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert copied == ["execution.py", "main.py", "models/configs/v1.yaml", "requirements.txt"]
    # The digest follows the files that are copied, and only those.
    (src / "output" / "b.png").write_bytes(b"y")
    assert provision.modern_source().digest == source.digest
    (src / "execution.py").write_text("# changed\n")
    assert provision.modern_source().digest != source.digest


def test_torchaudio_is_left_out_of_the_requirements_and_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "ComfyUI"
    root.mkdir()
    (root / "requirements.txt").write_text(
        "comfyui-frontend-package==1.27.10\ntorch\ntorchvision\ntorchaudio\ntorchaudio>=2.0 ; python_version>'3'\n"
        "# torchaudio in a comment stays\nnumpy>=1.25.0\n"
    )
    filtered = provision._requirements(root, tmp_path, provision.SKIPPED_REQUIREMENTS)
    assert filtered.read_text().splitlines() == [
        "comfyui-frontend-package==1.27.10",
        "torch",
        "torchvision",
        "# torchaudio in a comment stays",
        "numpy>=1.25.0",
    ]


def test_an_interrupted_provisioning_resumes_after_its_last_finished_step(tmp_path: Path) -> None:
    target = tmp_path / "comfyui-x"
    ran: list[str] = []

    def attempt(fingerprint: dict[str, object], fail_at: str | None) -> None:
        steps = provision._Steps(target, fingerprint, lambda message: None)
        for name in ("venv", "source", "torch", "requirements"):
            with steps.step(name, name) as todo:
                if todo:
                    if name == fail_at:
                        raise ProvisionError(f"{name} failed")
                    ran.append(name)

    with pytest.raises(ProvisionError):
        attempt({"recipe": 1}, fail_at="torch")
    assert ran == ["venv", "source"]
    assert json.loads((target / provision.STEPS_NAME).read_text())["done"] == ["venv", "source"]
    attempt({"recipe": 1}, fail_at=None)
    assert ran == ["venv", "source", "torch", "requirements"]  # nothing done twice
    (target / "stale-file").write_text("")
    attempt({"recipe": 2}, fail_at=None)  # another recipe: everything again, from an empty folder
    assert ran[4:] == ["venv", "source", "torch", "requirements"]
    assert not (target / "stale-file").exists()


@pytest.mark.parametrize("ci, outcome", [("", "skipped"), ("true", "failed")])
def test_without_the_modern_source_its_tests_skip_in_one_line_but_fail_under_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    from tests.integration import conftest

    def missing(**kwargs: object) -> None:
        raise SourceMissing("no ComfyUI 0.3.64 source: put it there or set COMFYUI_MODERN_SRC=<...>")

    monkeypatch.setattr(conftest, "ensure_comfyui", missing)
    monkeypatch.setenv("CI", ci)
    expected = pytest.skip.Exception if outcome == "skipped" else pytest.fail.Exception
    with pytest.raises(expected) as raised:
        conftest._installation("modern")
    assert "COMFYUI_MODERN_SRC" in str(raised.value) and "\n" not in str(raised.value)


def test_an_install_from_before_a_new_plugin_dependency_gets_it_added_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy came with the run history; caches provisioned before it keep their torch and ComfyUI."""
    recipe = provision._march2024_recipe()
    target = tmp_path / recipe.dirname
    (target / "ComfyUI").mkdir(parents=True)
    (target / "ComfyUI" / "main.py").write_text("")
    site = target / "venv" / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (target / "venv" / "bin").mkdir()
    (target / "venv" / "bin" / "python").write_text("")
    (target / "constraints.txt").write_text("torch==2.13.0\n")
    (target / provision.MARKER_NAME).write_text(json.dumps({"fingerprint": recipe.fingerprint}))
    assert recipe.fingerprint["plugin_deps"] == ["msgspec", "zstandard", "Pillow", "piexif"]  # what old caches hold
    pip: list[list[str]] = []

    def run(cmd: list[object], log_file: Path, cwd: Path | None = None) -> str:  # pip (no network in unit tests)
        pip.append([str(part) for part in cmd])
        (site / "sqlalchemy").mkdir()
        return ""

    monkeypatch.setattr(provision, "_provision", lambda *args: pytest.fail("a complete install was rebuilt"))
    monkeypatch.setattr(provision, "_run", run)
    install = provision._provisioned_installation(tmp_path, lambda message: None, recipe)
    assert install.root == target / "ComfyUI"
    assert pip == [
        [
            str(target / "venv" / "bin" / "python"),
            *("-m", "pip", "install", "-c", str(target / "constraints.txt"), "SQLAlchemy>=2.0"),
        ]
    ]
    provision._provisioned_installation(tmp_path, lambda message: None, recipe)
    assert len(pip) == 1  # present now: nothing more to do


def test_the_known_archive_named_anywhere_is_the_known_install_with_the_constraints_beside_it(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone without ../shared, pointed at the same archive elsewhere, reuses the same install."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    archive = tar_gz(elsewhere / provision.MODERN_ARCHIVE, COMFY_FILES)
    (elsewhere / provision.MODERN_CONSTRAINTS).write_text("requests==2.32.3\n")
    monkeypatch.setattr(provision, "MODERN_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    monkeypatch.setenv("COMFYUI_MODERN_SRC", str(archive))
    source = provision.modern_source()
    assert source.known and source.constraints == elsewhere / provision.MODERN_CONSTRAINTS
    assert provision._modern_recipe(source).dirname == f"comfyui-{provision.MODERN_VERSION}"
    (elsewhere / "other.tar.gz").write_bytes(archive.read_bytes() + b"\0")  # any other archive: its own
    monkeypatch.setenv("COMFYUI_MODERN_SRC", str(elsewhere / "other.tar.gz"))
    assert not provision.modern_source().known
