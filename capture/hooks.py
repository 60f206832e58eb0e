"""The hooks: what capture records at each of ComfyUI's wrap points.

Four wrap points (found by ``detect``, wrapped by ``wrapping``); the same hooks serve both
executor generations (March-2024 ``recursive_execute`` and the async executor of 2025-26):

=========  ===================================  ==========================================
name       where                                what it records
=========  ===================================  ==========================================
run        ``PromptExecutor.execute``           run start/end, status, hook overhead
message    ``PromptExecutor.add_message``       ComfyUI's own list of cached nodes
node       ``execution.execute`` (not on the    which node is executing; failures before
           March-2024 executor, see below)      its function is called
call       ``execution.get_output_data``        resolved inputs, start/end of the node call
=========  ===================================  ==========================================

On the March-2024 executor ``recursive_execute`` stays unwrapped (``needs_node_hook``): the
call hook finds the node from its object in ComfyUI's ``object_storage`` and the message hook
records failures before a call from ComfyUI's ``execution_error``/``execution_interrupted``.

The hot path (the call hook) only appends events, in their tuple form, to the run's batch;
the recorder encodes a batch as one log frame (see ``recorder.Recorder``).

A hook's ``begin``/``end`` never raise into ComfyUI: any exception in them is passed to
``state.fault``, which logs it once and switches capture off for the rest of the process.

The modern executor calls ``execute`` several times for one node and ``get_output_data`` at
most once; the hooks follow what the node really did:

* lazy inputs: the passes that return PENDING before the call record nothing; the node is
  recorded once, from its ``get_output_data`` call.
* async nodes: ``get_output_data`` returns the node's running ``asyncio.Task`` objects; the
  node ends when the last of them is done (a done-callback), not when ComfyUI re-enters it.
* node expansion: the expanding node ends when ``execute`` re-enters it after its subgraph;
  the nodes it created are recorded with their display and parent ids (from the
  ``DynamicPrompt``), failures under ComfyUI's real node id are matched back to them, and a
  node still waiting when the run ends is closed with the run's outcome.
* cached nodes: only ComfyUI's ``execution_cached`` list records them; the early return of an
  output node from the cache records nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .. import prompt_graph
from ..errors import report_once
from ..events.schema import NodeCached, NodeFinished, NodeInputs, NodeStarted, NodeStatus, RunStatus, SavedImage
from . import comfy
from .carry import CarryMemo, carried_inputs, remember, remember_run
from .listeners import RunEnd, notify_run_end
from .recorder import Recorder, current_node, current_run
from .secrets import extra_data_secrets, redact_json, scrub_run
from .state import STATE, STATUS, STORE, RunSettings, fault
from .summary import MAX_STRING, redact_strings

log = logging.getLogger("runtime_metadata")

_perf = time.perf_counter_ns
#: The hot path's memories, bound once (``STATE.reset`` clears them in place).
_plans = STATE.inputs
_clean = STATE.inputs.clean
_FLAGS = STATE.flags


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any = None) -> Any:
    if index < len(args):
        return args[index]
    return kwargs.get(name, default)


def _nothing() -> None:
    pass


class Hook:
    """One wrap point's capture logic; ``begin``/``end`` never raise."""

    name = "hook"

    def __init__(
        self,
        params: list[str],
        node_hook: bool = True,
        *,
        settings: Callable[[], RunSettings] = RunSettings,
        restore: Callable[[], None] = _nothing,
    ) -> None:
        self.index = {p: i for i, p in enumerate(params)}
        #: False on the March-2024 executor, where no per-node wrapper is installed: node ids
        #: come from ComfyUI's object storage, failures before a call from its status messages.
        self.node_hook = node_hook
        #: The configuration a run starting now needs (read once per run by the run hook).
        self.settings = settings
        #: Gives ComfyUI its own functions back (the run hook, when the configuration says off).
        self.restore = restore
        self.setup()

    def setup(self) -> None:
        """Precompute what the hot path needs from ``index``."""

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:  # pragma: no cover
        raise NotImplementedError

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:  # pragma: no cover
        raise NotImplementedError


class RunHook(Hook):
    """``PromptExecutor.execute``: opens and closes the run's recorder."""

    name = "run"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        try:
            settings = self.settings()
            if not settings.enabled:
                # Switched off in the configuration since install: give ComfyUI back its own
                # functions (from the next call on), so that "off" costs nothing at all. The
                # prompt handler installs them again when the configuration turns capture on.
                self.restore()
                log.info("[runtime-metadata] capture is off in the configuration: executor functions restored")
                return None
            ix = self.index
            prompt = _arg(args, kwargs, ix["prompt"], "prompt")
            prompt_id = _arg(args, kwargs, ix["prompt_id"], "prompt_id")
            if not isinstance(prompt, dict) or prompt_id is None or isinstance(prompt_id, (dict, list, tuple)):
                # Not a prompt as ComfyUI passes one (e.g. where its argument order was only
                # assumed, see wrap_points): left alone rather than recorded under a wrong name.
                report_once(
                    f"PromptExecutor.execute was called with ({type(prompt).__name__}, "
                    f"{type(prompt_id).__name__}) where (prompt, prompt_id) was expected: run not captured"
                )
                return None
            prompt_id = str(prompt_id)
            extra = _arg(args, kwargs, ix.get("extra_data", 99), "extra_data", None) or {}
            pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
            workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
            client_id = extra.get("client_id") if isinstance(extra, dict) else None
            # Credentials typed into widgets, and ComfyUI's own token and key wherever they were
            # pasted, stay out of the log (and so out of every image and history download).
            scrubbed = scrub_run(prompt, workflow, extra_data_secrets(extra), comfy.input_types)
            rec = Recorder(
                prompt_id,
                scrubbed.prompt,
                scrubbed.workflow,
                STATUS.generation,
                settings.plugin,
                settings.log_dir,
                settings.environment,
                client_id=client_id if isinstance(client_id, str) else None,
                worker_id=settings.worker_id,
            )
            rec.secret_nodes, rec.secrets = scrubbed.secret_nodes, scrubbed.secrets
            executor = args[0] if args else None
            if not self.node_hook:
                objects = getattr(executor, "object_storage", None)
                if not isinstance(objects, dict):
                    raise TypeError("PromptExecutor has no object_storage dict: calls cannot be matched to nodes")
                rec.objects = objects
                rec.object_keys = STATE.object_index  # kept across runs: ComfyUI reuses node objects
            token = current_run.set(rec)
            return rec, token, executor, settings
        except Exception as exc:  # capture must never break the run
            fault("run: start", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, token, executor, settings = ctx
        try:
            current_run.reset(token)
        except ValueError:  # reset from another context; the run is over either way
            current_run.set(None)
        try:
            status, etype, emsg = _run_outcome(executor, exc)
            if rec.pending:
                _close_pending(rec, executor, status, etype, emsg)
            remember_run(STATE.last_run, rec)
            images = _saved_images(rec, executor, settings) if exc is None else []
            data = rec.finish(status, etype, emsg, images)
            STORE.limit = max(1, settings.max_runs)
            STORE.put(rec.prompt_id, data)
            STATUS.runs_captured += 1
            if settings.log_performance:
                _log_performance(rec)
        except Exception as exc2:
            fault("run: end", exc2)
            return
        notify_run_end(RunEnd(rec.prompt_id, rec.client_id, data, rec.log_path))


#: Images recorded per run at most (a node writing thousands of frames must not bloat the log).
MAX_RUN_IMAGES = 1000


def _saved_images(rec: Recorder, executor: Any, settings: RunSettings) -> list[SavedImage]:
    """The files the nodes that ran reported to ComfyUI (its UI outputs), in node order.

    ComfyUI keeps them per node in ``history_result["outputs"]`` (modern) or ``outputs_ui``
    (March 2024, which also keeps the entries of cached nodes from earlier runs: only nodes
    that ran in this run are recorded). Anything not shaped as ComfyUI's records is skipped.
    """
    result = getattr(executor, "history_result", None)
    outputs = result.get("outputs") if isinstance(result, dict) else getattr(executor, "outputs_ui", None)
    if not isinstance(outputs, dict):
        return []
    images: list[SavedImage] = []
    for node_id in sorted((str(n) for n in outputs if str(n) in rec.started), key=_id_order):
        ui = outputs.get(node_id)
        items = ui.get("images") if isinstance(ui, dict) else None
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict) or not isinstance(item.get("filename"), str):
                continue
            subfolder, kind = item.get("subfolder"), item.get("type")
            subfolder = subfolder if isinstance(subfolder, str) else ""
            kind = kind if isinstance(kind, str) else "output"
            folder = settings.folder_of(kind) if settings.folder_of is not None else None
            path = os.path.join(folder, subfolder, item["filename"]) if folder else None
            images.append(SavedImage(node_id, item["filename"], subfolder, kind, path))
            if len(images) >= MAX_RUN_IMAGES:
                return images
    return images


def _log_performance(rec: Recorder) -> None:
    """The AAA system's performance line (DESIGN.md), for ``debug`` + ``log_performance``."""
    calls = rec.hook_calls
    total = rec.hook_total_ns / 1e6
    log.info(
        "[AAA Metadata Hooks] Performance: %s... - %d calls, total=%.2fms, avg=%.3fms, max=%.3fms",
        rec.prompt_id[:8],
        calls,
        total,
        total / calls if calls else 0.0,
        rec.hook_max_ns / 1e6,
    )


def _run_outcome(executor: Any, exc: BaseException | None) -> tuple[RunStatus, str | None, str | None]:
    """success / error / interrupted, from ComfyUI's own status messages."""
    if exc is not None:
        kind: RunStatus = "interrupted" if "Interrupt" in type(exc).__name__ else "error"
        return kind, type(exc).__name__, _cut(exc)
    event, data = _error_message(executor)
    if event == "execution_interrupted":
        return "interrupted", None, None
    if event == "execution_error":
        # Modern ComfyUI appends "\n" + tips (empty unless out of memory) to the message.
        return "error", str(data.get("exception_type")), _trimmed(str(data.get("exception_message")))
    if getattr(executor, "success", True) is False:
        return "error", None, None
    return "success", None, None


def _error_message(executor: Any) -> tuple[str | None, dict[str, Any]]:
    """ComfyUI's last execution_error / execution_interrupted status message, if any."""
    for event, data in reversed(getattr(executor, "status_messages", None) or []):
        if event in ("execution_interrupted", "execution_error") and isinstance(data, dict):
            return event, data
    return None, {}


def _close_pending(rec: Recorder, executor: Any, status: RunStatus, etype: str | None, emsg: str | None) -> None:
    """End the nodes still waiting when the run ended (an expanded node whose subgraph failed)."""
    t0 = _perf()
    failed_at = str(_error_message(executor)[1].get("node_id"))
    node_status = _NODE_STATUS_OF_RUN[status]
    for node_id in sorted(rec.pending, key=_id_order):
        own = node_id == failed_at
        rec.append(NodeFinished(node_id, t0, node_status, etype if own else None, emsg if own else None))
    rec.pending.clear()
    rec.charge(t0)


class MessageHook(Hook):
    """``PromptExecutor.add_message``: ComfyUI announces which nodes it serves from cache."""

    name = "message"

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        try:
            event = _arg(args, kwargs, self.index["event"], "event")
            if event in _FAILURE_EVENTS and not self.node_hook:
                _failed_before_call(rec, event, _arg(args, kwargs, self.index["data"], "data", {}))
            elif event == "execution_cached":
                data = _arg(args, kwargs, self.index["data"], "data", {}) or {}
                if not isinstance(data, dict):  # not ComfyUI's message
                    return None
                t0 = _perf()
                # ComfyUI lists them from a set; sort so that logs of equal runs are equal.
                seen = CarryMemo(STORE, STATE.last_run)
                for nid in sorted((str(n) for n in data.get("nodes") or ()), key=_id_order):
                    class_type = prompt_graph.class_type(rec.prompt, nid)
                    carried = carried_inputs(rec, nid, class_type, seen)
                    if carried is None:
                        rec.append(NodeCached(nid, class_type, t0))
                    else:
                        rec.append(NodeCached(nid, class_type, t0, carried[0]))
                        rec.append(NodeInputs(nid, t0, carried[1].inputs, carried[1].calls))
                        remember(STATE.last_run, nid, carried[0])
                rec.charge(t0)
        except Exception as exc:
            fault("message: cached nodes", exc)
        return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        pass


_FAILURE_EVENTS = frozenset({"execution_error", "execution_interrupted"})


def _failed_before_call(rec: Recorder, event: str, data: Any) -> None:
    """March 2024: a node that failed before its function was called (its inputs, its constructor).

    ComfyUI reports every failure with the node's id; a node whose call the call hook saw has
    its end recorded already, from the call itself.
    """
    if not isinstance(data, dict) or data.get("node_id") is None:
        return
    node_id = str(data["node_id"])
    if node_id in rec.started:
        return
    t0 = _perf()
    if event == "execution_interrupted":
        rec.append(NodeFinished(node_id, t0, "interrupted"))
    else:
        message = _trimmed(str(data.get("exception_message") or ""))
        etype = data.get("exception_type")
        rec.append(
            NodeFinished(node_id, t0, "failed", None if etype is None else str(etype), rec.redact(message) or None)
        )
    rec.started.add(node_id)
    rec.charge(t0)


class NodeHook(Hook):
    """The per-node function: sets the executing node; records failures before the call."""

    name = "node"

    def setup(self) -> None:
        self.i_item = self.index["current_item"]
        self.i_dyn = self.index.get("dynprompt")

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        try:
            i = self.i_item
            node_id = args[i] if i < len(args) else kwargs.get("current_item")
            if type(node_id) is not str:
                if not isinstance(node_id, int):  # no node id where the order was only assumed
                    return None
                node_id = str(node_id)
            if self.i_dyn is not None and rec.dynprompt is None:
                rec.dynprompt = _arg(args, kwargs, self.i_dyn, "dynprompt")
            return rec, node_id, current_node.set(node_id)
        except Exception as exc:
            fault("node: start", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, node_id, token = ctx
        try:
            current_node.reset(token)
        except ValueError:
            current_node.set(None)
        if rec.finished:
            return
        try:
            waiting = rec.pending
            if node_id in rec.started and (not waiting or node_id not in waiting):
                # The call hook has recorded this node. Only an async node whose result
                # expanded into a subgraph comes back PENDING after that: it ends at its next
                # re-entry.
                if (
                    exc is None
                    and not (type(result) is tuple and result and result[0] is True)
                    and _flag(result) == "PENDING"
                ):
                    waiting[node_id] = _REENTRY
                return
            pending = waiting.get(node_id)
            t0 = _perf()
            if exc is not None:
                rec.pending.pop(node_id, None)
                rec.append(NodeFinished(node_id, t0, _failure_status(exc), type(exc).__name__, rec.redact(_cut(exc))))
            else:
                flag = _flag(result)
                if flag == "FAILURE":
                    # Failed before its function was called (fetching inputs, check_lazy_status),
                    # or, for a node that expanded or went async, while its pending work completed.
                    error = result[1] if isinstance(result[1], dict) else {}
                    if pending is not None or _own_error(rec, node_id, error.get("node_id")):
                        rec.pending.pop(node_id, None)
                        if node_id not in rec.started and node_id not in rec.prompt and rec.dynprompt is not None:
                            # An expanded node that failed before its call: keep its ids.
                            rec.append(_ephemeral_started(rec, node_id, None, t0))
                        ex = result[2] if len(result) > 2 else None
                        message = error.get("exception_message") or ex or ""
                        rec.append(
                            NodeFinished(
                                node_id,
                                t0,
                                _failure_status(ex) if isinstance(ex, BaseException) else "failed",
                                error.get("exception_type") or (type(ex).__name__ if ex else None),
                                rec.redact(_trimmed(str(message))) or None,
                            )
                        )
                elif flag == "SUCCESS" and pending is not None:
                    # Re-entered after its expanded subgraph (or, as a fallback, its async tasks)
                    # completed: the node is done now.
                    del rec.pending[node_id]  # a _TaskWatch not yet called back now does nothing
                    rec.append(NodeFinished(node_id, t0, "executed"))
            rec.charge(t0)
        except Exception as exc2:
            fault("node: end", exc2)


#: ``rec.pending`` marker: the node ends when ``execute()`` re-enters it (node expansion).
_REENTRY = "re-entry"


def _flag(result: Any) -> str | None:
    """SUCCESS / FAILURE / PENDING from the first item of the per-node function's result.

    March-2024 ``recursive_execute`` returns True/False, modern ``execute`` an ExecutionResult.
    """
    if type(result) is not tuple or not result:
        return None
    flag = result[0]
    try:
        return _FLAGS[flag]
    except (KeyError, TypeError):
        pass
    if flag is True or flag is False:
        return "SUCCESS" if flag else "FAILURE"
    name = getattr(flag, "name", None)
    name = name if isinstance(name, str) else None
    if type(flag).__hash__ is not None and len(_FLAGS) < 64:
        _FLAGS[flag] = name
    return name


def _own_error(rec: Recorder, node_id: str, error_node: Any) -> bool:
    """True when the failure reported by the per-node function is this node's own.

    March 2024 recurses, so a node's result may carry an upstream node's failure (its id is in
    the error). Modern ComfyUI reports a failure of an expanded node under its real node id.
    """
    error_node = str(error_node)
    if error_node == node_id:
        return True
    dyn = rec.dynprompt
    if dyn is None or node_id in rec.prompt:
        return False
    return str(dyn.get_real_node_id(node_id)) == error_node


#: Error texts are kept up to this many characters.
MAX_ERROR_TEXT = 2000


def _cut(exc: BaseException) -> str:
    return str(exc)[:MAX_ERROR_TEXT]


def _trimmed(text: str) -> str:
    """A message from ComfyUI's error data, as recorded (modern ComfyUI appends a newline and tips)."""
    return text.rstrip()[:MAX_ERROR_TEXT]


def _id_order(node_id: str) -> tuple[int, str]:
    """Numeric-looking ids in numeric order ("2" before "10"), any id accepted."""
    return len(node_id), node_id


#: What a node still waiting when its run ends becomes, by the run's outcome.
_NODE_STATUS_OF_RUN: dict[RunStatus, NodeStatus] = {
    "success": "executed",
    "interrupted": "interrupted",
    "error": "failed",
}


def _failure_status(exc: BaseException) -> NodeStatus:
    return "interrupted" if "Interrupt" in type(exc).__name__ else "failed"


class CallHook(Hook):
    """``get_output_data``: the node function called with its resolved inputs.

    This runs for every node of every run, so it is written for speed: parameter positions
    are found once, input names are classified once per node class (``inputs``), and the
    common values (ints, short strings, finite floats, booleans, None) are kept as they are
    without a call into ``summary``; anything else goes through ``InputPlans.summarize``.
    """

    name = "call"

    def setup(self) -> None:
        ix = self.index
        self.i_uid = ix.get("unique_id")
        self.i_obj = ix["obj"]
        self.i_inputs = ix["input_data_all"]
        # The positional arguments it needs, in one C call (ComfyUI passes them positionally).
        if self.i_uid is None:
            self.positional = itemgetter(self.i_obj, self.i_inputs)
        else:
            self.positional = itemgetter(self.i_uid, self.i_obj, self.i_inputs)  # type: ignore[call-arg]

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        """The same as ``positional`` when some of them come as keywords."""
        got = (
            _arg(args, kwargs, self.i_obj, "obj"),
            _arg(args, kwargs, self.i_inputs, "input_data_all"),
        )
        if self.i_uid is None:
            return got
        return (_arg(args, kwargs, self.i_uid, "unique_id"), *got)

    def begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        rec = current_run.get()
        if rec is None:
            return None
        t0 = _perf()
        try:
            try:
                got = self.positional(args)
            except IndexError:
                got = self._arguments(args, kwargs)
            class_type = None
            if self.i_uid is None:
                obj, inputs = got
                if self.node_hook:
                    node_id = current_node.get() or "?"
                else:
                    found = rec.object_keys.get(id(obj))  # a node seen before in this run
                    if found is None or rec.objects.get(found[0]) is not obj:  # type: ignore[union-attr]
                        found = _storage_key(rec, obj)
                        if found is None:  # not a call ComfyUI made for a node of this run
                            return None
                    node_id, class_type = found[1], found[2]
            else:
                node_id, obj, inputs = got
                if type(inputs) is not dict:  # not ComfyUI's call (or not in ComfyUI's order)
                    return None
                if type(node_id) is not str:
                    node_id = str(node_id)
            if inputs is None:
                inputs = {}
            cls = type(obj)
            # Fast path: input names seen before for this class with nothing to leave out or
            # redact, every value a one-item list of a plain scalar (int, short str, finite
            # float, bool, None). Then the summary is ComfyUI's dict itself: it holds nothing
            # but those scalars, and no node receives it to change it (``_clean`` never holds
            # an INPUT_IS_LIST class), so it can wait in the event batch as it is.
            key = (cls, tuple(inputs))
            values = None
            longest = 1
            if key in _clean:
                try:
                    for vals in inputs.values():
                        if type(vals) is not list:
                            break
                        (v,) = vals  # ValueError for a batch list (or an empty one)
                        k = type(v)
                        if (
                            k is int
                            or (k is str and len(v) <= MAX_STRING)
                            or (k is float and v - v == 0.0)
                            or k is bool
                            or v is None
                        ):
                            continue
                        break
                    else:
                        values = inputs
                except ValueError:
                    pass
            if values is None:
                values, longest = _plans.summarize(key, inputs)
                if longest > 1 and getattr(obj, "INPUT_IS_LIST", False):
                    longest = 1  # called once with the whole lists
            if rec.secret_nodes and node_id in rec.secret_nodes:
                values = redact_strings(values)  # it feeds a credential input: keep no string
            if rec.secrets:  # a key pasted into another input (only runs holding one pay this)
                values = redact_json(values, rec.secrets)
            rec.started.add(node_id)
            events = rec.events
            if class_type is None:
                node = rec.prompt.get(node_id)
                if node is None and rec.dynprompt is not None:
                    events.append(_ephemeral_started(rec, node_id, obj, t0))
                    events.append(("NodeInputs", node_id, t0, values, longest))
                    return rec, node_id, _perf() - t0  # charged with the end's own time, in end()
                # prompt_graph.class_type inlined (the hot path); a node that names no class
                # is named by its Python class.
                class_type = node.get("class_type") if type(node) is dict else None
                if type(class_type) is not str:
                    class_type = cls.__name__ if obj is not None else "?"
            # The events' tuple form (see MemoryLog.extend): NodeStarted, NodeInputs.
            events.append(("NodeStarted", node_id, class_type, t0, None, None))
            events.append(("NodeInputs", node_id, t0, values, longest))
            return rec, node_id, _perf() - t0  # charged with the end's own time, in end()
        except Exception as exc:
            fault("call: inputs", exc)
            return None

    def end(self, ctx: Any, result: Any, exc: BaseException | None) -> None:
        rec, node_id, begin_ns = ctx
        t0 = _perf()
        try:
            if exc is not None:
                rec.append(NodeFinished(node_id, t0, _failure_status(exc), type(exc).__name__, rec.redact(_cut(exc))))
            elif type(result) is not tuple or len(result) < 4 or not (result[3] or result[2]):
                events = rec.events  # Recorder.append, inline (the hot path)
                events.append(("NodeFinished", node_id, t0, "executed", None, None))
                if len(events) >= rec.flush_at:  # a batch; each node with a log folder
                    rec.flush()
            elif result[3]:
                # Modern executor, async node: get_output_data returned its still running
                # asyncio.Tasks (result[0]); the node ends when the last of them does.
                _watch_tasks(rec, node_id, result[0])
            else:
                # Node expansion (result[2]): it ends when execute() re-enters it after its
                # subgraph has run.
                rec.pending[node_id] = _REENTRY
            spent = _perf() - t0
            rec.hook_calls += 2
            rec.hook_total_ns += begin_ns + spent
            if spent < begin_ns:
                spent = begin_ns
            if spent > rec.hook_max_ns:
                rec.hook_max_ns = spent
        except Exception as exc2:
            fault("call: end", exc2)


def _storage_key(rec: Recorder, obj: Any) -> tuple[Any, str, str] | None:
    """March 2024: (storage key, node id, class_type) of a node object not in ``rec.object_keys``.

    The call hook looks ``id(obj)`` up in ``rec.object_keys`` first and checks the answer
    against the storage (an ``id`` can be reused once its object is gone); this is the miss.
    That index (``STATE.object_index``) outlives the run, as ComfyUI's storage does: a prompt run
    again finds its node objects at once instead of indexing the storage anew.
    ComfyUI keeps one object per (node id, class_type) in its object storage and creates it
    just before its call, so a new object is the storage's last entry; objects kept from
    earlier runs are indexed all at once.
    """
    storage = rec.objects
    if not storage:
        return None
    keys = rec.object_keys
    key, last = next(reversed(storage.items()))
    if last is not obj or len(keys) > 2 * len(storage) + 64:  # unknown, or too many dead ids
        index = {id(value): _key_entry(key) for key, value in storage.items()}
        keys.clear()  # (the index is shared: answer from the local copy, not from ``keys``)
        keys.update(index)
        found = index.get(id(obj))
        if found is None or storage.get(found[0]) is not obj:
            return None
        return found
    found = keys[id(obj)] = _key_entry(key)
    return found


def _key_entry(key: Any) -> tuple[Any, str, str]:
    if type(key) is tuple and len(key) == 2:
        return key, str(key[0]), str(key[1])
    return key, str(key), "?"


class _TaskWatch:
    """Records an async node's end when the last of its asyncio.Tasks is done."""

    __slots__ = ("left", "node_id", "rec", "tasks")

    def __init__(self, rec: Recorder, node_id: str, tasks: list[Any]) -> None:
        self.rec = rec
        self.node_id = node_id
        self.tasks = tasks
        self.left = len(tasks)

    def done(self, _task: Any) -> None:
        """Done-callback of each task; runs on the event loop, so it must never raise."""
        self.left -= 1
        if self.left != 0:
            return
        rec = self.rec
        if rec.finished or not STATUS.active or rec.pending.get(self.node_id) is not self:
            return
        t0 = _perf()
        try:
            del rec.pending[self.node_id]
            status: NodeStatus = "executed"
            etype: str | None = None
            emsg: str | None = None
            for task in self.tasks:  # ComfyUI re-raises the first failed task's exception
                if task.cancelled():
                    status, etype, emsg = "interrupted", "CancelledError", "the task was cancelled"
                    break
                error = task.exception()
                if error is not None:
                    status, etype, emsg = _failure_status(error), type(error).__name__, rec.redact(_cut(error))
                    break
            self.tasks = []
            rec.append(NodeFinished(self.node_id, t0, status, etype, emsg))
            rec.charge(t0)
        except Exception as exc:
            fault("call: async end", exc)


def _watch_tasks(rec: Recorder, node_id: str, values: Any) -> None:
    tasks = [v for v in values if isinstance(v, asyncio.Future) and not v.done()]
    if not tasks:  # finished in the meantime (or not asyncio's): end at re-entry instead
        rec.pending[node_id] = _REENTRY
        return
    watch = _TaskWatch(rec, node_id, tasks)
    rec.pending[node_id] = watch
    for task in tasks:
        task.add_done_callback(watch.done)


def _ephemeral_started(rec: Recorder, node_id: str, obj: Any, t0: int) -> NodeStarted:
    """NodeStarted for a node created by node expansion, with its display and parent ids."""
    dyn = rec.dynprompt
    node = dyn.get_node(node_id) if hasattr(dyn, "get_node") else None
    class_type = node.get("class_type") if isinstance(node, dict) else None
    if class_type is None and obj is None:
        class_type = "?"
    display = dyn.get_display_node_id(node_id) if hasattr(dyn, "get_display_node_id") else None
    parent = dyn.get_parent_node_id(node_id) if hasattr(dyn, "get_parent_node_id") else None
    return NodeStarted(
        node_id,
        str(class_type or type(obj).__name__),
        t0,
        None if display is None else str(display),
        None if parent is None else str(parent),
    )


#: The hook of each wrap point (``detect.WrapPoint.name``).
HOOKS: dict[str, type[Hook]] = {"run": RunHook, "message": MessageHook, "node": NodeHook, "call": CallHook}
