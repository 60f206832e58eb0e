"""What the browser tests share besides fixtures: the demo workflow, reading a badge's number."""

from __future__ import annotations

import copy
import itertools
import json
import re
from pathlib import Path
from typing import Any

# The demo graph (examples/demo_prompt.json) as ComfyUI's frontend saves a workflow: widgets
# turned into inputs name their widget, and widgets_values holds every widget's value.
DEMO_WORKFLOW = json.loads((Path(__file__).resolve().parent / "workflows" / "demo.json").read_text())
_unique = itertools.count(17)

# The demo graph: 1 IntMath (width) -> 2 IntMath (colour) -> 3 EmptyImage -> 4 ImageInvert -> 5 Save.
DEMO_NODES = ["1", "2", "3", "4", "5"]


def unique_int() -> int:
    """A value no earlier run of this session used (ComfyUI caches outputs across prompts)."""
    return next(_unique)


def demo_workflow() -> dict[str, Any]:
    """The demo graph with a value no earlier run used, so that every node runs (no cache hits)."""
    workflow = copy.deepcopy(DEMO_WORKFLOW)
    first = next(n for n in workflow["nodes"] if n["id"] == 1)
    first["widgets_values"][0] = next(_unique)  # width = a * 4
    return workflow


_BADGE = re.compile(r"^(?:(cached|failed|interrupted) ?)?(?:(\d+(?:\.\d+)?) (ms|s)|(\d+)m (\d\d)s)?$")


def badge_value(text: str) -> tuple[str, float | None, float]:
    """(status word or "", shown milliseconds or None, half a unit of the last shown digit)."""
    m = _BADGE.match(text)
    assert m, f"not a badge: {text!r}"
    word = m.group(1) or ""
    if m.group(2):
        number, unit = m.group(2), m.group(3)
        decimals = len(number.split(".")[1]) if "." in number else 0
        scale = 1000.0 if unit == "s" else 1.0
        return word, float(number) * scale, 0.5 * 10**-decimals * scale
    if m.group(4):
        return word, (int(m.group(4)) * 60 + int(m.group(5))) * 1000.0, 500.0
    return word, None, 0.0


def assert_shows(text: str, word: str, ms: float | None) -> None:
    """The badge says `word` and shows `ms` as rounded for display."""
    shown_word, shown, tolerance = badge_value(text)
    assert shown_word == word, f"{text!r}: expected {word or 'a duration'}"
    if ms is None:
        assert shown is None, f"{text!r}: expected no duration"
    else:
        assert shown is not None and abs(shown - ms) <= tolerance + 1e-9, f"{text!r} does not show {ms} ms"
