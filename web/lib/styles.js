// The extension's CSS, injected once per document (ComfyUI loads no stylesheet for extensions).
// Colours come from ComfyUI's own CSS variables where the page defines them (both frontends do),
// so the panel follows the user's palette; the dashboard page defines the same variables.

const CSS = `
.rtm { font: 13px/1.4 Arial, sans-serif; color: var(--fg-color, #ddd); }
.rtm * { box-sizing: border-box; }
.rtm h3 { font-size: 13px; margin: 12px 0 4px; color: var(--fg-color, #ddd); font-weight: bold; }
.rtm .rtm-muted { color: var(--descrip-text, #999); }
.rtm .rtm-error { color: var(--error-text, #ff6b6b); }
.rtm button.rtm-btn { background: var(--comfy-input-bg, #222); color: var(--input-text, #ddd);
  border: 1px solid var(--border-color, #4e4e4e); border-radius: 4px; padding: 2px 8px; cursor: pointer; font: inherit; }
.rtm button.rtm-btn:hover { filter: brightness(1.3); }
.rtm a { color: #7fb2ff; }
.rtm-status { padding: 6px 8px; border: 1px solid var(--border-color, #4e4e4e); border-radius: 6px; }
.rtm-status .rtm-state { font-weight: bold; }
.rtm-status .rtm-state.on { color: #81c784; }
.rtm-status .rtm-state.off { color: #e57373; }
.rtm-status .rtm-state.pending { color: #ffd54f; }
.rtm-status label { display: inline-flex; gap: 4px; align-items: center; cursor: pointer; }
.rtm-status ul { margin: 2px 0 0 16px; padding: 0; }
.rtm table { border-collapse: collapse; width: 100%; }
.rtm td, .rtm th { padding: 2px 6px; text-align: left; white-space: nowrap; }
.rtm th { color: var(--descrip-text, #999); font-weight: normal; border-bottom: 1px solid var(--border-color, #4e4e4e); }
.rtm td.num, .rtm th.num { text-align: right; font-variant-numeric: tabular-nums; }
.rtm tr.rtm-click { cursor: pointer; }
.rtm tr.rtm-click:hover td { background: rgba(127, 178, 255, 0.12); }
.rtm tr.rtm-selected td { background: rgba(127, 178, 255, 0.22); }
.rtm .rtm-dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; margin-right: 4px; }
.rtm .rtm-dot.success, .rtm .rtm-dot.executed { background: #66bb6a; }
.rtm .rtm-dot.error, .rtm .rtm-dot.failed { background: #ef5350; }
.rtm .rtm-dot.interrupted { background: #ffb300; }
.rtm .rtm-dot.cached { background: #9e9e9e; }
.rtm .rtm-dot.running, .rtm .rtm-dot.pending { background: #42a5f5; }
/* Narrow places (the Vue frontend's sidebar is about 260 px wide): fixed table layouts whose
   label cells shorten with an ellipsis, and fewer columns. */
.rtm-panel { container-type: inline-size; }
.rtm table.rtm-fixed { table-layout: fixed; }
.rtm table.rtm-fixed td { overflow: hidden; text-overflow: ellipsis; }
.rtm .rtm-wf td.rtm-wf-cell { position: relative; white-space: nowrap; }
.rtm .rtm-wf .rtm-wf-svg { position: absolute; left: 2px; right: 2px; top: 2px; bottom: 2px;
  width: calc(100% - 4px); height: calc(100% - 4px); }
.rtm .rtm-wf .rtm-wf-label { position: relative; text-shadow: 0 0 3px rgba(0, 0, 0, 0.9); }
.rtm .rtm-wf td.num, .rtm [data-rtm=slowest] td.num:nth-child(2) { width: 64px; }
.rtm [data-rtm=slowest] td.num:nth-child(3) { width: 40px; }
.rtm [data-rtm=runs] .c-status { width: 84px; }
.rtm [data-rtm=runs] .c-time { width: 64px; }
.rtm [data-rtm=runs] .c-wall { width: 64px; }
.rtm [data-rtm=runs] .c-nodes { width: 44px; }
.rtm [data-rtm=runs] .c-run { width: 72px; }
@container (max-width: 380px) {
  .rtm .rtm-wide { display: none; }
  .rtm [data-rtm=runs] .c-status { width: 26px; }
}
.rtm .rtm-wf .rtm-bar { opacity: 0.55; }
.rtm .rtm-wf .rtm-bar.executed { fill: #43a047; }
.rtm .rtm-wf .rtm-bar.failed { fill: #e53935; }
.rtm .rtm-wf .rtm-bar.interrupted { fill: #ffb300; }
.rtm .rtm-wf .rtm-cached-mark { fill: #8a8a8a; }
.rtm .rtm-wf .rtm-track { fill: rgba(255, 255, 255, 0.05); }
.rtm .rtm-label { overflow: hidden; text-overflow: ellipsis; }
.rtm details { margin: 2px 0; }
.rtm details summary { cursor: pointer; }
.rtm .rtm-kv td:first-child { color: var(--descrip-text, #999); white-space: nowrap; vertical-align: top; }
.rtm .rtm-kv td + td { white-space: normal; overflow-wrap: anywhere; }
.rtm .rtm-dis { padding: 3px 6px; margin: 2px 0; border-left: 3px solid #ffb300; background: rgba(255, 179, 0, 0.06);
  overflow-wrap: anywhere; }
.rtm .rtm-dis .rtm-parser { color: #e57373; }
.rtm .rtm-dis .rtm-runtime { color: #81c784; font-weight: bold; }
.rtm-panel { padding: 8px; overflow: auto; height: 100%; }
.rtm-floating { position: fixed; top: 16px; left: 16px; width: 460px; max-height: calc(100vh - 80px);
  z-index: 1000; background: var(--comfy-menu-bg, #353535); border: 1px solid var(--border-color, #4e4e4e);
  border-radius: 8px; box-shadow: 0 4px 24px rgba(0, 0, 0, 0.5); display: flex; flex-direction: column; }
.rtm-floating > .rtm-head { display: flex; align-items: center; gap: 8px; padding: 6px 8px; cursor: move;
  border-bottom: 1px solid var(--border-color, #4e4e4e); font-weight: bold; }
.rtm-floating > .rtm-head .rtm-close { margin-left: auto; }
.rtm-floating > .rtm-panel { overflow: auto; flex: 1; }
.rtm-toolbar { display: flex; gap: 8px; align-items: center; margin: 6px 0; flex-wrap: wrap; }
.rtm-chart { width: 100%; height: auto; display: block; }
.rtm-chart text { fill: var(--descrip-text, #999); font: 10px Arial, sans-serif; }
.rtm-chart .rtm-axis { stroke: var(--border-color, #4e4e4e); }
`;

/** Add the stylesheet to `doc` once. */
export function ensureStyles(doc = document) {
  if (doc.getElementById("rtm-styles")) return;
  const style = doc.createElement("style");
  style.id = "rtm-styles";
  style.textContent = CSS;
  doc.head.append(style);
}
