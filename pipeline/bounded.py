"""Bounded readers of a text stream's lines, for pipeline.sources, and what they share with
the JSON array reader (pipeline.json_array): the block size, the marks put in place of what
is not handed over, and how a reject's raw text is cut. A reader holds at most one line
(and a block) in memory whatever the stream holds, and takes time linear in it: what
exceeds a limit is skipped to its end and reported, never read whole.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Iterator
from typing import IO, Any

from pipeline.reasons import RejectReason

BLOCK = 1 << 20  # characters read at a time
RAW_KEPT = 200  # characters kept as the raw record of a reject too large or deep to keep whole
MALFORMED = RejectReason.MALFORMED_RECORD
TOO_LARGE = RejectReason.TOO_LARGE


class BrokenInput(ValueError):
    """The stream's structure is broken past this point (the caller's file error)."""


# Lines the line reader puts in place of what it does not hand over: a line over the limit,
# and a run of blank lines (folded into one line, so 1 GiB of them takes seconds, not
# minutes). They start with NUL and a token drawn per process, so no file can forge one.
MARK = "\0" + secrets.token_hex(8)
TOO_LONG = MARK + "L"
BLANK_RUN = MARK + "B"  # followed by how many lines it stands for
SURROGATE = re.compile("[\ud800-\udfff]")
NOT_UNICODE = "text that is not valid Unicode (a lone surrogate)"
LINE_END = re.compile(r"[\r\n]")


class LineGuard(io.BufferedIOBase):
    """Beneath the text decoder of a CSV or NDJSON file in an ASCII-compatible encoding: the
    bytes pass on, except that a line running over `limit` bytes (at least a block) is cut
    there, at a character's start, and ended, and the rest of it is dropped: the reader sees
    a line over its limit and refuses it; and a block of nothing but blank lines passes as
    one BLANK_RUN line. So the decoder's own readlines(), the fastest way to lines (0.25 s
    per 1M lines faster than splitting blocks), never holds more than `limit` bytes of one
    line, and 1 GiB of blank lines is a thousand lines, not a billion."""

    def __init__(self, binary: IO[bytes], limit: int, utf8: bool) -> None:
        self._in = binary
        self._limit = max(limit, BLOCK)  # a line within one read is never cut here
        self._utf8 = utf8
        self._out = memoryview(b"")
        self._run = 0  # bytes of the current line passed on so far
        self._skipping = False  # dropping the rest of a line that was cut
        self._drop_lf = False  # a read ended with \r, which may be half of a \r\n
        self._after_cr = False  # the bytes passed on end with \r (the decoder ends the line)
        self._eof = False

    def readable(self) -> bool:
        return True

    def read1(self, size: int = -1) -> bytes:
        # What the text decoder calls: pieces of the block passed on, no copy into a buffer.
        while not self._out and not self._eof:
            data = self._in.read(BLOCK)
            self._eof = not data
            self._out = memoryview(self._pass(data))
        n = len(self._out) if size is None or size < 0 else min(size, len(self._out))
        piece, self._out = self._out[:n], self._out[n:]
        return bytes(piece)

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size >= 0:
            return self.read1(size)
        return b"".join(iter(self.read1, b""))

    def readinto(self, buffer: Any) -> int:
        piece = self.read1(len(buffer))
        buffer[: len(piece)] = piece
        return len(piece)

    def _pass(self, data: bytes) -> bytes:
        if self._drop_lf and data:
            self._drop_lf = False
            if data.startswith(b"\n"):
                data = data[1:]
        if self._skipping:
            end = _first_end(data)
            if end < 0:
                return b""
            self._skipping = False
            if data[end : end + 2] == b"\r\n":
                end += 1
            elif data[end:] == b"\r":
                self._drop_lf = True
            data = data[end + 1 :]
        if self._after_cr and data.startswith(b"\n") and data.isspace():
            # The \n of a \r\n cut by the read: the \r passed on has ended its line, and a
            # blank run must not count the \n as one more (every line number after it
            # would be one too many).
            data = data[1:]
        self._after_cr = False
        if not data:
            return b""
        last = _last_end(data)
        if self._run == 0 and data.isspace() and last >= 0:
            head, tail = data[: last + 1], data[last + 1 :]
            count = head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n")
            self._drop_lf = tail == b"" and head.endswith(b"\r")
            self._run = len(tail)
            return f"{BLANK_RUN}{count}\n".encode("ascii") + tail
        first = _first_end(data)
        if self._run + (len(data) if first < 0 else first) > self._limit:
            cut = self._limit - self._run
            while self._utf8 and cut > 0 and data[cut] & 0xC0 == 0x80:
                cut -= 1  # a UTF-8 continuation byte: cut before its character
            self._skipping, self._run = True, 0
            return data[:cut] + b"\n" + self._pass(data[cut:])
        self._run = self._run + len(data) if last < 0 else len(data) - last - 1
        self._after_cr = data.endswith(b"\r")
        return data


def _first_end(data: bytes) -> int:
    lf, cr = data.find(b"\n"), data.find(b"\r")
    return cr if lf < 0 else lf if cr < 0 else min(lf, cr)


def _last_end(data: bytes) -> int:
    return max(data.rfind(b"\n"), data.rfind(b"\r"))


class LineBlocks:
    """A text stream's lines for csv.reader, in blocks of about BLOCK characters, each line
    at most `max_line` long: a longer one comes out as a TOO_LONG line, and a block of
    nothing but white space as one BLANK_RUN line. `careful` says whether the newest block
    holds a line longer than `careful_over` (or a lone surrogate): its records need the slow
    checks. The last two blocks are kept, so that a line just read can be had again by its
    number.

    Over a LineGuard (`guarded`), lines come from the stream's own readlines(). Otherwise
    (encodings where a line end is not one byte: utf-16, ...) blocks are read and split
    here, a long line skipped to its end: 0.2 s to 0.35 s more per 1M lines."""

    def __init__(
        self,
        stream: IO[str],
        first: int,
        max_line: int,
        careful_over: int,
        surrogates: bool,
        guarded: bool = False,  # the stream's bytes pass through a LineGuard
    ) -> None:
        self._stream = stream
        self._guarded = guarded
        self._max_line = max_line
        self._careful_over = careful_over
        self._surrogates = surrogates
        self._next = first  # the number of the next line to read
        self._kept: list[tuple[int, list[str]]] = []  # (number of its first line, lines)
        self._drop_newline = False  # a skipped line ended with \r at the end of a read
        self.careful = False

    def __iter__(self) -> Iterator[list[str]]:
        if self._guarded:
            yield from self._guarded_blocks()
            return
        carry = ""
        while True:
            chunk = self._stream.read(BLOCK)
            if self._drop_newline and chunk:
                self._drop_newline = False
                if chunk.startswith("\n"):
                    chunk = chunk[1:]
            text = carry + chunk if carry else chunk
            if not text:
                return
            lines, carry = self._split(text, final=not chunk)
            if lines:
                self._kept = [*self._kept[-1:], (self._next, lines)]
                self._next += len(lines)
                yield lines

    def _guarded_blocks(self) -> Iterator[list[str]]:
        """The stream's own readlines(): its LineGuard bounds a line, folds blank ones."""
        while lines := self._stream.readlines(BLOCK):
            longest = max(map(len, lines))
            if longest > self._max_line:
                lines = [TOO_LONG + "\n" if len(x) > self._max_line else x for x in lines]
            self.careful = longest > self._careful_over or (
                self._surrogates and any(map(SURROGATE.search, lines))
            )
            self._kept = [*self._kept[-1:], (self._next, lines)]
            self._next += len(lines)
            yield lines

    def _split(self, text: str, final: bool) -> tuple[list[str], str]:
        """The whole lines of `text` and what is left of it (the start of the next line)."""
        if text.isspace() and not final:
            # Blank lines: counted, not split. A trailing \r may be half of a \r\n.
            cut = max(text.rfind("\n"), text.rfind("\r")) + 1
            if cut == len(text) and text.endswith("\r"):
                cut -= 1
            head, carry = text[:cut], text[cut:]
            count = head.count("\n") + head.count("\r") - head.count("\r\n")
            lines = [f"{BLANK_RUN}{count}\n"] if count else []
            self.careful = False
        else:
            # newline="": \n, \r\n and \r end a line, as the stream's own readlines() has it.
            lines = io.StringIO(text, newline="").readlines()
            carry = ""
            if not final and not lines[-1].endswith("\n"):
                carry = lines.pop()  # unfinished, or a \r that may be half of a \r\n
            longest = max(map(len, lines), default=0)
            if longest > self._max_line:
                lines = [TOO_LONG + "\n" if len(x) > self._max_line else x for x in lines]
            self.careful = longest > self._careful_over or (
                self._surrogates and any(map(SURROGATE.search, lines))
            )
        if len(carry) > self._max_line:
            # Even white space: what follows it on the line is not known, so it is refused.
            lines.append(TOO_LONG + "\n")
            carry = self._skip_line()
        return lines, carry

    def _skip_line(self) -> str:
        """Read on to the end of the current line, dropping it; returns what follows it."""
        while chunk := self._stream.read(BLOCK):
            end = LINE_END.search(chunk)
            if end is None:
                continue
            rest = chunk[end.end() :]
            if end.group() == "\r":
                if rest.startswith("\n"):
                    rest = rest[1:]
                elif not rest:
                    self._drop_newline = True
            return rest
        return ""

    def text(self, first: int, last: int) -> list[str] | None:
        """Lines `first` to `last`, or None if they are no longer kept."""
        found = [
            lines[n - start]
            for start, lines in self._kept
            for n in range(max(first, start), min(last + 1, start + len(lines)))
        ]
        return found if len(found) == last - first + 1 else None


def cut(text: str) -> str:
    if len(text) <= RAW_KEPT:
        return text
    return f"{text[:RAW_KEPT]}… ({len(text)} characters)"


def escaped_text(text: str) -> str:
    """Lone surrogates written as \\udXXX escapes: text a rejects file can hold."""
    if text.isascii() or not SURROGATE.search(text):
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
