"""A one-node pack for the server benchmark: an output node that takes an INT and does nothing.

ComfyUI only runs a prompt that ends in an output node; stock ComfyUI has none that takes an
INT, and an image-saving one would add milliseconds of PNG work that hide the per-node costs.
"""


class BenchIntSink:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "run"
    CATEGORY = "runtime-metadata/bench"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"default": 0, "min": -(2**63), "max": 2**63 - 1})}}

    def run(self, value):
        return {}


NODE_CLASS_MAPPINGS = {"BenchIntSink": BenchIntSink}
