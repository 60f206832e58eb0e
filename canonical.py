"""The one encoding of a document, shared by the writers and by replay (so they match byte for byte)."""

from __future__ import annotations

from typing import Any

import msgspec


def encode_document(doc: Any) -> bytes:
    """``doc`` as canonical JSON: sorted keys (and Struct fields), no spaces, UTF-8."""
    return msgspec.json.encode(doc, order="sorted")


#: The same encoding, by the name the folds use for any JSON value they compare byte for byte.
canonical_json = encode_document
