// Per-node duration badges drawn on ComfyUI's LiteGraph canvas.
//
// One canvas-level hook (LGraphCanvas.onDrawForeground, which both the March-2024 LiteGraph and
// the Vue frontend's fork call once per frame in graph coordinates) draws every badge, so no
// node or node class is patched and turning the badges off removes all the cost. Each badge is
// measured once and rasterised once per zoom step; frames copy the bitmaps, and zoomed out
// (no text) fill plain rectangles, which keeps a 200-node graph under a millisecond per frame
// (bench/browser).

import { formatMs } from "./format.js";
import { rollUp } from "./rollup.js";

export const BADGE_HEIGHT = 20; // as the Vue frontend's own node badges
const PAD = 6;
const GAP = 2; // between the badge and the node's title bar, as the Vue frontend's
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
  return { status: agg.status, label, value, text, entries: agg.entries, labelW: -1, valueW: -1, bitmap: null, bitmapScale: 0 };
}

const MAX_BITMAP_SCALE = 8; // deeper zoom draws a slightly soft badge rather than a huge bitmap

/** Round a device-pixels-per-unit scale up to the next of 8 steps per doubling (≤ 9 % apart). */
export function quantizeScale(k) {
  if (!(k > 0)) return 1;
  return Math.min(MAX_BITMAP_SCALE, 2 ** (Math.ceil(Math.log2(k) * 8) / 8));
}

/** Draw a badge (background and text) into a new bitmap at k device pixels per unit. */
function renderBadge(badge, w, k) {
  const width = Math.max(1, Math.ceil(w * k));
  const height = Math.max(1, Math.ceil(BADGE_HEIGHT * k));
  let canvas;
  if (typeof OffscreenCanvas === "function") canvas = new OffscreenCanvas(width, height);
  else {
    canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
  }
  const c = canvas.getContext("2d");
  if (!c) return null;
  c.scale(k, k);
  const colors = COLORS[badge.status];
  c.fillStyle = colors.bg;
  c.beginPath();
  if (c.roundRect) c.roundRect(0, 0, w, BADGE_HEIGHT, RADIUS);
  else c.rect(0, 0, w, BADGE_HEIGHT);
  c.fill();
  c.font = FONT;
  c.textAlign = "left";
  c.textBaseline = "middle";
  const mid = BADGE_HEIGHT / 2 + 1;
  let tx = PAD;
  if (badge.label) {
    c.fillStyle = colors.fg;
    c.fillText(badge.label, tx, mid);
    tx += badge.labelW + 4;
  }
  if (badge.value) {
    c.fillStyle = badge.label ? colors.dim : colors.fg;
    c.fillText(badge.value, tx, mid);
  }
  return canvas;
}

/**
 * The badges of one run: which nodes show what, per subgraph level, and how to draw them.
 * `lastDuration(node)` gives a cached node's last executed duration when the run does not.
 */
export class BadgeLayer {
  constructor(lastDuration = null, aliasesFor = null) {
    this.lastDuration = lastDuration;
    this.aliasesFor = aliasesFor; // graph -> Map(id of a node not on screen -> id of the one that is)
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

  /** Map(localId -> badge) for `graph`, the graph at `path` (cached until the run changes). */
  level(path = [], graph = null) {
    const key = path.join(":");
    let level = this._levels.get(key);
    if (!level) {
      level = new Map();
      if (this.run) {
        const aliases = graph && this.aliasesFor ? this.aliasesFor(graph) : null;
        for (const [id, agg] of rollUp(this.run.nodes, path, this.lastDuration, aliases)) {
          const badge = badgeFor(agg);
          if (badge) level.set(id, badge);
        }
      }
      this._levels.set(key, level);
    }
    return level;
  }

  /**
   * Draw the badges of the graph at `path` onto ctx (graph coordinates); area = [x, y, w, h].
   * lowQuality (zoomed out, where LiteGraph itself stops drawing text): status-coloured pills
   * without text, which is what can still be read at that size.
   */
  draw(ctx, graph, area, path = [], titleHeight = DEFAULT_TITLE_HEIGHT, lowQuality = false) {
    this.drawn = 0;
    if (!this.enabled || !this.run || !graph) return;
    const level = this.level(path, graph);
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
    this.drawn = visible.length;
    if (lowQuality) {
      // Plain rectangles, grouped by colour: the rasteriser's fastest path.
      for (const status of Object.keys(COLORS)) {
        ctx.fillStyle = COLORS[status].bg;
        for (const [badge, x, y, w] of visible) if (badge.status === status) ctx.fillRect(x, y, w, BADGE_HEIGHT);
      }
      ctx.font = saved;
      return;
    }
    // Each badge is rasterised once per zoom step into a small bitmap, then copied: copying
    // a bitmap costs a fraction of rasterising a rounded rectangle and two runs of text.
    const k = quantizeScale(Math.abs(ctx.getTransform?.().a || 1));
    for (const [badge, x, y, w] of visible) {
      if (!badge.bitmap || badge.bitmapScale !== k) {
        badge.bitmap = renderBadge(badge, w, k);
        badge.bitmapScale = k;
      }
      if (badge.bitmap) ctx.drawImage(badge.bitmap, x, y, w, BADGE_HEIGHT);
    }
    ctx.font = saved;
  }
}
