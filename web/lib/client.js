// The plugin's JSON routes under /runtime_metadata/ (see the README's "Routes"), behind one
// small client that both the in-UI panel and the dashboard page use.

/** An HTTP answer that was not 2xx; `message` is the server's one-line `error` when it sent one. */
export class ApiError extends Error {
  constructor(status, message, route) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.route = route;
  }
}

/**
 * Build a client on a fetch function taking a route ("/runtime_metadata/...").
 * In ComfyUI's page that is `api.fetchApi` (which adds the frontend's prefix and user header);
 * on the dashboard page, `fetch` on the server's base URL.
 */
export function createClient(fetchRoute) {
  async function call(route, options) {
    let response;
    try {
      response = await fetchRoute(route, options);
    } catch (err) {
      throw new ApiError(0, `cannot reach the server (${err?.message ?? err})`, route);
    }
    const type = response.headers.get("content-type") || "";
    const body = type.includes("json") ? await response.json().catch(() => null) : await response.text();
    if (!response.ok) {
      let message = body && typeof body === "object" && body.error ? String(body.error) : "";
      if (!message) {
        message = response.status === 404 ? "not available on this server" : `HTTP ${response.status}`;
      }
      throw new ApiError(response.status, message, route);
    }
    return body;
  }
  const q = (params) => {
    const usp = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null && value !== "") usp.set(key, String(value));
    }
    const text = usp.toString();
    return text ? `?${text}` : "";
  };
  const enc = encodeURIComponent;
  return {
    /** Capture status, configuration in force and history state. */
    status: () => call("/runtime_metadata/status"),
    /** Switch capture on or off (writes config.json); returns the new status. */
    setCapture: (enabled) =>
      call("/runtime_metadata/config", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ runtime_hooks: { enabled: !!enabled } }),
      }),
    /** A page of runs, newest first: {runs, total, limit, offset}. */
    runs: (params = {}) => call(`/runtime_metadata/runs${q({ limit: 50, offset: 0, ...params })}`),
    /** One run with its nodes, saves and disagreements. */
    run: (promptId, params = {}) => call(`/runtime_metadata/runs/${enc(promptId)}${q(params)}`),
    /** Per class type statistics over the last N runs. */
    stats: (params = {}) => call(`/runtime_metadata/stats${q({ last: 1000, ...params })}`),
    /** The workers with runs in the history, and this one: {workers, this_worker}. */
    workers: () => call("/runtime_metadata/workers"),
    /** The route URL of a run's event log (for a download link). */
    logRoute: (promptId, params = {}) => `/runtime_metadata/runs/${enc(promptId)}/log${q(params)}`,
  };
}
