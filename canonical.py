"""The one encoding of a document, shared by the writers and by replay (so they match byte for byte)."""

from __future__ import annotations

from typing import Any

import msgspec


def canonical_json(doc: Any) -> bytes:
    """``doc`` as JSON with sorted keys, no spaces, UTF-8."""
    return msgspec.json.encode(doc, order="sorted")
