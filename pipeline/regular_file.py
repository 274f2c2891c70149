"""Opening a file that must be a regular file, safely: without waiting (a FIFO would block
the open forever), checked on the open file (a file swapped for a FIFO or a device after it
was listed is caught), and read within a bound (`/dev/zero` never ends). Used for incoming
files (pipeline.sources), configuration files (pipeline.config_yaml) and the erasure key
file (pipeline.erasure_key), each of which words its own errors.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO


class NotRegular(OSError):
    """The path is not a regular file; `kind` says what it is ("a folder", "a FIFO"...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class TooLarge(OSError):
    """A file read with a bound holds more bytes than the bound."""


def open_regular(path: Path) -> tuple[IO[bytes], os.stat_result]:
    """`path` opened for reading, with its status (taken on the open file); NotRegular
    when it is not a regular file, the open's own OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegular(kind_of(info.st_mode))
        return open(fd, "rb"), info  # the caller's with-block closes it
    except BaseException:
        os.close(fd)
        raise


def read_bounded(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """A regular file's bytes, at most `limit` of them (TooLarge past it), with its status."""
    stream, info = open_regular(path)
    with stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise TooLarge(f"larger than {limit} bytes")
    return data, info


def kind_of(mode: int) -> str:
    """What a file that is not a regular one is, for a message: "a folder", "a FIFO"..."""
    kinds = {
        stat.S_ISDIR: "folder",
        stat.S_ISFIFO: "FIFO",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
    }
    return "a " + next((name for test, name in kinds.items() if test(mode)), "special file")
