"""The dashboard page (GET /runtime_metadata/dashboard) on a real server with recorded runs."""

from __future__ import annotations

from typing import Any

from .helpers import demo_workflow


def test_the_dashboard_shows_the_history_and_compares_two_runs(comfy_server, open_page, browser) -> None:
    server = comfy_server(enabled=True)
    page = open_page(server)
    ids = []
    for _ in range(2):
        page.load_workflow(demo_workflow())
        ids.append(page.run_workflow())
    page.set_widget(1, "a", -16)  # one failed run for the status chart
    ids.append(page.run_workflow())
    runs = server.get_json("/runtime_metadata/runs?limit=200")
    stats = server.get_json("/runtime_metadata/stats?last=200")

    from .conftest import VIEWPORT, Console

    context = browser.new_context(viewport={"width": VIEWPORT["width"], "height": 1600})
    dash = context.new_page()
    console = Console(dash)
    dash.goto(server.url + "/runtime_metadata/dashboard")
    dash.locator("[data-rtm=compare]").wait_for(timeout=60_000)
    body: Any = dash.locator("[data-rtm=dashboard-body]")
    # Wall time over time: one point per run listed.
    points = body.locator("[data-rtm=wall-time] [data-rtm=point]").count()
    assert points == len([r for r in runs["runs"] if r["wall_ms"] is not None])
    # Runs by status, as the runs route counts them.
    error_count = server.get_json("/runtime_metadata/runs?status=error&limit=1")["total"]
    assert body.locator("[data-rtm=status-count][data-status=error]").inner_text().endswith(f": {error_count}")
    assert error_count >= 1
    # p50/p95 per class type: one row per class the statistics route reports.
    class_rows = body.locator("[data-rtm=class-row]")
    assert class_rows.count() == len(stats["classes"])
    # Hook overhead: one bar per run with a hook time, up to the last 60.
    hooked = [r for r in runs["runs"][:60] if r["hook_ms"] is not None]
    assert body.locator("[data-rtm=hook-overhead] [data-rtm=bar]").count() == len(hooked)
    # The two newest runs compared node by node: the failed one against the one before.
    compare = body.locator("[data-rtm=compare]")
    assert compare.locator("[data-rtm=compare-row]").count() == 5
    assert "failed" in compare.locator("[data-rtm=compare-row][data-node-id='3']").inner_text()
    assert body.locator("[data-rtm=slowest-nodes] tr").count() > 1
    from .conftest import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dash.screenshot(path=str(ARTIFACTS / f"{page.generation}-dashboard.png"), full_page=True)
    assert console.ours() == [], console.ours()
    context.close()
