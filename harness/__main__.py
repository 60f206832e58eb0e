"""``python -m runtime_metadata.harness``: provision the ComfyUIs the tests use, or say where one is.

    provision [GENERATION ...]   provision them (default: every generation) at the same time,
                                 then the random-weight SD1.5 models; one line per missing source
    where GENERATION             print "ROOT PYTHON" of a provisioned (or COMFYUI_PATH) ComfyUI

A generation whose source is missing (the modern one without ../shared) is skipped with one
line, or is an error under ``CI=true`` (exit status 1). ``scripts/test`` uses both commands.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable

from .models import ensure_models
from .provision import GENERATIONS, Installation, ProvisionError, SourceMissing, ensure_comfyui

EXIT_MISSING = 3  # `where`: the generation has no source here (and CI is not set)


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _say(prefix: str) -> Callable[[str], None]:
    lock = _PRINT_LOCK

    def say(message: str) -> None:
        with lock:
            print(f"[{prefix}] {message}", flush=True)

    return say


_PRINT_LOCK = threading.Lock()


def provision(generations: list[str]) -> int:
    """Provision each generation in a thread of its own (mostly pip and unpacking), then the models."""
    results: dict[str, Installation | BaseException] = {}

    def work(generation: str) -> None:
        try:
            results[generation] = ensure_comfyui(generation=generation, log=_say(generation))
        except BaseException as error:  # reported below, per generation
            results[generation] = error

    threads = [threading.Thread(target=work, args=(g,), name=f"provision-{g}") for g in generations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = 0
    ready: list[Installation] = []
    for generation in generations:
        result = results[generation]
        if isinstance(result, SourceMissing) and not _in_ci():
            print(f"[{generation}] skipped: {result}", flush=True)
        elif isinstance(result, BaseException):
            print(f"[{generation}] FAILED: {result}", file=sys.stderr, flush=True)
            status = 1
        else:
            print(f"[{generation}] {result.label} at {result.root}", flush=True)
            ready.append(result)
    if ready:
        try:
            models = ensure_models(ready[0], log=_say("models"))
            print(f"[models] {models.root}", flush=True)
        except ProvisionError as error:
            print(f"[models] FAILED: {error}", file=sys.stderr, flush=True)
            status = 1
    return status


def where(generation: str) -> int:
    """Print "ROOT PYTHON" of the generation's ComfyUI (provisioning it if needed)."""
    try:
        installation = ensure_comfyui(generation=generation, log=lambda message: print(message, file=sys.stderr))
    except SourceMissing as missing:
        print(f"{generation}: {missing}", file=sys.stderr)
        return 1 if _in_ci() else EXIT_MISSING
    print(installation.root, installation.python)
    return 0


def main(argv: list[str]) -> int:
    """Entry point."""
    if not argv or argv[0] not in ("provision", "where") or (argv[0] == "where" and len(argv) != 2):
        print(__doc__, file=sys.stderr)
        return 2
    names = argv[1:] or list(GENERATIONS)
    unknown = [name for name in names if name not in GENERATIONS]
    if unknown:
        print(f"unknown generation(s): {', '.join(unknown)} (known: {', '.join(GENERATIONS)})", file=sys.stderr)
        return 2
    try:
        return provision(names) if argv[0] == "provision" else where(names[0])
    except ProvisionError as error:
        print(f"runtime_metadata.harness: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
