"""Where an incoming file first fails to decode, for its error message.

The readers decode a block at a time (pyarrow's, then Python's text layer), and their error
says neither the line nor the byte: "not valid utf-8 (invalid start byte)" could be
anywhere in a large file. Only when a file has failed so, it is read once more, a block at
a time, whole lines decoded, up to the first byte its encoding refuses: memory stays
bounded (a line longer than LONGEST ends the search), and a file that decodes costs
nothing.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from pipeline.bounded import BLOCK
from pipeline.regular_file import NotRegular, open_regular

# The longest line searched: past it the message says no more than the reader's error.
LONGEST = 64 << 20


def undecodable_at(path: Path, compressed: bool, encoding: str) -> tuple[int, int] | None:
    """(line, byte of that line), both from 1, of the first byte `encoding` cannot decode;
    None when that cannot be told: an encoding whose newline is not the byte 0x0A (UTF-16),
    a line over LONGEST, a file that cannot be read again, or no such byte."""
    if "\n".encode(encoding, "ignore") != b"\n":
        return None
    lines = 0
    pending = bytearray()  # the part of a line read so far
    try:
        with open_regular(path)[0] as raw:
            stream = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
            while block := stream.read(BLOCK):
                pending += block
                end = pending.rfind(b"\n") + 1
                if not end:
                    if len(pending) > LONGEST:
                        return None
                    continue
                whole = bytes(pending[:end])
                del pending[:end]
                if (at := _refused(whole, encoding)) is not None:
                    return _position(whole, at, lines)
                lines += whole.count(b"\n")
    except (OSError, EOFError, zlib.error, NotRegular):
        return None
    at = _refused(bytes(pending), encoding)
    return None if at is None else _position(bytes(pending), at, lines)


def _refused(data: bytes, encoding: str) -> int | None:
    """The offset of the first byte of `data` (whole lines) that `encoding` refuses."""
    try:
        data.decode(encoding)
    except UnicodeDecodeError as exc:
        return exc.start
    except UnicodeError:  # a codec that cannot say where
        return None
    return None


def _position(data: bytes, at: int, lines_before: int) -> tuple[int, int]:
    line_start = data.rfind(b"\n", 0, at) + 1
    return lines_before + data.count(b"\n", 0, at) + 1, at - line_start + 1
