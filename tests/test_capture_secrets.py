"""Credentials out of what a save writes: ComfyUI's prompt and workflow, and any JSON or text.

The workflow's widget values are positional: they are mapped to input names through the node's
definition as ComfyUI's frontend maps them, and every secret value is also replaced wherever
else it appears (a key pasted into a prompt too).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime_metadata.capture import secrets as sec
from runtime_metadata.capture.summary import REDACTED

KEY = "sk-live-0123456789abcdef"

#: Definitions as ComfyUI's INPUT_TYPES() returns them.
DEFINITIONS: dict[str, dict[str, Any]] = {
    "PromptEnhancer": {
        "required": {
            "text": ("STRING", {"multiline": True}),
            "api_key": ("STRING", {"default": ""}),
            "model": (["gpt-small", "gpt-large"],),
            "seed": ("INT", {"default": 0}),
            "clip": ("CLIP",),
        },
        "optional": {"temperature": ("FLOAT", {"default": 0.7})},
    },
    "KSampler": {
        "required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "control_after_generate": True}),
            "steps": ("INT", {"default": 20}),
            "sampler_name": (["euler", "dpmpp_2m"],),
        }
    },
    "CLIPTextEncode": {"required": {"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)}},
}


def definitions(kind: str) -> dict[str, Any] | None:
    return DEFINITIONS.get(kind)


def enhancer_node(node_id: int, key: str = KEY, mode: int = 0) -> dict[str, Any]:
    # text, api_key, model, seed, control_after_generate, temperature
    return {
        "id": node_id,
        "type": "PromptEnhancer",
        "mode": mode,
        "widgets_values": ["a fox", key, "gpt-small", 7, "fixed", 0.7],
    }


def test_a_layout_follows_the_frontend_seed_widgets_get_a_control_value() -> None:
    layout = sec.WidgetLayout.of(DEFINITIONS["PromptEnhancer"])
    assert layout is not None
    assert layout.names == ["text", "api_key", "model", "seed", None, "temperature"]
    assert layout.choices == {"gpt-small", "gpt-large"}


def test_a_class_without_credential_widgets_has_no_layout() -> None:
    assert sec.WidgetLayout.of(DEFINITIONS["KSampler"]) is None
    assert sec.WidgetLayout.of("not a definition") is None
    # Only text holds a key: a switch or a number named like a credential is left alone, and
    # an older workflow of such a class (fewer values than its definition) is never touched.
    switches = {"required": {"prefix": ("STRING", {}), "use_auth": ("BOOLEAN", {}), "token_count": ("INT", {})}}
    assert sec.WidgetLayout.of(switches) is None
    workflow = {"nodes": [{"id": 1, "type": "Switches", "widgets_values": ["old prefix"]}]}
    assert sec.redact_workflow(workflow, frozenset(), {"Switches": switches}.get) is workflow


def test_the_key_widget_of_a_node_missing_from_the_prompt_is_blanked() -> None:
    # A muted or bypassed node is not in the prompt, so no value is known: only its definition
    # says which widget holds the key.
    workflow = {"nodes": [enhancer_node(4, mode=4)]}
    out = sec.redact_workflow(workflow, frozenset(), definitions)
    assert out["nodes"][0]["widgets_values"] == ["a fox", REDACTED, "gpt-small", 7, "fixed", 0.7]
    assert workflow["nodes"][0]["widgets_values"][1] == KEY  # the input is never mutated


def test_a_layout_the_definition_does_not_explain_blanks_every_free_text_value() -> None:
    node = {**enhancer_node(4), "widgets_values": ["a fox", KEY, "gpt-large", 7, "fixed", 0.7, "extra"]}
    out = sec.redact_workflow({"nodes": [node]}, frozenset(), definitions)
    assert out["nodes"][0]["widgets_values"] == [REDACTED, REDACTED, "gpt-large", 7, "fixed", 0.7, REDACTED]


def test_widgets_stored_by_name_and_subgraph_definitions_are_redacted() -> None:
    workflow = {
        "nodes": [{"id": 1, "type": "Custom", "widgets_values": {"api_key": KEY, "prompt": "hi"}}],
        "definitions": {"subgraphs": [{"id": "sg", "nodes": [enhancer_node(2)]}, {"id": "other", "nodes": []}]},
    }
    out = sec.redact_workflow(workflow, frozenset(), definitions)
    assert out["nodes"][0]["widgets_values"] == {"api_key": REDACTED, "prompt": "hi"}
    assert out["definitions"]["subgraphs"][0]["nodes"][0]["widgets_values"][1] == REDACTED
    assert out["definitions"]["subgraphs"][1] is workflow["definitions"]["subgraphs"][1]
    assert KEY not in json.dumps(out)


def test_nothing_to_redact_copies_nothing() -> None:
    workflow = {"nodes": [{"id": 1, "type": "KSampler", "widgets_values": [5, "fixed", 20, "euler"]}]}
    assert sec.redact_workflow(workflow, frozenset(), definitions) is workflow
    prompt = {"1": {"class_type": "KSampler", "inputs": {"seed": 5}}}
    assert sec.redact_json(prompt, frozenset({KEY})) is prompt


def test_a_save_sees_no_key_in_prompt_workflow_or_anywhere_it_was_pasted() -> None:
    prompt = {
        "4": {"class_type": "PromptEnhancer", "inputs": {"text": "a fox", "api_key": KEY, "model": "gpt-small"}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": f"a fox, {KEY}", "clip": ["1", 1]}},
    }
    workflow = {
        "nodes": [
            enhancer_node(4),
            {"id": 6, "type": "CLIPTextEncode", "widgets_values": [f"a fox, {KEY}"]},
            {"id": 9, "type": "Note", "widgets_values": [f"my key is {KEY}!"]},
        ]
    }
    before = copy.deepcopy((prompt, workflow))
    clean_prompt, pnginfo, found = sec.redact_for_image(prompt, {"workflow": workflow}, (), definitions)
    assert found == {KEY}
    assert (prompt, workflow) == before
    assert clean_prompt["4"]["inputs"]["api_key"] == REDACTED
    assert clean_prompt["6"]["inputs"]["text"] == f"a fox, {REDACTED}"
    assert pnginfo["workflow"]["nodes"][2]["widgets_values"] == [f"my key is {REDACTED}!"]
    assert KEY not in json.dumps([clean_prompt, pnginfo])


def test_hidden_credentials_are_redacted_wherever_they_appear() -> None:
    token = "comfyui-87d01e28d0123456789"
    prompt = {"6": {"class_type": "CLIPTextEncode", "inputs": {"text": f"pasted {token}"}}}
    clean_prompt, _, found = sec.redact_for_image(prompt, None, sec.plain_secrets((token, None, "")), definitions)
    assert found == {token}
    assert clean_prompt["6"]["inputs"]["text"] == f"pasted {REDACTED}"


def test_a_short_secret_is_redacted_only_where_a_whole_value_equals_it() -> None:
    out = sec.redact_json({"a": "abc", "b": "abcdef abc", "c": ["abc"]}, frozenset({"abc"}))
    assert out == {"a": REDACTED, "b": "abcdef abc", "c": [REDACTED]}


_TEXT = st.text(alphabet="abcxyz-_ 01", max_size=40)
_SECRET = st.text(alphabet="abcxyz-_01", min_size=sec.MIN_EMBEDDED_SECRET, max_size=12)
_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), _TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_TEXT, inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(value=_JSON, secrets=st.lists(_SECRET, min_size=1, max_size=4), data=st.data())
def test_redacted_json_holds_no_secret_and_the_input_is_unchanged(value: Any, secrets: list[str], data: Any) -> None:
    # Plant secrets, prefixes of each other included, inside strings of the value.
    secrets = secrets + [s[: sec.MIN_EMBEDDED_SECRET] for s in secrets]
    planted = {"planted": [data.draw(_TEXT) + s + data.draw(_TEXT) for s in secrets], "value": value}
    before = copy.deepcopy(planted)
    out = sec.redact_json(planted, frozenset(secrets))
    assert planted == before
    for text in strings(out):
        for secret in secrets:
            assert secret not in text


def strings(value: Any) -> list[str]:
    """Every string of JSON data, keys included (numbers may spell a secret's digits)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*strings(k), *strings(v)]]
    return []


# --- capture: the log itself holds no credential, wherever it was pasted -------------------


def test_a_captured_run_logs_no_key_pasted_elsewhere_nor_comfyuis_token(monkeypatch) -> None:
    import sys
    import types

    from runtime_metadata import capture
    from runtime_metadata.events.log import read_log
    from runtime_metadata.events.schema import NodeInputs, RunStarted

    from .executors import testnodes
    from .test_capture import load_executor

    monkeypatch.setenv("AAA_METADATA_ENABLE_HOOKS", "1")
    monkeypatch.setenv("AAA_METADATA_CONFIG", "/nonexistent/config.json")
    # ComfyUI's own ``nodes`` module is where node definitions are found.
    monkeypatch.setitem(sys.modules, "nodes", types.SimpleNamespace(NODE_CLASS_MAPPINGS={"ApiNode": testnodes.ApiNode}))
    capture.reset()
    execution = load_executor()
    execution.NODE_CLASS_MAPPINGS["Text"] = testnodes.Text
    capture.install(execution, "test")
    token = "comfyui-account-token-0123456789"
    prompt = {
        "1": {"class_type": "ApiNode", "inputs": {"api_key": KEY, "size": 5}},
        "2": {"class_type": "Text", "inputs": {"value": f"pasted {KEY} and {token}", "max_tokens": 3}},
        "3": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "Sink", "inputs": {"value": ["2", 0]}},
    }
    # A muted copy of the API node is only in the workflow, its key only in a widget value.
    workflow = {"nodes": [{"id": 9, "type": "ApiNode", "mode": 2, "widgets_values": ["sk-muted-9876543210", 5]}]}
    try:
        execution.PromptExecutor().execute(
            prompt, "p-sec", {"extra_pnginfo": {"workflow": workflow}, "auth_token_comfy_org": token}, ["3", "4"]
        )
        data = capture.STORE.get("p-sec")
    finally:
        capture.reset()
    assert data is not None
    for secret in (KEY, token, "sk-muted-9876543210"):
        assert secret.encode() not in data
    events = read_log(data).events
    text = {e.node_id: e.inputs for e in events if isinstance(e, NodeInputs)}["2"]["value"]
    assert text == [f"pasted {REDACTED} and {REDACTED}"]
    started = next(e for e in events if isinstance(e, RunStarted))
    assert started.workflow["nodes"][0]["widgets_values"] == [REDACTED, 5]
    assert started.prompt["2"]["inputs"]["value"] == f"pasted {REDACTED} and {REDACTED}"
