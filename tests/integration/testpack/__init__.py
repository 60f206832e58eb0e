"""A test-only node pack, loaded beside the plugin in the integration servers.

Its nodes stand for what third-party packs do and a static parser cannot know: a seed derived
from text, a batch list of seeds, a node that takes an API key; and for what the executor does
at run time: an interrupt, an async node, node expansion, a V3 node (the last three only where
the ComfyUI has them).
"""

from __future__ import annotations

import zlib


class SeedFromText:
    """An INT computed from a string, as seed/hash nodes of many packs do."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "fox"}), "modulo": ("INT", {"default": 3})}}

    def run(self, text, modulo):
        return (zlib.crc32(text.encode()) % modulo + 1,)


class SeedList:
    """A batch list of seeds (OUTPUT_IS_LIST): downstream nodes run once per item."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"start": ("INT", {"default": 1}), "count": ("INT", {"default": 3})}}

    def run(self, start, count):
        return (list(range(start, start + count)),)


class TextValue:
    """A string primitive, as string nodes of many packs are (a key can come from one)."""

    CATEGORY = "testing"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {"default": ""})}}

    def run(self, value):
        return (value,)


class KeyedColor:
    """Takes a credential like API nodes do; its output is harmless."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"api_key": ("STRING", {"default": ""}), "color": ("INT", {"default": 0})}}

    def run(self, api_key, color):
        return (color,)


class BreakMetadataOnce:
    """Fault injection: makes the plugin's next document build raise, then passes images on.

    Only for tests: it reaches into the loaded plugin (``sys.modules``) the way a buggy
    dependency or an unexpected ComfyUI change would break it.
    """

    CATEGORY = "testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def run(self, images):
        import sys

        nodes = next(
            m for name, m in sys.modules.items() if name.endswith(".nodes") and hasattr(m, "build_save_document")
        )
        original = nodes.build_save_document

        def broken(*args, **kwargs):
            nodes.build_save_document = original
            raise RuntimeError("injected metadata fault")

        nodes.build_save_document = broken
        return (images,)


class WaitForInterrupt:
    """Runs until ComfyUI's interrupt button is pressed, then stops as samplers do.

    It first creates ``ready_file`` so that the test knows the node is running (ComfyUI resets
    the interrupt flag when a prompt starts: pressing it earlier would be lost).
    """

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    TIMEOUT = 120.0  # seconds: a test that never presses the button fails instead of hanging

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT", {"default": 0}), "ready_file": ("STRING", {"default": ""})},
            # "raise": stop as samplers do; "return": finish, so that ComfyUI stops the next node.
            "optional": {"then": (["raise", "return"], {"default": "raise"})},
        }

    def run(self, value, ready_file, then="raise"):
        import pathlib
        import time

        import comfy.model_management

        pathlib.Path(ready_file).write_text("running")
        deadline = time.monotonic() + self.TIMEOUT
        while time.monotonic() < deadline:
            if then == "return" and comfy.model_management.processing_interrupted():
                return (value,)
            # What KSampler's progress callback does between steps: raises once interrupted.
            comfy.model_management.throw_exception_if_processing_interrupted()
            time.sleep(0.01)
        raise TimeoutError(f"nobody pressed interrupt within {self.TIMEOUT:.0f}s")


class AsyncSleep:
    """An async node (ComfyUI 2025+ runs ``async def`` functions as tasks): value after a sleep."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT", {"default": 0}), "seconds": ("FLOAT", {"default": 0.5})},
            "optional": {"fail": ("BOOLEAN", {"default": False})},
        }

    async def run(self, value, seconds, fail=False):
        import asyncio

        await asyncio.sleep(seconds)
        if fail:
            raise RuntimeError(f"async failure after {seconds} s with {value}")
        return (value,)


class ExpandAddTwice:
    """Node expansion (ComfyUI 2024-08+): becomes two IntMath nodes, value + 1 + 2.

    ``inner`` chooses another subgraph: "nested" expands into an ExpandAddTwice and adds 10;
    "fail" and "fail_before_call" expand into a node that fails in its function, or before it
    is called (FailingNode, LazyCheckFails).
    """

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": ("INT", {"default": 0})},
            "optional": {"inner": (["add", "nested", "fail", "fail_before_call"], {"default": "add"})},
        }

    def run(self, value, inner="add"):
        from comfy_execution.graph_utils import GraphBuilder

        graph = GraphBuilder()
        if inner == "nested":
            first = graph.node("ExpandAddTwice", value=value)
            last = graph.node("IntMathRuntimeMetadata", a=first.out(0), b=10, op="add")
        elif inner == "fail":
            last = graph.node("FailingNode", value=value)
        elif inner == "fail_before_call":
            last = graph.node("LazyCheckFails", value=value)
        else:
            first = graph.node("IntMathRuntimeMetadata", a=value, b=1, op="add")
            last = graph.node("IntMathRuntimeMetadata", a=first.out(0), b=2, op="add")
        return {"result": (last.out(0),), "expand": graph.finalize()}


class FailingNode:
    """Fails in its function, with a message naming its input."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0})}}

    def run(self, value):
        raise ValueError(f"cannot handle {value}")


class LazyCheckFails:
    """Fails in check_lazy_status (ComfyUI 2024-08+), before its function is ever called."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "lazy": True})}}

    def check_lazy_status(self, value=None):
        raise RuntimeError("lazy check failed")

    def run(self, value):
        return (value,)


NODE_CLASS_MAPPINGS = {
    "SeedFromText": SeedFromText,
    "SeedList": SeedList,
    "KeyedColor": KeyedColor,
    "TextValue": TextValue,
    "BreakMetadataOnce": BreakMetadataOnce,
    "WaitForInterrupt": WaitForInterrupt,
    "AsyncSleep": AsyncSleep,
    "ExpandAddTwice": ExpandAddTwice,
    "FailingNode": FailingNode,
    "LazyCheckFails": LazyCheckFails,
}


def _v3_nodes():
    """A node written against ComfyUI's V3 API (``comfy_api.latest``, 2025+), where there is one."""
    try:
        from comfy_api.latest import io
    except ImportError:  # an older ComfyUI
        return {}

    class KeyedColorV3(io.ComfyNode):
        """KeyedColor in the V3 API, with ComfyUI's credentials as V3 hidden inputs."""

        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="KeyedColorV3",
                category="testing",
                inputs=[io.String.Input("api_key", default=""), io.Int.Input("color", default=0, min=0, max=0xFFFFFF)],
                outputs=[io.Int.Output()],
                hidden=[io.Hidden.unique_id, io.Hidden.auth_token_comfy_org, io.Hidden.api_key_comfy_org],
            )

        @classmethod
        def execute(cls, api_key, color):
            hidden = cls.hidden
            if hidden is None or hidden.unique_id is None or hidden.api_key_comfy_org is None:
                raise ValueError("ComfyUI did not deliver the hidden inputs")  # the test sends them
            return io.NodeOutput(color)

    return {"KeyedColorV3": KeyedColorV3}


NODE_CLASS_MAPPINGS.update(_v3_nodes())
