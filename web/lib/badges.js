// Per-node duration badges drawn on ComfyUI's LiteGraph canvas.
//
// One canvas-level hook (LGraphCanvas.onDrawForeground, which both the March-2024 LiteGraph and
// the Vue frontend's fork call once per frame in graph coordinates) draws every badge, so no
// node or node class is patched and turning the badges off removes all the cost. Backgrounds of
// one colour are filled as one path and text widths are measured once per badge, which keeps
// a 200-node graph under a millisecond per frame (bench/browser).

import { formatMs } from "./format.js";
import { rollUp } from "./rollup.js";

export const BADGE_HEIGHT = 18;
const PAD = 6;
const GAP = 5; // between the badge and the node's title bar
const RADIUS = 4;
const FONT = "12px Arial, sans-serif";
// The title bar's height when the frontend does not say (LiteGraph's default).
const DEFAULT_TITLE_HEIGHT = 30;

/** Colours per status: background, text, and the greyed duration of a cached node. */
export const COLORS = {
  executed: { bg: "#24532c", fg: "#e8f5e9", dim: "#a5d6a7" },
  cached: { bg: "#3a3a3a", fg: "#c8c8c8", dim: "#858585" },
  failed: { bg: "#8e1f1f", fg: "#ffffff", dim: "#ffcdd2" },
  interrupted: { bg: "#7a5a12", fg: "#fff8e1", dim: "#ffe082" },
};

/** What one visible node's badge says: {status, label, value, text} (text = label + value). */
export function badgeFor(agg) {
  let label = "";
  let value = "";
  if (agg.status === "executed") value = formatMs(agg.ms);
  else if (agg.status === "cached") {
    label = "cached";
    value = agg.lastMs === null ? "" : formatMs(agg.lastMs);
  } else if (agg.status === "failed") {
    label = "failed";
    value = agg.ms > 0 ? formatMs(agg.ms) : "";
  } else if (agg.status === "interrupted") {
    label = "interrupted";
    value = agg.ms > 0 ? formatMs(agg.ms) : "";
  } else return null;
  const text = label && value ? `${label} ${value}` : label || value;
  return { status: agg.status, label, value, text, entries: agg.entries, labelW: -1, valueW: -1 };
}

/**
 * The badges of one run: which nodes show what, per subgraph level, and how to draw them.
 * `lastDuration(node)` gives a cached node's last executed duration when the run does not.
 */
export class BadgeLayer {
  constructor(lastDuration = null) {
    this.lastDuration = lastDuration;
    this.run = null;
    this.enabled = true;
    this.drawn = 0; // badges drawn in the last frame (tests and the benchmark read it)
    this._levels = new Map(); // "12:5" path key -> Map(localId -> badge)
  }

  /** Show `run` ({prompt_id, nodes: [...]}) from the next frame. */
  setRun(run) {
    this.run = run;
    this._levels.clear();
  }

  /** Remove every badge (a new run started). */
  clear() {
    this.run = null;
    this._levels.clear();
  }

  /** Map(localId -> badge) for the graph at `path` (cached until the run changes). */
  level(path = []) {
    const key = path.join(":");
    let level = this._levels.get(key);
    if (!level) {
      level = new Map();
      if (this.run) {
        for (const [id, agg] of rollUp(this.run.nodes, path, this.lastDuration)) {
          const badge = badgeFor(agg);
          if (badge) level.set(id, badge);
        }
      }
      this._levels.set(key, level);
    }
    return level;
  }

  /** Draw the badges of the graph at `path` onto ctx (graph coordinates); area = [x, y, w, h]. */
  draw(ctx, graph, area, path = [], titleHeight = DEFAULT_TITLE_HEIGHT) {
    this.drawn = 0;
    if (!this.enabled || !this.run || !graph) return;
    const level = this.level(path);
    if (!level.size) return;
    const byId = graph._nodes_by_id;
    const [ax, ay, aw, ah] = area || [-Infinity, -Infinity, Infinity, Infinity];
    const saved = ctx.font;
    ctx.font = FONT;
    const visible = [];
    for (const [id, badge] of level) {
      const node = byId ? byId[id] : graph.getNodeById?.(id);
      if (!node?.pos) continue;
      if (badge.labelW < 0) {
        badge.labelW = badge.label ? ctx.measureText(badge.label).width : 0;
        badge.valueW = badge.value ? ctx.measureText(badge.value).width : 0;
      }
      const w = badge.labelW + badge.valueW + (badge.label && badge.value ? 4 : 0) + 2 * PAD;
      const x = node.pos[0];
      const y = node.pos[1] - titleHeight - GAP - BADGE_HEIGHT;
      if (x > ax + aw || x + w < ax || y > ay + ah || y + BADGE_HEIGHT < ay) continue;
      visible.push([badge, x, y, w]);
    }
    // One path per colour for the backgrounds, then the text.
    for (const status of Object.keys(COLORS)) {
      let any = false;
      ctx.beginPath();
      for (const [badge, x, y, w] of visible) {
        if (badge.status !== status) continue;
        any = true;
        if (ctx.roundRect) ctx.roundRect(x, y, w, BADGE_HEIGHT, RADIUS);
        else ctx.rect(x, y, w, BADGE_HEIGHT);
      }
      if (any) {
        ctx.fillStyle = COLORS[status].bg;
        ctx.fill();
      }
    }
    const { textAlign, textBaseline } = ctx;
    ctx.textAlign = "left";
    ctx.textBaseline = "middle";
    for (const [badge, x, y] of visible) {
      const colors = COLORS[badge.status];
      const mid = y + BADGE_HEIGHT / 2 + 1;
      let tx = x + PAD;
      if (badge.label) {
        ctx.fillStyle = colors.fg;
        ctx.fillText(badge.label, tx, mid);
        tx += badge.labelW + 4;
      }
      if (badge.value) {
        ctx.fillStyle = badge.label ? colors.dim : colors.fg;
        ctx.fillText(badge.value, tx, mid);
      }
    }
    ctx.textAlign = textAlign;
    ctx.textBaseline = textBaseline;
    ctx.font = saved;
    this.drawn = visible.length;
  }
}
