"""The XMP packet that carries the plugin's document (or its sidecar pointer) in JPEG and WebP.

XMP is its own JPEG APP1 segment, so the document does not compete with ComfyUI's
prompt/workflow and the A1111 UserComment for EXIF's 64 KB, and every reader tested
(sd-parsers, sd-prompt-reader, exiftool, Pillow) ignores or lists it without failing. A JPEG
COM segment was ruled out: sd-prompt-reader takes any comment for Fooocus JSON and fails.

Reading parses untrusted XML, so the packet is size-capped and any DOCTYPE is refused before
the parser sees it (no entity expansion).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

#: Namespace of the plugin's XMP properties (exiftool shows them as ``XMP-rtmeta``).
NAMESPACE = "urn:comfyui-runtime-metadata:xmp:1/"
PREFIX = "rtmeta"
RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
#: Largest XMP packet a JPEG APP1 segment holds: 65,533 minus the 29-byte XMP header.
JPEG_XMP_MAX = 65_504
#: Largest XMP packet the reader parses; ours are at most the inline limit plus escaping.
MAX_XMP_BYTES = 16 << 20

_HEADER = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
_TRAILER = '<?xpacket end="w"?>'
# XML 1.0 cannot hold these even escaped; JSON can spell them as \\uXXXX inside strings.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


@dataclass(frozen=True)
class XmpFields:
    """The plugin's properties in an XMP packet."""

    document: str | None = None
    dropped: tuple[str, ...] = ()


def _escape(text: str) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _NOT_XML.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def build_xmp(fields: XmpFields) -> bytes:
    """A complete XMP packet (UTF-8) holding ``fields``."""
    parts = [
        _HEADER,
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">',
        f'<rdf:RDF xmlns:rdf="{RDF}">',
        f'<rdf:Description rdf:about="" xmlns:{PREFIX}="{NAMESPACE}">',
    ]
    if fields.document is not None:
        parts.append(f"<{PREFIX}:document>{_escape(fields.document)}</{PREFIX}:document>")
    if fields.dropped:
        parts.append(f"<{PREFIX}:dropped>{_escape(' '.join(fields.dropped))}</{PREFIX}:dropped>")
    parts += ["</rdf:Description>", "</rdf:RDF>", "</x:xmpmeta>"]
    packet = "".join(parts).encode("utf-8")
    # Even-sized: WebP pads an odd chunk with a byte that ComfyUI's 2024 frontend does not skip,
    # and its reader then fails on the whole file. XMP allows whitespace before the trailer.
    if (len(packet) + len(_TRAILER)) % 2:
        packet += b"\n"
    return packet + _TRAILER.encode("utf-8")


def parse_xmp(packet: bytes) -> XmpFields:
    """The plugin's properties in an XMP packet; raises ValueError on unusable input."""
    if len(packet) > MAX_XMP_BYTES:
        raise ValueError(f"XMP packet of {len(packet)} bytes exceeds MAX_XMP_BYTES")
    try:
        # Decoded first, so a UTF-16 packet cannot hide a DOCTYPE from the check below.
        text = packet.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"XMP packet is not UTF-8: {exc}") from exc
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ValueError("XMP packet declares a DOCTYPE or entities; refused")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"XMP packet is not well-formed XML: {exc}") from exc
    document: str | None = None
    dropped: tuple[str, ...] = ()
    for element in root.iter(f"{{{NAMESPACE}}}document"):
        document = element.text or ""
        break
    for element in root.iter(f"{{{NAMESPACE}}}dropped"):
        dropped = tuple((element.text or "").split())
        break
    return XmpFields(document, dropped)
