"""comfyui-runtime-metadata: records what a ComfyUI run actually did and writes it into images.

As a ComfyUI custom-node package this exposes the node mappings and, when the configuration
enables capture, installs the executor hooks. Importing it outside ComfyUI does nothing else.
"""

from __future__ import annotations

WEB_DIRECTORY = "./web"  # the browser extension (plain ES modules, see web/)

# Imported as a package: by ComfyUI (custom_nodes/<folder>) or installed as runtime_metadata.
# pytest also imports this file, as a lone module, when the checkout's folder name is not a
# Python identifier (``git clone`` gives ``comfyui-runtime-metadata``); there is nothing to set up.
_AS_PACKAGE = bool(__package__)
if _AS_PACKAGE:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from .version import __version__


def _install_hooks() -> None:
    import sys

    if "execution" not in sys.modules:  # not inside ComfyUI: never touch anything
        return
    from . import routes
    from .capture import comfy, install_if_enabled_now, install_into_comfyui

    install_into_comfyui()
    try:
        comfy.register_prompt_handler(install_if_enabled_now)
        routes.setup()  # the JSON routes, the per-run push and the run history
    except Exception:  # a status page is never worth a failed ComfyUI start
        import logging

        logging.getLogger("runtime_metadata").warning("[runtime-metadata] routes not registered", exc_info=True)


if _AS_PACKAGE:
    _install_hooks()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY", "__version__"]
