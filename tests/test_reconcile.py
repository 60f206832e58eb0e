"""The reconciler: runtime view from folded events, the merge, sources, and exact disagreements."""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from runtime_metadata.capture.summary import cut
from runtime_metadata.events.log import MemoryLog, read_log
from runtime_metadata.events.schema import (
    AnyEvent,
    NodeCached,
    NodeFinished,
    NodeInputs,
    NodeStarted,
    RunFinished,
    RunStarted,
)
from runtime_metadata.projections.reconcile import (
    Disagreement,
    Unresolved,
    format_disagreement,
    reconcile,
    same,
)
from runtime_metadata.projections.runtime import RunState, canonical_json, project
from runtime_metadata.prompt_graph import is_link

from .cases import SWITCH_BRANCH_1, SWITCH_BRANCH_2, load

STRUCTURE = {"type": "object"}  # what a summarised MODEL / CONDITIONING / LATENT input looks like


def generation_document(prompt: dict[str, Any], state: RunState | None, saved_by: str, **kw: Any) -> dict[str, Any]:
    """``reconcile`` as the JSON data the document embeds as ``ai_info`` (compared whole below)."""
    return msgspec.to_builtins(reconcile(prompt, state, saved_by, **kw))


class Batch(list):
    """Input values ComfyUI passed as a list of several items (a batch list)."""


def run_events(
    prompt: dict[str, Any],
    resolved: dict[str, dict[str, Any]] | None = None,
    cached: tuple[str, ...] = (),
    skipped: tuple[str, ...] = (),
) -> list[AnyEvent]:
    """A run of ``prompt``: every node runs with its literal inputs, except as told.

    ``resolved[node][input]`` is what the run resolved where it is not the literal (linked
    widgets, ComfyUI's FLOAT conversion); ``cached`` nodes come from the cache, ``skipped``
    ones never run.
    """
    resolved = resolved or {}
    events: list[AnyEvent] = [RunStarted("p-1", 1_700_000_000_000_000_000, 0, prompt, None, "ComfyUI test", "0.1.0")]
    t = 0
    for nid, node in prompt.items():
        t += 100
        if nid in skipped:
            continue
        if nid in cached:
            events.append(NodeCached(nid, node["class_type"], t))
            continue
        inputs = {}
        for name, raw in node["inputs"].items():
            value = resolved.get(nid, {}).get(name, STRUCTURE if is_link(raw) else raw)
            inputs[name] = list(value) if isinstance(value, Batch) else [value]
        events += [
            NodeStarted(nid, node["class_type"], t),
            NodeInputs(nid, t + 1, inputs, 1),
            NodeFinished(nid, t + 50, "executed"),
        ]
    events.append(RunFinished(t + 100, "success"))
    return events


def run(prompt: dict[str, Any], **kw: Any) -> RunState:
    return project(None, run_events(prompt, **kw))


def sources_of(doc: dict[str, Any], source: str) -> list[str]:
    return [path for path, s in doc["sources"].items() if s == source]


# ComfyUI's validation turns FLOAT widgets given as integers into floats before the run.
TXT2IMG_RESOLVED = {"3": {"cfg": 7.0, "denoise": 1.0}}
TXT2IMG_RUNTIME = {
    "model": "v1-5-pruned-emaonly.safetensors",
    "positive": "a photo of a cat on a windowsill",
    "negative": "blurry, lowres",
    "sampler": {
        "name": "euler",
        "scheduler": "normal",
        "steps": 20,
        "cfg": 7.0,
        "seed": 123456789,
        "denoise": 1.0,
    },
    "size": {"width": 512, "height": 768},
    "batch_size": 1,
}


def test_txt2img_the_run_confirms_every_field_and_7_equals_7_0():
    prompt = load("txt2img")
    doc = generation_document(prompt, run(prompt, resolved=TXT2IMG_RESOLVED), "9")
    parser = {**TXT2IMG_RUNTIME, "sampler": {**TXT2IMG_RUNTIME["sampler"], "cfg": 7, "denoise": 1}}
    assert doc == {
        "generation": TXT2IMG_RUNTIME,
        "sources": {
            "batch_size": "runtime",
            "model": "runtime",
            "negative": "runtime",
            "positive": "runtime",
            "sampler.cfg": "runtime",
            "sampler.denoise": "runtime",
            "sampler.name": "runtime",
            "sampler.scheduler": "runtime",
            "sampler.seed": "runtime",
            "sampler.steps": "runtime",
            "size.height": "runtime",
            "size.width": "runtime",
        },
        "parser": parser,
        "runtime": TXT2IMG_RUNTIME,
        "disagreements": [],
        "unresolved": [],
    }
    assert list(doc["sources"]) == sorted(doc["sources"])


def test_without_a_run_the_parser_is_the_document():
    prompt = load("txt2img")
    doc = generation_document(prompt, None, "9")
    assert doc["generation"] == doc["parser"]
    assert doc["runtime"] is None
    assert set(doc["sources"].values()) == {"parser"}
    assert doc["disagreements"] == [] and doc["unresolved"] == []


LORAS_GENERATION = {
    "model": "dreamshaper_8.safetensors",
    "vae": "vae-ft-mse-840000-ema-pruned.safetensors",
    "loras": [
        {"name": "detail_tweaker.safetensors", "strength_model": 0.8, "strength_clip": 1.0},
        {"name": "watercolor.safetensors", "strength_model": 0.0, "strength_clip": 0.0},
        {"name": "soft_light.safetensors", "strength_model": 0.5},
    ],
    "clip_skip": 2,
    "positive": "portrait of an old sailor",
    "negative": "",
    "sampler": {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 28,
        "cfg": 5.5,
        "seed": 7,
        "denoise": 1.0,
    },
    "size": {"width": 512, "height": 512},
    "batch_size": 2,
}


def test_a_lora_chain_whose_first_loader_was_cached_keeps_its_place_and_takes_the_prompt_values():
    prompt = load("loras")
    # Checkpoint, clip skip and the first LoRA come from the cache; the rest ran.
    doc = generation_document(prompt, run(prompt, cached=("1", "2", "10")), "60")
    runtime = copy.deepcopy(LORAS_GENERATION)
    del runtime["model"], runtime["clip_skip"]
    runtime["loras"][0] = {}  # a placeholder keeps loras[1] and loras[2] where they are
    assert doc["runtime"] == runtime
    assert doc["parser"] == LORAS_GENERATION
    assert doc["generation"] == LORAS_GENERATION
    assert sources_of(doc, "parser") == [
        "clip_skip",
        "loras[0].name",
        "loras[0].strength_clip",
        "loras[0].strength_model",
        "model",
    ]
    assert doc["sources"]["loras[1].strength_model"] == "runtime"
    assert doc["disagreements"] == []


def test_base_and_refiner_every_pass_is_confirmed_by_the_run():
    prompt = load("refiner")
    doc = generation_document(prompt, run(prompt), "13")
    assert doc["runtime"] == doc["parser"] == doc["generation"]
    assert doc["generation"]["model"] == "sd_xl_refiner_1.0.safetensors"
    assert doc["generation"]["passes"][0]["model"] == "sd_xl_base_1.0.safetensors"
    assert doc["generation"]["passes"][0]["sampler"]["add_noise"] is True  # "enable", both views
    assert doc["sources"]["passes[0].sampler.end_step"] == "runtime"
    assert doc["disagreements"] == []


def test_two_save_branches_each_document_holds_only_its_own_branch():
    prompt = load("two_saves")
    state = run(prompt, resolved={"21": {"seed": 2}})
    small, large = (
        generation_document(prompt, state, "13"),
        generation_document(prompt, state, "24"),
    )
    assert small["runtime"] == small["parser"] == small["generation"]
    assert large["runtime"] == large["parser"] == large["generation"]
    assert (small["generation"]["sampler"]["seed"], large["generation"]["sampler"]["seed"]) == (
        1,
        2,
    )
    assert (small["generation"]["positive"], large["generation"]["positive"]) == (
        "a red fox in the snow",
        "a blue fox in the snow",
    )
    assert large["generation"]["size"] == {"width": 768, "height": 640}
    assert small["disagreements"] == large["disagreements"] == []


SWITCH_PARSER = SWITCH_BRANCH_1  # the static guess: the switch's default branch
SWITCH_RUN = {**SWITCH_BRANCH_2, "sampler": {**SWITCH_BRANCH_2["sampler"], "denoise": 1.0}}  # what ran
# The reference image's batch size is 1, so the run's select is 1 + 1 = 2: branch on_2.
SWITCH_RESOLVED = {
    "9": {"a": 1},
    "10": {"select": 2},
    "5": {"cfg": 7.0, "denoise": 1.0},
    "6": {"denoise": 1.0},
}


def switch_disagreements(runtime_sampler: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "path": f"ai_info.generation.sampler.{key}",
            "parser": SWITCH_PARSER["sampler"][key],
            "runtime": runtime_sampler[key],
            "cause": "switch picked another branch",
        }
        for key in ("cfg", "name", "scheduler", "seed", "steps")
    ]


def test_a_switch_that_picks_the_branch_the_parser_did_not_expect():
    prompt = load("switch")
    doc = generation_document(prompt, run(prompt, resolved=SWITCH_RESOLVED), "12")
    assert doc["parser"] == SWITCH_PARSER
    assert doc["runtime"] == SWITCH_RUN
    assert doc["generation"] == SWITCH_RUN
    assert set(doc["sources"].values()) == {"runtime"}
    # denoise 1 and 1.0 agree; the five other sampler fields come from the other branch.
    assert doc["disagreements"] == switch_disagreements(SWITCH_RUN["sampler"])
    assert doc["unresolved"] == []


def test_a_switch_to_a_cached_branch_takes_that_branchs_prompt_values_not_the_parsers_guess():
    prompt = load("switch")
    doc = generation_document(prompt, run(prompt, resolved=SWITCH_RESOLVED, cached=("6",)), "12")
    # The run knows the branch (the switch ran) but not the sampler's inputs (it was cached).
    assert doc["runtime"] == {key: v for key, v in SWITCH_PARSER.items() if key != "sampler"}
    expected = {**SWITCH_RUN, "sampler": {**SWITCH_RUN["sampler"], "denoise": 1}}
    assert doc["generation"] == expected
    assert doc["sources"]["sampler.steps"] == "parser"  # the prompt's value, on the run's route
    assert doc["disagreements"] == switch_disagreements(expected["sampler"])


def test_without_a_run_the_fields_behind_an_undecidable_switch_are_marked_as_guesses():
    prompt = load("switch")
    doc = generation_document(prompt, None, "12")
    assert doc["generation"] == SWITCH_PARSER
    assert set(doc["sources"].values()) == {"parser-guess"}


def test_a_switch_the_run_did_not_record_leaves_the_parsers_guess():
    prompt = load("switch")
    state = run(prompt, resolved=SWITCH_RESOLVED, cached=("1", "2", "3", "4", "5", "6", "9", "10"))
    doc = generation_document(prompt, state, "12")
    assert doc["runtime"] == {}  # the run's walk stops at a switch it has no select for
    assert doc["generation"] == SWITCH_PARSER
    assert set(doc["sources"].values()) == {"parser-guess"}
    assert doc["disagreements"] == []


COMPUTED_RESOLVED = {
    "21": {"a": 1000},
    "24": {"a": 512},
    "5": {"seed": 1007, "steps": 16, "cfg": 8.0, "denoise": 1.0},
}
COMPUTED_RUN = {
    "model": "v1-5-pruned-emaonly.safetensors",
    "positive": "a harbour at night",
    "negative": "blurry",
    "sampler": {
        "name": "euler_ancestral",
        "scheduler": "normal",
        "steps": 16,
        "cfg": 8.0,
        "seed": 1007,
        "denoise": 1.0,
    },
    "size": {"width": 512, "height": 512},
    "batch_size": 1,
}
UNKNOWN_STEPS = "unknown (linked from node 24, IntMathRuntimeMetadata)"


def test_a_seed_and_a_step_count_computed_upstream():
    prompt = load("computed")
    doc = generation_document(prompt, run(prompt, resolved=COMPUTED_RESOLVED), "7")
    assert doc["parser"]["sampler"] == {
        "name": "euler_ancestral",
        "scheduler": "normal",
        "steps": UNKNOWN_STEPS,
        "cfg": 8,
        "seed": 1007,  # the parser computed it: no disagreement
        "denoise": 1,
    }
    assert doc["runtime"] == COMPUTED_RUN
    assert doc["generation"] == COMPUTED_RUN
    assert doc["sources"]["sampler.steps"] == "runtime"
    assert doc["disagreements"] == [
        {
            "path": "ai_info.generation.sampler.steps",
            "parser": UNKNOWN_STEPS,
            "runtime": 16,
            "cause": "value computed upstream",
        }
    ]
    assert doc["unresolved"] == []


def test_an_upstream_value_of_a_cached_sampler_stays_unknown_and_says_why():
    prompt = load("computed")
    doc = generation_document(prompt, run(prompt, resolved=COMPUTED_RESOLVED, cached=("5",)), "7")
    assert "sampler" not in doc["runtime"]
    assert doc["generation"]["sampler"]["steps"] == UNKNOWN_STEPS
    assert doc["sources"]["sampler.steps"] == "parser"
    assert doc["disagreements"] == []
    assert doc["unresolved"] == [{"path": "sampler.steps", "value": UNKNOWN_STEPS, "cause": "node was cached"}]
    assert generation_document(prompt, None, "7")["unresolved"] == [
        {"path": "sampler.steps", "value": UNKNOWN_STEPS, "cause": "no runtime capture"}
    ]


def test_sampler_custom_advanced_from_the_run():
    prompt = load("custom_advanced")
    doc = generation_document(prompt, run(prompt), "17")
    assert doc["runtime"] == doc["parser"] == doc["generation"]
    assert doc["generation"]["sampler"] == {
        "name": "euler",
        "scheduler": "simple",
        "steps": 20,
        "cfg": 1.0,
        "seed": 987654321,
        "denoise": 1.0,
        "add_noise": True,
    }
    assert doc["sources"]["sampler.seed"] == "runtime"  # from the RandomNoise node that ran
    assert doc["disagreements"] == []


def test_titles_lie_the_run_agrees_on_polarity():
    prompt = load("titles_lie")
    doc = generation_document(prompt, run(prompt), "12")
    assert doc["generation"]["positive"] == "sunny meadow, wildflowers\noil painting"
    assert doc["generation"]["negative"] == "rain, fog"
    assert doc["runtime"] == doc["parser"]
    assert doc["disagreements"] == []


def test_a_joined_prompt_with_a_cached_encoder_is_not_in_the_runtime_view_and_mixed_when_merged():
    prompt = load("titles_lie")
    doc = generation_document(prompt, run(prompt, cached=("4",)), "12")
    assert "positive" not in doc["runtime"]  # half a prompt would be a false disagreement
    assert doc["generation"]["positive"] == "sunny meadow, wildflowers\noil painting"
    assert doc["sources"]["positive"] == "mixed"
    assert doc["disagreements"] == []


def test_a_literal_the_run_changed_and_a_batch_list_are_disagreements_with_their_cause():
    prompt = load("txt2img")
    state = run(prompt, resolved={"3": {"steps": 25, "seed": Batch([1, 2])}})
    result = reconcile(prompt, state, "9")
    assert result.disagreements == [
        Disagreement("ai_info.generation.sampler.seed", 123456789, [1, 2], "node ran over a list of values"),
        Disagreement("ai_info.generation.sampler.steps", 20, 25, "value changed at run time"),
    ]
    assert result.unresolved == []
    seed, steps = (format_disagreement(d) for d in result.disagreements)
    assert seed == (
        "[MetadataSaveImage] Disagreement at 'ai_info.generation.sampler.seed': parser=123456789 → runtime=[1,2]"
    )
    assert steps == ("[MetadataSaveImage] Disagreement at 'ai_info.generation.sampler.steps': parser=20 → runtime=25")


def test_a_text_the_capture_summary_cut_agrees_with_the_full_prompt_text():
    prompt = load("txt2img")
    long_text = "a very detailed prompt, " * 400
    prompt["6"]["inputs"]["text"] = long_text
    state = run(prompt, resolved={"6": {"text": cut(long_text)}})
    doc = generation_document(prompt, state, "9")
    assert doc["runtime"]["positive"] == cut(long_text)
    assert doc["generation"]["positive"] == long_text
    assert doc["sources"]["positive"] == "runtime"
    assert doc["disagreements"] == []


def test_the_log_line_cuts_each_value_to_50_characters():
    d = Disagreement("ai_info.generation.positive", "x" * 80, "line one\nline two", "value changed at run time")
    assert format_disagreement(d) == (
        f"[MetadataSaveImage] Disagreement at 'ai_info.generation.positive': parser={'x' * 49}… "
        "→ runtime=line one line two"
    )
    absent = Disagreement("ai_info.generation.vae", "a.safetensors", None, "x")
    assert format_disagreement(absent) == (
        "[MetadataSaveImage] Disagreement at 'ai_info.generation.vae': parser=a.safetensors → runtime=absent"
    )


def test_same_values_never_disagree():
    assert same(7, 7.0) and same(20, "20") and same(0.1 + 0.2, 0.3)
    assert same([1, 2.0], [1.0, 2]) and same({"a": 1}, {"a": 1.0})
    assert same("abc" * 2000, cut("abc" * 2000)) and same(cut("abc" * 2000), "abc" * 2000)
    assert not same(True, 1) and not same(False, 0)
    assert not same("euler", "euler_a") and not same(7, 8) and not same("x", None)
    assert not same("abc" * 2000, cut("abd" * 2000))


def test_the_document_is_byte_identical_live_and_from_a_stored_log():
    prompt = load("switch")
    events = run_events(prompt, resolved=SWITCH_RESOLVED)
    log = MemoryLog()
    for event in events:
        log.append(event)
    live = canonical_json(generation_document(prompt, project(None, events), "12"))
    replayed_state = project(None, read_log(log.to_bytes()).events)
    replayed = canonical_json(generation_document(replayed_state.prompt, replayed_state, "12"))
    assert live == replayed
    assert canonical_json(generation_document(prompt, project(None, events), "12")) == live


def test_unresolved_and_disagreements_are_data_not_logs(caplog):
    prompt = load("computed")
    result = reconcile(prompt, run(prompt, resolved=COMPUTED_RESOLVED, cached=("5",)), "7")
    assert result.unresolved == [Unresolved("sampler.steps", UNKNOWN_STEPS, "node was cached")]
    assert caplog.records == []


def test_a_value_behind_a_switch_the_parser_guessed_differs_with_the_switch_as_cause():
    prompt = load("computed")
    prompt["30"] = {"class_type": "PrimitiveInt", "inputs": {"value": 111}}
    prompt["31"] = {"class_type": "PrimitiveInt", "inputs": {"value": 222}}
    prompt["32"] = {
        "class_type": "SwitchRuntimeMetadata",
        "inputs": {"select": ["24", 0], "on_1": ["30", 0], "on_2": ["31", 0]},
    }
    prompt["5"]["inputs"]["seed"] = ["32", 0]
    resolved = {**COMPUTED_RESOLVED, "5": {**COMPUTED_RESOLVED["5"], "seed": 222}}
    result = reconcile(prompt, run(prompt, resolved=resolved), "7")
    assert result.parser["sampler"]["seed"] == 111  # on_1: the parser's guess
    assert result.disagreements == [
        Disagreement("ai_info.generation.sampler.seed", 111, 222, "switch picked another branch"),
        Disagreement("ai_info.generation.sampler.steps", UNKNOWN_STEPS, 16, "value computed upstream"),
    ]
    assert reconcile(prompt, None, "7").sources["sampler.seed"] == "parser-guess"
