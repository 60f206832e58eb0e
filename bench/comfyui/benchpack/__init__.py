"""The server benchmarks' node pack: an INT output node, and the worker thread's CPU clock.

ComfyUI only runs a prompt that ends in an output node; stock ComfyUI has none that takes an
INT, and an image-saving one would add milliseconds of PNG work that hide the per-node costs.

``GET /benchpack/worker_cpu_ns`` answers the CPU time ComfyUI's prompt worker thread has used
so far (Linux: its pthread CPU clock), read before and after a prompt by the benchmark to tell
the worker's own work from waiting. ``null`` where the thread or the clock cannot be found.
"""

import threading
import time


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


def _worker_cpu_ns():
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)  # the function the thread runs
        if getattr(target, "__name__", "") == "prompt_worker" and thread.ident is not None:
            try:
                return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
            except (AttributeError, OSError):  # not Linux, or the thread just ended
                return None
    return None


def _register_route():
    import server
    from aiohttp import web

    @server.PromptServer.instance.routes.get("/benchpack/worker_cpu_ns")
    async def worker_cpu_ns(request):
        return web.json_response({"cpu_ns": _worker_cpu_ns()})


_register_route()
