"""Shared fixtures: a realistic event sequence built from the real schema."""

from __future__ import annotations

import pytest

from runtime_metadata.events.schema import (
    HookStats,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)

PROMPT = {
    "1": {"class_type": "IntMathRuntimeMetadata", "inputs": {"a": 16, "b": 4, "op": "multiply"}},
    "2": {"class_type": "EmptyImage", "inputs": {"width": ["1", 0], "height": 48, "batch_size": 1, "color": 0}},
    "3": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
    "4": {"class_type": "SaveImageRuntimeMetadata", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
    "9": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
}


def run_events() -> list:
    """A run: node 3 cached, 1 and 2 executed, save node 4 receives inputs, then the end."""
    return [
        RunStarted("p-1", 1_700_000_000_000_000_000, 1_000, PROMPT, {"nodes": []}, "ComfyUI test", "0.1.0"),
        NodeCached("3", "CheckpointLoaderSimple", 1_100),
        NodeStarted("1", "IntMathRuntimeMetadata", 2_000),
        NodeInputs("1", 2_100, {"a": [16], "b": [4], "op": ["multiply"]}, 1),
        NodeFinished("1", 3_000, "executed"),
        NodeStarted("2", "EmptyImage", 4_000),
        NodeInputs("2", 4_100, {"width": [64], "height": [48], "batch_size": [1], "color": [0]}, 1),
        NodeFinished("2", 1_004_000, "executed"),
        NodeStarted("4", "SaveImageRuntimeMetadata", 1_005_000),
        NodeInputs(
            "4",
            1_005_100,
            {
                "images": [{"type": "torch.Tensor", "shape": [1, 48, 64, 3], "dtype": "torch.float32"}],
                "filename_prefix": ["t"],
            },
            1,
        ),
        NodeFinished("4", 2_005_000, "executed"),
        HookStats(9, 4_600, 900),
        RunFinished(2_100_000, "success"),
    ]


@pytest.fixture
def events() -> list:
    return run_events()
