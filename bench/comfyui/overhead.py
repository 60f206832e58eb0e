"""What the whole-run benchmarks share: the worst-case graph, a websocket client, the on/off report."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

#: This many trivial integer nodes: ComfyUI's cheapest nodes, capture's worst case.
N_NODES = 200
#: ... as chains of this many. ComfyUI 0.3.64 keys each node's cache entry by the signatures of
#: all its ancestors, so one chain of 200 costs it about 17 ms per node (quadratic in the
#: chain's length, measured with cProfile), which drowns capture's microseconds; in chains of 10
#: it spends about 0.7 ms per node, most of it rebuilding its progress state of every node of
#: the prompt at each node (quadratic in the prompt's size, and ComfyUI's own).
CHAIN_LENGTH = 10


#: The session's folder for the plugin's data (set by conftest.py).
DATA_ENV = "RTM_BENCH_DATA"


def server_env(config: Path) -> dict[str, str]:
    """A benchmark server's environment: its config.json, and the plugin's defaults (event logs
    kept, the run history on in SQLite) in the session's folder, not the shared install's."""
    data = Path(os.environ[DATA_ENV])
    return {
        "AAA_METADATA_CONFIG": str(config),
        "AAA_METADATA_LOG_DIR": str(data / "logs"),
        "AAA_METADATA_HISTORY_URL": f"sqlite:///{data / f'history-{config.parent.name}.sqlite'}",
    }


def rounds_within(budget_s: float, round_s: float, most: int, least: int = 5) -> int:
    """How many rounds of ``round_s`` seconds fit in ``budget_s``, between ``least`` and ``most``."""
    return max(least, min(most, int(budget_s / max(round_s, 1e-9))))


def chain(start: int, sink: str | None = None) -> dict[str, Any]:
    """The N_NODES nodes as chains of CHAIN_LENGTH, the first values new from ``start`` (so no
    node is cached).

    ``sink``: an output node class to end each chain with (a server runs only output nodes).
    """
    prompt: dict[str, Any] = {}
    for first in range(0, N_NODES, CHAIN_LENGTH):
        prompt[str(first)] = {
            "class_type": "IntMathRuntimeMetadata",
            "inputs": {"a": start + first, "b": 1, "op": "add"},
        }
        for i in range(first + 1, first + CHAIN_LENGTH):
            prompt[str(i)] = {
                "class_type": "IntMathRuntimeMetadata",
                "inputs": {"a": [str(i - 1), 0], "b": 1, "op": "add"},
            }
        if sink is not None:
            prompt[f"sink{first}"] = {"class_type": sink, "inputs": {"value": [str(first + CHAIN_LENGTH - 1), 0]}}
    return prompt


def chain_ends() -> list[str]:
    """The last node of each chain: what an in-process run executes (ComfyUI's ``execute_outputs``)."""
    return [str(first + CHAIN_LENGTH - 1) for first in range(0, N_NODES, CHAIN_LENGTH)]


def report(benchmark: Any, off_ns: list[int], label: str, nodes: int = N_NODES) -> None:
    """Store and print the "on" rounds (the benchmark) against the "off" rounds timed beside them
    (per node: per each of the ``nodes`` a run executes)."""
    on_median = benchmark.stats.stats.median
    off_median = statistics.median(off_ns) / 1e9
    added = on_median - off_median
    benchmark.extra_info.update(
        nodes=nodes,
        off_median_ms=round(off_median * 1e3, 3),
        on_median_ms=round(on_median * 1e3, 3),
        ratio_on_to_off=round(on_median / off_median, 4),
        added_us_per_node=round(added / nodes * 1e6, 3),
        comfyui_us_per_node=round(off_median / nodes * 1e6, 2),
    )
    print(
        f"\n{label}{nodes} nodes in chains of {CHAIN_LENGTH}: off {off_median * 1e3:.2f} ms, on {on_median * 1e3:.2f} ms "
        f"(x{on_median / off_median:.3f}); capture adds {added / nodes * 1e6:.2f} us/node, "
        f"ComfyUI spends {off_median / nodes * 1e6:.1f} us/node"
    )


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

    async def _run(self, prompt: dict[str, Any], timeout: float) -> tuple[int, str]:
        t0 = time.perf_counter_ns()
        body = {"prompt": prompt, "client_id": self.client_id}
        async with self.session.post(self.url + "/prompt", json=body) as response:
            answer = await response.json()
        prompt_id = answer["prompt_id"]
        while True:
            message = await self.ws.receive(timeout=timeout)
            if message.type in (8, 256, 257, 258):  # CLOSE, CLOSING, CLOSED, ERROR
                raise AssertionError(f"ComfyUI's websocket closed while waiting for {prompt_id}: {message}")
            if message.type != 1:  # aiohttp.WSMsgType.TEXT; binary previews are not expected
                continue
            data = json.loads(message.data)
            if (
                data.get("type") == "executing"
                and data["data"].get("node") is None
                and data["data"].get("prompt_id") == prompt_id
            ):
                return time.perf_counter_ns() - t0, prompt_id
            if data.get("type") == "execution_error":
                raise AssertionError(f"the chain failed: {data}")

    def open(self) -> None:
        self.loop.run_until_complete(self._open())

    def get_json(self, path: str) -> Any:
        async def _get() -> Any:
            async with self.session.get(self.url + path) as response:
                return await response.json()

        return self.loop.run_until_complete(_get())

    def run(self, prompt: dict[str, Any], timeout: float = 120) -> tuple[int, str]:
        """(nanoseconds from POST to done, prompt_id); ``timeout``: longest silence, seconds."""
        return self.loop.run_until_complete(self._run(prompt, timeout))

    def close(self) -> None:
        async def _close() -> None:
            await self.ws.close()
            await self.session.close()

        self.loop.run_until_complete(_close())
        self.loop.close()
