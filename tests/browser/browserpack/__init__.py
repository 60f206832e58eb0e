"""A test-only node pack for the browser tests: a node that expands into other nodes at run time.

ComfyUI 2025+ lets a node return a graph to run in its place (node expansion); the nodes it
creates carry the display id of the node the user placed, and the badges must roll their time
up to that node. The March-2024 ComfyUI has no node expansion, so there the pack is empty.
"""

from __future__ import annotations

NODE_CLASS_MAPPINGS: dict = {}

try:
    from comfy_execution.graph_utils import GraphBuilder
except ImportError:  # the March-2024 ComfyUI
    GraphBuilder = None


class ExpandToIntMath:
    """(a + b) * 2, computed by two IntMath nodes this node expands into."""

    CATEGORY = "testing"
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {"default": 3}), "b": ("INT", {"default": 4})}}

    def run(self, a, b):
        graph = GraphBuilder()
        total = graph.node("IntMathRuntimeMetadata", a=a, b=b, op="add")
        doubled = graph.node("IntMathRuntimeMetadata", a=total.out(0), b=2, op="multiply")
        return {"result": (doubled.out(0),), "expand": graph.finalize()}


if GraphBuilder is not None:
    NODE_CLASS_MAPPINGS["ExpandToIntMath"] = ExpandToIntMath
