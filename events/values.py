"""How a long text is marked as cut inside events: written by capture, read back by projections.

Capture keeps event values small (see ``capture.summary``): a text longer than its limit is
kept as its first characters and the length it had, ``"<first chars>…[<length> chars]"``. The
reconciler knows a cut text for the full one it was cut from. Both sides use this module, so
the marker is written in one place.
"""

from __future__ import annotations

import re

_CUT = re.compile(r"(.*)…\[(\d+) chars\]", re.DOTALL)


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[{len(text)} chars]"


def is_cut(text: str) -> bool:
    """Whether ``text`` is a cut text (ends with the marker ``cut`` writes)."""
    # The suffix test first: most texts are not cut, and it spares them the regex.
    return text.endswith(" chars]") and _CUT.fullmatch(text) is not None


def is_cut_of(cut_text: str, full: str) -> bool:
    """Whether ``cut_text`` is what ``cut`` makes of ``full``."""
    match = _CUT.fullmatch(cut_text)
    return match is not None and int(match[2]) == len(full) and full.startswith(match[1])
