"""Whole-run capture overhead as a user sees it: a real ComfyUI server, over HTTP and websocket.

The same 200-node integer chain as ``test_bench_run_overhead`` (plus an output node, which a
server requires), queued with POST /prompt by a client connected to ComfyUI's websocket, timed
from the POST until ComfyUI says the prompt is done (``executing`` with ``node: null``). That
is ComfyUI's whole per-prompt work: validation, queueing, execution, its per-node websocket
messages, the history. Capture is switched on and off in ``config.json`` (re-read by the plugin
at each prompt, no restart), alternating in one server process; after each switch one prompt is
run untimed, so "off" rounds run ComfyUI's own unwrapped functions.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from overhead import chain, report  # bench/comfyui/overhead.py (this folder is on sys.path)

ROUNDS = 40
SINK = "BenchIntSink"
BENCHPACK = Path(__file__).resolve().parent / "benchpack"


class Client:
    """POST /prompt and wait for ComfyUI's "done" message on its websocket (aiohttp, in ComfyUI's venv)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.loop = asyncio.new_event_loop()
        self.session: Any = None
        self.ws: Any = None

    async def _open(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession()
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.ws = await self.session.ws_connect(ws_url)

    async def _run(self, prompt: dict[str, Any]) -> tuple[int, str]:
        t0 = time.perf_counter_ns()
        body = {"prompt": prompt, "client_id": self.client_id}
        async with self.session.post(self.url + "/prompt", json=body) as response:
            answer = await response.json()
        prompt_id = answer["prompt_id"]
        while True:
            message = await self.ws.receive(timeout=120)
            if message.type != 1:  # aiohttp.WSMsgType.TEXT; binary previews are not expected
                continue
            data = json.loads(message.data)
            if data.get("type") == "executing" and data["data"].get("node") is None and data["data"].get("prompt_id") == prompt_id:
                return time.perf_counter_ns() - t0, prompt_id
            if data.get("type") == "execution_error":
                raise AssertionError(f"the chain failed: {data}")

    def open(self) -> None:
        self.loop.run_until_complete(self._open())

    def run(self, prompt: dict[str, Any]) -> tuple[int, str]:
        return self.loop.run_until_complete(self._run(prompt))

    def close(self) -> None:
        async def _close() -> None:
            await self.ws.close()
            await self.session.close()

        self.loop.run_until_complete(_close())
        self.loop.close()


@pytest.fixture(scope="module")
def server(comfy, tmp_path_factory):
    import runtime_metadata
    from runtime_metadata.harness import ComfyServer, ensure_comfyui

    config = tmp_path_factory.mktemp("bench-config") / "config.json"
    config.write_text(json.dumps({"runtime_hooks": {"enabled": True}}))
    installation = ensure_comfyui(log=lambda message: None)
    os.environ.pop("AAA_METADATA_ENABLE_HOOKS", None)  # it would override config.json in the server
    plugin_dir = Path(runtime_metadata.__file__).resolve().parent
    with ComfyServer(installation, plugin_dir, env={"AAA_METADATA_CONFIG": str(config)}, extra_nodes={"benchpack": BENCHPACK}) as srv:
        yield srv, config


def test_chain_of_200_int_nodes_through_the_server_capture_on_vs_off(benchmark, server, monkeypatch) -> None:
    srv, config = server
    monkeypatch.delenv("AAA_METADATA_ENABLE_HOOKS", raising=False)
    client = Client(srv.url)
    client.open()
    counter = iter(range(1, 10_000_000))
    off_ns: list[int] = []
    on_ids: list[str] = []

    def switch(enabled: bool) -> None:
        config.write_text(json.dumps({"runtime_hooks": {"enabled": enabled}}))
        client.run(chain(next(counter), SINK))  # untimed: the plugin (un)installs during this one

    def off_round() -> tuple[tuple[Any, ...], dict[str, Any]]:
        switch(False)
        off_ns.append(client.run(chain(next(counter), SINK))[0])
        switch(True)
        return (), {}

    def on_round() -> None:
        on_ids.append(client.run(chain(next(counter), SINK))[1])

    try:
        for _ in range(3):  # warm both paths
            off_round()
            on_round()
        off_ns.clear()
        benchmark.pedantic(on_round, setup=off_round, rounds=ROUNDS, iterations=1)
        status = srv.get_json("/runtime_metadata/status")
    finally:
        client.close()

    report(benchmark, off_ns, "server, ")
    # The "on" rounds really were captured, and the last "off" switch really un-wrapped.
    assert status["capture"]["active"] is True and status["capture"]["disabled_reason"] is None
    assert on_ids[-1] in status["runs_kept"]
    assert status["capture"]["runs_captured"] >= ROUNDS
