"""The README's first command, ``runtime-metadata demo``, on each generation of ComfyUI."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_metadata.cli import build_parser
from runtime_metadata.cli import main as cli_main
from runtime_metadata.harness import Installation
from runtime_metadata.harness.provision import GENERATIONS
from runtime_metadata.writers.read import read_metadata


def test_the_demo_runs_captures_and_checks_its_image(
    installation: Installation, generation: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `installation` provisions (or skips) first; the demo then finds the same cached ComfyUI.
    args = ["demo", "--workdir", str(tmp_path)] + ([] if generation == "march2024" else ["--generation", generation])
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert f"[demo] ComfyUI: {installation.label} at {installation.root}" in out
    assert "byte for byte" in out
    (image,) = sorted((tmp_path / "output").glob("runtime-demo_*.png"))
    assert f"saved image: {image}" in out
    runtime = read_metadata(image).document["runtime"]
    assert {n["id"]: n for n in runtime["nodes"]}["3"]["inputs"]["width"] == 64  # computed at run time
    assert ("async execute" in runtime["comfyui"]) == (generation == "modern")
    # Its run history is in its folder too, and the command it suggests reads it.
    history = tmp_path / "history.sqlite"
    assert f"runtime-metadata stats --db sqlite:///{history}" in out
    assert cli_main(["stats", "--db", f"sqlite:///{history}"]) == 0
    assert "1 run in" in capsys.readouterr().out


def test_the_demo_offers_every_generation_the_harness_knows() -> None:
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]  # type: ignore[union-attr]
    (option,) = [a for a in demo._actions if a.dest == "generation"]
    assert tuple(option.choices) == GENERATIONS and option.default == GENERATIONS[0]
