"""Every event a run can emit: small, frozen, tagged msgspec Structs.

Times are integer nanoseconds: ``t_ns`` values come from ``time.perf_counter_ns`` (only
differences mean anything), and each run carries one wall-clock anchor (``wall_ns``).
Values inside events are summaries (see ``capture.summary``), never live objects.

Schema evolution: add fields at the end with defaults and bump ``SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import msgspec

#: 2: a log frame holds a batch of events (1: one event per frame); the events are unchanged.
#: 3: RunStarted carries the client and worker ids, RunFinished the images the run saved
#: (fields added at the end: version 2 logs read with their defaults).
#: 4: the log's records are cut into checksummed fragments in fixed blocks (see ``log``); the
#: events are those of 3.
SCHEMA_VERSION = 4


#: How a run ended (``RunFinished.status``); a run not finished yet is "running" in a fold.
RunStatus = Literal["success", "error", "interrupted"]
#: How a node ended (``NodeFinished.status``). Capture writes the first three; "pending" is
#: accepted for a node recorded as still waiting.
NodeStatus = Literal["executed", "failed", "interrupted", "pending"]


class Event(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """Base of all events; the class name is the tag."""


class RunStarted(Event, frozen=True):
    """ComfyUI started executing a prompt."""

    prompt_id: str
    wall_ns: int
    t_ns: int
    prompt: dict[str, Any]
    workflow: Any = None
    comfyui: str = ""
    plugin: str = ""
    environment: dict[str, str] = {}
    #: The websocket client that queued the prompt (ComfyUI's ``extra_data["client_id"]``).
    client_id: str | None = None
    #: Which ComfyUI ran it (``runtime_hooks.worker_id``, by default hostname:port).
    worker_id: str | None = None


class NodeStarted(Event, frozen=True):
    """The executor reached a node that is not cached and is about to run it."""

    node_id: str
    class_type: str
    t_ns: int
    display_id: str | None = None
    parent_id: str | None = None


class NodeInputs(Event, frozen=True):
    """A node function is about to be called with these resolved (summarised) inputs.

    ``inputs`` maps each input name to the list ComfyUI passes (one item per batch-list
    element); ``calls`` is how many times the node function will be called with them.
    """

    node_id: str
    t_ns: int
    inputs: dict[str, list[Any]]
    calls: int


class NodeCached(Event, frozen=True):
    """A node's outputs came from ComfyUI's cache: it did not run in this run.

    ``from_prompt_id`` names the earlier run whose recorded inputs follow in a NodeInputs
    event (the run that computed what the cache holds), when that run was captured.
    """

    node_id: str
    class_type: str
    t_ns: int
    from_prompt_id: str | None = None


class NodeFinished(Event, frozen=True):
    """A node that started has ended, successfully or not."""

    node_id: str
    t_ns: int
    status: NodeStatus
    error_type: str | None = None
    error_message: str | None = None


class HookStats(Event, frozen=True):
    """Cost of the capture hooks themselves so far in this run."""

    calls: int
    total_ns: int
    max_ns: int


class SavedImage(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """A file a node of the run reported to ComfyUI as its output (what ComfyUI's history lists)."""

    node_id: str
    filename: str
    subfolder: str = ""
    type: str = "output"  # ComfyUI's folder type: output | temp | input
    path: str | None = None  # where that is on the worker's disk, when ComfyUI said


class RunFinished(Event, frozen=True):
    """ComfyUI finished executing a prompt."""

    t_ns: int
    status: RunStatus
    error_type: str | None = None
    error_message: str | None = None
    #: Files the nodes that ran in this run reported (ComfyUI's UI outputs), in node order.
    images: list[SavedImage] = []


AnyEvent = RunStarted | NodeStarted | NodeInputs | NodeCached | NodeFinished | HookStats | RunFinished

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
NODE_STATUSES: tuple[NodeStatus, ...] = get_args(NodeStatus)
