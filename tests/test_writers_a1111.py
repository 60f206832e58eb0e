"""The A1111 infotext: exact strings for the canonical generation dict, names, quoting, omissions."""

from __future__ import annotations

import copy

import pytest

from runtime_metadata.writers.a1111 import (
    model_stem,
    number,
    parameters,
    quote,
    sampler_name,
    schedule_type,
)

GENERATION = {
    "model": {"name": "sd15.safetensors", "hash": "a1b2c3d4e5"},
    "vae": {"name": "vae-ft-mse-840000.safetensors", "hash": "735e4c3a44"},
    "loras": [
        {
            "name": "detail.safetensors",
            "strength_model": 0.8,
            "strength_clip": 0.8,
            "hash": "0123456789",
        },
        {
            "name": "style/ink.safetensors",
            "strength_model": 0.5,
            "strength_clip": 1.0,
            "hash": "abcdefabcd",
        },
    ],
    "positive": "a cat",
    "negative": "blurry",
    "sampler": {
        "name": "dpmpp_2m",
        "scheduler": "karras",
        "steps": 20,
        "cfg": 7.0,
        "seed": 42,
        "denoise": 1.0,
    },
    "size": {"width": 512, "height": 768},
    "batch_size": 1,
    "clip_skip": 2,
}


def test_full_generation_gives_the_exact_a1111_string() -> None:
    assert parameters(GENERATION) == (
        "a cat\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, "
        "Model hash: a1b2c3d4e5, Model: sd15, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000, Clip skip: 2, "
        'Lora hashes: "detail: 0123456789, ink: abcdefabcd", '
        'Hashes: {"model": "a1b2c3d4e5", "vae": "735e4c3a44", "lora:detail": "0123456789", "lora:ink": "abcdefabcd"}, '
        "Version: ComfyUI"
    )


def test_missing_fields_are_simply_omitted() -> None:
    gen = {"positive": "a dog", "sampler": {"name": "euler", "steps": 8, "seed": 1}}
    assert parameters(gen) == "a dog\nNegative prompt: \nSteps: 8, Sampler: Euler, Seed: 1, Version: ComfyUI"


def test_none_values_are_omitted_like_missing_ones() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["vae"] = None
    gen["loras"] = None
    gen["clip_skip"] = None
    gen["sampler"]["cfg"] = None
    gen["model"]["hash"] = None
    text = parameters(gen)
    assert text is not None
    settings = text.splitlines()[-1]
    assert (
        settings
        == "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, Seed: 42, Size: 512x768, Model: sd15, Version: ComfyUI"
    )


@pytest.mark.parametrize(
    "gen",
    [
        {},
        {"positive": "x"},
        {"sampler": None},
        {"sampler": {}},
        {"sampler": {"scheduler": "karras"}},
    ],
)
def test_no_sampler_info_means_no_parameters_string(gen: dict) -> None:
    assert parameters(gen) is None


def test_denoise_below_one_is_written_and_one_is_not() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["sampler"]["denoise"] = 0.55
    assert ", Denoising strength: 0.55, Clip skip: 2," in parameters(gen)  # type: ignore[operator]
    assert "Denoising strength" not in parameters(GENERATION)  # type: ignore[operator]


def test_comfyui_clip_skip_sign_and_no_skip() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["clip_skip"] = -2
    assert "Clip skip: 2," in parameters(gen)  # type: ignore[operator]
    gen["clip_skip"] = -1
    assert "Clip skip" not in parameters(gen)  # type: ignore[operator]


def test_values_with_separators_are_json_quoted() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["model"]["name"] = "models/sd: v1, pruned.safetensors"
    gen["sampler"]["name"] = "my,sampler"
    text = parameters(gen)
    assert 'Model: "sd: v1, pruned",' in text  # type: ignore[operator]
    assert 'Sampler: "my,sampler",' in text  # type: ignore[operator]


def test_multiline_prompts_keep_their_lines() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["positive"] = "line one\nline two, 猫"
    text = parameters(gen)
    assert text is not None and text.startswith("line one\nline two, 猫\nNegative prompt: blurry\nSteps: 20, ")


@pytest.mark.parametrize(
    ("comfy", "a1111"),
    [
        ("euler", "Euler"),
        ("euler_ancestral", "Euler a"),
        ("heun", "Heun"),
        ("dpm_2", "DPM2"),
        ("dpm_2_ancestral", "DPM2 a"),
        ("lms", "LMS"),
        ("dpm_fast", "DPM fast"),
        ("dpm_adaptive", "DPM adaptive"),
        ("dpmpp_2s_ancestral", "DPM++ 2S a"),
        ("dpmpp_sde", "DPM++ SDE"),
        ("dpmpp_sde_gpu", "DPM++ SDE"),
        ("dpmpp_2m", "DPM++ 2M"),
        ("dpmpp_2m_sde", "DPM++ 2M SDE"),
        ("dpmpp_2m_sde_gpu", "DPM++ 2M SDE"),
        ("dpmpp_3m_sde", "DPM++ 3M SDE"),
        ("ddim", "DDIM"),
        ("ddpm", "DDPM"),
        ("uni_pc", "UniPC"),
        ("uni_pc_bh2", "UniPC"),
        ("lcm", "LCM"),
        ("some_new_sampler", "some_new_sampler"),
    ],
)
def test_sampler_names(comfy: str, a1111: str) -> None:
    assert sampler_name(comfy) == a1111


@pytest.mark.parametrize(
    ("comfy", "a1111"),
    [
        ("normal", None),
        ("karras", "Karras"),
        ("exponential", "Exponential"),
        ("sgm_uniform", "SGM Uniform"),
        ("simple", "Simple"),
        ("ddim_uniform", "DDIM"),
        ("beta", "Beta"),
        ("kl_optimal", "KL Optimal"),
    ],
)
def test_scheduler_names(comfy: str, a1111: str | None) -> None:
    assert schedule_type(comfy) == a1111


def test_normal_scheduler_writes_no_schedule_type() -> None:
    gen = copy.deepcopy(GENERATION)
    gen["sampler"]["scheduler"] = "normal"
    assert "Schedule type" not in parameters(gen)  # type: ignore[operator]


def test_helpers() -> None:
    assert model_stem("SDXL\\juggernaut_v9.safetensors") == "juggernaut_v9"
    assert model_stem("flux1-dev-Q8_0.gguf") == "flux1-dev-Q8_0"
    assert model_stem("plain") == "plain"
    assert number(7.0) == "7" and number(7.5) == "7.5" and number(0.1) == "0.1" and number(20) == "20"
    assert quote("plain text") == "plain text" and quote("a:b") == '"a:b"' and quote("猫,犬") == '"猫,犬"'
