"""Small node classes with ComfyUI's node interface, for the test executors."""

from __future__ import annotations


class Tensorish:
    """Has ``shape`` and ``dtype`` like a torch tensor; must never be kept by capture."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.dtype = "torch.float32"


class IntConst:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("INT", {}), "b": ("INT", {})}}

    def run(self, a, b):
        return (a + b,)


class MakeImage:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"width": ("INT", {}), "seed": ("INT", {})}}

    def run(self, width, seed):
        return (Tensorish((1, 8, width, 3)),)


class Sink:
    """An output node; records what it was called with in ``calls``."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    calls: list = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*", {})}, "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    def run(self, value, prompt=None, unique_id=None):
        Sink.calls.append(value)
        return {"ui": {"values": [repr(getattr(value, "shape", value))]}}


class Fail:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):
        raise ValueError(f"cannot handle {value}")


class SeedList:
    """OUTPUT_IS_LIST: fans one node out into a batch list of seeds."""

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"start": ("INT", {}), "count": ("INT", {})}}

    def run(self, start, count):
        return (list(range(start, start + count)),)


class SumList:
    """INPUT_IS_LIST: called once with the whole list."""

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"values": ("INT", {})}}

    def run(self, values):
        return (sum(values),)


class ApiNode:
    """Carries credentials both ways ComfyUI delivers them."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"api_key": ("STRING", {}), "size": ("INT", {})},
            "hidden": {"auth_token_comfy_org": "AUTH_TOKEN_COMFY_ORG", "unique_id": "UNIQUE_ID"},
        }

    def run(self, api_key, size, auth_token_comfy_org=None, unique_id=None):
        return (size,)


MAPPINGS = {c.__name__: c for c in (IntConst, Add, MakeImage, Sink, Fail, SeedList, SumList, ApiNode)}


class Text:
    """A string primitive, as string nodes of many packs are."""

    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {}), "max_tokens": ("INT", {})}}

    def run(self, value, max_tokens):
        return (value,)


class KeyedFail:
    """Fails with a message that quotes its key, as careless API clients do."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"api_key": ("STRING", {})}}

    def run(self, api_key):
        raise ValueError(f"request to https://api.example/v1?key={api_key} failed")


MAPPINGS.update({"Text": Text, "KeyedFail": KeyedFail})


class BrokenInit:
    """Fails before its function is called: ComfyUI cannot even create the node object."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    def __init__(self):
        raise RuntimeError("no backend for key=sk-init-999")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {})}}

    def run(self, value):  # pragma: no cover - never reached
        return (value,)


MAPPINGS["BrokenInit"] = BrokenInit
