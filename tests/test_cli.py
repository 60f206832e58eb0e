"""The command line on real files: replay, stats, inspect, and what it says about bad input."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from runtime_metadata.cli import main
from runtime_metadata.events.log import write_log_file
from runtime_metadata.projections.document import build_document
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
    doc = build_document(run_events(), "4")
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
    assert "damaged log, 1 stretch(es) skipped" in captured.err
    assert json.loads(captured.out)["runtime"]["status"] == "running"


def test_not_a_log_and_not_an_image_are_clear_errors(tmp_path: Path, capsys) -> None:
    bogus = tmp_path / "x.rtlog"
    bogus.write_bytes(b"hello world, definitely not a log")
    assert main(["replay", str(bogus)]) == 2
    assert "not a runtime-metadata log" in capsys.readouterr().err
    assert main(["inspect", str(bogus)]) == 1
    assert "no runtime metadata (not a PNG, JPEG or WebP image)" in capsys.readouterr().out


def test_check_compares_the_stored_bytes_inline_or_in_a_sidecar(tmp_path: Path, capsys) -> None:
    log = tmp_path / "p-1.rtlog"
    write_log_file(log, run_events())
    doc = build_document(run_events(), "4")
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
