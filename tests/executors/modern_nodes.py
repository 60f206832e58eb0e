"""Nodes that exercise what only the modern executor does: lazy inputs, async nodes, node
expansion, interrupts, hidden credentials and executor inputs.

``load_modern`` (``tests/generations.py``) registers them and binds ``Expand.builder`` and
``Interrupter.interrupt`` to the executor module it loads.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from runtime_metadata import capture
from runtime_metadata.events.log import read_log
from runtime_metadata.events.schema import NodeCached, NodeStarted


class Lazy:
    """Evaluates only the input it picks (``check_lazy_status``), like ComfyUI's switch nodes."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"use_a": ("BOOLEAN", {}), "a": ("INT", {"lazy": True}), "b": ("INT", {"lazy": True})}}

    def check_lazy_status(self, use_a, a=None, b=None):
        if use_a:
            return ["a"] if a is None else []
        return ["b"] if b is None else []

    def run(self, use_a, a=None, b=None):
        return (a if use_a else b,)


class LazyBroken(Lazy):
    """Fails in ``check_lazy_status``: before its function is ever called."""

    def check_lazy_status(self, use_a, a=None, b=None):
        raise RuntimeError("lazy check failed")


class AsyncSleep:
    """An async node: ComfyUI runs it as an asyncio.Task and comes back for the result."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    delay = 0.05
    done_at: list[int] = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    async def run(self, value):
        await asyncio.sleep(self.delay)
        AsyncSleep.done_at.append(time.perf_counter_ns())
        return (value * 2,)


class AsyncFail(AsyncSleep):
    async def run(self, value):
        await asyncio.sleep(0.01)
        raise RuntimeError(f"async boom {value}")


class Expand:
    """Node expansion: returns a subgraph of two Add nodes (value + 1 + 2)."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    builder: Any = None  # the executor module's GraphBuilder, set by the fixture

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):
        g = self.builder()
        a = g.node("Add", a=value, b=1)
        b = g.node("Add", a=a.out(0), b=2)
        return {"result": (b.out(0),), "expand": g.finalize()}


class ExpandNested(Expand):
    """Expands into an Expand node (+10): ephemeral nodes of ephemeral nodes."""

    def run(self, value):
        g = self.builder()
        a = g.node("Expand", value=value)
        b = g.node("Add", a=a.out(0), b=10)
        return {"result": (b.out(0),), "expand": g.finalize()}


class ExpandFail(Expand):
    """Expands into a node that fails in its function (Fail) or before it (LazyBroken)."""

    inner = "Fail"

    def run(self, value):
        g = self.builder()
        if self.inner == "Fail":
            a = g.node("Fail", value=value)
        else:
            a = g.node("LazyBroken", use_a=True, a=value, b=0)
        return {"result": (a.out(0),), "expand": g.finalize()}


class Interrupter:
    """Presses ComfyUI's interrupt button while it runs; the next node call is interrupted."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    interrupt: Any = None

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):
        self.interrupt(True)
        return (value,)


class Probe:
    """An output node that always runs (IS_CHANGED is NaN) and notes the run capture shows it."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    seen: list[tuple[str, list[tuple[str, str]]]] = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*", {})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    @classmethod
    def IS_CHANGED(cls, **kwargs):
        return float("nan")

    def run(self, value, unique_id=None):
        rec = capture.live_run()
        events = read_log(rec.snapshot()).events
        Probe.seen.append(
            (
                events[0].prompt_id,
                [(type(e).__name__, e.node_id) for e in events if isinstance(e, (NodeStarted, NodeCached))],
            )
        )
        return {"ui": {"seen": [rec.prompt_id]}}


class CloudNode:
    """ComfyUI's API-node credentials, as hidden inputs with names no rule would call secret."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"size": ("INT", {})},
            "hidden": {"login": "AUTH_TOKEN_COMFY_ORG", "comfy_org": "API_KEY_COMFY_ORG"},
        }

    def run(self, size, login=None, comfy_org=None):
        assert login == "tok-secret-1" and comfy_org == "key-secret-2"  # ComfyUI delivered them
        return (size,)


class Scheduler:
    """Asks for 0.38.1's executor-facing hidden inputs: the live execution list, the usage source."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT", {})},
            "hidden": {"plan": "EXECUTION_LIST", "source": "COMFY_USAGE_SOURCE"},
        }

    def run(self, value, plan=None, source=None):
        assert plan is not None  # ComfyUI hands the node its live ExecutionList
        return (value,)


MODERN_NODES = {
    c.__name__: c
    for c in (
        Lazy,
        LazyBroken,
        AsyncSleep,
        AsyncFail,
        Expand,
        ExpandNested,
        ExpandFail,
        Interrupter,
        Probe,
        CloudNode,
        Scheduler,
    )
}
