// Roll a run's nodes up to the nodes a user sees on the canvas.
//
// ComfyUI names a node inside a subgraph (and a frontend group node's inner node) by its path,
// "12:5" (outer id, inner id), and a node created by node expansion carries the display id of
// the node that expanded it. So every entry belongs to the visible node named by the first
// segment of its display id below the subgraph being viewed.

/** The id path of an entry: its display id (else its id) split on ":". */
export function idPath(node) {
  const id = String(node.display_id ?? node.node_id ?? "");
  return id.split(":").map((part) => part.split(".")[0]);
}

/**
 * Aggregate `nodes` (a run's node rows) per node visible at `path` (the ids of the subgraph
 * nodes leading to the graph on screen; [] for the root graph). `aliases` maps the id of a node
 * that runs but is not on screen to the node that stands for it (a 2024 group node's inner nodes
 * keep their own ids until the workflow is reloaded).
 * Returns Map(localId -> {status, ms, lastMs, executed, cached, failed, entries}).
 * status: "failed" if any entry failed, else "interrupted" if any was, else "executed" if any
 * ran, else "cached"; ms: the summed duration of the entries that ran; lastMs: for a node that
 * was all cached, the summed durations they last took when they ran (null when unknown).
 */
export function rollUp(nodes, path = [], lastKnown = null, aliases = null) {
  const out = new Map();
  const depth = path.length;
  for (const node of nodes || []) {
    if (!node || typeof node !== "object") continue; // not a node row: nothing to show
    const segs = idPath(node);
    if (segs.length <= depth) continue;
    let inside = true;
    for (let i = 0; i < depth; i++) {
      if (segs[i] !== String(path[i])) {
        inside = false;
        break;
      }
    }
    if (!inside) continue;
    const local = aliases?.get(segs[depth]) ?? segs[depth];
    let agg = out.get(local);
    if (!agg) {
      agg = { status: "cached", ms: 0, lastMs: 0, lastKnown: true, executed: 0, cached: 0, failed: 0, interrupted: 0, entries: 0 };
      out.set(local, agg);
    }
    agg.entries += 1;
    const status = node.status;
    if (status === "cached") {
      agg.cached += 1;
      const last = node.last_duration_ms ?? (lastKnown ? lastKnown(node) : null);
      if (Number.isFinite(last)) agg.lastMs += last;
      else agg.lastKnown = false;
    } else if (status === "executed" || status === "failed" || status === "interrupted") {
      agg[status] += 1;
      if (Number.isFinite(node.duration_ms)) agg.ms += node.duration_ms;
    }
  }
  for (const agg of out.values()) {
    if (agg.failed) agg.status = "failed";
    else if (agg.interrupted) agg.status = "interrupted";
    else if (agg.executed) agg.status = "executed";
    else if (agg.cached) agg.status = "cached";
    else agg.status = "pending";
    agg.lastMs = agg.status === "cached" && agg.lastKnown ? agg.lastMs : null;
  }
  return out;
}

/** The ids of the subgraph nodes from `root` down to `graph` ([] when graph is root; null if not found). */
export function subgraphPath(root, graph, limit = 16) {
  if (!root || !graph || root === graph) return [];
  const walk = (g, path) => {
    if (path.length > limit) return null;
    for (const node of g?._nodes || []) {
      const sub = node?.subgraph;
      if (!sub) continue;
      const here = [...path, String(node.id)];
      if (sub === graph) return here;
      const deeper = walk(sub, here);
      if (deeper) return deeper;
    }
    return null;
  };
  return walk(root, []);
}

/**
 * Map(inner node id -> group node id) for the group nodes of `graph` (the 2024 frontend's nesting:
 * node types "workflow/<name>"). The Vue frontend's nodes also have a getInnerNodes(), for its
 * subgraphs, with other arguments; their nodes are found by id path instead.
 */
export function groupNodeAliases(graph) {
  const aliases = new Map();
  for (const node of graph?._nodes || []) {
    if (typeof node.getInnerNodes !== "function" || node.subgraph || !String(node.type).startsWith("workflow/")) continue;
    for (const inner of node.getInnerNodes() || []) {
      if (inner?.id !== undefined && String(inner.id) !== String(node.id)) aliases.set(String(inner.id), String(node.id));
    }
  }
  return aliases;
}
