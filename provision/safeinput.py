"""Reading files a user names (pastes, inventories, sysfs trees): regular files only, bounded in size, never
blocking. A FIFO, a device or a directory is refused at once (opened non-blocking, then fstat'ed, so a FIFO
with no writer cannot hang the read), and a file over the cap is refused with its size."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

from provision.errors import InputError

_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")


def printable(text: str) -> str:
    """Control characters (terminal escape sequences, NUL, bell, carriage return) shown as U+FFFD: text from a
    paste or an inventory is printed to a terminal later and must not drive it. Newlines and tabs stay."""
    return _CONTROLS.sub("\ufffd", text.replace("\r\n", "\n"))


PASTE_MAX_BYTES = 4 * 1024 * 1024  # far above any lspci/rocminfo/os-release paste (a 64-GPU rocminfo is < 1 MiB)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of a regular file, or InputError (exit 2) naming the file and the reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise InputError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InputError(f"the {what} file {path} is {_kind(info.st_mode)}, not a regular file: refused")
        if info.st_size > limit:
            raise InputError(f"the {what} file {path} is {info.st_size} bytes, more than the {limit} this "
                             "command reads: refused")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, 1 << 16):
            size += len(chunk)
            if size > limit:  # grew while being read
                raise InputError(f"the {what} file {path} is more than {limit} bytes: refused")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise InputError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str, limit: int = PASTE_MAX_BYTES) -> str:
    return printable(read_bytes(path, what, limit).decode("utf-8", errors="replace"))


def read_stdin(what: str, limit: int = PASTE_MAX_BYTES) -> str:
    data = sys.stdin.buffer.read(limit + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read(limit + 1).encode()
    if len(data) > limit:
        raise InputError(f"the {what} input on stdin is more than {limit} bytes: refused")
    return printable(data.decode("utf-8", errors="replace"))


def read_small_regular(path: Path, limit: int = 65536) -> str | None:
    """A sysfs-style attribute file: its text, or None when it is missing, unreadable or not a regular file
    (a FIFO planted in a tree given as --sysfs-root must not hang the command)."""
    try:
        return read_text(path, "sysfs", limit)
    except InputError:
        return None
