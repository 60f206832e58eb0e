"""The browser benchmark reuses the browser tests' fixtures (Chromium, a real ComfyUI page)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # `tests` is a package of the checkout, not of the install
    sys.path.insert(0, str(REPO_ROOT))

from tests.browser import conftest as browser_tests  # noqa: E402

UNAVAILABLE = browser_tests.UNAVAILABLE
IN_CI = browser_tests.IN_CI
if UNAVAILABLE and not IN_CI:
    collect_ignore_glob = ["test_*.py"]

pytest_generate_tests = browser_tests.pytest_generate_tests
generation = browser_tests.generation
installation = browser_tests.installation
comfy_server = browser_tests.comfy_server
browser = browser_tests.browser
open_page = browser_tests.open_page


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if UNAVAILABLE and not IN_CI:
        terminalreporter.write_line(f"browser benchmark not run: {UNAVAILABLE}", yellow=True)
