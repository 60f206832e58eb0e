// Small SVG charts for the dashboard: no library, a viewBox that scales to the container.

import { s } from "./dom.js";
import { formatMs } from "./format.js";

const STATUS_COLORS = { success: "#66bb6a", error: "#ef5350", interrupted: "#ffb300", executed: "#66bb6a", failed: "#ef5350", cached: "#9e9e9e" };

/** A "nice" upper bound for a four-step axis: 1, 2, 4 or 8 times a power of ten, at least max. */
export function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 4, 8, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

function frame(width, height, pad, yMax, unit) {
  const parts = [];
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + ((height - pad.top - pad.bottom) * i) / 4;
    const value = yMax * (1 - i / 4);
    parts.push(s("line", { class: "rtm-axis", x1: pad.left, x2: width - pad.right, y1: y, y2: y, "stroke-dasharray": i === 4 ? null : "2 3" }));
    parts.push(s("text", { x: pad.left - 4, y: y + 3, "text-anchor": "end", text: unit(value) }));
  }
  return parts;
}

/**
 * Values over time: points [{t (ms since epoch), y, status, title}] as dots joined by a line.
 * onClick(point) when a dot is clicked.
 */
export function timeChart(points, { height = 180, width = 640, unit = formatMs, onClick, rtm = "time-chart" } = {}) {
  const pad = { top: 10, right: 10, bottom: 22, left: 56 };
  const svg = s("svg", { class: "rtm-chart", viewBox: `0 0 ${width} ${height}`, "data-rtm": rtm, role: "img" });
  if (!points.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", text: "no runs yet" }));
    return svg;
  }
  const ts = points.map((p) => p.t);
  const t0 = Math.min(...ts);
  const t1 = Math.max(...ts);
  const yMax = niceMax(Math.max(...points.map((p) => p.y)));
  const X = (t) => pad.left + (t1 > t0 ? ((t - t0) / (t1 - t0)) * (width - pad.left - pad.right) : (width - pad.left - pad.right) / 2);
  const Y = (y) => height - pad.bottom - (y / yMax) * (height - pad.top - pad.bottom);
  svg.append(...frame(width, height, pad, yMax, unit));
  const sorted = [...points].sort((a, b) => a.t - b.t);
  svg.append(s("polyline", { points: sorted.map((p) => `${X(p.t).toFixed(1)},${Y(p.y).toFixed(1)}`).join(" "), fill: "none", stroke: "#7fb2ff", "stroke-width": 1.2, opacity: 0.6 }));
  for (const p of sorted) {
    const dot = s("circle", { cx: X(p.t), cy: Y(p.y), r: 3, fill: STATUS_COLORS[p.status] || "#7fb2ff", "data-rtm": "point", style: onClick ? "cursor:pointer" : null, onclick: onClick ? () => onClick(p) : null });
    dot.append(s("title", { text: p.title || unit(p.y) }));
    svg.append(dot);
  }
  const fmt = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  svg.append(s("text", { x: pad.left, y: height - 6, text: fmt(t0) }), s("text", { x: width - pad.right, y: height - 6, "text-anchor": "end", text: fmt(t1) }));
  return svg;
}

/** Vertical bars in order: items [{label, value, status, title}]; counts: whole-number axis and labels. */
export function barChart(items, { height = 160, width = 640, unit = formatMs, rtm = "bar-chart", onClick, counts = false } = {}) {
  const pad = { top: 10, right: 10, bottom: 22, left: 56 };
  const svg = s("svg", { class: "rtm-chart", viewBox: `0 0 ${width} ${height}`, "data-rtm": rtm, role: "img" });
  if (!items.length) {
    svg.append(s("text", { x: width / 2, y: height / 2, "text-anchor": "middle", text: "no data yet" }));
    return svg;
  }
  const top = Math.max(...items.map((i) => i.value));
  // Counts: four whole-number steps, so the axis never reads "1, 1, 2, 2".
  const yMax = counts ? Math.max(4, Math.ceil(top / 4) * 4) : niceMax(top);
  svg.append(...frame(width, height, pad, yMax, counts ? (v) => String(Math.round(v)) : unit));
  const slot = (width - pad.left - pad.right) / items.length;
  const bw = Math.max(1, Math.min(24, slot * 0.7));
  items.forEach((item, i) => {
    const hgt = (item.value / yMax) * (height - pad.top - pad.bottom);
    const bar = s("rect", {
      x: pad.left + i * slot + (slot - bw) / 2, y: height - pad.bottom - hgt, width: bw, height: Math.max(0.5, hgt),
      fill: STATUS_COLORS[item.status] || "#7fb2ff", "data-rtm": "bar", style: onClick ? "cursor:pointer" : null, onclick: onClick ? () => onClick(item) : null,
    });
    bar.append(s("title", { text: item.title || `${item.label}: ${unit(item.value)}` }));
    svg.append(bar);
    if (counts) svg.append(s("text", { x: pad.left + (i + 0.5) * slot, y: height - 6, "text-anchor": "middle", text: `${item.label} (${item.value})` }));
  });
  return svg;
}

/** Two thin horizontal bars, one above the other: a and b out of max (a run against another). */
export function pairBar(a, b, max, { width = 100 } = {}) {
  const W = (v) => (v > 0 ? Math.max(1, (Math.min(v, max) / (max || 1)) * width) : 0);
  return s("svg", { width, height: 12, viewBox: `0 0 ${width} 12`, "data-rtm": "pair-bar" },
    s("rect", { x: 0, y: 0, width: W(a), height: 5, fill: "#7fb2ff" }),
    s("rect", { x: 0, y: 7, width: W(b), height: 5, fill: "#ffb300" }));
}

/** A horizontal bar for a table cell: value out of max, optional second marker (p95 behind p50). */
export function cellBar(value, max, { second = null, width = 160, status = null } = {}) {
  const svg = s("svg", { width, height: 10, viewBox: `0 0 ${width} 10`, "data-rtm": "cell-bar" });
  const W = (v) => Math.max(1, (Math.min(v, max) / (max || 1)) * width);
  if (second !== null) svg.append(s("rect", { x: 0, y: 1, width: W(second), height: 8, fill: "#7fb2ff", opacity: 0.35 }));
  svg.append(s("rect", { x: 0, y: 1, width: W(value), height: 8, fill: STATUS_COLORS[status] || "#7fb2ff" }));
  return svg;
}
