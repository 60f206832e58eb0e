"""Event schema and the per-prompt log."""

from __future__ import annotations

from .log import FileLog, MemoryLog, ReadResult, read_log, read_log_file
from .schema import SCHEMA_VERSION, AnyEvent

__all__ = ["SCHEMA_VERSION", "AnyEvent", "FileLog", "MemoryLog", "ReadResult", "read_log", "read_log_file"]
