// Number and time formatting shared by the badges, the Runs panel and the dashboard.
// Pure functions: no DOM, no ComfyUI (ComfyUI imports every .js file of web/ as an extension,
// so modules under lib/ must do nothing when imported).

/** A duration in milliseconds as a badge shows it: "0.41 ms", "12.3 ms", "153 ms", "1.23 s", "2m 05s". */
export function formatMs(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "";
  if (ms < 0) ms = 0;
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const total = Math.round(ms / 1000);
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return `${minutes}m ${seconds}s`;
}

/** An ISO-8601 time as the local "HH:MM:SS" (today) or "YYYY-MM-DD HH:MM" (other days). */
export function formatTime(iso, now = new Date()) {
  if (!iso) return "";
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return String(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const hms = `${pad(t.getHours())}:${pad(t.getMinutes())}:${pad(t.getSeconds())}`;
  if (t.toDateString() === now.toDateString()) return hms;
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${hms.slice(0, 5)}`;
}

/** A prompt id cut to its first 8 characters, as ComfyUI's own logs print it. */
export function shortId(id) {
  return String(id ?? "").slice(0, 8);
}

/** A runtime value (a summary from the event log) as one short line. */
export function formatValue(value, limit = 80) {
  let text;
  if (value === null || value === undefined) text = String(value);
  else if (typeof value === "string") text = JSON.stringify(value);
  else if (typeof value === "object" && value.type && value.shape) {
    // A tensor summary: {type, shape, dtype}.
    text = `${String(value.type).split(".").pop()} [${value.shape.join("×")}] ${String(value.dtype ?? "").replace("torch.", "")}`;
  } else text = JSON.stringify(value);
  return text.length > limit ? `${text.slice(0, limit - 1)}…` : text;
}

/** Flatten a nested object into [["a.b.c", value], ...] in key order (arrays of scalars stay whole). */
export function flatten(obj, prefix = "", out = []) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    if (prefix) out.push([prefix, obj]);
    return out;
  }
  const keys = Object.keys(obj);
  if (!keys.length && prefix) out.push([prefix, obj]);
  for (const key of keys) flatten(obj[key], prefix ? `${prefix}.${key}` : key, out);
  return out;
}

/** The q-quantile (0..1) of numbers, by linear interpolation; null for an empty list. */
export function quantile(values, q) {
  const xs = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (!xs.length) return null;
  const pos = (xs.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo);
}
