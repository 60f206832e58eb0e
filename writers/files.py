"""Opening files named by users or by other files: regular files only, never blocking.

A FIFO opened for reading blocks until a writer comes (forever, in a folder of logs or under
an image's name), a device such as ``/dev/zero`` never ends, and a directory opened with
``os.open`` succeeds and fails only at the first read. So the file is opened without
blocking, checked with ``fstat`` on the descriptor it opened (no race with a rename), and
refused, descriptor closed, unless it is a regular file.
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class NotARegularFile(OSError):
    """The path names a directory, a FIFO, a device or a socket, not a file."""

    def __init__(self, path: str, kind: str) -> None:
        super().__init__(f"{path} is {kind}, not a file")
        self.path = path
        self.kind = kind


def kind_of(mode: int) -> str:
    """What a file of ``mode`` is, in words (for messages)."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = True) -> BinaryIO:
    """``path`` opened for binary reading; NotARegularFile (an OSError) unless it is a regular file."""
    flags = _FLAGS if follow_symlinks else _FLAGS | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(os.fspath(path), kind_of(mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # regular files ignore it; cleared so reads behave as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def describe_os_error(path: str | os.PathLike[str], exc: OSError) -> str:
    """One line for a file that could not be opened: what it is, or why not."""
    if isinstance(exc, NotARegularFile):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"{os.fspath(path)}: no such file"
    if isinstance(exc, IsADirectoryError):
        return f"{os.fspath(path)} is a directory, not a file"
    if isinstance(exc, PermissionError):
        return f"{os.fspath(path)}: permission denied"
    return f"{os.fspath(path)}: cannot be read ({exc.strerror or exc})"
