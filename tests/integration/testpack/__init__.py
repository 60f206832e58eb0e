"""A test-only node pack, loaded beside the plugin in the integration servers.

Its nodes stand for what third-party packs do and a static parser cannot know: a seed derived
from text, a batch list of seeds, a node that takes an API key.
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


NODE_CLASS_MAPPINGS = {
    "SeedFromText": SeedFromText,
    "SeedList": SeedList,
    "KeyedColor": KeyedColor,
    "TextValue": TextValue,
    "BreakMetadataOnce": BreakMetadataOnce,
}
