"""The example workflows of ``tests/workflows/`` and what their generation is, shared by tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WORKFLOWS = Path(__file__).parent / "workflows"


def load(name: str) -> dict[str, Any]:
    """The API-format prompt ``tests/workflows/<name>.json``."""
    return json.loads((WORKFLOWS / f"{name}.json").read_text(encoding="utf-8"))


#: switch.json: the generation behind each branch of its switch (on_1, the default, and on_2).
SWITCH_BRANCH_1 = {
    "model": "v1-5-pruned-emaonly.safetensors",
    "positive": "a castle on a hill",
    "negative": "lowres",
    "sampler": {
        "name": "euler",
        "scheduler": "normal",
        "steps": 20,
        "cfg": 7,
        "seed": 1,
        "denoise": 1,
    },
    "size": {"width": 512, "height": 512},
    "batch_size": 1,
}
SWITCH_BRANCH_2 = {
    **SWITCH_BRANCH_1,
    "sampler": {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 30,
        "cfg": 5.5,
        "seed": 2,
        "denoise": 1,
    },
}
