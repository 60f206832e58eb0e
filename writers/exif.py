"""EXIF for JPEG and WebP: ComfyUI's workflow/prompt tags and the A1111 UserComment.

Where each value goes, and why (see shared/FORMATS.md):

* UserComment (Exif IFD 0x9286) = ``b"UNICODE\\0"`` + UTF-16BE infotext: the only encoding
  that sd-parsers, sd-prompt-reader, exiftool and Civitai all read. piexif writes big-endian
  TIFF, so exiftool decodes the UTF-16 in the same byte order.
* ``workflow:<json>`` in IFD0 Make (0x010F), as ComfyUI's SaveAnimatedWEBP writes it; the
  frontend scans every IFD0 ASCII tag for the ``workflow:``/``prompt:`` prefixes.
* ``prompt:<json>`` in IFD0 ImageDescription (0x010E), never Model (0x0110): sd-prompt-reader
  ``json.loads`` IFD0 Model of every file and gives up on anything that is not JSON.
* other ``extra_pnginfo`` keys as ``<key>:<json>`` in the spare IFD0 ASCII tags below.

JPEG holds one EXIF segment of at most ``JPEG_EXIF_MAX`` bytes; when everything does not
fit, values are dropped in ``DROP_ORDER`` and the caller is told which. piexif builds the
bytes; ``add_exif_next_ifd`` repairs the one structural defect it has (no next-IFD offset
after the Exif IFD), and JPEGs get the tags EXIF requires there, so ``exiftool -validate``
reports nothing but minor odd-offset notes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import piexif

#: The EXIF payload of a JPEG APP1 segment, ``Exif\\0\\0`` included: 65,535 minus the length
#: field; Pillow and piexif both refuse 65,534.
JPEG_EXIF_MAX = 65_533
#: UserComment's 8-byte character-code prefix for UTF-16 text.
UNICODE_PREFIX = b"UNICODE\x00"
USER_COMMENT = piexif.ExifIFD.UserComment
MAKE = piexif.ImageIFD.Make
IMAGE_DESCRIPTION = piexif.ImageIFD.ImageDescription
#: IFD0 ASCII tags for extra_pnginfo keys other than ``workflow``, in order of use; none of
#: them is shown as a camera or author field by common viewers.
EXTRA_TAGS: tuple[int, ...] = (
    piexif.ImageIFD.DocumentName,
    piexif.ImageIFD.ImageHistory,
    piexif.ImageIFD.HostComputer,
)
#: What goes first when the JPEG segment is full: the prompt (the workflow rebuilds it), other
#: extra_pnginfo keys, the workflow, and only then the A1111 infotext.
DROP_ORDER = ("prompt", "extra", "workflow", "parameters")


@dataclass(frozen=True)
class ExifPayload:
    """EXIF bytes ready for Pillow's ``exif=``, and what had to be left out."""

    data: bytes
    dropped: tuple[str, ...]


def user_comment(text: str) -> bytes:
    """UserComment bytes for ``text``: ``UNICODE\\0`` + UTF-16BE."""
    return UNICODE_PREFIX + text.encode("utf-16-be", errors="surrogatepass")


def decode_user_comment(value: bytes) -> str | None:
    """The text of a UserComment in any of the three common encodings; None if empty."""
    code, body = value[:8], value[8:]
    if code == UNICODE_PREFIX:
        return _utf16_text(body) or None
    if code.rstrip(b"\x00") in (b"ASCII", b""):
        return body.decode("utf-8", errors="replace").rstrip("\x00") or None
    return value.decode("utf-8", errors="replace") or None


#: What starts A1111's settings line; it tells the byte order of a UserComment without a BOM.
_SETTINGS = "Steps: "


def _utf16_text(body: bytes) -> str:
    """A UNICODE UserComment's text: big-endian (what we and A1111 write) or little-endian (some tools)."""
    if body[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return body[2:].decode("utf-16-le" if body[:2] == b"\xff\xfe" else "utf-16-be", errors="replace")
    big = body.decode("utf-16-be", errors="replace")
    little = body.decode("utf-16-le", errors="replace")
    # An infotext has an ASCII settings line: whichever order reads it is the right one. Only
    # without one, count zero bytes (ASCII in little-endian has them at odd positions); a text
    # made of characters like U+4E00 alone is ambiguous and read as big-endian.
    if (_SETTINGS in big) != (_SETTINGS in little):
        return big if _SETTINGS in big else little
    return little if body[1::2].count(0) > body[0::2].count(0) else big


def _tagged(key: str, value: Any) -> str:
    # json.dumps escapes non-ASCII, so the value stays a valid EXIF ASCII string.
    return f"{key}:{json.dumps(value)}"


def build_exif(
    prompt: Any,
    extra_pnginfo: Mapping[str, Any] | None,
    parameters: str | None,
    *,
    limit: int | None = None,
    jpeg_size: tuple[int, int] | None = None,
) -> ExifPayload:
    """EXIF holding ComfyUI's values and the infotext, dropping values until it fits ``limit``.

    ``jpeg_size`` (width, height) adds the tags EXIF requires in a JPEG, which keeps
    ``exiftool -validate`` clean; they are never dropped (about 150 bytes).
    """
    extra = dict(extra_pnginfo or {})
    has_workflow = "workflow" in extra
    workflow = extra.pop("workflow", None)
    tagged_extras = [(str(key), _tagged(str(key), value)) for key, value in extra.items()]
    # (drop group, label reported when dropped, IFD, tag, value)
    items: list[tuple[str, str, str, int, Any]] = []
    if prompt is not None:
        items.append(("prompt", "prompt", "0th", IMAGE_DESCRIPTION, _tagged("prompt", prompt)))
    for (key, text), tag in zip(tagged_extras, EXTRA_TAGS, strict=False):
        items.append(("extra", f"extra:{key}", "0th", tag, text))
    if has_workflow:
        items.append(("workflow", "workflow", "0th", MAKE, _tagged("workflow", workflow)))
    if parameters is not None:
        items.append(("parameters", "parameters", "Exif", USER_COMMENT, user_comment(parameters)))
    if jpeg_size is not None:
        items += [("required", "", ifd, tag, value) for ifd, tag, value in _jpeg_required(*jpeg_size)]
    # More extra keys than spare tags: the surplus has nowhere to go.
    dropped = [f"extra:{key}" for key, _ in tagged_extras[len(EXTRA_TAGS) :]]

    data = _dump(items)
    for group in DROP_ORDER:
        if limit is None or len(data) <= limit:
            break
        dropped += [label for g, label, *_ in items if g == group]
        items = [item for item in items if item[0] != group]
        data = _dump(items)
    return ExifPayload(data, tuple(dropped))


def _jpeg_required(width: int, height: int) -> list[tuple[str, int, Any]]:
    return [
        ("0th", piexif.ImageIFD.XResolution, (72, 1)),
        ("0th", piexif.ImageIFD.YResolution, (72, 1)),
        ("0th", piexif.ImageIFD.ResolutionUnit, 2),  # inches
        ("0th", piexif.ImageIFD.YCbCrPositioning, 1),  # centered
        ("Exif", piexif.ExifIFD.ExifVersion, b"0232"),
        ("Exif", piexif.ExifIFD.ComponentsConfiguration, b"\x01\x02\x03\x00"),  # Y Cb Cr
        ("Exif", piexif.ExifIFD.FlashpixVersion, b"0100"),
        ("Exif", piexif.ExifIFD.ColorSpace, 1),  # sRGB
        ("Exif", piexif.ExifIFD.PixelXDimension, width),
        ("Exif", piexif.ExifIFD.PixelYDimension, height),
    ]


def _dump(items: list[tuple[str, str, str, int, Any]]) -> bytes:
    ifds: dict[str, dict[int, Any]] = {"0th": {}, "Exif": {}}
    for _, _, ifd, tag, value in items:
        ifds[ifd][tag] = value
    return add_exif_next_ifd(bytes(piexif.dump(ifds)))


#: Byte size of each TIFF field type, to tell inline values (<= 4 bytes) from offsets.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}


def add_exif_next_ifd(data: bytes) -> bytes:
    """piexif's EXIF with the Exif IFD's missing next-IFD offset added (piexif issue #116).

    piexif 1.1.3 ends the Exif IFD right after its entries, so strict readers take the first
    four bytes of the UserComment as a next-IFD offset (exiftool: "Value for ExifIFD tag
    0x9286 UserComment overlaps IFD"). Four zero bytes go in, and the offsets of the values
    stored after them move by four. Input that does not have the defect is returned as is.
    """
    if not data.startswith(b"Exif\x00\x00") or len(data) < 14:
        return data
    tiff = bytearray(data[6:])
    endian = {b"MM": ">", b"II": "<"}.get(bytes(tiff[:2]))
    if endian is None:
        return data
    (ifd0,) = struct.unpack_from(endian + "I", tiff, 4)
    exif_ifd = None
    (count,) = struct.unpack_from(endian + "H", tiff, ifd0)
    for i in range(count):
        tag, _, _, value = struct.unpack_from(endian + "HHII", tiff, ifd0 + 2 + 12 * i)
        if tag == piexif.ImageIFD.ExifTag:
            exif_ifd = value
    if exif_ifd is None:
        return data
    (count,) = struct.unpack_from(endian + "H", tiff, exif_ifd)
    end = exif_ifd + 2 + 12 * count
    offsets = []
    for i in range(count):
        entry = exif_ifd + 2 + 12 * i
        _, kind, n, value = struct.unpack_from(endian + "HHII", tiff, entry)
        if _TYPE_SIZES.get(kind, 1) * n > 4:
            offsets.append((entry + 8, value))
    if len(tiff) != end and all(value != end for _, value in offsets):
        return data  # a next-IFD offset is already there
    for field_at, value in offsets:
        if value >= end:
            struct.pack_into(endian + "I", tiff, field_at, value + 4)
    tiff[end:end] = b"\x00\x00\x00\x00"
    return data[:6] + bytes(tiff)


#: Pointers to the sub-IFDs piexif reads: Exif and GPS from IFD0, Interoperability from Exif.
_SUB_IFDS = {piexif.ImageIFD.ExifTag, piexif.ImageIFD.GPSTag, piexif.ExifIFD.InteroperabilityTag}


def exif_bounds_problem(data: bytes) -> str | None:
    """Why piexif must not be given ``data``, or None: an entry claiming more values than the EXIF holds.

    piexif builds a struct format of ``count`` letters from the count it reads, so one entry
    claiming four billion LONGs asks for gigabytes whatever the file's size. Every IFD piexif
    reads (IFD0, Exif, GPS, Interoperability, IFD1) is checked first, in O(entries).
    """
    tiff = data[6:] if data.startswith(b"Exif\x00\x00") else data
    endian = {b"MM": ">", b"II": "<"}.get(bytes(tiff[:2]))
    if endian is None or len(tiff) < 8:
        return None  # piexif refuses these itself, cheaply
    (ifd0,) = struct.unpack_from(endian + "I", tiff, 4)
    pending, seen = [ifd0], set()
    while pending:
        at = pending.pop()
        if at == 0 or at in seen or at + 2 > len(tiff):  # 0: no such IFD
            continue
        seen.add(at)
        (count,) = struct.unpack_from(endian + "H", tiff, at)
        if at + 2 + 12 * count > len(tiff):
            return f"an IFD at byte {at} claims {count} entries past the end of the EXIF"
        for i in range(count):
            tag, kind, n, value = struct.unpack_from(endian + "HHII", tiff, at + 2 + 12 * i)
            if n * _TYPE_SIZES.get(kind, 1) > len(tiff):
                return f"tag 0x{tag:04X} claims {n} values, more than the EXIF's {len(tiff)} bytes hold"
            if tag in _SUB_IFDS:
                pending.append(value)
        if at == ifd0 and at + 6 + 12 * count <= len(tiff):
            pending.append(struct.unpack_from(endian + "I", tiff, at + 2 + 12 * count)[0])  # IFD1
    return None


@dataclass(frozen=True)
class ExifValues:
    """What this package reads back from EXIF."""

    prompt: str | None = None
    workflow: str | None = None
    extra: dict[str, str] | None = None
    parameters: str | None = None


def read_exif(data: bytes) -> ExifValues:
    """ComfyUI values (any IFD0 ASCII tag) and the UserComment infotext from EXIF bytes."""
    if not data.startswith(b"Exif\x00\x00"):
        # WebP's EXIF chunk is bare TIFF; piexif wants the JPEG-style header.
        data = b"Exif\x00\x00" + data
    problem = exif_bounds_problem(data)
    if problem is not None:
        raise ValueError(problem)
    loaded = piexif.load(data)
    prompt: str | None = None
    workflow: str | None = None
    extra: dict[str, str] = {}
    for tag, value in (loaded.get("0th") or {}).items():
        if not isinstance(value, bytes):
            continue
        key, sep, rest = value.rstrip(b"\x00").decode("latin-1").partition(":")
        if not sep:
            continue
        # Any IFD0 ASCII tag, as ComfyUI's frontend scans them (ComfyUI itself uses Model).
        if key == "prompt" and prompt is None:
            prompt = rest
        elif key == "workflow" and workflow is None:
            workflow = rest
        elif tag in EXTRA_TAGS and key not in ("prompt", "workflow"):
            extra[key] = rest
    comment = (loaded.get("Exif") or {}).get(USER_COMMENT)
    parameters = decode_user_comment(comment) if isinstance(comment, bytes) else None
    return ExifValues(prompt, workflow, extra or None, parameters)
