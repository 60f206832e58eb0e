// ComfyUI web extension of comfyui-runtime-metadata: per-node duration badges after each run,
// a Runs panel (the Vue frontend's sidebar tab, or a floating panel opened from the menu on the
// March-2024 frontend), hook status with a capture toggle, and a link to the dashboard page.
//
// It feature-detects what the page offers and never lets an error escape into ComfyUI: every
// entry point (extension hooks, event listeners, the draw hook, clicks) runs through guard(),
// which reports the problem once with console.warn and lets the page carry on.

import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";
import { BadgeLayer } from "./lib/badges.js";
import { createClient } from "./lib/client.js";
import { h } from "./lib/dom.js";
import { createRunsPanel } from "./lib/panel.js";
import { groupNodeAliases, idPath, subgraphPath } from "./lib/rollup.js";
import { ensureStyles } from "./lib/styles.js";

const EXTENSION = "runtime_metadata.RuntimeMetadata";
const PUSH_EVENT = "runtime_metadata.run"; // one websocket message per finished run
const SETTING_BADGES = "RuntimeMetadata.Badges.Enabled";
const MAX_REMEMBERED = 5000; // last executed durations kept for greying cached nodes
const MAX_STARTED = 64; // prompt ids this page saw start

const reported = new Set();

/** Log a problem inside the extension once per place; never rethrow into ComfyUI. */
function report(where, err) {
  if (reported.has(where)) return;
  reported.add(where);
  console.warn(`[runtime-metadata] ${where} failed; ComfyUI carries on.`, err);
}

/** Wrap fn so that neither a throw nor a rejected promise leaves it. */
function guard(where, fn) {
  return function guarded(...args) {
    try {
      const result = fn.apply(this, args);
      if (result && typeof result.then === "function") return result.catch((err) => report(where, err));
      return result;
    } catch (err) {
      report(where, err);
      return undefined;
    }
  };
}

// ---------------------------------------------------------------- state

const lastExecuted = new Map(); // "display id|class type" -> last executed duration (ms)
const keyOf = (node) => `${node.display_id ?? node.node_id}|${node.class_type}`;
const layer = new BadgeLayer(
  (node) => lastExecuted.get(keyOf(node)) ?? null,
  (graph) => {
    try {
      return groupNodeAliases(graph);
    } catch (err) {
      report("reading group nodes", err);
      return null;
    }
  },
);
const started = new Set();
let latestStarted = null; // the prompt id of the last run this tab saw start
const client = createClient((route, options) => api.fetchApi(route, options));
let panel = null;
let lastPush = null; // the last end-of-run message received (tests and debugging read it)
let drawing = true; // false after the draw hook failed once: the canvas must keep working
let pathCache = new WeakMap();

/**
 * Remember each placed node's executed time, its expansion's nodes included, so that when it is
 * served from the cache later its badge can grey the time it last took.
 */
function remember(run) {
  const totals = new Map();
  for (const node of run.nodes || []) {
    if (node?.status !== "executed" || !Number.isFinite(node.duration_ms)) continue;
    const placed = String(node.display_id ?? node.node_id);
    const entry = totals.get(placed) ?? { ms: 0, classType: null };
    entry.ms += node.duration_ms;
    if (String(node.node_id) === placed || entry.classType === null) entry.classType = node.class_type;
    totals.set(placed, entry);
  }
  for (const [placed, { ms, classType }] of totals) {
    const key = `${placed}|${classType}`;
    lastExecuted.delete(key); // re-insert: the Map's order is then least recently run first
    lastExecuted.set(key, ms);
  }
  while (lastExecuted.size > MAX_REMEMBERED) lastExecuted.delete(lastExecuted.keys().next().value);
}

function redraw() {
  app.canvas?.setDirty?.(true, true);
}

/** The subgraph path of `graph` (the graph on screen) below the root graph. */
function pathOf(graph) {
  if (!graph || graph === app.graph) return [];
  let path = pathCache.get(graph);
  if (path === undefined) {
    path = subgraphPath(app.graph, graph) ?? [];
    pathCache.set(graph, path);
  }
  return path;
}

/** The graph at a subgraph path below the root graph (null when it does not exist). */
function graphAt(path) {
  let graph = app.graph;
  for (const id of path) graph = graph?.getNodeById?.(id)?.subgraph ?? null;
  return graph;
}

/** Select a run's node on the canvas (the node the user sees for it) and centre it. */
function selectNode(runNode) {
  const canvas = app.canvas;
  if (!canvas) return false;
  const segs = idPath(runNode);
  let graph = canvas.graph ?? app.graph;
  let path = pathOf(graph);
  const under = segs.length > path.length && path.every((id, i) => String(id) === segs[i]);
  if (!under) {
    if (graph === app.graph || typeof canvas.setGraph !== "function") return false;
    canvas.setGraph(app.graph); // leave the subgraph being viewed for the root graph
    graph = app.graph;
    path = [];
  }
  const node = graph.getNodeById?.(segs[path.length]) ?? graph._nodes_by_id?.[segs[path.length]];
  if (!node) return false;
  canvas.selectNode(node, false);
  canvas.centerOnNode(node);
  canvas.setDirty(true, true);
  return true;
}

// ---------------------------------------------------------------- events

const onExecutionStart = guard("execution_start", (event) => {
  const promptId = event?.detail?.prompt_id;
  if (promptId) {
    started.add(promptId);
    if (started.size > MAX_STARTED) started.delete(started.values().next().value);
    latestStarted = promptId;
  }
  layer.clear();
  redraw();
});

const onRunFinished = guard("run push", (event) => {
  const run = event?.detail;
  if (!run || !Array.isArray(run.nodes)) return;
  lastPush = run;
  // Only the newest run this tab started: the plugin holds end-of-run messages back while
  // more prompts run, so an earlier run's message can arrive after a later run started.
  if (started.has(run.prompt_id) && run.prompt_id === latestStarted) {
    layer.setRun(run); // uses last durations from runs before this one
    redraw();
  }
  remember(run);
  panel?.onRunFinished(run);
});

// ---------------------------------------------------------------- the Runs panel

function getPanel() {
  if (!panel) {
    panel = createRunsPanel({
      client,
      onSelectNode: guard("selecting a node", selectNode),
      hrefFor: (route) => `${api.api_base ?? ""}${route}`,
    });
  }
  return panel;
}

function registerSidebar(manager) {
  const register = manager.registerSidebarTab ?? manager.sidebarTab?.registerSidebarTab;
  register.call(manager, {
    id: "runtime-metadata-runs",
    icon: "pi pi-chart-bar",
    title: "Runs",
    tooltip: "Runtime metadata: runs, node timings, hook status",
    type: "custom",
    render: guard("rendering the Runs tab", (container) => {
      const p = getPanel();
      container.replaceChildren(p.el);
      p.refresh();
    }),
  });
}

function floatingPanel() {
  ensureStyles();
  const p = getPanel();
  const box = h(
    "div.rtm.rtm-floating",
    { dataset: { rtm: "floating" }, style: { display: "none" } },
    h("div.rtm-head", {}, "Runs — runtime metadata",
      h("button.rtm-btn.rtm-close", { title: "close", onclick: guard("closing the panel", () => (box.style.display = "none")) }, "×")),
    p.el,
  );
  dragBy(box, box.firstChild);
  document.body.append(box);
  return {
    toggle: guard("opening the Runs panel", () => {
      const show = box.style.display === "none";
      box.style.display = show ? "flex" : "none";
      if (show) p.refresh();
    }),
  };
}

function dragBy(box, handle) {
  handle.addEventListener("pointerdown", guard("moving the panel", (down) => {
    if (down.target.closest("button")) return;
    const rect = box.getBoundingClientRect();
    const dx = down.clientX - rect.left;
    const dy = down.clientY - rect.top;
    const move = (e) => {
      box.style.left = `${Math.max(0, e.clientX - dx)}px`;
      box.style.top = `${Math.max(0, e.clientY - dy)}px`;
      box.style.right = "auto";
    };
    const up = () => {
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  }));
}

function addMenuButton(onclick) {
  const button = h("button", { id: "rtm-open-panel", title: "Runs, node timings and hook status (runtime metadata)", onclick }, "Runs");
  const menu = app.ui?.menuContainer;
  if (menu) menu.append(button);
  else {
    // No legacy menu: a small fixed button, so the panel stays reachable.
    Object.assign(button.style, { position: "fixed", left: "8px", bottom: "8px", zIndex: 1000 });
    document.body.append(button);
  }
}

// ---------------------------------------------------------------- badges

function installDrawHook(canvas) {
  const previous = canvas.onDrawForeground;
  canvas.onDrawForeground = function onDrawForeground(ctx, area) {
    const result = previous?.apply(this, arguments);
    if (drawing) {
      try {
        // The Vue frontend says when it draws in low quality; LiteGraph 2024 did below 60 %.
        const low = typeof this.low_quality === "boolean" ? this.low_quality : (this.ds?.scale ?? 1) < 0.6;
        // LiteGraph 2024 passes its (never set) visible_rect; visible_area is the real one.
        const visible = area ?? this.visible_area;
        layer.draw(ctx, this.graph, visible, pathOf(this.graph), globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30, low);
      } catch (err) {
        drawing = false;
        report("drawing the badges (badges switched off for this page)", err);
      }
    }
    return result;
  };
}

const setBadges = guard("badge setting", (value) => {
  layer.enabled = value !== false;
  redraw();
});

// ---------------------------------------------------------------- the extension

app.registerExtension({
  name: EXTENSION,
  // The Vue frontend reads settings from here; the 2024 one gets them in setup().
  settings: [
    {
      id: SETTING_BADGES,
      category: ["Runtime Metadata", "Badges", "Show"],
      name: "Show each node's run duration on the canvas",
      type: "boolean",
      defaultValue: true,
      onChange: setBadges,
    },
  ],
  setup: guard("setup", () => {
    api.addEventListener("execution_start", onExecutionStart);
    api.addEventListener(PUSH_EVENT, onRunFinished);
    const manager = app.extensionManager;
    if (!manager?.setting && app.ui?.settings?.addSetting) {
      app.ui.settings.addSetting({
        id: SETTING_BADGES,
        name: "Runtime metadata: show each node's run duration",
        type: "boolean",
        defaultValue: true,
        onChange: setBadges,
      });
    }
    if (app.canvas) installDrawHook(app.canvas);
    let frontend;
    if (typeof manager?.registerSidebarTab === "function" || typeof manager?.sidebarTab?.registerSidebarTab === "function") {
      registerSidebar(manager);
      frontend = "sidebar";
    } else {
      addMenuButton(floatingPanel().toggle);
      frontend = "floating";
    }
    // A handle for people debugging a page and for the browser tests.
    window.runtimeMetadata = {
      panelKind: frontend,
      layer,
      badges: (path = []) => Object.fromEntries([...layer.level(path, graphAt(path))].map(([id, b]) => [id, b.text])),
      selectNode,
      get panel() {
        return panel;
      },
      get lastPush() {
        return lastPush;
      },
      get drawing() {
        return drawing;
      },
    };
  }),
  afterConfigureGraph: guard("loading a workflow", () => {
    // Another workflow: the last run's badges belong to a graph no longer on screen.
    layer.clear();
    pathCache = new WeakMap();
  }),
});
