"""How the package reports problems: the exception root, and warnings logged once."""

from __future__ import annotations

import logging


class RuntimeMetadataError(Exception):
    """Base of every error this package raises on purpose."""


class LogFormatError(RuntimeMetadataError):
    """A file is not a runtime-metadata log, or one from a newer schema."""


class SidecarError(RuntimeMetadataError):
    """A sidecar is missing, altered, too large or points outside the image's folder."""


#: Distinct problems remembered as reported; past this, new ones are not logged (memory stays flat).
MAX_REPORTED = 100
_reported: set[str] = set()


def report_once(message: str) -> None:
    """Log ``message`` as a warning the first time it is seen in this process."""
    if message not in _reported and len(_reported) < MAX_REPORTED:
        _reported.add(message)
        logging.getLogger("runtime_metadata").warning("[runtime-metadata] %s", message)


def forget_reports() -> None:
    """Forget which problems were reported, so each is logged again (tests)."""
    _reported.clear()
