"""Images and their sidecars written by several processes at once, and by formats sharing a stem.

Two ComfyUI instances sharing an output folder can pick the same file name at the same moment.
Whatever the interleaving, the image that survives must be readable with the sidecar it points
to. These tests use real processes started together at a barrier, not threads.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from runtime_metadata.writers.read import read_metadata
from runtime_metadata.writers.save import save_image
from runtime_metadata.writers.sidecar import SIDECAR_SUFFIX, ZstdCodec

WRITERS = 8
ROUNDS = 40
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def document(writer: int, round_: int) -> dict[str, Any]:
    """A document that goes to a sidecar and says who wrote it."""
    return {"schema": 1, "runtime": {"prompt_id": f"w{writer}-r{round_}", "pad": [f"{writer}:{i}" for i in range(800)]}}


def _writer(writer: int, folder: str, fmt: str, barrier: Any) -> None:
    image = Image.new("RGB", (16, 16), (writer * 30, 0, 0))
    for round_ in range(ROUNDS):
        barrier.wait()  # every writer starts the round together
        target = Path(folder) / f"r{round_}" / f"same.{EXTENSIONS[fmt]}"
        save_image(image, target, fmt, document=document(writer, round_), inline_size_limit_kb=1)  # type: ignore[arg-type]
        barrier.wait()  # the round is over: the parent checks it


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork to start the writers quickly")
@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_eight_processes_saving_one_name_leave_an_image_readable_with_its_own_sidecar(tmp_path: Path, fmt: str) -> None:
    for round_ in range(ROUNDS):
        (tmp_path / f"r{round_}").mkdir()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(WRITERS + 1, timeout=120)
    writers = [context.Process(target=_writer, args=(w, str(tmp_path), fmt, barrier)) for w in range(WRITERS)]
    for process in writers:
        process.start()
    broken = []
    try:
        for round_ in range(ROUNDS):
            barrier.wait()
            barrier.wait()
            meta = read_metadata(tmp_path / f"r{round_}" / f"same.{EXTENSIONS[fmt]}")
            expected = [document(w, round_) for w in range(WRITERS)]
            if meta.problems or meta.document not in expected:
                broken.append((round_, meta.problems))
    finally:
        for process in writers:
            process.join(120)
            if process.is_alive():
                process.kill()
    assert all(process.exitcode == 0 for process in writers)
    assert broken == [], f"{len(broken)} of {ROUNDS} rounds left an image pointing at another writer's sidecar"


@pytest.mark.parametrize("others", [("jpeg",), ("jpeg", "webp")])
def test_images_sharing_a_stem_keep_their_own_sidecars(tmp_path: Path, others: tuple[str, ...]) -> None:
    formats = ("png", *others)
    for i, fmt in enumerate(formats):
        save_image(
            Image.new("RGB", (8, 8)),
            tmp_path / f"a.{EXTENSIONS[fmt]}",
            fmt,
            document=document(i, 0),
            inline_size_limit_kb=1,
        )  # type: ignore[arg-type]
    for i, fmt in enumerate(formats):
        meta = read_metadata(tmp_path / f"a.{EXTENSIONS[fmt]}")
        assert meta.problems == [] and meta.document == document(i, 0)
    assert len(list(tmp_path.glob("*" + SIDECAR_SUFFIX))) == len(formats)


def test_an_image_saved_with_the_old_sidecar_name_still_reads(tmp_path: Path) -> None:
    # Before content-addressed names, the sidecar of a.png was a.runtime.json.zst.
    content = b'{"runtime":{"prompt_id":"old"},"schema":1}'
    data = ZstdCodec().compress(content)
    (tmp_path / ("a" + SIDECAR_SUFFIX)).write_bytes(data)
    pointer = {
        "file": "a" + SIDECAR_SUFFIX,
        "codec": "zstd",
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "schema": 1,
        "content_bytes": len(content),
    }
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt("runtime_metadata", '{"schema":1,"sidecar":' + __import__("json").dumps(pointer) + ',"summary":{}}')
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png", pnginfo=info)
    meta = read_metadata(tmp_path / "a.png")
    assert meta.problems == [] and meta.document == {"runtime": {"prompt_id": "old"}, "schema": 1}


def test_saving_one_name_again_and_again_leaves_one_sidecar(tmp_path: Path) -> None:
    for round_ in range(5):
        save_image(
            Image.new("RGB", (8, 8)), tmp_path / "a.png", "png", document=document(0, round_), inline_size_limit_kb=1
        )
    assert [p.name for p in tmp_path.glob("*" + SIDECAR_SUFFIX)] == [read_metadata(tmp_path / "a.png").pointer["file"]]
    assert read_metadata(tmp_path / "a.png").document == document(0, 4)
