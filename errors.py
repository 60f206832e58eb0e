"""The project's exception root."""

from __future__ import annotations


class RuntimeMetadataError(Exception):
    """Base of every error this package raises on purpose."""


class LogFormatError(RuntimeMetadataError):
    """A file is not a runtime-metadata log, or one from a newer schema."""


class SidecarError(RuntimeMetadataError):
    """A sidecar is missing, altered, too large or points outside the image's folder."""


class ConfigError(RuntimeMetadataError):
    """A configuration value is invalid (reported, then replaced by its default)."""
