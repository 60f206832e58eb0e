"""A real SD1.5 txt2img graph (random weights, CPU) queued in the UI: badges in seconds and
milliseconds, the runtime values the image records, and a disagreement the parser cannot avoid.

The seed reaches KSampler from a node that hashes a text (the integration tests' node pack, as
seed nodes of many packs do): the static parser sees a link, only the run knows 833.
The screenshots of this module are the README's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import assert_shows

WORKFLOW = json.loads((Path(__file__).resolve().parent / "workflows" / "txt2img.json").read_text())
RUN_TIMEOUT_MS = 900_000  # loading a 2.1 GB checkpoint on a shared CPU


@pytest.fixture(scope="module")
def server(comfy_server, installation) -> Any:
    from runtime_metadata.harness.models import ensure_models

    models = ensure_models(installation)
    testpack = Path(__file__).resolve().parents[1] / "integration" / "testpack"
    server = comfy_server(enabled=True, name="txt2img", models=models, packs={"testpack": testpack})
    server.models = models
    yield server
    comfy_server.stop("txt2img")  # now: it holds about 5 GB of weights


def test_a_txt2img_run_shows_seconds_values_and_the_computed_seed(server, open_page) -> None:
    page = open_page(server)
    page.load_workflow(WORKFLOW)
    page.set_widget(1, "ckpt_name", server.models.checkpoint_name)
    prompt_id = page.run_workflow(timeout_ms=RUN_TIMEOUT_MS)
    run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
    assert run["status"] == "success", run
    nodes = {n["node_id"]: n for n in run["nodes"]}
    badges = page.badges()
    assert sorted(badges) == sorted(nodes)
    for node_id, node in nodes.items():
        assert_shows(badges[node_id], "", node["duration_ms"])
    assert any(badges[n].endswith(" s") for n in nodes), badges  # the checkpoint and the sampler take seconds
    # The graph below the Vue frontend's tab bar, where the README's crop expects it.
    top = 130 if page.generation == "modern" else 60
    page.evaluate(f"window.app.canvas.ds.scale = 0.8; window.app.canvas.ds.offset = [20, {top}]")
    assert page.redraw() == len(nodes)
    page.screenshot("txt2img-badges")

    panel = page.open_runs_panel()
    panel.locator(f"[data-rtm=run-detail][data-prompt-id='{prompt_id}']").wait_for()
    generation = panel.locator("[data-rtm=generation]").inner_text()
    assert "sampler.seed\t833" in generation, generation
    assert "sampler.steps\t2" in generation, generation
    disagreements = panel.locator("[data-rtm=disagreements]").inner_text()
    seed_rows = [line for line in disagreements.splitlines() if "seed" in line]
    assert seed_rows and "833" in seed_rows[0], disagreements
    page.page.set_viewport_size({"width": 1400, "height": 1500})  # the whole run detail in view
    page.page.wait_for_timeout(300)
    page.screenshot("txt2img-panel")
    assert page.console.ours() == [], page.console.ours()
