"""Print the whole-run benchmarks of several ComfyUI generations side by side.

    python bench/comfyui/compare.py march2024.json modern.json

Each file is a ``--benchmark-json`` output of ``bench/comfyui``; a column per file, a row per
figure the benchmarks store in ``extra_info`` (their same-run ratios and per-node costs).
Stdlib only: ``scripts/test`` runs it with the test runner's Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

#: extra_info keys that label a column rather than measure anything.
_LABELS = ("comfyui", "nodes")


def load(path: Path) -> tuple[str, dict[str, dict[str, Any]]]:
    """(the ComfyUI it measured, {benchmark name: extra_info})."""
    data = json.loads(path.read_text())
    benches = {b["name"]: dict(b.get("extra_info") or {}) for b in data.get("benchmarks", [])}
    label = next((info["comfyui"] for info in benches.values() if "comfyui" in info), path.stem)
    return str(label), benches


def table(runs: list[tuple[str, dict[str, dict[str, Any]]]]) -> str:
    """The side-by-side text."""
    names = sorted({name for _, benches in runs for name in benches})
    width = max([len(label) for label, _ in runs] + [14])
    lines = []
    for name in names:
        lines.append(name)
        keys = sorted({k for _, benches in runs for k in benches.get(name, {}) if k not in _LABELS})
        lines.append(f"  {'':<30} " + " ".join(f"{label:>{width}}" for label, _ in runs))
        for key in keys:
            cells = [benches.get(name, {}).get(key, "-") for _, benches in runs]
            lines.append(f"  {key:<30} " + " ".join(f"{cell!s:>{width}}" for cell in cells))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point: the JSON files to compare, in column order."""
    paths = [Path(arg) for arg in argv if Path(arg).is_file()]
    if not paths:
        print("compare.py: no benchmark JSON files given (or none exists)", file=sys.stderr)
        return 2
    print(table([load(path) for path in paths]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
