// The Runs panel: hook status and the capture toggle, recent runs, one run in detail.
// The same element goes into the Vue frontend's sidebar tab or the 2024 floating panel.

import { h, replace } from "./dom.js";
import { ensureStyles } from "./styles.js";
import { fetchRun, runDetail, runKey, runsTable, statusView } from "./views.js";

/** Report a problem inside the panel without ever throwing into ComfyUI. */
function problem(where, err) {
  return h("div.rtm-error", { dataset: { rtm: "error" } }, `${where}: ${err?.message ?? err}`);
}

/**
 * Build the panel. client: lib/client.js; onSelectNode(node) selects and centres a run's node on
 * the canvas; hrefFor(route) turns a route into a link (dashboard, event log).
 */
export function createRunsPanel({ client, onSelectNode, hrefFor = (r) => r, pageSize = 20, doc = document }) {
  ensureStyles(doc);
  const statusBox = h("div", { dataset: { rtm: "status-box" } });
  const runsBox = h("div", { dataset: { rtm: "runs-box" } });
  const detailBox = h("div", { dataset: { rtm: "detail-box" } });
  const refreshButton = h("button.rtm-btn", { onclick: () => refresh() }, "Refresh");
  const el = h(
    "div.rtm.rtm-panel",
    { dataset: { rtm: "panel" } },
    statusBox,
    h("div.rtm-toolbar", {}, h("b", {}, "Recent runs"), refreshButton,
      h("a", { href: hrefFor("/runtime_metadata/dashboard"), target: "_blank", rel: "noopener", dataset: { rtm: "dashboard-link" } }, "Dashboard ↗")),
    runsBox,
    detailBox,
  );
  const state = { runs: [], selected: null, pinned: false, seq: 0, history: undefined };

  async function refreshStatus() {
    try {
      const status = await client.status();
      state.history = status?.history ?? null;
      replace(statusBox, statusView(status, { onToggle: toggle }));
    } catch (err) {
      replace(statusBox, problem("hook status", err));
    }
  }

  /** Why the run history cannot be listed (the status says so), or null. */
  function noHistory() {
    if (state.history === undefined) return null; // status not read yet: try
    if (state.history === null) return "this server's plugin keeps no run history (its status has no history block)";
    if (state.history.enabled === false) return `run history is off${state.history.last_error ? `: ${state.history.last_error}` : ""}`;
    return null;
  }

  async function toggle(enabled) {
    const status = await client.setCapture(enabled);
    replace(statusBox, statusView(status?.capture ? status : await client.status(), { onToggle: toggle }));
  }

  async function refreshRuns() {
    const why = noHistory();
    if (why) {
      replace(runsBox, h("div.rtm-muted", { dataset: { rtm: "no-history" } }, why));
      return;
    }
    try {
      const page = await client.runs({ limit: pageSize });
      state.runs = page.runs || [];
      replace(runsBox, runsTable(state.runs, { onSelect: (run) => select(run, true), selectedKey: state.selected }));
      if (!state.pinned && state.runs.length && runKey(state.runs[0]) !== state.selected) await select(state.runs[0], false);
    } catch (err) {
      replace(runsBox, problem("run history", err));
    }
  }

  /** Show one run (a row of the runs list) in detail; pinned when the user picked it (new runs then do not replace it). */
  async function select(row, pinned) {
    const seq = ++state.seq;
    const key = runKey(row);
    state.selected = key;
    if (pinned !== undefined) state.pinned = pinned && key !== (state.runs[0] && runKey(state.runs[0]));
    for (const tr of runsBox.querySelectorAll("tr[data-run-key]")) tr.classList.toggle("rtm-selected", tr.dataset.runKey === key);
    try {
      const run = await fetchRun(client, row);
      if (seq !== state.seq) return; // a later selection won
      replace(detailBox, runDetail(run, { onSelectNode, logUrl: hrefFor(client.logRoute(row.prompt_id, { worker: row.worker_id, run_id: row.run_id })) }));
    } catch (err) {
      if (seq === state.seq) replace(detailBox, problem(`run ${row.prompt_id}`, err));
    }
  }

  async function refresh() {
    await refreshStatus();
    await refreshRuns();
  }

  return {
    el,
    refresh,
    refreshStatus,
    select,
    /** A run ended (the websocket push): list it, and show it unless the user pinned another run. */
    onRunFinished: async () => {
      await refreshStatus();
      await refreshRuns();
    },
  };
}
