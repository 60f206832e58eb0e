"""The Runs panel on a real server: recent runs, one run's waterfall, selecting nodes, history."""

from __future__ import annotations

from typing import Any

from .helpers import demo_workflow


def open_run(page: Any, prompt_id: str) -> Any:
    """Open the Runs panel and the detail of prompt_id; the panel's locator."""
    panel = page.open_runs_panel()
    row = panel.locator(f"[data-rtm=run-row][data-prompt-id='{prompt_id}']")
    row.wait_for()
    row.click()
    panel.locator(f"[data-rtm=run-detail][data-prompt-id='{prompt_id}']").wait_for()
    return panel


def test_the_panel_lists_the_run_and_its_waterfall_has_a_bar_per_executed_node(comfy_server, open_page) -> None:
    server = comfy_server(enabled=True)
    page = open_page(server)
    page.load_workflow(demo_workflow())
    prompt_id = page.run_workflow()
    run = server.get_json(f"/runtime_metadata/runs/{prompt_id}")
    panel = open_run(page, prompt_id)
    row = panel.locator(f"[data-rtm=run-row][data-prompt-id='{prompt_id}']")
    assert row.locator(".rtm-dot.success").count() == 1
    executed = [n for n in run["nodes"] if n["status"] == "executed"]
    assert executed
    waterfall = panel.locator("[data-rtm=waterfall]")
    assert waterfall.locator("rect.rtm-bar").count() == len(executed)
    assert waterfall.locator("[data-rtm=wf-row]").count() == len(run["nodes"])
    # Bars start where the nodes started, in proportion to the run: the last starts last.
    starts = [
        float(x) for x in waterfall.locator("rect.rtm-bar").evaluate_all("els => els.map(e => e.getAttribute('x'))")
    ]
    assert starts == sorted(starts)
    # The run's event log, as its download link fetches it: the same bytes as the file kept.
    href = panel.locator("[data-rtm=run-detail] a[download]").get_attribute("href")
    response = page.page.request.get(server.url + href)
    assert response.status == 200
    assert response.body() == (server.workdir / "rtlogs" / f"{prompt_id}.rtlog").read_bytes()
    page.screenshot("panel")
    assert page.console.ours() == [], page.console.ours()


def test_clicking_a_row_selects_the_node_and_centres_it(comfy_server, open_page) -> None:
    server = comfy_server(enabled=True)
    page = open_page(server)
    page.load_workflow(demo_workflow())
    prompt_id = page.run_workflow()
    panel = open_run(page, prompt_id)
    page.evaluate("window.app.canvas.ds.offset = [-3000, -2000]; window.app.canvas.setDirty(true, true)")
    panel.locator("[data-rtm=wf-row][data-node-id='3']").click()
    selected = page.evaluate("Object.keys(window.app.canvas.selected_nodes ?? {})")
    assert selected == ["3"]
    centre = page.evaluate(
        """() => {
             const c = window.app.canvas, n = window.app.graph.getNodeById(3), s = c.ds.scale;
             const x = (n.pos[0] + n.size[0] / 2 + c.ds.offset[0]) * s;
             const y = (n.pos[1] + n.size[1] / 2 + c.ds.offset[1]) * s;
             const r = c.canvas.getBoundingClientRect();
             return [x - r.width / 2, y - r.height / 2];
           }"""
    )
    assert abs(centre[0]) < 2 and abs(centre[1]) < 2, centre
    assert page.console.ours() == [], page.console.ours()


def test_the_history_survives_a_server_restart(comfy_server, open_page) -> None:
    server = comfy_server(enabled=True, name="restart")
    page = open_page(server)
    page.load_workflow(demo_workflow())
    prompt_id = page.run_workflow()
    page.page.context.close()
    server.stop()
    server.start()  # same workdir, same config.json, same history database
    page = open_page(server)
    panel = page.open_runs_panel()
    row = panel.locator(f"[data-rtm=run-row][data-prompt-id='{prompt_id}']")
    row.wait_for()
    row.click()
    detail = panel.locator(f"[data-rtm=run-detail][data-prompt-id='{prompt_id}']")
    detail.wait_for()
    assert detail.locator("rect.rtm-bar").count() == 5
    assert page.console.ours() == [], page.console.ours()
