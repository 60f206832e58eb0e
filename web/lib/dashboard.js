// The dashboard page (GET /runtime_metadata/dashboard): run history across runs, built from the
// same modules as the Runs panel. mountDashboard() is called by dashboard.html; importing this
// module does nothing (ComfyUI imports every .js file under web/ into its own page).

import { barChart, cellBar, pairBar, timeChart } from "./charts.js";
import { createClient } from "./client.js";
import { h, replace } from "./dom.js";
import { formatMs, quantile, shortId } from "./format.js";
import { ensureStyles } from "./styles.js";
import { fetchRun, nodeLabel, runDetail, runsTable, statusBadge, statusView } from "./views.js";

const STATUSES = ["success", "error", "interrupted"];
const PAGE = 100; // runs per request when reading history
const DETAILS_FOR_SLOWEST = 20; // recent runs read in full for "slowest nodes"
const SLOWEST = 12;

/** The server's base path seen from this page (served under /extensions/<name>/). */
export function serverBase(pathname = location.pathname) {
  const at = pathname.indexOf("/extensions/");
  return at >= 0 ? pathname.slice(0, at) : pathname.replace(/\/runtime_metadata\/.*$/, "");
}

async function fetchRuns(client, count, worker) {
  const runs = [];
  let total = 0;
  while (runs.length < count) {
    const page = await client.runs({ limit: Math.min(PAGE, count - runs.length), offset: runs.length, worker });
    total = page.total ?? 0;
    runs.push(...(page.runs || []));
    if (!page.runs?.length || runs.length >= total) break;
  }
  return { runs, total };
}

async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i]);
      } catch (err) {
        out[i] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function section(title, rtm, ...body) {
  return h("section.rtm-card", { dataset: { rtm } }, h("h3", {}, title), ...body);
}

function problem(err) {
  return h("div.rtm-error", { dataset: { rtm: "error" } }, String(err?.message ?? err));
}

/** Node-by-node comparison of runs a and b (each a full run with nodes). */
export function compareRuns(a, b) {
  const key = (n) => String(n.display_id ?? n.node_id);
  const rowsByKey = new Map();
  for (const [side, run] of [["a", a], ["b", b]]) {
    for (const node of run.nodes || []) {
      const k = `${key(node)}|${node.class_type}`;
      const row = rowsByKey.get(k) || { node, a: [], b: [] };
      row[side].push(node);
      rowsByKey.set(k, row);
    }
  }
  const sum = (nodes) => {
    const ran = nodes.filter((n) => Number.isFinite(n.duration_ms) && n.status !== "cached");
    return ran.length ? ran.reduce((acc, n) => acc + n.duration_ms, 0) : null;
  };
  const word = (nodes) => (nodes.length ? [...new Set(nodes.map((n) => n.status))].join("+") : "not run");
  return [...rowsByKey.values()].map((row) => {
    const msA = sum(row.a);
    const msB = sum(row.b);
    return { node: row.node, statusA: word(row.a), statusB: word(row.b), msA, msB, delta: msA !== null && msB !== null ? msB - msA : null };
  });
}

function compareTable(a, b) {
  const rows = compareRuns(a, b);
  const max = Math.max(1, ...rows.map((r) => Math.max(r.msA ?? 0, r.msB ?? 0)));
  const cell = (status, ms) => (ms === null ? status : status === "executed" ? formatMs(ms) : `${status} ${formatMs(ms)}`);
  const deltaText = (d) => {
    if (d === null) return "";
    const text = formatMs(Math.abs(d));
    return /^0\.00 /.test(text) ? text : `${d >= 0 ? "+" : "−"}${text}`;
  };
  return h(
    "table",
    { dataset: { rtm: "compare" } },
    h("tr", {}, h("th", {}, "node"), h("th.num", {}, `A ${shortId(a.prompt_id)}`), h("th.num", {}, `B ${shortId(b.prompt_id)}`), h("th.num", {}, "B − A"),
      h("th", {}, h("span", { style: { color: "#7fb2ff" } }, "A"), " / ", h("span", { style: { color: "#ffb300" } }, "B"))),
    h("tr", {}, h("td", {}, h("b", {}, "whole run")), h("td.num", {}, formatMs(a.wall_ms)), h("td.num", {}, formatMs(b.wall_ms)),
      h("td.num", {}, Number.isFinite(a.wall_ms) && Number.isFinite(b.wall_ms) ? deltaText(b.wall_ms - a.wall_ms) : ""), h("td", {})),
    rows.map((r) =>
      h("tr", { dataset: { rtm: "compare-row", nodeId: r.node.display_id ?? r.node.node_id } },
        h("td.rtm-label", { title: nodeLabel(r.node) }, nodeLabel(r.node)),
        h("td.num", {}, cell(r.statusA, r.msA)),
        h("td.num", {}, cell(r.statusB, r.msB)),
        h(`td.num${deltaText(r.delta).startsWith("+") ? ".rtm-error" : ""}`, {}, deltaText(r.delta)),
        h("td", {}, pairBar(r.msA ?? 0, r.msB ?? 0, max)))),
  );
}

/** Build the dashboard into `root`. */
export async function mountDashboard(root, { client = createClient((route, options) => fetch(serverBase() + route, options)), count = 200 } = {}) {
  ensureStyles(document);
  root.classList.add("rtm");
  const statusBox = h("div");
  const body = h("div.rtm-grid", { dataset: { rtm: "dashboard-body" } });
  const detailBox = h("div", { dataset: { rtm: "dashboard-run" } });
  const countSelect = h("select", { dataset: { rtm: "count" } }, [50, 200, 1000].map((n) => h("option", { value: n, selected: n === count }, `last ${n} runs`)));
  const workerSelect = h("select", { dataset: { rtm: "worker" }, title: "the worker whose runs are shown" }, h("option", { value: "" }, "all workers"));
  client.workers().then((w) => {
    for (const id of w.workers || []) workerSelect.append(h("option", { value: id }, id === w.this_worker ? `${id} (this one)` : id));
    workerSelect.hidden = (w.workers || []).length < 2; // one worker: nothing to choose
  }).catch(() => (workerSelect.hidden = true));
  workerSelect.hidden = true;
  workerSelect.addEventListener("change", () => load());
  replace(root,
    h("header.rtm-toolbar", {}, h("h2", {}, "Runtime metadata — run history"), countSelect, workerSelect,
      h("button.rtm-btn", { onclick: () => load() }, "Refresh"), h("span.rtm-muted", { dataset: { rtm: "loaded" } })),
    statusBox, body, detailBox);
  countSelect.addEventListener("change", () => load());

  /** Show a run (a row of the runs list) in full below the charts. */
  async function showRun(row) {
    try {
      const logUrl = serverBase() + client.logRoute(row.prompt_id, { worker: row.worker_id, run_id: row.run_id });
      replace(detailBox, section(`Run ${shortId(row.prompt_id)}`, "run-section", runDetail(await fetchRun(client, row), { logUrl })));
      detailBox.scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (err) {
      replace(detailBox, problem(err));
    }
  }

  async function loadStatus() {
    const toggle = async (enabled) => {
      const status = await client.setCapture(enabled);
      replace(statusBox, statusView(status?.capture ? status : await client.status(), { onToggle: toggle }));
    };
    try {
      replace(statusBox, statusView(await client.status(), { onToggle: toggle }));
    } catch (err) {
      replace(statusBox, problem(err));
    }
  }

  async function load() {
    const n = Number(countSelect.value) || count;
    const worker = workerSelect.value || undefined;
    root.querySelector("[data-rtm=loaded]").textContent = "loading…";
    await loadStatus();
    let runs;
    let total;
    try {
      ({ runs, total } = await fetchRuns(client, n, worker));
    } catch (err) {
      replace(body, problem(`run history: ${err?.message ?? err}`));
      return;
    }
    const [stats, byStatus, details] = await Promise.all([
      client.stats({ last: n, worker }).catch((err) => ({ error: err })),
      Promise.all(STATUSES.map((st) => client.runs({ status: st, limit: 1, worker }).then((p) => p.total ?? 0).catch(() => null))),
      mapLimit(runs.slice(0, DETAILS_FOR_SLOWEST), 4, (run) => fetchRun(client, run)),
    ]);
    const walls = runs.map((r) => r.wall_ms).filter(Number.isFinite);
    const cards = h("div.rtm-toolbar", { dataset: { rtm: "summary" } },
      h("span", {}, h("b", {}, String(total)), " runs recorded"),
      h("span", {}, "median wall ", h("b", {}, formatMs(quantile(walls, 0.5)))),
      h("span", {}, "p95 wall ", h("b", {}, formatMs(quantile(walls, 0.95)))));

    const points = runs.filter((r) => Number.isFinite(r.wall_ms) && (r.finished_at || r.started_at)).map((r) => ({
      t: Date.parse(r.finished_at || r.started_at), y: r.wall_ms, status: r.status, run: r,
      title: `${shortId(r.prompt_id)} ${r.status}: ${formatMs(r.wall_ms)}`,
    }));
    const recent = [...runs].reverse().slice(-60);
    const hooks = recent.filter((r) => Number.isFinite(r.hook_ms)).map((r) => ({
      label: shortId(r.prompt_id), value: r.hook_ms, run: r,
      title: `${shortId(r.prompt_id)}: hooks ${formatMs(r.hook_ms)}${r.wall_ms ? ` (${((100 * r.hook_ms) / r.wall_ms).toFixed(2)}% of ${formatMs(r.wall_ms)})` : ""}`,
    }));
    const statusCounts = STATUSES.map((st, i) => ({ label: st, value: byStatus[i] ?? runs.filter((r) => r.status === st).length, status: st }));

    const classes = stats.error ? null : [...(stats.classes || [])].sort((x, y) => (y.p95_ms ?? 0) - (x.p95_ms ?? 0));
    const maxP95 = classes ? Math.max(1, ...classes.map((c) => c.p95_ms ?? 0)) : 1;
    const classTable = classes
      ? h("table", { dataset: { rtm: "class-stats" } },
          h("tr", {}, h("th", {}, "class type"), h("th.num", {}, "count"), h("th.num", {}, "p50"), h("th.num", {}, "p95"), h("th.num", {}, "max"), h("th", {}, "p50 / p95")),
          classes.map((c) => h("tr", { dataset: { rtm: "class-row", classType: c.class_type } },
            h("td.rtm-label", { title: c.class_type }, c.class_type), h("td.num", {}, String(c.count)),
            h("td.num", {}, formatMs(c.p50_ms)), h("td.num", {}, formatMs(c.p95_ms)), h("td.num", {}, formatMs(c.max_ms)),
            h("td", {}, cellBar(c.p50_ms ?? 0, maxP95, { second: c.p95_ms ?? 0 })))))
      : problem(`statistics: ${stats.error?.message ?? stats.error}`);

    const slow = [];
    for (const run of details) {
      for (const node of run?.nodes || []) {
        if (Number.isFinite(node.duration_ms) && node.status !== "cached") slow.push({ node, run });
      }
    }
    slow.sort((x, y) => y.node.duration_ms - x.node.duration_ms);
    const slowTable = h("table", { dataset: { rtm: "slowest-nodes" } },
      h("tr", {}, h("th", {}, "node"), h("th.num", {}, "duration"), h("th", {}, "run")),
      slow.slice(0, SLOWEST).map(({ node, run }) => h("tr.rtm-click", { onclick: () => showRun(run) },
        h("td.rtm-label", {}, nodeLabel(node)), h("td.num", {}, formatMs(node.duration_ms)), h("td.rtm-muted", {}, shortId(run.prompt_id)))));

    const pickA = h("select", { dataset: { rtm: "compare-a" } });
    const pickB = h("select", { dataset: { rtm: "compare-b" } });
    const choices = runs.slice(0, 100);
    choices.forEach((r, i) => {
      const label = `${shortId(r.prompt_id)} · ${r.status} · ${formatMs(r.wall_ms)}`;
      pickA.append(h("option", { value: String(i), selected: i === 1 }, label));
      pickB.append(h("option", { value: String(i), selected: i === 0 }, label));
    });
    const compareBox = h("div", { dataset: { rtm: "compare-box" } });
    const compare = async () => {
      if (choices.length < 2) return replace(compareBox, h("div.rtm-muted", {}, "Two runs are needed to compare."));
      try {
        const [a, b] = await Promise.all([fetchRun(client, choices[Number(pickA.value)]), fetchRun(client, choices[Number(pickB.value)])]);
        replace(compareBox, compareTable(a, b));
      } catch (err) {
        replace(compareBox, problem(err));
      }
    };
    pickA.addEventListener("change", compare);
    pickB.addEventListener("change", compare);

    replace(body,
      cards,
      section("Wall time per run", "wall-time", timeChart(points, { onClick: (p) => showRun(p.run) })),
      section("Runs by status", "by-status",
        h("div.rtm-toolbar", {}, statusCounts.map((c) => h("span", { dataset: { rtm: "status-count", status: c.label } }, statusBadge(c.label), `: ${c.value}`))),
        barChart(statusCounts, { counts: true, height: 120, rtm: "status-chart" })),
      section("Hook overhead per run (last 60)", "hook-overhead", barChart(hooks, { rtm: "hook-chart", onClick: (item) => showRun(item.run) })),
      section("Per class type (p50, p95)", "class-types", classTable),
      section(`Slowest nodes (last ${Math.min(DETAILS_FOR_SLOWEST, runs.length)} runs)`, "slowest", slowTable),
      section("Compare two runs", "compare-section", h("div.rtm-toolbar", {}, "A ", pickA, " B ", pickB), compareBox),
      section("Recent runs", "recent", runsTable(runs.slice(0, 20), { onSelect: (run) => showRun(run) })),
    );
    await compare();
    root.querySelector("[data-rtm=loaded]").textContent = `${runs.length} of ${total} runs`;
  }

  await load();
  return { reload: load, showRun };
}
