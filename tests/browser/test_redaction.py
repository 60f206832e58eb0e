"""A key typed into a widget in ComfyUI's own frontend never leaves in a saved image (issue 14).

As a user would: the graph is on screen, the key is typed into the API node's ``api_key``
widget through the frontend's own text prompt, and the run is queued with the frontend's queue
button. The save nodes write PNG, WebP and JPEG (each with a sidecar: the runtime document is
sent out of the image). Every written file is searched for the key as UTF-8, UTF-16BE and
UTF-16LE; then the PNG and the WebP, downloaded from the server's ``/view``, are dropped onto
the canvas: the graph comes back with ``[redacted]`` in the key field and every
other value as it was. With ``keep_api_keys`` on, the same search finds the key and the reloaded
field holds it: the search is able to see a leak.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import unique_int

KEY = "sk-proj-BROWSER-DO-NOT-LEAK-4242"
REDACTED = "[redacted]"
COLOR = 0x406080
WIDTH, HEIGHT = 72, 40
FORMATS = ("png", "webp", "jpeg")
RELOADABLE = ("png", "webp")  # the frontends load graphs from these by drag and drop (not JPEG)
KEYED, EMPTY = 1, 2
SAVE = {fmt: 3 + i for i, fmt in enumerate(FORMATS)}  # node id of each format's save node
SIDECAR_LIMIT_KB = 1  # smaller than any runtime document: every image gets its sidecar


@pytest.fixture(scope="module")
def server(comfy_server) -> Any:
    """A server with the integration tests' node pack (KeyedColor), sidecars on."""
    testpack = Path(__file__).resolve().parents[1] / "integration" / "testpack"
    server = comfy_server(enabled=True, name="redaction", packs={"testpack": testpack})
    config = json.loads(server.config_path.read_text())
    config["runtime_hooks"]["inline_size_limit_kb"] = SIDECAR_LIMIT_KB  # read at each run
    server.config_path.write_text(json.dumps(config))
    yield server
    comfy_server.stop("redaction")


def workflow(prefix: str) -> dict[str, Any]:
    """KeyedColor (key empty, to be typed) -> EmptyImage's colour -> a save node per format."""

    def node(
        id_: int, kind: str, pos: list[int], widgets: list[Any], inputs: list[Any], outputs: list[Any]
    ) -> dict[str, Any]:
        return {
            "id": id_,
            "type": kind,
            "pos": pos,
            "size": [280, 130],
            "flags": {},
            "order": id_ - 1,
            "mode": 0,
            "inputs": inputs,
            "outputs": outputs,
            "properties": {},
            "widgets_values": widgets,
        }

    save_links = [2 + i for i in range(len(FORMATS))]
    nodes = [
        node(
            KEYED,
            "KeyedColor",
            [30, 100],
            ["", COLOR],
            [],
            [{"name": "INT", "type": "INT", "links": [1], "slot_index": 0}],
        ),
        node(
            EMPTY,
            "EmptyImage",
            [350, 100],
            [WIDTH, HEIGHT, 1, 0],
            [{"name": "color", "type": "INT", "link": 1, "widget": {"name": "color"}}],
            [{"name": "IMAGE", "type": "IMAGE", "links": save_links, "slot_index": 0}],
        ),
    ]
    links: list[list[Any]] = [[1, KEYED, 0, EMPTY, 0, "INT"]]
    for row, (link, fmt) in enumerate(zip(save_links, FORMATS, strict=True)):
        # filename_prefix, format, quality, lossless, capture, embed_workflow, embed_runtime, keep_api_keys
        widgets = [f"{prefix}-{fmt}", fmt, 90, False, "auto", True, True, False]
        nodes.append(
            node(
                SAVE[fmt],
                "SaveImageRuntimeMetadata",
                [680, 20 + 290 * row],
                widgets,
                [{"name": "images", "type": "IMAGE", "link": link}],
                [],
            )
        )
        links.append([link, EMPTY, 0, SAVE[fmt], 0, "IMAGE"])
    return {
        "last_node_id": max(SAVE.values()),
        "last_link_id": max(save_links),
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def type_into_widget(page: Any, node_id: int, name: str, text: str) -> None:
    """Click a text widget on the canvas and type into the prompt the frontend opens for it."""
    x, y = page.evaluate(
        """([id, name]) => {
             const canvas = window.app.canvas;
             canvas.draw(true, true);  // widgets know their place once drawn
             const node = window.app.graph.getNodeById(id);
             const widget = node.widgets.find((w) => w.name === name);
             const top = widget.y ?? widget.last_y;  // LiteGraph of 2024 names it last_y
             const height = widget.computedHeight ?? window.LiteGraph.NODE_WIDGET_HEIGHT;
             const [cx, cy] = canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2, node.pos[1] + top + height / 2]);
             const box = canvas.canvas.getBoundingClientRect();
             return [box.left + cx, box.top + cy];
           }""",
        [node_id, name],
    )
    page.page.mouse.click(x, y)
    field = page.page.locator(".graphdialog input, .graphdialog textarea").first
    field.wait_for(state="visible")
    field.fill(text)
    field.press("Enter")


def widgets_of(page: Any, node_id: int) -> dict[str, Any]:
    """The widget values of a node of the graph on screen, by name."""
    return dict(
        page.evaluate(
            "(id) => Object.fromEntries(window.app.graph.getNodeById(id).widgets.map((w) => [w.name, w.value]))",
            node_id,
        )
    )


def run_from_the_ui(page: Any, server: Any, keep_api_keys: bool) -> dict[str, list[Path]]:
    """Type the key, queue with the queue button; each format's written files (image first)."""
    prefix = f"browser-redaction-{unique_int()}"  # nothing cached from an earlier run
    page.load_workflow(workflow(prefix))
    type_into_widget(page, KEYED, "api_key", KEY)
    assert widgets_of(page, KEYED)["api_key"] == KEY  # the frontend took what was typed
    page.screenshot("redaction-typed" + ("-kept" if keep_api_keys else ""))
    if keep_api_keys:
        for node_id in SAVE.values():
            page.set_widget(node_id, "keep_api_keys", True)
    prompt_id = page.run_workflow()
    entry = server.get_json(f"/history/{prompt_id}")[prompt_id]
    assert entry["status"]["status_str"] == "success", entry["status"]
    # ComfyUI ran the key the user typed: redaction only touches what is written.
    assert entry["prompt"][2][str(KEYED)]["inputs"]["api_key"] == KEY
    written = {}
    for fmt, node_id in SAVE.items():
        (image,) = entry["outputs"][str(node_id)]["images"]
        path = server.output_dir / image["subfolder"] / image["filename"]
        beside = sorted(p for p in path.parent.iterdir() if p.name.startswith(path.stem) and p != path)
        written[fmt] = [path, *beside]
    return written


def leaks(data: bytes) -> list[str]:
    """The encodings in which ``data`` holds the key."""
    return [encoding for encoding in ("utf-8", "utf-16-be", "utf-16-le") if KEY.encode(encoding) in data]


#: The type a file manager gives a dragged file (the March-2024 server sends WebP as
#: application/octet-stream, and the frontends choose a reader by the file's type).
MIME = {".png": "image/png", ".webp": "image/webp"}


def drop_saved_image(page: Any, server: Any, path: Path) -> None:
    """Drop a saved image onto the canvas, as a user drags the file they downloaded."""
    page.evaluate("window.app.graph.clear()")  # what comes back comes from the image
    rel = path.relative_to(server.output_dir)
    url = f"/view?filename={rel.name}&subfolder={rel.parent.as_posix().strip('.')}&type=output"
    transfer = page.page.evaluate_handle(
        """async ([url, name, type]) => {
             const blob = await (await fetch(url)).blob();
             const transfer = new DataTransfer();
             transfer.items.add(new File([blob], name, { type }));
             return transfer;
           }""",
        [url, rel.name, MIME[path.suffix]],
    )
    page.page.dispatch_event("canvas#graph-canvas, #graph-canvas", "drop", {"dataTransfer": transfer})
    page.page.wait_for_function(
        "(id) => window.app.graph.getNodeById(id)?.type === 'KeyedColor'", arg=KEYED, timeout=30_000
    )


def test_a_key_typed_in_the_ui_is_in_no_written_byte_and_reloads_redacted(server, open_page) -> None:
    page = open_page(server)
    written = run_from_the_ui(page, server, keep_api_keys=False)
    for fmt, files in written.items():
        assert len(files) == 2, files  # the image and its sidecar
        for path in files:
            assert leaks(path.read_bytes()) == [], f"{fmt}: {path.name}"
    for fmt in RELOADABLE:
        drop_saved_image(page, server, written[fmt][0])
        assert widgets_of(page, KEYED) == {"api_key": REDACTED, "color": COLOR}, fmt
        empty = widgets_of(page, EMPTY)
        assert (empty["width"], empty["height"], empty["batch_size"]) == (WIDTH, HEIGHT, 1), fmt
        save = widgets_of(page, SAVE[fmt])
        assert (save["format"], save["keep_api_keys"]) == (fmt, False), fmt
        page.evaluate("window.app.canvas.ds.scale = 1; window.app.canvas.ds.offset = [20, 140]")
        page.redraw()
        page.screenshot(f"redaction-reloaded-{fmt}")
    assert page.console.ours() == [], page.console.ours()


def test_with_keep_api_keys_the_same_search_finds_the_key(server, open_page) -> None:
    page = open_page(server)
    written = run_from_the_ui(page, server, keep_api_keys=True)
    for fmt, (image, sidecar) in written.items():
        assert leaks(image.read_bytes()) != [], fmt  # ComfyUI's chunks, as the user asked
        assert leaks(sidecar.read_bytes()) == [], fmt  # the plugin's own document never holds it
    for fmt in RELOADABLE:
        drop_saved_image(page, server, written[fmt][0])
        assert widgets_of(page, KEYED) == {"api_key": KEY, "color": COLOR}, fmt
    assert page.console.ours() == [], page.console.ours()
