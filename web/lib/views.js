// DOM views shared by the Runs panel (in ComfyUI) and the dashboard page: hook status, the runs
// list, and one run in detail (waterfall, slowest nodes, runtime values, disagreements).

import { h, s } from "./dom.js";
import { flatten, formatMs, formatTime, formatValue, shortId } from "./format.js";

const SLOWEST = 5; // nodes listed under "Slowest nodes"

/** {state: "on"|"off"|"pending"|"unknown", headline, why} from the status route's answer. */
export function captureState(status) {
  const cap = status?.capture;
  if (!cap) return { state: "unknown", headline: "Capture: unknown", why: "the status route gave no capture block" };
  const cfg = status.config || {};
  const source = status.config_sources?.hooks_enabled;
  if (cap.disabled_reason) {
    return { state: "off", headline: "Capture: OFF", why: `switched off after an internal error (${cap.disabled_reason}); restart ComfyUI to retry` };
  }
  if (cap.why_off) return { state: "off", headline: "Capture: OFF", why: cap.why_off };
  if (!cfg.hooks_enabled) {
    const where = source ? `set by ${source}` : "in config.json or AAA_METADATA_ENABLE_HOOKS";
    return { state: "off", headline: "Capture: OFF", why: `runtime_hooks.enabled is false (${where})` };
  }
  if (!cap.active) {
    return { state: "pending", headline: "Capture: enabled", why: "the hooks install when the next prompt is queued" };
  }
  return { state: "on", headline: "Capture: ON", why: null };
}

/** The hook status block with the capture toggle; onToggle(enabled) returns a promise of the new status. */
export function statusView(status, { onToggle, error } = {}) {
  const st = captureState(status);
  const cap = status?.capture || {};
  const env = String(status?.config_sources?.hooks_enabled || "").startsWith("environment");
  const checkbox = h("input", {
    type: "checkbox",
    checked: !!status?.config?.hooks_enabled,
    disabled: !onToggle || env,
    title: env ? "set by an environment variable, which config.json cannot override" : "writes runtime_hooks.enabled in config.json",
    dataset: { rtm: "capture-toggle" },
  });
  const message = h("div.rtm-error", { dataset: { rtm: "toggle-error" } }, error || "");
  if (onToggle) {
    checkbox.addEventListener("change", async () => {
      const wanted = checkbox.checked;
      checkbox.disabled = true;
      message.textContent = "";
      try {
        await onToggle(wanted);
      } catch (err) {
        checkbox.checked = !wanted;
        message.textContent = `could not switch capture: ${err?.message ?? err}`;
      } finally {
        checkbox.disabled = env;
      }
    });
  }
  const history = status?.history;
  return h(
    "div.rtm-status",
    { dataset: { rtm: "status", state: st.state } },
    h("div", {}, h(`span.rtm-state.${st.state}`, { dataset: { rtm: "capture-state" } }, st.headline), " ",
      h("label", {}, checkbox, "capture runs")),
    st.why ? h("div.rtm-muted", { dataset: { rtm: "capture-why" } }, st.why) : null,
    cap.generation ? h("div.rtm-muted", {}, `${cap.generation}; plugin ${status.plugin ?? "?"}; runs captured: ${cap.runs_captured ?? 0}`) : null,
    cap.skipped?.length ? h("details", {}, h("summary.rtm-muted", {}, `${cap.skipped.length} wrap point(s) skipped`),
      h("ul", {}, cap.skipped.map((item) => h("li", {}, item)))) : null,
    history ? h("div.rtm-muted", { dataset: { rtm: "history" } },
      `history: ${history.enabled === false ? "off" : history.backend ?? "on"}` +
      (history.queued ? `, ${history.queued} queued` : "") +
      (history.last_error ? `, last error: ${history.last_error}` : "")) : null,
    message,
  );
}

/** A status dot and word (the word goes where space is short). */
export function statusBadge(status) {
  return [h(`span.rtm-dot.${status}`, { title: status }), h("span.rtm-wide", {}, status)];
}

/** What names one run: a prompt id can have run on several workers, or twice on one. */
export function runKey(run) {
  return `${run.worker_id ?? ""}|${run.run_id ?? ""}|${run.prompt_id}`;
}

/** One run in full, for a row of the runs list (or the push), by its worker and run id when known. */
export function fetchRun(client, run) {
  return client.run(run.prompt_id, { worker: run.worker_id, run_id: run.run_id });
}

/** The runs list; onSelect(row) when a row is clicked. */
export function runsTable(runs, { onSelect, selectedKey } = {}) {
  if (!runs?.length) return h("div.rtm-muted", { dataset: { rtm: "no-runs" } }, "No runs recorded yet.");
  return h(
    "table.rtm-runs.rtm-fixed",
    { dataset: { rtm: "runs" } },
    h("tr", {}, h("th.c-status", {}, h("span.rtm-wide", {}, "status")), h("th.c-time", {}, "finished"), h("th.num.c-wall", {}, "wall"),
      h("th.num.c-nodes", {}, "nodes"), h("th.c-run.rtm-wide", {}, "run")),
    runs.map((run) => {
      const nodes = (run.nodes_executed ?? 0) + (run.nodes_cached ?? 0) + (run.nodes_failed ?? 0);
      const detail = `${run.nodes_executed ?? 0} executed, ${run.nodes_cached ?? 0} cached, ${run.nodes_failed ?? 0} failed`;
      const cls = `tr.rtm-click${runKey(run) === selectedKey ? ".rtm-selected" : ""}`;
      return h(
        cls,
        { dataset: { rtm: "run-row", promptId: run.prompt_id, runKey: runKey(run), worker: run.worker_id ?? "" }, onclick: () => onSelect?.(run) },
        h("td", {}, statusBadge(run.status)),
        h("td", { title: run.finished_at || "" }, formatTime(run.finished_at || run.started_at)),
        h("td.num", {}, formatMs(run.wall_ms)),
        h("td.num", { title: detail }, String(nodes)),
        h("td.rtm-muted.rtm-wide", { title: run.prompt_id }, shortId(run.prompt_id)),
      );
    }),
  );
}

/** A node's label: "#id Class" (its display id when expanded or inside a subgraph). */
export function nodeLabel(node) {
  return `#${node.display_id ?? node.node_id} ${node.class_type ?? ""}`.trim();
}

/** The per-node waterfall: one row per node in run order, a bar from start offset over its duration. */
export function waterfall(run, { onSelectNode } = {}) {
  const nodes = run.nodes || [];
  let total = Number(run.wall_ms) || 0;
  for (const n of nodes) total = Math.max(total, (n.start_ms ?? 0) + (n.duration_ms ?? 0));
  total = total > 0 ? total : 1;
  const W = 1000; // viewBox units; the SVG stretches to the cell's width
  const rows = nodes.map((node) => {
    const x = Math.min(W, ((node.start_ms ?? 0) / total) * W);
    const ran = Number.isFinite(node.duration_ms) && node.status !== "cached";
    const shape = ran
      ? s("rect", { class: `rtm-bar ${node.status}`, x, y: 1, width: Math.max(2, (node.duration_ms / total) * W), height: 10 })
      : s("rect", { class: "rtm-cached-mark", x, y: 3, width: 3, height: 6 });
    // The bar lies behind the node's label, so that a narrow panel keeps both readable.
    return h(
      "tr.rtm-click",
      {
        dataset: { rtm: "wf-row", nodeId: node.node_id, displayId: node.display_id ?? node.node_id },
        title: `${nodeLabel(node)}: ${node.status}${ran ? `, ${formatMs(node.duration_ms)}` : ""}, from ${formatMs(node.start_ms ?? 0)}`,
        onclick: () => onSelectNode?.(node),
      },
      h("td.rtm-wf-cell", {},
        s("svg", { class: "rtm-wf-svg", viewBox: `0 0 ${W} 12`, preserveAspectRatio: "none" },
          s("rect", { class: "rtm-track", x: 0, y: 0, width: W, height: 12 }), shape),
        h("span.rtm-wf-label", {}, h(`span.rtm-dot.${node.status}`), nodeLabel(node))),
      h("td.num", {}, ran ? formatMs(node.duration_ms) : node.status),
    );
  });
  return h("table.rtm-wf.rtm-fixed", { dataset: { rtm: "waterfall" } }, rows);
}

/** The slowest executed nodes of a run. */
export function slowest(run, { onSelectNode, count = SLOWEST } = {}) {
  const ran = (run.nodes || []).filter((n) => Number.isFinite(n.duration_ms) && n.status !== "cached");
  ran.sort((a, b) => b.duration_ms - a.duration_ms);
  const total = ran.reduce((acc, n) => acc + n.duration_ms, 0) || 1;
  return h(
    "table.rtm-fixed",
    { dataset: { rtm: "slowest" } },
    ran.slice(0, count).map((node) =>
      h(
        "tr.rtm-click",
        { dataset: { rtm: "slow-row", nodeId: node.node_id }, onclick: () => onSelectNode?.(node) },
        h("td.rtm-label", { title: nodeLabel(node) }, nodeLabel(node)),
        h("td.num", {}, formatMs(node.duration_ms)),
        h("td.num.rtm-muted", {}, `${Math.round((100 * node.duration_ms) / total)}%`),
      ),
    ),
  );
}

function keyValues(pairs, rtm) {
  return h("table.rtm-kv", { dataset: { rtm } }, pairs.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, formatValue(v, 200)))));
}

/** The runtime values as the image records them (each save node's generation block) and node inputs. */
export function runtimeValues(run, { onSelectNode } = {}) {
  const parts = [];
  for (const save of run.saves || []) {
    const pairs = flatten(save.generation || {}).filter(([, v]) => !(Array.isArray(v) && !v.length) && v !== null && v !== "");
    parts.push(h("div", {}, h("div.rtm-muted", {}, `Save node #${save.node_id}`),
      pairs.length ? keyValues(pairs, "generation") : h("div.rtm-muted", {}, "no generation fields (no sampler, checkpoint or prompt in this graph)")));
  }
  const withInputs = (run.nodes || []).filter((n) => n.inputs && Object.keys(n.inputs).length);
  if (withInputs.length) {
    parts.push(h("div", { dataset: { rtm: "inputs" } }, withInputs.map((node) =>
      h("details", {}, h("summary", { onclick: () => onSelectNode?.(node) }, nodeLabel(node)),
        keyValues(Object.entries(node.inputs).map(([k, v]) => [k, Array.isArray(v) && v.length === 1 ? v[0] : v]), "node-inputs")))));
  }
  return parts.length ? parts : h("div.rtm-muted", {}, "No runtime values recorded for this run.");
}

/** Disagreements between the static parse and the run, with their likely cause: one block each. */
export function disagreements(run) {
  const rows = [];
  for (const save of run.saves || []) for (const d of save.disagreements || []) rows.push([save.node_id, d]);
  if (!rows.length) return h("div.rtm-muted", { dataset: { rtm: "no-disagreements" } }, "None: the parser and the run agree.");
  const multiple = new Set(rows.map(([id]) => id)).size > 1;
  return h(
    "div",
    { dataset: { rtm: "disagreements" } },
    rows.map(([saveId, d]) =>
      h("div.rtm-dis", { title: d.path },
        h("div", {}, h("b", {}, String(d.path).replace(/^ai_info\.generation\./, "")), multiple ? h("span.rtm-muted", {}, ` (save #${saveId})`) : null,
          ": ", h("span.rtm-parser", {}, formatValue(d.parser)), " → ", h("span.rtm-runtime", {}, formatValue(d.runtime))),
        d.cause ? h("div.rtm-muted", {}, d.cause) : null)),
  );
}

/** One run in detail. */
export function runDetail(run, { onSelectNode, logUrl } = {}) {
  const counts = `${run.nodes_executed ?? 0} executed, ${run.nodes_cached ?? 0} cached, ${run.nodes_failed ?? 0} failed`;
  return h(
    "div",
    { dataset: { rtm: "run-detail", promptId: run.prompt_id } },
    h("h3", {}, statusBadge(run.status), ` run ${shortId(run.prompt_id)} — ${formatMs(run.wall_ms)}`),
    h("div.rtm-muted", {}, `${formatTime(run.started_at)}; ${counts}; hooks ${formatMs(run.hook_ms)}`,
      run.log_available && logUrl ? [" · ", h("a", { href: logUrl, download: `${run.prompt_id}.rtlog` }, "event log")] : null),
    h("h3", {}, "Waterfall"),
    waterfall(run, { onSelectNode }),
    h("h3", {}, "Slowest nodes"),
    slowest(run, { onSelectNode }),
    h("h3", {}, "Runtime values"),
    runtimeValues(run, { onSelectNode }),
    h("h3", {}, "Disagreements"),
    disagreements(run),
  );
}
