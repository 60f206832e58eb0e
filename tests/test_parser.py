"""The static parser: what the prompt JSON alone says about the generation behind a save node."""

from __future__ import annotations

import json

from runtime_metadata.projections.rules import RULES, Node, PassThrough, Switch, extend
from runtime_metadata.projections.workflow import (
    COMPUTED_UPSTREAM,
    UNFOLLOWABLE,
    StaticValues,
    nest,
    parse_generation,
    walk_generation,
)

from .cases import SWITCH_BRANCH_1, SWITCH_BRANCH_2, load


def test_txt2img_gives_checkpoint_prompts_sampler_and_size():
    assert parse_generation(load("txt2img"), "9") == {
        "model": "v1-5-pruned-emaonly.safetensors",
        "positive": "a photo of a cat on a windowsill",
        "negative": "blurry, lowres",
        "sampler": {
            "name": "euler",
            "scheduler": "normal",
            "steps": 20,
            "cfg": 7,
            "seed": 123456789,
            "denoise": 1,
        },
        "size": {"width": 512, "height": 768},
        "batch_size": 1,
    }


def test_a_lora_chain_is_listed_in_application_order_with_zero_strength_kept():
    assert parse_generation(load("loras"), "60") == {
        "model": "dreamshaper_8.safetensors",
        "vae": "vae-ft-mse-840000-ema-pruned.safetensors",
        "loras": [
            {"name": "detail_tweaker.safetensors", "strength_model": 0.8, "strength_clip": 1.0},
            {"name": "watercolor.safetensors", "strength_model": 0.0, "strength_clip": 0.0},
            {
                "name": "soft_light.safetensors",
                "strength_model": 0.5,
            },  # model-only: no CLIP strength
        ],
        "clip_skip": 2,  # stop_at_clip_layer -2, found through the LoRAs' CLIP path
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


REFINER_PASS = {
    "name": "dpmpp_2m",
    "scheduler": "karras",
    "steps": 25,
    "cfg": 7.5,
    "seed": 42,
    "add_noise": False,
    "start_step": 20,
    "end_step": 10000,
    "return_leftover_noise": False,
}
BASE_PASS = {
    "name": "dpmpp_2m",
    "scheduler": "karras",
    "steps": 25,
    "cfg": 7.5,
    "seed": 42,
    "add_noise": True,
    "start_step": 0,
    "end_step": 20,
    "return_leftover_noise": True,
}


def test_base_and_refiner_the_refiner_describes_the_image_and_the_base_is_an_earlier_pass():
    assert parse_generation(load("refiner"), "13") == {
        "model": "sd_xl_refiner_1.0.safetensors",
        "positive": "a lighthouse at dusk, detailed",
        "negative": "text, watermark",
        "sampler": REFINER_PASS,
        "size": {"width": 1024, "height": 1024},
        "batch_size": 1,
        "passes": [
            {
                "model": "sd_xl_base_1.0.safetensors",
                # text_g == text_l: said once; the empty text_l of the negative is dropped
                "positive": "a lighthouse at dusk",
                "negative": "text, watermark",
                "sampler": BASE_PASS,
            }
        ],
    }


def test_a_hires_fix_second_pass_describes_the_image_and_the_first_pass_is_kept():
    generation = parse_generation(load("hires_fix"), "9")
    assert generation["sampler"] == {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 15,
        "cfg": 7,
        "seed": 12,
        "denoise": 0.5,
    }
    assert generation["size"] == {"width": 512, "height": 512}  # the size the generation started at
    assert generation["passes"] == [
        {
            "model": "v1-5-pruned-emaonly.safetensors",
            "positive": "a mountain village",
            "negative": "blurry",
            "sampler": {
                "name": "euler",
                "scheduler": "normal",
                "steps": 20,
                "cfg": 7,
                "seed": 11,
                "denoise": 1,
            },
        }
    ]


def test_each_save_node_describes_its_own_branch():
    prompt = load("two_saves")
    small, large = parse_generation(prompt, "13"), parse_generation(prompt, "24")
    assert small == {
        "model": "v1-5-pruned-emaonly.safetensors",
        "positive": "a red fox in the snow",
        "negative": "ugly, deformed",
        "sampler": {
            "name": "euler",
            "scheduler": "normal",
            "steps": 20,
            "cfg": 7.0,
            "seed": 1,
            "denoise": 1.0,
        },
        "size": {"width": 512, "height": 512},
        "batch_size": 1,
    }
    assert large == {
        "model": "v1-5-pruned-emaonly.safetensors",
        "positive": "a blue fox in the snow",
        "negative": "ugly, deformed",
        "sampler": {
            "name": "dpmpp_2m",
            "scheduler": "karras",
            "steps": 30,
            "cfg": 6.0,
            "seed": 2,
            "denoise": 1.0,
        },
        "size": {"width": 768, "height": 640},
        "batch_size": 1,
    }


def test_a_switch_whose_select_only_the_run_knows_is_followed_to_its_default_branch_as_a_guess():
    prompt = load("switch")
    assert parse_generation(prompt, "12") == SWITCH_BRANCH_1
    leaves = walk_generation(prompt, "12", StaticValues(prompt))
    # Everything the walk found lies behind the switch, so every field is flagged as a guess.
    assert all(v.guessed for v in leaves.values())
    assert leaves["sampler.steps"].nodes == ("5",)


def test_a_switch_select_computed_from_literal_int_math_is_followed_without_guessing():
    prompt = load("switch")
    prompt["9"]["inputs"]["a"] = 1  # select = 1 + 1
    assert parse_generation(prompt, "12") == SWITCH_BRANCH_2
    leaves = walk_generation(prompt, "12", StaticValues(prompt))
    assert not any(v.guessed for v in leaves.values())


def test_a_switch_with_a_literal_select_follows_it():
    prompt = load("switch")
    prompt["10"]["inputs"]["select"] = 2
    assert parse_generation(prompt, "12") == SWITCH_BRANCH_2
    prompt["10"]["inputs"]["select"] = 1
    assert parse_generation(prompt, "12") == SWITCH_BRANCH_1


def test_a_switch_rule_without_a_guess_stops_the_walk_when_the_select_is_unknown():
    rules = extend({"SwitchRuntimeMetadata": Switch("select", {1: "on_1"}, default="on_2")})
    assert parse_generation(load("switch"), "12", rules=rules) == {}


def test_values_computed_upstream_are_followed_where_possible_and_named_where_not():
    generation = parse_generation(load("computed"), "7")
    assert generation["sampler"] == {
        "name": "euler_ancestral",
        "scheduler": "normal",
        "steps": "unknown (linked from node 24, IntMathRuntimeMetadata)",
        "cfg": 8,
        "seed": 1007,  # PrimitiveInt 1000 + 7, computed by the parser
        "denoise": 1,
    }
    prompt = load("computed")
    leaves = walk_generation(prompt, "7", StaticValues(prompt))
    assert leaves["sampler.steps"].unknown == COMPUTED_UPSTREAM
    assert leaves["sampler.seed"].unknown is None


def test_a_link_to_a_node_of_unknown_class_is_unknown_never_the_class_name():
    prompt = load("txt2img")
    prompt["30"] = {"class_type": "CR Seed", "inputs": {"seed": 5}}
    prompt["3"]["inputs"]["seed"] = ["30", 0]
    assert parse_generation(prompt, "9")["sampler"]["seed"] == "unknown (linked from node 30, CR Seed)"


def test_a_link_to_a_missing_node_or_a_cycle_is_a_link_the_parser_could_not_follow():
    prompt = load("txt2img")
    prompt["3"]["inputs"]["seed"] = ["99", 0]
    prompt["31"] = {"class_type": "PrimitiveInt", "inputs": {"value": ["32", 0]}}
    prompt["32"] = {"class_type": "PrimitiveInt", "inputs": {"value": ["31", 0]}}
    prompt["3"]["inputs"]["steps"] = ["31", 0]
    leaves = walk_generation(prompt, "9", StaticValues(prompt))
    assert leaves["sampler.seed"].value == "unknown (linked from node 99, not in prompt)"
    assert leaves["sampler.seed"].unknown == UNFOLLOWABLE
    assert leaves["sampler.steps"].unknown == UNFOLLOWABLE
    assert leaves["sampler.steps"].value.startswith("unknown (linked from node 3")


def test_sampler_custom_advanced_collects_noise_guider_sampler_and_sigmas():
    assert parse_generation(load("custom_advanced"), "17") == {
        "model": "flux1-dev.safetensors",
        "vae": "ae.safetensors",
        # ModelSamplingFlux has no rule: the walk goes through its "model" input.
        "loras": [{"name": "flux_realism.safetensors", "strength_model": 0.9}],
        "positive": "a cozy cabin in the snow",
        "negative": "",
        "guidance": 3.5,
        "sampler": {
            "name": "euler",
            "scheduler": "simple",
            "steps": 20,
            "cfg": 1.0,
            "seed": 987654321,
            "denoise": 1.0,
            "add_noise": True,
        },
        "size": {"width": 1024, "height": 768},
        "batch_size": 1,
    }


def test_a_sigma_scheduler_without_a_scheduler_input_names_itself():
    prompt = load("custom_advanced")
    prompt["12"] = {
        "class_type": "KarrasScheduler",
        "inputs": {"steps": 30, "sigma_max": 14.6, "sigma_min": 0.03, "rho": 7.0},
    }
    prompt["10"] = {"class_type": "DisableNoise", "inputs": {}}
    assert parse_generation(prompt, "17")["sampler"] == {
        "name": "euler",
        "scheduler": "karras",
        "steps": 30,
        "cfg": 1.0,
        "add_noise": False,
    }


def test_titles_lie_polarity_comes_from_the_sampler_input_the_conditioning_reaches():
    generation = parse_generation(load("titles_lie"), "12")
    # Node 3 is titled "Positive" but reaches the sampler's negative through output 1 of the
    # ControlNet; the combined positive holds both texts of the combiner, first input first.
    assert generation["positive"] == "sunny meadow, wildflowers\noil painting"
    assert generation["negative"] == "rain, fog"
    assert "init_image" not in generation  # the ControlNet's image is not an img2img source


def test_img2img_names_the_loaded_image_through_the_encode():
    generation = parse_generation(load("img2img"), "9")
    assert generation["init_image"] == "street.png"
    assert generation["sampler"]["denoise"] == 0.6
    assert "size" not in generation


def test_extra_rules_teach_the_parser_another_pack():
    prompt = load("txt2img")
    prompt["3"]["class_type"] = "KSampler (Efficient)"
    prompt["30"] = {"class_type": "Seed (rgthree)", "inputs": {"seed": 777}}
    prompt["3"]["inputs"]["seed"] = ["30", 0]
    # Without a rule the sampler is walked through by its latent input: only the size is found.
    assert parse_generation(prompt, "9") == {"size": {"width": 512, "height": 768}, "batch_size": 1}
    rules = extend(
        {
            "KSampler (Efficient)": RULES["KSampler"],
            "Seed (rgthree)": PassThrough({0: "seed"}),
            "CheckpointLoaderSimple": Node(fields={"model": "ckpt_name", "model_kind": "ckpt_name"}),
        }
    )
    generation = parse_generation(prompt, "9", rules=rules)
    assert generation["sampler"]["seed"] == 777
    assert generation["model_kind"] == "v1-5-pruned-emaonly.safetensors"


def test_the_result_does_not_depend_on_key_order_or_integer_link_ids():
    prompt = load("loras")
    shuffled = {nid: prompt[nid] for nid in sorted(prompt, reverse=True)}
    for node in shuffled.values():
        node["inputs"] = dict(reversed(list(node["inputs"].items())))
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                node["inputs"][name] = [int(value[0]), value[1]]
    assert json.dumps(parse_generation(shuffled, "60")) == json.dumps(parse_generation(prompt, "60"))


def test_a_save_node_that_is_not_in_the_prompt_describes_nothing():
    assert parse_generation(load("txt2img"), "404") == {}
    assert parse_generation({}, "9") == {}


def test_nest_builds_dicts_and_lists_from_paths():
    assert nest({"a.b": 1, "l[1].x": 2, "l[0].x": 3, "p[0].l[0].n": 4}) == {
        "a": {"b": 1},
        "l": [{"x": 3}, {"x": 2}],
        "p": [{"l": [{"n": 4}]}],
    }


def test_dual_cfg_and_basic_guiders_find_their_conditioning_by_input():
    prompt = load("custom_advanced")
    prompt["20"] = {
        "class_type": "CLIPTextEncode",
        "inputs": {"text": "warm light", "clip": ["2", 0]},
    }
    prompt["15"] = {
        "class_type": "DualCFGGuider",
        "inputs": {
            "model": ["5", 0],
            "cond1": ["7", 0],
            "cond2": ["20", 0],
            "negative": ["9", 0],
            "cfg_conds": 5.0,
            "cfg_cond2_negative": 2.0,
            "style": "regular",
        },
    }
    dual = parse_generation(prompt, "17")
    assert dual["positive"] == "a cozy cabin in the snow\nwarm light"
    assert dual["negative"] == ""
    assert (dual["sampler"]["cfg"], dual["sampler"]["cfg_cond2_negative"]) == (5.0, 2.0)
    prompt["15"] = {
        "class_type": "BasicGuider",
        "inputs": {"model": ["5", 0], "conditioning": ["7", 0]},
    }
    basic = parse_generation(prompt, "17")
    assert basic["positive"] == "a cozy cabin in the snow"
    assert "negative" not in basic and "cfg" not in basic["sampler"]
    assert basic["loras"] == [{"name": "flux_realism.safetensors", "strength_model": 0.9}]


def test_sampler_custom_takes_its_sampler_and_sigmas_from_linked_nodes():
    prompt = load("custom_advanced")
    prompt["14"] = {
        "class_type": "SamplerCustom",
        "inputs": {
            "model": ["5", 0],
            "add_noise": True,
            "noise_seed": 31337,
            "cfg": 3.0,
            "positive": ["7", 0],
            "negative": ["9", 0],
            "sampler": ["11", 0],
            "sigmas": ["12", 0],
            "latent_image": ["13", 0],
        },
    }
    generation = parse_generation(prompt, "17")
    assert generation["sampler"] == {
        "seed": 31337,
        "cfg": 3.0,
        "add_noise": True,
        "name": "euler",
        "scheduler": "simple",
        "steps": 20,
        "denoise": 1.0,
    }
    assert generation["positive"] == "a cozy cabin in the snow"
