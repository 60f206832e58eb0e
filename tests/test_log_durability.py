"""Durability: a ComfyUI process killed with SIGKILL loses no event of a node that completed.

A child process runs a prompt through the real capture path (hooks installed on the March-2024
test executor, the recorder, a log folder, the file log). Each node, when called, writes its
id to a pipe; the parent reads them and kills the child at a random moment. A node whose
successor has been called has completed (its end was recorded before the next node started),
so its three events must be in the log the parent then reads; damage is allowed only at the
tail, where the kill cut a write short.

``LOG_KILL_ROUNDS`` sets the number of rounds (default 12; the README states a longer run).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runtime_metadata.events.log import read_log_file
from runtime_metadata.events.schema import NodeFinished, NodeInputs, NodeStarted, RunFinished

EXECUTORS = Path(__file__).parent / "executors"
NODES = 300
ROUNDS = int(os.environ.get("LOG_KILL_ROUNDS", "12"))

CHILD = textwrap.dedent(
    """
    import importlib.util, os, random, sys

    from runtime_metadata import capture

    executors, prompt_id, seed, nodes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    spec = importlib.util.spec_from_file_location("execution_kill", os.path.join(executors, "march2024.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


    class Tick:
        RETURN_TYPES = ("INT",)
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"value": ("INT", {}), "text": ("STRING", {})}}

        def run(self, value, text):
            os.write(1, b"%d\\n" % value)  # unbuffered: the parent sees it at once
            return (value,)


    module.NODE_CLASS_MAPPINGS["Tick"] = Tick
    capture.install(module, "kill-test")
    rng = random.Random(seed)
    # Texts up to the summary's cut (4096): records of one node cross block boundaries often.
    prompt = {
        str(i): {"class_type": "Tick", "inputs": {"value": i, "text": "t" * rng.choice((0, 10, 900, 4000))}}
        for i in range(nodes)
    }
    module.PromptExecutor().execute(prompt, prompt_id, {"extra_pnginfo": {"workflow": {}}}, list(prompt))
    os.write(1, b"done\\n")
    """
)


def _round(tmp_path: Path, rng: random.Random, index: int) -> tuple[int, int, bool]:
    """One child killed at a random moment; returns (nodes completed, nodes recovered, finished)."""
    logs = tmp_path / f"logs{index}"
    prompt_id = f"kill-{index}"
    env = {
        **os.environ,
        "AAA_METADATA_ENABLE_HOOKS": "1",
        "AAA_METADATA_CONFIG": "/nonexistent/config.json",
        "AAA_METADATA_LOG_DIR": str(logs),
    }
    kill_after = rng.randrange(0, NODES + 1)
    errors = tmp_path / f"stderr{index}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(EXECUTORS), prompt_id, str(rng.randrange(1 << 30)), str(NODES)],
        stdout=subprocess.PIPE,
        stderr=errors.open("wb"),
        env=env,
    )
    assert child.stdout is not None
    seen: list[str] = []
    try:
        while len(seen) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            seen.append(line.decode().strip())
        if rng.random() < 0.5:  # now and then somewhat later, wherever the child then is
            time.sleep(rng.random() * 0.003)
        child.send_signal(signal.SIGKILL)
        seen += [line.decode().strip() for line in child.stdout.read().splitlines()]
    finally:
        child.kill()
        child.wait()
    finished = "done" in seen
    # The child either finished or was killed by us; anything else is a broken test setup.
    assert child.returncode in (0, -signal.SIGKILL), errors.read_text()
    assert "Traceback" not in errors.read_text(), errors.read_text()
    called = [int(s) for s in seen if s != "done"]
    # A node completed once the next one was called (or the run ended).
    completed = called if finished else called[:-1]
    path = logs / f"{prompt_id}.rtlog"
    if not path.exists():
        assert completed == [], "nodes completed but no log was created"
        return 0, 0, finished
    result = read_log_file(path)
    size = path.stat().st_size
    for damage in result.damage:  # only the write the kill cut short
        assert damage.offset + damage.length == size and "torn" in damage.reason, result.describe_damage()
    by_node: dict[str, list[str]] = {}
    for event in result.events:
        if isinstance(event, (NodeStarted, NodeInputs, NodeFinished)):
            by_node.setdefault(event.node_id, []).append(type(event).__name__)
            if isinstance(event, NodeInputs):
                assert event.inputs["value"] == [int(event.node_id)]
            if isinstance(event, NodeFinished):
                assert event.status == "executed"
    for node in completed:
        assert by_node.get(str(node)) == ["NodeStarted", "NodeInputs", "NodeFinished"], (node, len(completed))
    if finished:
        assert isinstance(result.events[-1], RunFinished)
    recovered = sum(1 for kinds in by_node.values() if kinds[-1:] == ["NodeFinished"])
    return len(completed), recovered, finished


def test_a_process_killed_at_random_moments_loses_no_completed_node(tmp_path: Path):
    rng = random.Random(int(os.environ.get("LOG_KILL_SEED", "20240311")))
    completed_total = 0
    rounds_with_nodes = 0
    for index in range(ROUNDS):
        completed, recovered, _ = _round(tmp_path, rng, index)
        assert recovered >= completed
        completed_total += completed
        rounds_with_nodes += completed > 0
    assert rounds_with_nodes >= ROUNDS // 2  # the kills did land mid-run, not only before it
    print(f"\n{ROUNDS} kill -9 rounds, {completed_total} completed nodes, all recovered")
