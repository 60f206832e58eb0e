"""ComfyUI's modern async executor, reduced to its call sequence.

Follows Comfy-Org/ComfyUI at commit ``a125cd84b054a57729b5eecab930ca9408719832``
(2025-10-12, ``comfyui_version.py`` 0.3.64): ``execution.py``, ``comfy_execution/graph.py``,
``graph_utils.py``, ``caching.py`` and ``utils.py``. The code below keeps their names,
signatures, global-name lookups, ``await`` points and return values; bodies are copied with
what does not touch the wrap points left out (websocket sends, progress state, torch, model
management, V3 ``comfy_api`` nodes, the LRU / dependency-aware caches).

Three knobs select the signatures and cache behaviour of other releases, as read in the
stored sources of Comfy-Org/ComfyUI (``execution.py`` at ``04e2a914``, whose repository's
``comfyui_version.py`` says 0.38.1; ``comfy_execution/caching.py`` at ``0c5058b9``;
``graph.py`` at ``0b458120``). Set them as module globals before the module is executed
(``module.EXECUTE_PARAMS = 10`` between ``module_from_spec`` and ``exec_module``):

``EXECUTE_PARAMS``
    ``12`` (default): ``execute(..., pending_async_nodes, ui_outputs, asset_manager)`` as in
    0.38.1, whose ``PromptExecutor`` also takes an ``asset_manager`` and whose nodes may ask
    for the ``EXECUTION_LIST`` and ``COMFY_USAGE_SOURCE`` hidden inputs. ``11``:
    ``execute(..., pending_async_nodes, ui_outputs)`` (UI results go to a per-run
    ``ui_outputs`` dict that ``execute_async`` turns into ``history_result``). ``10``: the
    0.3.64 form (UI results in ``caches.ui``).
``HIDDEN_KWARG``
    ``"v3_data"`` (default, 2026) or ``"hidden_inputs"`` (0.3.48 .. 0.3.64): the keyword
    ``get_output_data`` and ``_async_map_node_over_list`` take V3 hidden inputs by.
``CACHE_API``
    ``"async"`` (default; 0.17 and later): the output cache holds ``CacheEntry(ui, outputs)``,
    ``get``/``set`` are coroutines awaited in ``execute`` and ``execute_async`` (which gathers
    the lookups that make the ``execution_cached`` list), ``get_local`` is the synchronous
    lookup. ``"entry"``: the same entries, looked up synchronously (late 2025). ``"split"``:
    outputs and UI results in two synchronous caches (0.3.64); required by, and only with,
    ``EXECUTE_PARAMS = 10``. Inputs are fetched through ``get_local`` here, where ComfyUI
    fetches them through the execution list's own links; that changes no wrapped argument.

Nothing of these releases' code is copied: the bodies below are written to their signatures
and call order.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any, NamedTuple

EXECUTE_PARAMS: int = globals().get("EXECUTE_PARAMS", 12)
HIDDEN_KWARG: str = globals().get("HIDDEN_KWARG", "v3_data")
CACHE_API: str = globals().get("CACHE_API", "split" if EXECUTE_PARAMS == 10 else "async")
assert EXECUTE_PARAMS in (10, 11, 12), EXECUTE_PARAMS
assert HIDDEN_KWARG in ("v3_data", "hidden_inputs"), HIDDEN_KWARG
assert CACHE_API in ("split", "entry", "async"), CACHE_API
assert (CACHE_API == "split") == (EXECUTE_PARAMS == 10), (EXECUTE_PARAMS, CACHE_API)

#: ``nodes.NODE_CLASS_MAPPINGS``
NODE_CLASS_MAPPINGS: dict[str, type] = {}

SENSITIVE_EXTRA_DATA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


# --------------------------------------------------------------- comfy.model_management / nodes


class InterruptProcessingException(Exception):
    """Same name as comfy.model_management's."""


_interrupt = [False]


def interrupt_processing(value=True):
    """``nodes.interrupt_processing`` -> ``model_management.interrupt_current_processing``."""
    _interrupt[0] = value


def before_node_execution():
    """``nodes.before_node_execution`` -> ``throw_exception_if_processing_interrupted``."""
    if _interrupt[0]:
        _interrupt[0] = False
        raise InterruptProcessingException()


# --------------------------------------------------------------- comfy_execution/utils.py


class ExecutionContext(NamedTuple):
    prompt_id: str
    node_id: str
    list_index: int | None


current_executing_context: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "current_executing_context", default=None
)


def get_executing_context() -> ExecutionContext | None:
    return current_executing_context.get(None)


class CurrentNodeContext:
    def __init__(self, prompt_id: str, node_id: str, list_index: int | None = None):
        self.context = ExecutionContext(prompt_id=prompt_id, node_id=node_id, list_index=list_index)
        self.token = None

    def __enter__(self):
        self.token = current_executing_context.set(self.context)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if self.token is not None:
            current_executing_context.reset(self.token)


# --------------------------------------------------------------- comfy_execution/graph_utils.py


def is_link(obj):
    if not isinstance(obj, list):
        return False
    if len(obj) != 2:
        return False
    if not isinstance(obj[0], str):
        return False
    if not isinstance(obj[1], int) and not isinstance(obj[1], float):
        return False
    return True


class GraphBuilder:
    _default_prefix_root = ""
    _default_prefix_call_index = 0
    _default_prefix_graph_index = 0

    def __init__(self, prefix=None):
        if prefix is None:
            self.prefix = GraphBuilder.alloc_prefix()
        else:
            self.prefix = prefix
        self.nodes = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root, call_index, graph_index=0):
        cls._default_prefix_root = prefix_root
        cls._default_prefix_call_index = call_index
        cls._default_prefix_graph_index = graph_index

    @classmethod
    def alloc_prefix(cls, root=None, call_index=None, graph_index=None):
        if root is None:
            root = GraphBuilder._default_prefix_root
        if call_index is None:
            call_index = GraphBuilder._default_prefix_call_index
        if graph_index is None:
            graph_index = GraphBuilder._default_prefix_graph_index
        result = f"{root}.{call_index}.{graph_index}."
        GraphBuilder._default_prefix_graph_index += 1
        return result

    def node(self, class_type, id=None, **kwargs):  # ComfyUI's name
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        id = self.prefix + id
        if id in self.nodes:
            return self.nodes[id]
        node = Node(id, class_type, kwargs)
        self.nodes[id] = node
        return node

    def finalize(self):
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}


class Node:
    def __init__(self, id, class_type, inputs):
        self.id = id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id = None

    def out(self, index):
        return [self.id, index]

    def set_override_display_id(self, override_display_id):
        self.override_display_id = override_display_id

    def serialize(self):
        serialized = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            serialized["override_display_id"] = self.override_display_id
        return serialized


class ExecutionBlocker:
    def __init__(self, message):
        self.message = message


# --------------------------------------------------------------- comfy_execution/graph.py


class DependencyCycleError(Exception):
    pass


class NodeInputError(Exception):
    pass


class NodeNotFoundError(Exception):
    pass


class DynamicPrompt:
    def __init__(self, original_prompt):
        self.original_prompt = original_prompt
        self.ephemeral_prompt = {}
        self.ephemeral_parents = {}
        self.ephemeral_display = {}

    def get_node(self, node_id):
        if node_id in self.ephemeral_prompt:
            return self.ephemeral_prompt[node_id]
        if node_id in self.original_prompt:
            return self.original_prompt[node_id]
        raise NodeNotFoundError(f"Node {node_id} not found")

    def has_node(self, node_id):
        return node_id in self.original_prompt or node_id in self.ephemeral_prompt

    def add_ephemeral_node(self, node_id, node_info, parent_id, display_id):
        self.ephemeral_prompt[node_id] = node_info
        self.ephemeral_parents[node_id] = parent_id
        self.ephemeral_display[node_id] = display_id

    def get_real_node_id(self, node_id):
        while node_id in self.ephemeral_parents:
            node_id = self.ephemeral_parents[node_id]
        return node_id

    def get_parent_node_id(self, node_id):
        return self.ephemeral_parents.get(node_id, None)

    def get_display_node_id(self, node_id):
        while node_id in self.ephemeral_display:
            node_id = self.ephemeral_display[node_id]
        return node_id

    def all_node_ids(self):
        return set(self.original_prompt.keys()).union(set(self.ephemeral_prompt.keys()))

    def get_original_prompt(self):
        return self.original_prompt


def get_input_info(class_def, input_name, valid_inputs=None):
    valid_inputs = valid_inputs or class_def.INPUT_TYPES()
    input_info = None
    input_category = None
    if "required" in valid_inputs and input_name in valid_inputs["required"]:
        input_category = "required"
        input_info = valid_inputs["required"][input_name]
    elif "optional" in valid_inputs and input_name in valid_inputs["optional"]:
        input_category = "optional"
        input_info = valid_inputs["optional"][input_name]
    elif "hidden" in valid_inputs and input_name in valid_inputs["hidden"]:
        input_category = "hidden"
        input_info = valid_inputs["hidden"][input_name]
    if input_info is None:
        return None, None, None
    input_type = input_info[0]
    extra_info = input_info[1] if len(input_info) > 1 else {}
    return input_type, input_category, extra_info


class TopologicalSort:
    def __init__(self, dynprompt):
        self.dynprompt = dynprompt
        self.pendingNodes = {}
        self.blockCount = {}
        self.blocking = {}
        self.externalBlocks = 0
        self.unblockedEvent = asyncio.Event()

    def get_input_info(self, unique_id, input_name):
        class_type = self.dynprompt.get_node(unique_id)["class_type"]
        class_def = NODE_CLASS_MAPPINGS[class_type]
        return get_input_info(class_def, input_name)

    def make_input_strong_link(self, to_node_id, to_input):
        inputs = self.dynprompt.get_node(to_node_id)["inputs"]
        if to_input not in inputs:
            raise NodeInputError(
                f"Node {to_node_id} says it needs input {to_input}, but there is no input to that node at all"
            )
        value = inputs[to_input]
        if not is_link(value):
            raise NodeInputError(f"Node {to_node_id} says it needs input {to_input}, but that value is a constant")
        from_node_id, from_socket = value
        self.add_strong_link(from_node_id, from_socket, to_node_id)

    def add_strong_link(self, from_node_id, from_socket, to_node_id):
        if not self.is_cached(from_node_id):
            self.add_node(from_node_id)
            if to_node_id not in self.blocking[from_node_id]:
                self.blocking[from_node_id][to_node_id] = {}
                self.blockCount[to_node_id] += 1
            self.blocking[from_node_id][to_node_id][from_socket] = True

    def add_node(self, node_unique_id, include_lazy=False, subgraph_nodes=None):
        node_ids = [node_unique_id]
        links = []
        while len(node_ids) > 0:
            unique_id = node_ids.pop()
            if unique_id in self.pendingNodes:
                continue
            self.pendingNodes[unique_id] = True
            self.blockCount[unique_id] = 0
            self.blocking[unique_id] = {}
            inputs = self.dynprompt.get_node(unique_id)["inputs"]
            for input_name in inputs:
                value = inputs[input_name]
                if is_link(value):
                    from_node_id, from_socket = value
                    if subgraph_nodes is not None and from_node_id not in subgraph_nodes:
                        continue
                    _, _, input_info = self.get_input_info(unique_id, input_name)
                    is_lazy = input_info is not None and "lazy" in input_info and input_info["lazy"]
                    if (include_lazy or not is_lazy) and not self.is_cached(from_node_id):
                        node_ids.append(from_node_id)
                        links.append((from_node_id, from_socket, unique_id))
        for link in links:
            self.add_strong_link(*link)

    def add_external_block(self, node_id):
        assert node_id in self.blockCount, "Can't add external block to a node that isn't pending"
        self.externalBlocks += 1
        self.blockCount[node_id] += 1

        def unblock():
            self.externalBlocks -= 1
            self.blockCount[node_id] -= 1
            self.unblockedEvent.set()

        return unblock

    def is_cached(self, node_id):
        return False

    def get_ready_nodes(self):
        return [node_id for node_id in self.pendingNodes if self.blockCount[node_id] == 0]

    def pop_node(self, unique_id):
        del self.pendingNodes[unique_id]
        for blocked_node_id in self.blocking[unique_id]:
            self.blockCount[blocked_node_id] -= 1
        del self.blocking[unique_id]

    def is_empty(self):
        return len(self.pendingNodes) == 0


class ExecutionList(TopologicalSort):
    def __init__(self, dynprompt, output_cache):
        super().__init__(dynprompt)
        self.output_cache = output_cache
        self.staged_node_id = None

    def is_cached(self, node_id):
        return self.output_cache.get_local(node_id) is not None

    def get_cache(self, from_node_id, to_node_id):
        """What ``to_node_id`` reads of ``from_node_id``'s outputs (here: the cache itself)."""
        return self.output_cache.get_local(from_node_id)

    async def stage_node_execution(self):
        assert self.staged_node_id is None
        if self.is_empty():
            return None, None, None
        available = self.get_ready_nodes()
        while len(available) == 0 and self.externalBlocks > 0:
            await self.unblockedEvent.wait()
            self.unblockedEvent.clear()
            available = self.get_ready_nodes()
        if len(available) == 0:
            ex = DependencyCycleError("Dependency cycle detected")
            error_details = {
                "node_id": next(iter(self.pendingNodes)),
                "exception_message": str(ex),
                "exception_type": "graph.DependencyCycleError",
                "traceback": [],
                "current_inputs": [],
            }
            return None, error_details, ex
        self.staged_node_id = self.ux_friendly_pick_node(available)
        return self.staged_node_id, None, None

    def ux_friendly_pick_node(self, node_list):
        def is_output(node_id):
            class_type = self.dynprompt.get_node(node_id)["class_type"]
            class_def = NODE_CLASS_MAPPINGS[class_type]
            return hasattr(class_def, "OUTPUT_NODE") and class_def.OUTPUT_NODE == True  # noqa: E712

        def is_async(node_id):
            class_type = self.dynprompt.get_node(node_id)["class_type"]
            class_def = NODE_CLASS_MAPPINGS[class_type]
            return inspect.iscoroutinefunction(getattr(class_def, class_def.FUNCTION))

        for node_id in node_list:
            if is_output(node_id) or is_async(node_id):
                return node_id
        for node_id in node_list:
            for blocked_node_id in self.blocking[node_id]:
                if is_output(blocked_node_id):
                    return node_id
        for node_id in node_list:
            for blocked_node_id in self.blocking[node_id]:
                for blocked_node_id1 in self.blocking[blocked_node_id]:
                    if is_output(blocked_node_id1):
                        return node_id
        return node_list[0]

    def unstage_node_execution(self):
        assert self.staged_node_id is not None
        self.staged_node_id = None

    def complete_node_execution(self):
        node_id = self.staged_node_id
        self.pop_node(node_id)
        self.staged_node_id = None


# --------------------------------------------------------------- comfy_execution/caching.py


def include_unique_id_in_input(class_type):
    return "UNIQUE_ID" in NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES().get("hidden", {}).values()


class Unhashable:
    def __init__(self):
        self.value = float("NaN")


def to_hashable(obj):
    if isinstance(obj, (int, float, str, bool, type(None))):
        return obj
    elif isinstance(obj, Mapping):
        return frozenset([(to_hashable(k), to_hashable(v)) for k, v in sorted(obj.items())])
    elif isinstance(obj, Sequence):
        return frozenset(zip(itertools.count(), [to_hashable(i) for i in obj]))
    else:
        return Unhashable()


class CacheKeySetID:
    def __init__(self, dynprompt, node_ids, is_changed_cache):
        self.keys = {}
        self.subcache_keys = {}
        self.dynprompt = dynprompt

    async def add_keys(self, node_ids):
        for node_id in node_ids:
            if node_id in self.keys or not self.dynprompt.has_node(node_id):
                continue
            node = self.dynprompt.get_node(node_id)
            self.keys[node_id] = (node_id, node["class_type"])
            self.subcache_keys[node_id] = (node_id, node["class_type"])

    def all_node_ids(self):
        return set(self.keys.keys())

    def get_used_keys(self):
        return self.keys.values()

    def get_used_subcache_keys(self):
        return self.subcache_keys.values()

    def get_data_key(self, node_id):
        return self.keys.get(node_id, None)

    def get_subcache_key(self, node_id):
        return self.subcache_keys.get(node_id, None)


class CacheKeySetInputSignature(CacheKeySetID):
    def __init__(self, dynprompt, node_ids, is_changed_cache):
        super().__init__(dynprompt, node_ids, is_changed_cache)
        self.is_changed_cache = is_changed_cache

    async def add_keys(self, node_ids):
        for node_id in node_ids:
            if node_id in self.keys or not self.dynprompt.has_node(node_id):
                continue
            node = self.dynprompt.get_node(node_id)
            self.keys[node_id] = await self.get_node_signature(self.dynprompt, node_id)
            self.subcache_keys[node_id] = (node_id, node["class_type"])

    async def get_node_signature(self, dynprompt, node_id):
        signature = []
        ancestors, order_mapping = self.get_ordered_ancestry(dynprompt, node_id)
        signature.append(await self.get_immediate_node_signature(dynprompt, node_id, order_mapping))
        for ancestor_id in ancestors:
            signature.append(await self.get_immediate_node_signature(dynprompt, ancestor_id, order_mapping))
        return to_hashable(signature)

    async def get_immediate_node_signature(self, dynprompt, node_id, ancestor_order_mapping):
        if not dynprompt.has_node(node_id):
            return [float("NaN")]
        node = dynprompt.get_node(node_id)
        class_type = node["class_type"]
        class_def = NODE_CLASS_MAPPINGS[class_type]
        signature = [class_type, await self.is_changed_cache.get(node_id)]
        if getattr(class_def, "NOT_IDEMPOTENT", False) or include_unique_id_in_input(class_type):
            signature.append(node_id)
        inputs = node["inputs"]
        for key in sorted(inputs.keys()):
            if is_link(inputs[key]):
                (ancestor_id, ancestor_socket) = inputs[key]
                signature.append((key, ("ANCESTOR", ancestor_order_mapping[ancestor_id], ancestor_socket)))
            else:
                signature.append((key, inputs[key]))
        return signature

    def get_ordered_ancestry(self, dynprompt, node_id):
        ancestors = []
        order_mapping = {}
        self.get_ordered_ancestry_internal(dynprompt, node_id, ancestors, order_mapping)
        return ancestors, order_mapping

    def get_ordered_ancestry_internal(self, dynprompt, node_id, ancestors, order_mapping):
        if not dynprompt.has_node(node_id):
            return
        inputs = dynprompt.get_node(node_id)["inputs"]
        for key in sorted(inputs.keys()):
            if is_link(inputs[key]):
                ancestor_id = inputs[key][0]
                if ancestor_id not in order_mapping:
                    ancestors.append(ancestor_id)
                    order_mapping[ancestor_id] = len(ancestors) - 1
                    self.get_ordered_ancestry_internal(dynprompt, ancestor_id, ancestors, order_mapping)


class HierarchicalCache:
    """``BasicCache`` + ``HierarchicalCache``: per-prompt keys, subcaches for expanded nodes."""

    def __init__(self, key_class):
        self.key_class = key_class
        self.initialized = False
        self.cache = {}
        self.subcaches = {}

    async def set_prompt(self, dynprompt, node_ids, is_changed_cache):
        self.dynprompt = dynprompt
        self.cache_key_set = self.key_class(dynprompt, node_ids, is_changed_cache)
        await self.cache_key_set.add_keys(node_ids)
        self.is_changed_cache = is_changed_cache
        self.initialized = True

    def all_node_ids(self):
        node_ids = self.cache_key_set.all_node_ids()
        for subcache in self.subcaches.values():
            node_ids = node_ids.union(subcache.all_node_ids())
        return node_ids

    def clean_unused(self):
        preserve_keys = set(self.cache_key_set.get_used_keys())
        for key in [k for k in self.cache if k not in preserve_keys]:
            del self.cache[key]
        preserve_subcaches = set(self.cache_key_set.get_used_subcache_keys())
        for key in [k for k in self.subcaches if k not in preserve_subcaches]:
            del self.subcaches[key]

    def _set_immediate(self, node_id, value):
        self.cache[self.cache_key_set.get_data_key(node_id)] = value

    def _get_immediate(self, node_id):
        if not self.initialized:
            return None
        cache_key = self.cache_key_set.get_data_key(node_id)
        return self.cache.get(cache_key) if cache_key in self.cache else None

    async def _ensure_subcache(self, node_id, children_ids):
        subcache_key = self.cache_key_set.get_subcache_key(node_id)
        subcache = self.subcaches.get(subcache_key, None)
        if subcache is None:
            subcache = HierarchicalCache(self.key_class)
            self.subcaches[subcache_key] = subcache
        await subcache.set_prompt(self.dynprompt, children_ids, self.is_changed_cache)
        return subcache

    def _get_subcache(self, node_id):
        subcache_key = self.cache_key_set.get_subcache_key(node_id)
        return self.subcaches.get(subcache_key)

    def _get_cache_for(self, node_id):
        parent_id = self.dynprompt.get_parent_node_id(node_id)
        if parent_id is None:
            return self
        hierarchy = []
        while parent_id is not None:
            hierarchy.append(parent_id)
            parent_id = self.dynprompt.get_parent_node_id(parent_id)
        cache = self
        for parent_id in reversed(hierarchy):
            cache = cache._get_subcache(parent_id)
            if cache is None:
                return None
        return cache

    def get_local(self, node_id):
        cache = self._get_cache_for(node_id)
        if cache is None:
            return None
        return cache._get_immediate(node_id)

    def set_local(self, node_id, value):
        cache = self._get_cache_for(node_id)
        assert cache is not None
        cache._set_immediate(node_id, value)

    async def ensure_subcache_for(self, node_id, children_ids):
        cache = self._get_cache_for(node_id)
        assert cache is not None
        return await cache._ensure_subcache(node_id, children_ids)

    if CACHE_API == "async":

        async def get(self, node_id):
            await asyncio.sleep(0)  # a lookup may wait (external cache providers)
            return self.get_local(node_id)

        async def set(self, node_id, value):
            await asyncio.sleep(0)
            self.set_local(node_id, value)

    else:

        def get(self, node_id):
            return self.get_local(node_id)

        def set(self, node_id, value):
            self.set_local(node_id, value)


async def cache_get(cache, node_id):
    """``await cache.get(node_id)`` where lookups are coroutines, else the plain lookup."""
    return await cache.get(node_id) if CACHE_API == "async" else cache.get(node_id)


async def cache_set(cache, node_id, value):
    """``await cache.set(...)`` where stores are coroutines, else the plain store."""
    if CACHE_API == "async":
        await cache.set(node_id, value)
    else:
        cache.set(node_id, value)


class CacheEntry(NamedTuple):
    """What the output cache holds from late 2025 on: a node's UI result and its outputs."""

    ui: Any
    outputs: list


def outputs_of(cached):
    """The output lists of a cache value, whichever form the cache holds."""
    return cached if CACHE_API == "split" else cached.outputs


# --------------------------------------------------------------- execution.py


class ExecutionResult(Enum):
    SUCCESS = 0
    FAILURE = 1
    PENDING = 2


class DuplicateNodeError(Exception):
    pass


class IsChangedCache:
    def __init__(self, prompt_id, dynprompt, outputs_cache):
        self.prompt_id = prompt_id
        self.dynprompt = dynprompt
        self.outputs_cache = outputs_cache
        self.is_changed = {}

    async def get(self, node_id):
        if node_id in self.is_changed:
            return self.is_changed[node_id]
        node = self.dynprompt.get_node(node_id)
        class_def = NODE_CLASS_MAPPINGS[node["class_type"]]
        if not hasattr(class_def, "IS_CHANGED"):
            self.is_changed[node_id] = False
            return self.is_changed[node_id]
        if "is_changed" in node:
            self.is_changed[node_id] = node["is_changed"]
            return self.is_changed[node_id]
        input_data_all, _, hidden_inputs = get_input_data(node["inputs"], class_def, node_id, None)
        try:
            is_changed = await _async_map_node_over_list(
                self.prompt_id, node_id, class_def, input_data_all, "IS_CHANGED"
            )
            is_changed = await resolve_map_node_over_list_results(is_changed)
            node["is_changed"] = [None if isinstance(x, ExecutionBlocker) else x for x in is_changed]
        except Exception:
            node["is_changed"] = float("NaN")
        finally:
            self.is_changed[node_id] = node["is_changed"]
        return self.is_changed[node_id]


class CacheSet:
    def __init__(self, cache_type=None, cache_size=None):
        self.outputs = HierarchicalCache(CacheKeySetInputSignature)
        self.objects = HierarchicalCache(CacheKeySetID)
        if CACHE_API == "split":
            self.ui = HierarchicalCache(CacheKeySetInputSignature)
            self.all = [self.outputs, self.ui, self.objects]
        else:
            self.all = [self.outputs, self.objects]


def get_input_data(inputs, class_def, unique_id, outputs=None, dynprompt=None, extra_data={}):
    valid_inputs = class_def.INPUT_TYPES()
    input_data_all = {}
    missing_keys = {}
    hidden_inputs_v3 = {}
    for x in inputs:
        input_data = inputs[x]
        _, input_category, input_info = get_input_info(class_def, x, valid_inputs)

        def mark_missing():
            missing_keys[x] = True
            input_data_all[x] = (None,)

        if is_link(input_data) and (not input_info or not input_info.get("rawLink", False)):
            input_unique_id = input_data[0]
            output_index = input_data[1]
            if outputs is None:
                mark_missing()
                continue
            # ``outputs``: the output cache (0.3.64) or the execution list (later releases).
            if CACHE_API == "split":
                cached_output = outputs.get_local(input_unique_id)
            else:
                cached = outputs.get_cache(input_unique_id, unique_id)
                cached_output = None if cached is None else cached.outputs
            if cached_output is None:
                mark_missing()
                continue
            if output_index >= len(cached_output):
                mark_missing()
                continue
            input_data_all[x] = cached_output[output_index]
        elif input_category is not None:
            input_data_all[x] = [input_data]
    if "hidden" in valid_inputs:
        h = valid_inputs["hidden"]
        for x in h:
            if h[x] == "PROMPT":
                input_data_all[x] = [dynprompt.get_original_prompt() if dynprompt is not None else {}]
            if h[x] == "DYNPROMPT":
                input_data_all[x] = [dynprompt]
            if h[x] == "EXTRA_PNGINFO":
                input_data_all[x] = [extra_data.get("extra_pnginfo", None)]
            if h[x] == "UNIQUE_ID":
                input_data_all[x] = [unique_id]
            if h[x] == "AUTH_TOKEN_COMFY_ORG":
                input_data_all[x] = [extra_data.get("auth_token_comfy_org", None)]
            if h[x] == "API_KEY_COMFY_ORG":
                input_data_all[x] = [extra_data.get("api_key_comfy_org", None)]
            if EXECUTE_PARAMS == 12 and h[x] == "EXECUTION_LIST":
                input_data_all[x] = [outputs]  # the live execution list itself
            if EXECUTE_PARAMS == 12 and h[x] == "COMFY_USAGE_SOURCE":
                input_data_all[x] = [extra_data.get("comfy_usage_source", None)]
    return input_data_all, missing_keys, hidden_inputs_v3


map_node_over_list = None  # Don't hook this please


async def resolve_map_node_over_list_results(results):
    remaining = [x for x in results if isinstance(x, asyncio.Task) and not x.done()]
    if len(remaining) == 0:
        return [x.result() if isinstance(x, asyncio.Task) else x for x in results]
    done, pending = await asyncio.wait(remaining)
    for task in done:
        exc = task.exception()
        if exc is not None:
            raise exc
    return [x.result() if isinstance(x, asyncio.Task) else x for x in results]


async def _map_node_over_list(
    prompt_id, unique_id, obj, input_data_all, func, allow_interrupt, execution_block_cb, pre_execute_cb, hidden
):
    """The body of ``_async_map_node_over_list`` (V1 nodes; ``hidden`` only feeds V3 nodes)."""
    input_is_list = getattr(obj, "INPUT_IS_LIST", False)
    if len(input_data_all) == 0:
        max_len_input = 0
    else:
        max_len_input = max(len(x) for x in input_data_all.values())

    def slice_dict(d, i):
        return {k: v[i if len(v) > i else -1] for k, v in d.items()}

    results = []

    async def process_inputs(inputs, index=None, input_is_list=False):
        if allow_interrupt:
            before_node_execution()
        execution_block = None
        for k, v in inputs.items():
            if input_is_list:
                for e in v:
                    if isinstance(e, ExecutionBlocker):
                        v = e
                        break
            if isinstance(v, ExecutionBlocker):
                execution_block = execution_block_cb(v) if execution_block_cb else v
                break
        if execution_block is None:
            if pre_execute_cb is not None and index is not None:
                pre_execute_cb(index)
            f = getattr(obj, func)
            if inspect.iscoroutinefunction(f):

                async def async_wrapper(f, prompt_id, unique_id, list_index, args):
                    with CurrentNodeContext(prompt_id, unique_id, list_index):
                        return await f(**args)

                task = asyncio.create_task(async_wrapper(f, prompt_id, unique_id, index, args=inputs))
                # Give the task a chance to execute without yielding
                await asyncio.sleep(0)
                if task.done():
                    results.append(task.result())
                else:
                    results.append(task)
            else:
                with CurrentNodeContext(prompt_id, unique_id, index):
                    result = f(**inputs)
                results.append(result)
        else:
            results.append(execution_block)

    if input_is_list:
        await process_inputs(input_data_all, 0, input_is_list=input_is_list)
    elif max_len_input == 0:
        await process_inputs({})
    else:
        for i in range(max_len_input):
            await process_inputs(slice_dict(input_data_all, i), i)
    return results


if HIDDEN_KWARG == "v3_data":

    async def _async_map_node_over_list(
        prompt_id,
        unique_id,
        obj,
        input_data_all,
        func,
        allow_interrupt=False,
        execution_block_cb=None,
        pre_execute_cb=None,
        v3_data=None,
    ):
        return await _map_node_over_list(
            prompt_id,
            unique_id,
            obj,
            input_data_all,
            func,
            allow_interrupt,
            execution_block_cb,
            pre_execute_cb,
            v3_data,
        )

    async def get_output_data(
        prompt_id, unique_id, obj, input_data_all, execution_block_cb=None, pre_execute_cb=None, v3_data=None
    ):
        return_values = await _async_map_node_over_list(
            prompt_id,
            unique_id,
            obj,
            input_data_all,
            obj.FUNCTION,
            allow_interrupt=True,
            execution_block_cb=execution_block_cb,
            pre_execute_cb=pre_execute_cb,
            v3_data=v3_data,
        )
        has_pending_task = any(isinstance(r, asyncio.Task) and not r.done() for r in return_values)
        if has_pending_task:
            return return_values, {}, False, has_pending_task
        output, ui, has_subgraph = get_output_from_returns(return_values, obj)
        return output, ui, has_subgraph, False

else:

    async def _async_map_node_over_list(
        prompt_id,
        unique_id,
        obj,
        input_data_all,
        func,
        allow_interrupt=False,
        execution_block_cb=None,
        pre_execute_cb=None,
        hidden_inputs=None,
    ):
        return await _map_node_over_list(
            prompt_id,
            unique_id,
            obj,
            input_data_all,
            func,
            allow_interrupt,
            execution_block_cb,
            pre_execute_cb,
            hidden_inputs,
        )

    async def get_output_data(
        prompt_id, unique_id, obj, input_data_all, execution_block_cb=None, pre_execute_cb=None, hidden_inputs=None
    ):
        return_values = await _async_map_node_over_list(
            prompt_id,
            unique_id,
            obj,
            input_data_all,
            obj.FUNCTION,
            allow_interrupt=True,
            execution_block_cb=execution_block_cb,
            pre_execute_cb=pre_execute_cb,
            hidden_inputs=hidden_inputs,
        )
        has_pending_task = any(isinstance(r, asyncio.Task) and not r.done() for r in return_values)
        if has_pending_task:
            return return_values, {}, False, has_pending_task
        output, ui, has_subgraph = get_output_from_returns(return_values, obj)
        return output, ui, has_subgraph, False


def merge_result_data(results, obj):
    output = []
    output_is_list = [False] * len(results[0])
    if hasattr(obj, "OUTPUT_IS_LIST"):
        output_is_list = obj.OUTPUT_IS_LIST
    for i, is_list in zip(range(len(results[0])), output_is_list):
        if is_list:
            value = []
            for o in results:
                if isinstance(o[i], ExecutionBlocker):
                    value.append(o[i])
                else:
                    value.extend(o[i])
            output.append(value)
        else:
            output.append([o[i] for o in results])
    return output


def get_output_from_returns(return_values, obj):
    results = []
    uis = []
    subgraph_results = []
    has_subgraph = False
    for i in range(len(return_values)):
        r = return_values[i]
        if isinstance(r, dict):
            if "ui" in r:
                uis.append(r["ui"])
            if "expand" in r:
                has_subgraph = True
                new_graph = r["expand"]
                result = r.get("result", None)
                if isinstance(result, ExecutionBlocker):
                    result = tuple([result] * len(obj.RETURN_TYPES))
                subgraph_results.append((new_graph, result))
            elif "result" in r:
                result = r.get("result", None)
                if isinstance(result, ExecutionBlocker):
                    result = tuple([result] * len(obj.RETURN_TYPES))
                results.append(result)
                subgraph_results.append((None, result))
        else:
            if isinstance(r, ExecutionBlocker):
                r = tuple([r] * len(obj.RETURN_TYPES))
            results.append(r)
            subgraph_results.append((None, r))
    if has_subgraph:
        output = subgraph_results
    elif len(results) > 0:
        output = merge_result_data(results, obj)
    else:
        output = []
    ui = dict()
    if len(uis) > 0:
        ui = {k: [y for x in uis for y in x[k]] for k in uis[0].keys()}
    return output, ui, has_subgraph


def format_value(x):
    if x is None:
        return None
    elif isinstance(x, (int, float, bool, str)):
        return x
    else:
        return str(x)


def full_type_name(klass):
    module = klass.__module__
    if module == "builtins":
        return klass.__qualname__
    return module + "." + klass.__qualname__


async def _execute(
    server,
    dynprompt,
    caches,
    current_item,
    extra_data,
    executed,
    prompt_id,
    execution_list,
    pending_subgraph_results,
    pending_async_nodes,
    ui_outputs,
):
    """The body of ``execute``; ``ui_outputs`` is None in the 10-parameter (0.3.64) form."""
    unique_id = current_item
    real_node_id = dynprompt.get_real_node_id(unique_id)
    display_node_id = dynprompt.get_display_node_id(unique_id)
    parent_node_id = dynprompt.get_parent_node_id(unique_id)
    inputs = dynprompt.get_node(unique_id)["inputs"]
    class_type = dynprompt.get_node(unique_id)["class_type"]
    class_def = NODE_CLASS_MAPPINGS[class_type]
    cached = await cache_get(caches.outputs, unique_id)
    if cached is not None and CACHE_API != "split":
        # The cached node's UI result is sent again and, for this run's history, kept.
        if cached.ui is not None:
            if server.client_id is not None:
                server.send_sync(
                    "executed",
                    {
                        "node": unique_id,
                        "display_node": display_node_id,
                        "output": cached.ui.get("output"),
                        "prompt_id": prompt_id,
                    },
                    server.client_id,
                )
            ui_outputs[unique_id] = cached.ui
        return (ExecutionResult.SUCCESS, None, None)
    if cached is not None:
        if server.client_id is not None:
            cached_output = caches.ui.get(unique_id) or {}
            server.send_sync(
                "executed",
                {
                    "node": unique_id,
                    "display_node": display_node_id,
                    "output": cached_output.get("output", None),
                    "prompt_id": prompt_id,
                },
                server.client_id,
            )
        return (ExecutionResult.SUCCESS, None, None)

    input_data_all = None
    try:
        if unique_id in pending_async_nodes:
            results = []
            for r in pending_async_nodes[unique_id]:
                if isinstance(r, asyncio.Task):
                    try:
                        results.append(r.result())
                    except Exception as ex:
                        del pending_async_nodes[unique_id]
                        raise ex
                else:
                    results.append(r)
            del pending_async_nodes[unique_id]
            output_data, output_ui, has_subgraph = get_output_from_returns(results, class_def)
        elif unique_id in pending_subgraph_results:
            cached_results = pending_subgraph_results[unique_id]
            resolved_outputs = []
            for is_subgraph, result in cached_results:
                if not is_subgraph:
                    resolved_outputs.append(result)
                else:
                    resolved_output = []
                    for r in result:
                        if is_link(r):
                            source_node, source_output = r[0], r[1]
                            node_output = outputs_of(caches.outputs.get_local(source_node))[source_output]
                            for o in node_output:
                                resolved_output.append(o)
                        else:
                            resolved_output.append(r)
                    resolved_outputs.append(tuple(resolved_output))
            output_data = merge_result_data(resolved_outputs, class_def)
            output_ui = []
            if ui_outputs is not None:
                del pending_subgraph_results[unique_id]
            has_subgraph = False
        else:
            input_data_all, missing_keys, hidden_inputs = get_input_data(
                inputs,
                class_def,
                unique_id,
                caches.outputs if CACHE_API == "split" else execution_list,
                dynprompt,
                extra_data,
            )
            if server.client_id is not None:
                server.last_node_id = display_node_id
                server.send_sync(
                    "executing",
                    {"node": unique_id, "display_node": display_node_id, "prompt_id": prompt_id},
                    server.client_id,
                )

            obj = await cache_get(caches.objects, unique_id)
            if obj is None:
                obj = class_def()
                await cache_set(caches.objects, unique_id, obj)

            lazy_status_present = getattr(obj, "check_lazy_status", None) is not None
            if lazy_status_present:
                required_inputs = await _async_map_node_over_list(
                    prompt_id,
                    unique_id,
                    obj,
                    input_data_all,
                    "check_lazy_status",
                    allow_interrupt=True,
                    **{HIDDEN_KWARG: hidden_inputs},
                )
                required_inputs = await resolve_map_node_over_list_results(required_inputs)
                required_inputs = set(sum([r for r in required_inputs if isinstance(r, list)], []))
                required_inputs = [
                    x for x in required_inputs if isinstance(x, str) and (x not in input_data_all or x in missing_keys)
                ]
                if len(required_inputs) > 0:
                    for i in required_inputs:
                        execution_list.make_input_strong_link(unique_id, i)
                    return (ExecutionResult.PENDING, None, None)

            def execution_block_cb(block):
                if block.message is not None:
                    mes = {
                        "prompt_id": prompt_id,
                        "node_id": unique_id,
                        "node_type": class_type,
                        "executed": list(executed),
                        "exception_message": f"Execution Blocked: {block.message}",
                        "exception_type": "ExecutionBlocked",
                        "traceback": [],
                        "current_inputs": [],
                        "current_outputs": [],
                    }
                    server.send_sync("execution_error", mes, server.client_id)
                    return ExecutionBlocker(None)
                return block

            def pre_execute_cb(call_index):
                GraphBuilder.set_default_prefix(unique_id, call_index, 0)

            output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(
                prompt_id,
                unique_id,
                obj,
                input_data_all,
                execution_block_cb=execution_block_cb,
                pre_execute_cb=pre_execute_cb,
                **{HIDDEN_KWARG: hidden_inputs},
            )
            if has_pending_tasks:
                pending_async_nodes[unique_id] = output_data
                unblock = execution_list.add_external_block(unique_id)

                async def await_completion():
                    tasks = [x for x in output_data if isinstance(x, asyncio.Task)]
                    await asyncio.gather(*tasks, return_exceptions=True)
                    unblock()

                asyncio.create_task(await_completion())
                return (ExecutionResult.PENDING, None, None)
        cache_ui_value = ui_outputs.get(unique_id) if ui_outputs is not None else None
        if len(output_ui) > 0:
            entry = {
                "meta": {
                    "node_id": unique_id,
                    "display_node": display_node_id,
                    "parent_node": parent_node_id,
                    "real_node_id": real_node_id,
                },
                "output": output_ui,
            }
            if ui_outputs is not None:
                ui_outputs[unique_id] = entry
            if CACHE_API == "split":
                caches.ui.set(unique_id, entry)
            cache_ui_value = entry
            if server.client_id is not None:
                server.send_sync(
                    "executed",
                    {"node": unique_id, "display_node": display_node_id, "output": output_ui, "prompt_id": prompt_id},
                    server.client_id,
                )
        if has_subgraph:
            cached_outputs = []
            new_node_ids = []
            new_output_ids = []
            new_output_links = []
            for i in range(len(output_data)):
                new_graph, node_outputs = output_data[i]
                if new_graph is None:
                    cached_outputs.append((False, node_outputs))
                else:
                    for node_id in new_graph.keys():
                        if dynprompt.has_node(node_id):
                            raise DuplicateNodeError(
                                f"Attempt to add duplicate node {node_id}. Ensure node ids are unique and deterministic or use graph_utils.GraphBuilder."
                            )
                    for node_id, node_info in new_graph.items():
                        new_node_ids.append(node_id)
                        display_id = node_info.get("override_display_id", unique_id)
                        dynprompt.add_ephemeral_node(node_id, node_info, unique_id, display_id)
                        class_def = NODE_CLASS_MAPPINGS[node_info["class_type"]]
                        if hasattr(class_def, "OUTPUT_NODE") and class_def.OUTPUT_NODE == True:  # noqa: E712
                            new_output_ids.append(node_id)
                    for i in range(len(node_outputs)):
                        if is_link(node_outputs[i]):
                            new_output_links.append((node_outputs[i][0], node_outputs[i][1]))
                    cached_outputs.append((True, node_outputs))
            new_node_ids = set(new_node_ids)
            for cache in caches.all:
                subcache = await cache.ensure_subcache_for(unique_id, new_node_ids)
                subcache.clean_unused()
            for node_id in new_output_ids:
                execution_list.add_node(node_id)
            for link in new_output_links:
                execution_list.add_strong_link(link[0], link[1], unique_id)
            pending_subgraph_results[unique_id] = cached_outputs
            return (ExecutionResult.PENDING, None, None)
        if CACHE_API == "split":
            caches.outputs.set(unique_id, output_data)
        else:
            await cache_set(caches.outputs, unique_id, CacheEntry(ui=cache_ui_value, outputs=output_data))
    except InterruptProcessingException as iex:
        error_details = {"node_id": real_node_id}
        return (ExecutionResult.FAILURE, error_details, iex)
    except Exception as ex:
        typ, _, tb = sys.exc_info()
        exception_type = full_type_name(typ)
        input_data_formatted = {}
        if input_data_all is not None:
            input_data_formatted = {}
            for name, inputs in input_data_all.items():
                input_data_formatted[name] = [format_value(x) for x in inputs]
        tips = ""
        error_details = {
            "node_id": real_node_id,
            "exception_message": f"{ex}\n{tips}",
            "exception_type": exception_type,
            "traceback": traceback.format_tb(tb),
            "current_inputs": input_data_formatted,
        }
        return (ExecutionResult.FAILURE, error_details, ex)

    executed.add(unique_id)
    return (ExecutionResult.SUCCESS, None, None)


if EXECUTE_PARAMS == 12:

    async def execute(
        server,
        dynprompt,
        caches,
        current_item,
        extra_data,
        executed,
        prompt_id,
        execution_list,
        pending_subgraph_results,
        pending_async_nodes,
        ui_outputs,
        asset_manager,
    ):
        return await _execute(
            server,
            dynprompt,
            caches,
            current_item,
            extra_data,
            executed,
            prompt_id,
            execution_list,
            pending_subgraph_results,
            pending_async_nodes,
            ui_outputs,
        )

elif EXECUTE_PARAMS == 11:

    async def execute(
        server,
        dynprompt,
        caches,
        current_item,
        extra_data,
        executed,
        prompt_id,
        execution_list,
        pending_subgraph_results,
        pending_async_nodes,
        ui_outputs,
    ):
        return await _execute(
            server,
            dynprompt,
            caches,
            current_item,
            extra_data,
            executed,
            prompt_id,
            execution_list,
            pending_subgraph_results,
            pending_async_nodes,
            ui_outputs,
        )

else:

    async def execute(
        server,
        dynprompt,
        caches,
        current_item,
        extra_data,
        executed,
        prompt_id,
        execution_list,
        pending_subgraph_results,
        pending_async_nodes,
    ):
        return await _execute(
            server,
            dynprompt,
            caches,
            current_item,
            extra_data,
            executed,
            prompt_id,
            execution_list,
            pending_subgraph_results,
            pending_async_nodes,
            None,
        )


class Server:
    """The part of ``server.PromptServer`` the executor uses; keeps what it is sent."""

    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.sent: list[tuple[str, Any, Any]] = []

    def send_sync(self, event, data, sid=None):
        self.sent.append((event, data, sid))


class PromptExecutor:
    def __init__(self, server=None, cache_type=False, cache_size=None, asset_manager=None):
        self.cache_size = cache_size
        self.cache_type = cache_type
        self.server = server if server is not None else Server()
        self.asset_manager = asset_manager  # 0.38.1: where saved outputs are registered
        self.reset()

    def reset(self):
        self.caches = CacheSet(cache_type=self.cache_type, cache_size=self.cache_size)
        self.status_messages = []
        self.success = True

    def add_message(self, event, data: dict, broadcast: bool):
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.status_messages.append((event, data))
        if self.server.client_id is not None or broadcast:
            self.server.send_sync(event, data, self.server.client_id)

    def handle_execution_error(self, prompt_id, prompt, current_outputs, executed, error, ex):
        node_id = error["node_id"]
        class_type = prompt[node_id]["class_type"]
        if isinstance(ex, InterruptProcessingException):
            mes = {"prompt_id": prompt_id, "node_id": node_id, "node_type": class_type, "executed": list(executed)}
            self.add_message("execution_interrupted", mes, broadcast=True)
        else:
            mes = {
                "prompt_id": prompt_id,
                "node_id": node_id,
                "node_type": class_type,
                "executed": list(executed),
                "exception_message": error["exception_message"],
                "exception_type": error["exception_type"],
                "traceback": error["traceback"],
                "current_inputs": error["current_inputs"],
                "current_outputs": list(current_outputs),
            }
            self.add_message("execution_error", mes, broadcast=False)

    def execute(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        asyncio.run(self.execute_async(prompt, prompt_id, extra_data, execute_outputs))

    async def execute_async(self, prompt, prompt_id, extra_data={}, execute_outputs=[]):
        interrupt_processing(False)
        if "client_id" in extra_data:
            self.server.client_id = extra_data["client_id"]
        else:
            self.server.client_id = None
        self.status_messages = []
        self.add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)

        dynamic_prompt = DynamicPrompt(prompt)
        is_changed_cache = IsChangedCache(prompt_id, dynamic_prompt, self.caches.outputs)
        for cache in self.caches.all:
            await cache.set_prompt(dynamic_prompt, prompt.keys(), is_changed_cache)
            cache.clean_unused()

        node_ids = list(prompt.keys())
        if CACHE_API == "async":  # every lookup awaited together
            found = await asyncio.gather(*(self.caches.outputs.get(node_id) for node_id in node_ids))
        else:
            found = [self.caches.outputs.get(node_id) for node_id in node_ids]
        cached_nodes = [node_id for node_id, value in zip(node_ids, found) if value is not None]

        self.add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id}, broadcast=False)
        pending_subgraph_results = {}
        pending_async_nodes = {}
        ui_node_outputs = {}
        executed = set()
        execution_list = ExecutionList(dynamic_prompt, self.caches.outputs)
        current_outputs = self.caches.outputs.all_node_ids()
        for node_id in list(execute_outputs):
            execution_list.add_node(node_id)

        while not execution_list.is_empty():
            node_id, error, ex = await execution_list.stage_node_execution()
            if error is not None:
                self.handle_execution_error(
                    prompt_id, dynamic_prompt.original_prompt, current_outputs, executed, error, ex
                )
                break
            assert node_id is not None, "Node ID should not be None at this point"
            if EXECUTE_PARAMS == 12:
                result, error, ex = await execute(
                    self.server,
                    dynamic_prompt,
                    self.caches,
                    node_id,
                    extra_data,
                    executed,
                    prompt_id,
                    execution_list,
                    pending_subgraph_results,
                    pending_async_nodes,
                    ui_node_outputs,
                    self.asset_manager,
                )
            elif EXECUTE_PARAMS == 11:
                result, error, ex = await execute(
                    self.server,
                    dynamic_prompt,
                    self.caches,
                    node_id,
                    extra_data,
                    executed,
                    prompt_id,
                    execution_list,
                    pending_subgraph_results,
                    pending_async_nodes,
                    ui_node_outputs,
                )
            else:
                result, error, ex = await execute(
                    self.server,
                    dynamic_prompt,
                    self.caches,
                    node_id,
                    extra_data,
                    executed,
                    prompt_id,
                    execution_list,
                    pending_subgraph_results,
                    pending_async_nodes,
                )
            self.success = result != ExecutionResult.FAILURE
            if result == ExecutionResult.FAILURE:
                self.handle_execution_error(
                    prompt_id, dynamic_prompt.original_prompt, current_outputs, executed, error, ex
                )
                break
            elif result == ExecutionResult.PENDING:
                execution_list.unstage_node_execution()
            else:
                execution_list.complete_node_execution()
        else:
            self.add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)

        ui_outputs = {}
        meta_outputs = {}
        if EXECUTE_PARAMS >= 11:
            for node_id, ui_info in ui_node_outputs.items():
                ui_outputs[node_id] = ui_info["output"]
                meta_outputs[node_id] = ui_info["meta"]
        else:
            for node_id in self.caches.ui.all_node_ids():
                ui_info = self.caches.ui.get(node_id)
                if ui_info is not None:
                    ui_outputs[node_id] = ui_info["output"]
                    meta_outputs[node_id] = ui_info["meta"]
        self.history_result = {"outputs": ui_outputs, "meta": meta_outputs}
        self.server.last_node_id = None
