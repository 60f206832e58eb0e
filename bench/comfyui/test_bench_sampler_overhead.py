"""Capture overhead on a graph with a real sampler: it should be lost in the noise.

A real SD1.5 txt2img graph on the CPU (the random-weight checkpoint of ``harness/models.py``:
checkpoint loader, two text encodes, a 64x64 empty latent, KSampler with one step, VAE decode,
this plugin's save node), queued to a real ComfyUI server by a websocket client and timed from
POST /prompt until ComfyUI says the prompt is done. Each run has a new seed, so the sampler,
the decoder and the save node run every time (the loaders stay cached, as they do for a user).
Capture is switched on and off in ``config.json`` between alternating rounds; after each switch
the previous graph runs again untimed (all cached: it keeps ComfyUI's caches as they are), so
"off" rounds run ComfyUI's own functions. The save node runs in both: "off" measures what a
user gets with capture switched off.

The report gives the on/off ratio of the medians beside the spread of the "off" runs between
their quartiles: capture is lost in the noise when the difference of the medians is smaller.
(Every ~10 s ComfyUI's prompt worker collects garbage before taking the next prompt, which
makes that prompt, on or off, a few hundred milliseconds slower: quartiles, not extremes.) Wall
time alone cannot resolve a cost this small, so the report adds the hooks' own time per run,
from the plugin's performance log line (``runtime_hooks.log_performance``).
"""

from __future__ import annotations

import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from overhead import Client, rounds_within, server_env  # bench/comfyui/overhead.py (this folder is on sys.path)

ROUNDS = 15
BUDGET_S = 150.0  # for the timed rounds, where one step takes seconds (ComfyUI 0.3.64 on a busy CPU)


#: The hooks' own time per run, as the plugin logs it (see capture.hooks._log_performance).
PERFORMANCE_LINE = re.compile(r"\[AAA Metadata Hooks\] Performance: (\w+)\.\.\. - \d+ calls, total=([0-9.]+)ms")


def settings(enabled: bool) -> dict[str, Any]:
    """config.json: capture on or off, with the performance line logged for every captured run."""
    return {"runtime_hooks": {"enabled": enabled, "log_performance": True}, "debug": {"enabled": True}}


def txt2img(checkpoint: str, seed: int) -> dict[str, Any]:
    """The smallest real txt2img graph: one sampler step at 64x64."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": seed,
                "steps": 1,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {
            "class_type": "SaveImageRuntimeMetadata",
            "inputs": {"images": ["6", 0], "filename_prefix": "bench-sampler"},
        },
    }


@pytest.fixture(scope="module")
def server(comfy, installation, tmp_path_factory):
    import runtime_metadata
    from runtime_metadata.harness import ComfyServer
    from runtime_metadata.harness.models import ensure_models

    config = tmp_path_factory.mktemp("bench-sampler-config") / "config.json"
    config.write_text(json.dumps(settings(True)))
    models = ensure_models(installation)
    os.environ.pop("AAA_METADATA_ENABLE_HOOKS", None)  # it would override config.json in the server
    plugin_dir = Path(runtime_metadata.__file__).resolve().parent
    with ComfyServer(
        installation,
        plugin_dir,
        env=server_env(config),
        model_dirs=models.model_dirs(),
    ) as srv:
        yield srv, config, models.checkpoint_name


def test_txt2img_with_a_real_sampler_capture_on_vs_off(benchmark, server, monkeypatch) -> None:
    srv, config, checkpoint = server
    monkeypatch.delenv("AAA_METADATA_ENABLE_HOOKS", raising=False)
    client = Client(srv.url)
    client.open()
    seeds = iter(range(1, 10_000_000))
    last_seed = [0]

    def next_graph() -> dict[str, Any]:
        last_seed[0] = next(seeds)
        return txt2img(checkpoint, last_seed[0])

    off_ns: list[int] = []
    on_ids: list[str] = []

    def switch(enabled: bool) -> None:
        config.write_text(json.dumps(settings(enabled)))
        # Untimed: the plugin (un)installs during this one. The same graph and seed as the run
        # before, so every node comes from ComfyUI's cache; any other prompt would make ComfyUI
        # drop the loaded checkpoint (it keeps outputs only of nodes in the current prompt).
        client.run(txt2img(checkpoint, last_seed[0]), timeout=600)

    def off_round() -> tuple[tuple[Any, ...], dict[str, Any]]:
        switch(False)
        off_ns.append(client.run(next_graph(), timeout=600)[0])
        switch(True)
        return (), {}

    def on_round() -> None:
        on_ids.append(client.run(next_graph(), timeout=600)[1])

    try:
        client.run(next_graph(), timeout=600)  # loads the checkpoint (seconds)
        off_round()  # warms both paths
        on_round()
        rounds = rounds_within(BUDGET_S, 2 * off_ns[-1] / 1e9, ROUNDS)
        off_ns.clear()
        benchmark.extra_info["rounds"] = rounds
        benchmark.pedantic(on_round, setup=off_round, rounds=rounds, iterations=1)
        status = srv.get_json("/runtime_metadata/status")
    finally:
        client.close()
    # The performance lines of the timed "on" runs (the line names the prompt by its id's start).
    timed = {prompt_id[:8] for prompt_id in on_ids[-rounds:]}
    own_ms = [float(total) for short_id, total in PERFORMANCE_LINE.findall(srv.log_text()) if short_id in timed]
    assert len(own_ms) == rounds, "every captured run logs its performance line"

    on_median = benchmark.stats.stats.median
    off_s = [ns / 1e9 for ns in off_ns]
    off_median = statistics.median(off_s)
    q1, _, q3 = statistics.quantiles(off_s, n=4)
    added = on_median - off_median
    benchmark.extra_info.update(
        off_median_s=round(off_median, 4),
        on_median_s=round(on_median, 4),
        ratio_on_to_off=round(on_median / off_median, 4),
        added_ms=round(added * 1e3, 2),
        off_interquartile_ms=round((q3 - q1) * 1e3, 2),
        lost_in_the_noise=abs(added) < q3 - q1,
        hooks_own_ms_median=round(statistics.median(own_ms), 3),
    )
    print(
        f"\nreal sampler (txt2img, 1 step, 64x64): off {off_median:.3f} s, on {on_median:.3f} s "
        f"(x{on_median / off_median:.4f}, {added * 1e3:+.1f} ms); the off runs alone spread over "
        f"{(q3 - q1) * 1e3:.1f} ms between their quartiles; the hooks' own time: "
        f"{statistics.median(own_ms):.3f} ms per run ({statistics.median(own_ms) / 1e3 / on_median:.4%} of it)"
    )
    assert status["capture"]["active"] is True and status["capture"]["disabled_reason"] is None
    assert on_ids[-1] in status["runs_kept"]
