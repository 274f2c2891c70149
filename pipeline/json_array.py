"""The elements of a JSON array, read within limits, for pipeline.sources: each record is
decoded by json's own C decoder from a bounded window of the stream; one over the record
limit or nested too deeply is skipped to its end in bounded memory, and the array goes on.
Memory holds at most one record and a block whatever the stream holds, and time is linear
in it. (The line readers, and what both share, are pipeline.bounded.)
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from typing import IO, Any

from pipeline.bounded import BLOCK, MALFORMED, RAW_KEPT, TOO_LARGE, BrokenInput, escaped_text
from pipeline.reasons import RejectReason
from pipeline.rules import Limits


class Repeated(dict):  # type: ignore[type-arg]
    """A JSON object that names a key more than once, as decoded (json keeps the last
    value): its record is refused, not loaded with whichever value came last. `repeated`:
    those keys; `pairs`: every key and value as given."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs
        counts = Counter(k for k, _ in pairs)  # linear: a record may hold many keys
        self.repeated = sorted(k for k, n in counts.items() if n > 1)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    return obj if len(obj) == len(pairs) else Repeated(pairs)


# JSON numbers are kept as written (see pipeline.sources); integers are read as int (cheap)
# and given back as written; NaN and Infinity are text, as in CSV. Each object is built from
# its pairs, so that a key given twice is seen (14% slower to decode than a dict made
# directly, on the bench's records; pyarrow's reader, the bulk path, refuses such a file).
DECODER = json.JSONDecoder(parse_float=str, parse_constant=str, object_pairs_hook=_object)
JSON_SPACE = re.compile(r"[ \t\r\n]*")
# Only numbers and literals can be cut short by the end of a buffer and still parse.
CLOSED = frozenset('}]"')


class JsonArray:
    """The elements of a JSON array (its "[" already read), each decoded by json's own C
    decoder from a window of the stream that holds at most `limits.max_record` characters
    of it. Yields (value, text, None), or (None, start of its text, (problem, reason)) for an
    element over the record limit or nested too deeply: it is skipped to its end, in bounded
    memory, and the array goes on. Anything that breaks the array itself (a missing comma,
    invalid JSON within a record, the end of the file inside the array) is a SourceError:
    nothing after it can be trusted.

    (ijson, which this replaces, used the yajl2_c backend: yajl lexes again from its start a
    token that spans reads, so one long string cost time quadratic in its length; and it
    built values of any depth.)"""

    def __init__(self, stream: IO[str], limits: Limits) -> None:
        self._stream = stream
        self._limits = limits
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._count = 0

    def __iter__(self) -> Iterator[tuple[Any, str, tuple[str, RejectReason] | None]]:
        if self._next_char() == "]":
            self._pos += 1
            self._after_end()
            return
        while True:
            self._count += 1
            yield self._element()
            pos = self._pos
            c = self._buf[pos : pos + 1]  # most often the comma, right after the record
            if c not in SEPARATORS:
                c = self._next_char()
            self._pos += 1
            if c == "]":
                self._after_end()
                return
            if c != ",":
                where = f"after record {self._count}"
                if not c:
                    raise BrokenInput(f"the JSON array is not closed ({where}, the file ends)")
                raise BrokenInput(f"not a JSON array of objects: expected , or ] {where}")

    def _fill(self, size: int) -> None:
        """Keep the unread part of the buffer and read until it holds `size` characters."""
        if self._pos:
            self._buf = self._buf[self._pos :]
            self._pos = 0
        while len(self._buf) < size and not self._eof:
            chunk = self._stream.read(max(BLOCK, size - len(self._buf)))
            if not chunk:
                self._eof = True
            self._buf += chunk

    def _next_char(self) -> str:
        """The next character that is not JSON white space ("" at the end of the file)."""
        while True:
            match = JSON_SPACE.match(self._buf, self._pos)
            self._pos = match.end() if match else self._pos
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if self._eof:
                return ""
            self._fill(BLOCK)

    def _element(self) -> tuple[Any, str, tuple[str, RejectReason] | None]:
        limit = self._limits.max_record
        pos = self._pos
        if self._buf[pos : pos + 1] != "{" and not self._next_char():
            raise BrokenInput(
                f"the JSON array is not closed (the file ends at record {self._count})"
            )
        while True:
            buf, pos = self._buf, self._pos
            window = len(buf) - pos
            try:
                value, end = DECODER.raw_decode(buf, pos)
            except RecursionError:
                return self._skipped(
                    f"nested deeper than {self._limits.max_depth} levels", MALFORMED
                )
            except ValueError as exc:  # JSONDecodeError, or an integer over the digit limit
                if not self._eof and window <= limit:
                    # The element may go on past the buffer: twice the window (linear time),
                    # and no more than the limit needs (json keeps a list of the pieces of a
                    # string of escapes: memory grows with the window).
                    self._fill(max(min(2 * window, limit + 1), BLOCK))
                    continue
                if not isinstance(exc, json.JSONDecodeError):
                    return self._skipped("a number too long to read", MALFORMED)
                return self._invalid(exc)
            if end - pos > limit:
                return self._skipped(f"a record longer than {limit} characters", TOO_LARGE)
            if end == len(buf) and not self._eof and buf[end - 1] not in CLOSED:
                self._fill(max(2 * window, BLOCK))  # a number may go on in the next read
                continue
            self._pos = end
            return value, buf[pos:end], None

    def _invalid(
        self, exc: json.JSONDecodeError
    ) -> tuple[Any, str, tuple[str, RejectReason] | None]:
        """The decoder failed on a full window: an element over the limit, or broken JSON."""
        limit = self._limits.max_record
        start = self._pos
        raw, length = self._skip_value()
        if length > limit:
            return None, raw, (f"a record longer than {limit} characters", TOO_LARGE)
        raise BrokenInput(
            f"not a JSON array of objects: record {self._count}: {exc.msg}"
            f" (at character {exc.pos - start + 1} of it)"
        )

    def _skipped(
        self, problem: str, reason: RejectReason
    ) -> tuple[Any, str, tuple[str, RejectReason] | None]:
        limit = self._limits.max_record
        raw, length = self._skip_value()
        if length > limit:
            return None, raw, (f"a record longer than {limit} characters", TOO_LARGE)
        return None, raw, (problem, reason)

    def _skip_value(self) -> tuple[str, int]:
        """Move past the value that starts at the current position, reading on as needed
        but keeping no more than a block: (the start of its text, its length). Linear in
        its length whatever it holds (a run of brackets is counted, not walked)."""
        self._fill(RAW_KEPT)
        head = self._buf[self._pos : self._pos + RAW_KEPT]
        first = head[0]
        length = 1  # characters of the value passed so far
        self._pos += 1
        depth = 1 if first in "[{" else 0
        in_string = first == '"'
        while True:
            buf, i = self._buf, self._pos
            if i >= len(buf):
                if self._eof:
                    raise BrokenInput(
                        f"not a JSON array of objects: the file ends inside record {self._count}"
                    )
                self._fill(BLOCK)
                continue
            if in_string:
                # The closing quote is the first one after an even run of backslashes. (A
                # regular expression for a string body keeps a backtracking mark per escape:
                # 240 MB for 4 MB of them.)
                quote = buf.find('"', i)
                stop = len(buf) if quote < 0 else quote
                run = stop - i - len(buf[i:stop].rstrip("\\"))
                if quote >= 0:
                    length += quote + 1 - i
                    self._pos = quote + 1
                    if run % 2 == 0:
                        in_string = False
                        if depth == 0:
                            break
                    continue
                # The buffer ends inside the string: keep an odd last backslash, whose escape
                # goes on in the next read.
                keep = run % 2
                length += stop - keep - i
                self._pos = stop - keep
                if self._eof:
                    raise BrokenInput(
                        f"not a JSON array of objects: the file ends inside record {self._count}"
                    )
                self._fill(keep + BLOCK)
                continue
            if depth == 0:  # a number or a literal: it ends where a delimiter starts
                end = SCALAR_END.search(buf, i)
                stop = len(buf) if end is None else end.start()
                length += stop - i
                self._pos = stop
                if end is None:
                    continue
                break
            quote = buf.find('"', i)
            stop = quote if quote >= 0 else len(buf)
            closes = buf.count("]", i, stop) + buf.count("}", i, stop)
            if depth > closes:  # the value cannot end in this stretch: count, do not walk
                depth += buf.count("[", i, stop) + buf.count("{", i, stop) - closes
            else:
                for bracket in BRACKETS.finditer(buf, i, stop):
                    depth += 1 if bracket.group() in "[{" else -1
                    if depth == 0:
                        stop, quote = bracket.end(), -1
                        break
            length += stop - i
            self._pos = stop
            if depth == 0:
                break
            if quote >= 0:
                in_string = True
                length += 1
                self._pos = stop + 1
        raw = head if length <= RAW_KEPT else f"{head}… ({length} characters)"
        return escaped_text(raw), length

    def _after_end(self) -> None:
        """After the array's "]": white space only (it is read, so that all of it is hashed)."""
        while True:
            c = self._next_char()
            if not c:
                return
            raise BrokenInput("text after the end of the JSON array")


SEPARATORS = frozenset(",]")
SCALAR_END = re.compile(r"[,\]}\s]")
BRACKETS = re.compile(r"[\[\]{}]")
