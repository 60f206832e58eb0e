"""A test-only pack that wraps ComfyUI's executor functions at import, as some packs do.

Loaded under two folder names, which choose its style:

- ``otherpack_varargs``: ``def wrapper(*args, **kwargs)`` (``async def`` for coroutine
  functions) without ``__wrapped__``: ComfyUI's signature is hidden behind it;
- ``otherpack_preserving``: ``functools.wraps``, which keeps ``__wrapped__`` and so the signature.

It wraps what the plugin wraps: ``PromptExecutor.execute`` and ``add_message``,
``get_output_data``, and the per-node ``execute`` (2025+) or ``recursive_execute`` (2024).
``GET /otherpack/<style>/calls`` answers how often each of its wrappers ran.
"""

import functools
import inspect
import os

STYLE = os.path.basename(os.path.dirname(os.path.abspath(__file__))).rpartition("_")[2]
CALLS = {}


def _count(name):
    CALLS[name] = CALLS.get(name, 0) + 1


def _varargs(name, func):
    if inspect.iscoroutinefunction(func):

        async def wrapper(*args, **kwargs):
            _count(name)
            return await func(*args, **kwargs)

    else:

        def wrapper(*args, **kwargs):
            _count(name)
            return func(*args, **kwargs)

    return wrapper


def _preserving(name, func):
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            _count(name)
            return await func(*args, **kwargs)

    else:

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            _count(name)
            return func(*args, **kwargs)

    return wrapper


def _wrap_all():
    import execution

    wrap = {"varargs": _varargs, "preserving": _preserving}[STYLE]
    executor = execution.PromptExecutor
    executor.execute = wrap("PromptExecutor.execute", executor.execute)
    executor.add_message = wrap("PromptExecutor.add_message", executor.add_message)
    execution.get_output_data = wrap("get_output_data", execution.get_output_data)
    per_node = "execute" if hasattr(execution, "execute") else "recursive_execute"
    setattr(execution, per_node, wrap(per_node, getattr(execution, per_node)))


def _register_route():
    import server
    from aiohttp import web

    @server.PromptServer.instance.routes.get(f"/otherpack/{STYLE}/calls")
    async def calls(request):
        return web.json_response(dict(CALLS))


_wrap_all()
_register_route()
NODE_CLASS_MAPPINGS = {}
