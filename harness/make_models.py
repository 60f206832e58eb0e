"""Write random-weight SD1.5 model files that ComfyUI loads as the real thing.

Runs under ComfyUI's own interpreter (`Installation.python`), as a subprocess of
`harness/models.py`, which owns caching and locking:

    <comfyui venv python> make_models.py --comfyui-root ROOT --out DIR

ComfyUI tells model types apart by tensor names and shapes only, so a checkpoint holding
SD1.5's tensors (filled with small random numbers) is loaded, patched by LoRAs and sampled
exactly like an SD1.5 checkpoint.  The names and shapes come from ComfyUI's own classes,
built on the `meta` device (no memory is allocated for them); the values are streamed into
safetensors files one tensor at a time, reproducibly (the same bytes on every run with the same
torch).  Nothing is downloaded.

Files written into DIR (names are the constants below):
  checkpoint  SD1.5 layout as in v1-5-pruned-emaonly.safetensors:
              model.diffusion_model.*, cond_stage_model.transformer.text_model.*,
              first_stage_model.*   (fp16)
  LoRA        kohya-style SD1.5 LoRA, rank 4: lora_unet_* / lora_te_* keys with
              .lora_down.weight, .lora_up.weight and .alpha (fp16)
  VAE         a standalone SD1.x VAE (encoder.*, decoder.*, quant_conv.*, post_quant_conv.*),
              different random values from the checkpoint's VAE (fp16)

The last line on stdout is a JSON summary; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from pathlib import Path

CHECKPOINT_NAME = "rtmeta-sd15-random.safetensors"
LORA_NAME = "rtmeta-sd15-lora-random.safetensors"
VAE_NAME = "rtmeta-sd15-vae-random.safetensors"

WEIGHT_STD = 0.02
LORA_RANK = 4
LORA_STD = 0.05

# Real SD1.5 layer names in kohya's (diffusers-style) LoRA naming, which is what most SD1.5
# LoRAs in the wild use.  Every key must map to a weight in ComfyUI's key map; main() checks.
LORA_UNET_LAYERS = (
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_v",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k",
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_v",
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k",
    "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_v",
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_attn2_to_q",
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0_ff_net_2",
)
LORA_TE_LAYERS = (
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj",
    "lora_te_text_model_encoder_layers_0_self_attn_v_proj",
    "lora_te_text_model_encoder_layers_10_mlp_fc1",
    "lora_te_text_model_encoder_layers_10_mlp_fc2",
)

SYNTHETIC_NOTE = (
    "Random weights with Stable Diffusion 1.5's tensor names and shapes, written by "
    "comfyui-runtime-metadata's test harness; not a trained model."
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def import_comfy(root: Path):  # returns (torch, comfy, AutoencoderKL)
    sys.path.insert(0, str(root))
    # comfy.model_management picks a device at import time and asks CUDA unless told
    # otherwise; the CPU torch wheel has no CUDA, so say --cpu before anything imports it.
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.lora
    import comfy.model_detection
    import comfy.sd1_clip
    import comfy.supported_models
    import torch
    from comfy.ldm.models.autoencoder import AutoencoderKL

    return torch, comfy, AutoencoderKL


def sd15_unet_config() -> dict[str, object]:
    # What comfy.model_detection.detect_unet_config returns for a real SD1.5 checkpoint (the
    # same dict model_detection.py lists as SD15 for diffusers-format UNets).
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "out_channels": 4,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "in_channels": 4,
        "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2],
        "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
        "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1,
        "use_linear_in_transformer": False,
        "context_dim": 768,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
    }


def norm_param_names(torch, module, prefix: str) -> set[str]:
    """Names (with prefix) of the weights/biases that belong to normalisation layers."""
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm, torch.nn.BatchNorm2d)
    names = set()
    for name, sub in module.named_modules():
        if isinstance(sub, norms):
            for param, _ in sub.named_parameters(recurse=False):
                names.add(f"{prefix}{name}.{param}")
    return names


def kind_of(name: str, norms: set[str]) -> str:
    """How to fill a tensor: norm weights 1, biases 0, everything else small random values."""
    if name in norms:
        return "one" if name.endswith(".weight") else "zero"
    return "zero" if name.endswith(".bias") else "random"


def tensor_specs(torch, module, prefix: str):
    """[(name, shape, kind)] for a meta module."""
    norms = norm_param_names(torch, module, prefix)
    return [(prefix + name, tuple(t.shape), kind_of(prefix + name, norms)) for name, t in module.state_dict().items()]


def values(torch, specs, seed: int, std: float):
    """Yield (name, fp16 tensor) in sorted name order; random ones from a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    for name, shape, kind in sorted(specs):
        if kind == "one":
            yield name, torch.ones(shape, dtype=torch.float16)
        elif kind == "zero":
            yield name, torch.zeros(shape, dtype=torch.float16)
        elif kind == "alpha":
            yield name, torch.full(shape, float(LORA_RANK), dtype=torch.float16)
        else:
            tensor = torch.empty(shape, dtype=torch.float16)
            yield name, tensor.normal_(0.0, std, generator=generator)


def write_safetensors(torch, path: Path, groups, metadata: dict[str, str]) -> dict[str, int]:
    """Stream fp16 tensors into a safetensors file; groups = [(specs, seed, std)].

    Written by hand rather than with safetensors.torch.save_file for two reasons: one tensor at
    a time (save_file needs all 2.1 GB in memory at once), and byte-for-byte reproducible
    files (save_file's metadata goes through a Rust HashMap, so its order, and with it the
    file's sha256, changes from run to run).  The format: u64 LE header length, JSON header
    (padded with spaces to a multiple of 8), then the tensors' bytes back to back.
    """
    header: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    offset = 0
    count = params = 0
    for specs, _, _ in groups:
        for name, shape, _ in sorted(specs):
            numel = 1
            for dim in shape:
                numel *= dim
            end = offset + 2 * numel
            header[name] = {"dtype": "F16", "shape": list(shape), "data_offsets": [offset, end]}
            offset = end
            count += 1
            params += numel
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for specs, seed, std in groups:
            for name, tensor in values(torch, specs, seed, std):
                assert list(tensor.shape) == header[name]["shape"], name  # type: ignore[index]
                out.write(tensor.contiguous().numpy().tobytes())
        written = out.tell()
    if written != 8 + len(raw) + offset:
        raise SystemExit(f"{path.name}: wrote {written} bytes, expected {8 + len(raw) + offset}")
    # Read it back with the safetensors library, as ComfyUI will.
    from safetensors import safe_open

    with safe_open(str(tmp), framework="pt") as check:
        names = list(check.keys())
        if len(names) != count or check.metadata() != metadata:
            raise SystemExit(f"{path.name}: safetensors reads back {len(names)} tensors, expected {count}")
        check.get_tensor(names[-1])
    os.replace(tmp, path)
    return {"bytes": path.stat().st_size, "tensors": count, "parameters": params}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-root", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--recipe", default="0", help="recorded in the files' metadata")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    torch, comfy, AutoencoderKL = import_comfy(args.comfyui_root.resolve())
    torch.set_grad_enabled(False)
    log(f"imported ComfyUI from {args.comfyui_root} in {time.perf_counter() - started:.1f}s")
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    # --- names and shapes, from ComfyUI's own classes on the meta device
    t0 = time.perf_counter()
    model_config = comfy.supported_models.SD15(sd15_unet_config())
    model_config.set_inference_dtype(torch.float16, None)
    meta = torch.device("meta")
    with meta:
        base_model = model_config.get_model({}, "", device=meta)
        clip_model = comfy.sd1_clip.SD1ClipModel(device=meta, dtype=torch.float16)
        vae_model = AutoencoderKL(
            ddconfig={
                "double_z": True,
                "z_channels": 4,
                "resolution": 256,
                "in_channels": 3,
                "out_ch": 3,
                "ch": 128,
                "ch_mult": [1, 2, 4, 4],
                "num_res_blocks": 2,
                "attn_resolutions": [],
                "dropout": 0.0,
            },
            embed_dim=4,
        )
    unet_specs = tensor_specs(torch, base_model.diffusion_model, "model.diffusion_model.")
    # ComfyUI keeps the text encoder under clip_l.*; SD1.5 checkpoints under
    # cond_stage_model.*, without text_projection/logit_scale (ComfyUI's own save path drops
    # them the same way, so loading prints the usual "clip missing" warning for them).
    clip_state = model_config.process_clip_state_dict_for_saving(dict(clip_model.state_dict()))
    clip_norms = {n.replace("clip_l.", "cond_stage_model.", 1) for n in norm_param_names(torch, clip_model, "")}
    clip_specs = [(n, tuple(t.shape), kind_of(n, clip_norms)) for n, t in clip_state.items()]
    vae_specs = tensor_specs(torch, vae_model, "")
    log(f"built meta models in {time.perf_counter() - t0:.1f}s")

    # --- self-checks: ComfyUI must see SD1.5 in these names/shapes, and take every LoRA key
    meta_sd = {name: torch.empty(shape, device=meta) for name, shape, _ in unet_specs}
    detected = comfy.model_detection.model_config_from_unet(meta_sd, "model.diffusion_model.")
    if type(detected) is not comfy.supported_models.SD15:
        raise SystemExit(f"self-check failed: ComfyUI detects {type(detected).__name__}, not SD15")
    unet_keys = comfy.lora.model_lora_keys_unet(base_model, {})
    clip_keys = comfy.lora.model_lora_keys_clip(clip_model, {})
    # ComfyUI's names: diffusion_model.* (in the BaseModel) and clip_l.* (in SD1ClipModel).
    shapes = {n: tuple(t.shape) for n, t in base_model.state_dict().items()}
    shapes.update((n, tuple(t.shape)) for n, t in clip_model.state_dict().items())
    lora_specs = []
    for layer in LORA_UNET_LAYERS + LORA_TE_LAYERS:
        target = unet_keys.get(layer) or clip_keys.get(layer)
        if target is None:
            raise SystemExit(f"self-check failed: ComfyUI has no weight for LoRA key {layer}")
        shape = shapes[target]
        if len(shape) != 2:
            raise SystemExit(f"self-check failed: {layer} -> {target} is not a linear layer")
        out_features, in_features = shape
        lora_specs.append((f"{layer}.lora_down.weight", (LORA_RANK, in_features), "random"))
        lora_specs.append((f"{layer}.lora_up.weight", (out_features, LORA_RANK), "random"))

    # --- values
    files: dict[str, object] = {}
    summary: dict[str, object] = {"files": files}
    base_meta = {
        "format": "pt",
        "runtime_metadata.synthetic": SYNTHETIC_NOTE,
        "runtime_metadata.recipe": str(args.recipe),
    }

    t0 = time.perf_counter()
    vae_in_ckpt = [("first_stage_model." + n, s, k) for n, s, k in vae_specs]
    info = write_safetensors(
        torch,
        out / CHECKPOINT_NAME,
        [(unet_specs, 1, WEIGHT_STD), (clip_specs, 2, WEIGHT_STD), (vae_in_ckpt, 3, WEIGHT_STD)],
        {**base_meta, "modelspec.architecture": "stable-diffusion-v1"},
    )
    files[CHECKPOINT_NAME] = {**info, "seconds": round(time.perf_counter() - t0, 2)}
    log(f"wrote {CHECKPOINT_NAME}: {info['bytes'] / 1e6:.0f} MB, {info['tensors']} tensors")

    t0 = time.perf_counter()
    alphas = [(f"{layer}.alpha", (), "alpha") for layer in LORA_UNET_LAYERS + LORA_TE_LAYERS]
    lora_meta = {
        **base_meta,
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(LORA_RANK),
        "ss_network_alpha": str(float(LORA_RANK)),
        "ss_base_model_version": "sd_v1",
        "ss_output_name": LORA_NAME.removesuffix(".safetensors"),
    }
    info = write_safetensors(torch, out / LORA_NAME, [(lora_specs + alphas, 4, LORA_STD)], lora_meta)
    files[LORA_NAME] = {**info, "seconds": round(time.perf_counter() - t0, 2)}

    t0 = time.perf_counter()
    info = write_safetensors(torch, out / VAE_NAME, [(vae_specs, 5, WEIGHT_STD)], base_meta)
    files[VAE_NAME] = {**info, "seconds": round(time.perf_counter() - t0, 2)}

    summary["seconds"] = round(time.perf_counter() - started, 2)
    summary["torch"] = torch.__version__
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
