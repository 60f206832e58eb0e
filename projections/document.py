"""The document a save node embeds, built only from the run's log (so replay is exact)."""

from __future__ import annotations

from typing import Any

import msgspec

from ..events.schema import AnyEvent, NodeInputs, RunStarted
from ..prompt_graph import class_type
from .reconcile import Reconciliation, reconcile
from .runtime import DOCUMENT_SCHEMA, RunState, project, runtime_document

#: Keys of ``runtime.timing`` that schema 1 named differently: new name -> schema 1's.
SCHEMA_1_TIMING_KEYS = {"nodes_executed": "executed_nodes", "nodes_cached": "cached_nodes"}


def events_for_save(events: list[AnyEvent], node_id: str) -> list[AnyEvent]:
    """The prefix of a run's events that the save node ``node_id`` saw: up to its own inputs."""
    for i, event in enumerate(events):
        if isinstance(event, NodeInputs) and event.node_id == node_id:
            return events[: i + 1]
    return events


class Provenance(msgspec.Struct, frozen=True):
    """What made the document: whether a run was captured, and the versions involved."""

    #: ``parser`` when no run was captured, ``parser+runtime`` when one was.
    capture_mode: str
    comfyui: str
    plugin: str
    environment: dict[str, str]


class Document(msgspec.Struct, frozen=True, omit_defaults=True):
    """The document a save node embeds. It stays typed until it is encoded (``canonical``), once."""

    schema: int
    ai_info: Reconciliation
    provenance: Provenance
    #: The run's block (``runtime_document``); absent without a captured run, or when left out.
    runtime: dict[str, Any] | None = None


def build_document(events: list[AnyEvent], saved_by: str, list_index: int | None = None) -> Document:
    """The full embedded document for the save node ``saved_by``, live and on replay alike.

    ``list_index``: which call of the save node this is when it runs over a batch list (one
    image per item); the generation then holds that item's values, not the whole list.
    """
    state = project(None, events_for_save(events, saved_by))
    runtime = runtime_document(state, saved_by=saved_by)
    if list_index is not None:
        runtime["saved_by"]["list_index"] = list_index
    return Document(
        schema=DOCUMENT_SCHEMA,
        ai_info=reconcile(state.prompt, state, saved_by, list_index=list_index),
        provenance=_provenance(state, "parser+runtime"),
        runtime=runtime,
    )


def parser_document(prompt: dict[str, Any], saved_by: str, environment: dict[str, str], plugin: str) -> Document:
    """The document when no run was captured: the static parse of the prompt only."""
    state = RunState(prompt=prompt, plugin=plugin, environment=environment, comfyui=environment.get("comfyui", ""))
    return Document(
        schema=DOCUMENT_SCHEMA,
        ai_info=reconcile(prompt, None, saved_by),
        provenance=_provenance(state, "parser"),
    )


def _provenance(state: RunState, capture_mode: str) -> Provenance:
    return Provenance(capture_mode, state.comfyui, state.plugin, dict(sorted(state.environment.items())))


def as_schema(doc: Document, schema: Any) -> Document:
    """``doc`` as a plugin writing ``schema`` wrote it, so that replay can check older images byte for byte.

    Only schema 1 differs (two timing keys); any other value leaves ``doc`` as it is.
    """
    if schema != 1:
        return doc
    runtime = doc.runtime
    if runtime is not None:
        timing = runtime.get("timing")
        runtime = {**runtime, "schema": 1}
        if isinstance(timing, dict):
            runtime["timing"] = {SCHEMA_1_TIMING_KEYS.get(k, k): v for k, v in timing.items()}
    return msgspec.structs.replace(doc, schema=1, runtime=runtime)


def save_nodes(events: list[AnyEvent], class_types: frozenset[str]) -> list[str]:
    """Ids of the nodes of ``class_types`` that received inputs in this log, in run order."""
    prompt = next((e.prompt for e in events if isinstance(e, RunStarted)), {})
    return [e.node_id for e in events if isinstance(e, NodeInputs) and class_type(prompt, e.node_id) in class_types]
