"""Reading a JSON array or NDJSON source: one Record an object, within the limits.

NDJSON is read a line at a time from bounded blocks (pipeline.bounded.LineBlocks), a JSON
array an element at a time (pipeline.json_array.JsonArray). An object's keys are matched to
the columns trimmed and in any case; its values are taken as written (numbers as their
text), and a value no column can hold (true, a list, an object) rejects the record. Mixed
into pipeline.sources.Source.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from pipeline.bounded import (
    BLANK_RUN,
    MALFORMED,
    MARK,
    NOT_UNICODE,
    SURROGATE,
    TOO_LARGE,
    LineBlocks,
    cut,
    escaped_text,
)
from pipeline.json_array import DECODER, JsonArray, Repeated
from pipeline.reasons import RejectReason
from pipeline.rules import COUNTRY_MAX, TRIM, Limits
from pipeline.source_file import (
    _REQUIRED,
    INVALID_COUNTRY,
    INVALID_TEXT,
    REQUIRED,
    UNKNOWN_COLUMNS_KEPT,
    Record,
    SourceError,
    SourceFile,
    id_texts,
)


class JsonRecords(SourceFile):
    """The records of an NDJSON or JSON array source (see pipeline.sources.Source.records)."""

    def _ndjson(self, stream: IO[str]) -> Iterator[Record]:
        limits = self.limits
        lines = LineBlocks(stream, 1, limits.max_line, limits.max_line, False, self._guarded)
        number = 0
        line_number = 0
        for block in lines:
            for text in block:
                line_number += 1
                if text.startswith(MARK):
                    if text.startswith(BLANK_RUN):
                        line_number += int(text[len(BLANK_RUN) :]) - 1
                        continue
                    number += 1
                    problem = f"a line longer than {limits.max_line} characters (limits.max_line)"
                    yield Record(number, line_number, None, None, problem, TOO_LARGE)
                    continue
                if text.isspace():
                    continue
                number += 1
                try:
                    obj = DECODER.decode(text)
                except json.JSONDecodeError as exc:
                    yield Record(number, line_number, None, _raw_text(text), f"not JSON: {exc.msg}")
                    continue
                except RecursionError:
                    problem = f"nested deeper than {limits.max_depth} levels"
                    yield Record(number, line_number, None, _raw_text(text), problem)
                    continue
                except ValueError:  # an integer over Python's digit limit
                    problem = "a number too long to read"
                    yield Record(number, line_number, None, _raw_text(text), problem)
                    continue
                yield self._object_record(number, line_number, obj, text)

    # -- JSON arrays ----------------------------------------------------------------------

    def _json(self, stream: IO[str]) -> Iterator[Record]:
        # The first character says what the document is: only an array holds records. (The
        # stream cannot go back: it may be gzip, and it is hashed as it is read.)
        first = stream.read(1)
        while first and first in " \t\r\n":  # JSON's white space
            first = stream.read(1)
        if not first:
            return  # an empty file: no records
        if first != "[":
            raise SourceError("not a JSON array (use .ndjson for one object a line)")
        limits = self.limits
        number = 0
        for number, (obj, text, problem) in enumerate(JsonArray(stream, limits), start=1):
            if problem is not None:
                yield Record(number, None, None, text, problem[0], problem[1])
            else:
                yield self._object_record(number, None, obj, text)

    def _object_record(self, number: int, line: int | None, obj: Any, text: str) -> Record:
        """A decoded JSON record; `text` is what it was decoded from."""
        limits = self.limits
        self._objects += isinstance(obj, dict)
        # A JSON escape (or a codec such as unicode_escape) can make a lone surrogate.
        unchecked = "\\u" in text or self._surrogates_possible
        if not isinstance(obj, dict):
            if unchecked and _has_surrogate(obj, limits.max_depth):
                return Record(number, line, None, _raw_text(text), NOT_UNICODE, INVALID_TEXT)
            problem = f"expected an object, got {type(obj).__name__}"
            raw, size = _raw_json(obj, text, limits)
            return Record(number, line, None, raw, problem, size=size)
        # This runs once per record: the common record (the six names as written here, text
        # and integers) takes the path with the fewest Python-level steps.
        if isinstance(obj, Repeated):
            problem = f"a column named twice ({', '.join(map(repr, obj.repeated))})"
            return _refused(number, line, obj, _raw_text(text), problem)
        known = self._known
        fields = obj if obj.keys() <= known else {k.strip(TRIM).lower(): v for k, v in obj.items()}
        if len(self.required_seen) < len(REQUIRED):
            self.required_seen.update(fields.keys() & _REQUIRED)
        if fields is not obj:
            if len(fields) < len(obj):  # two keys that name one column ("name", " Name")
                problem = f"a column named twice ({_named_twice(obj)})"
                raw, size = _raw_json(obj, text, limits)
                return _refused(number, line, obj, raw, problem, size=size)
            extra = fields.keys() - known
            if extra and len(self.unknown_columns) < UNKNOWN_COLUMNS_KEPT:
                self._note_unknown(sorted(extra))
        if unchecked and _has_surrogate(obj, limits.max_depth):
            return _refused(number, line, obj, _raw_text(text), NOT_UNICODE, INVALID_TEXT)
        columns = self.columns
        values = tuple(map(fields.get, columns))
        if not _TEXT_TYPES.issuperset(map(type, values)):
            try:
                values = tuple(map(_text, columns, values))
            except ValueError as exc:
                raw, size = _raw_json(obj, text, limits)
                return _refused(number, line, obj, raw, str(exc), size=size)
        if len(text) > limits.max_field:
            for column, value in zip(columns, values, strict=True):
                if value is not None and len(value) > limits.max_field:
                    problem = f"{column}: longer than {limits.max_field} characters"
                    return _refused(number, line, obj, _raw_text(text), problem, TOO_LARGE)
        country = values[1]
        if country is not None and len(country) > COUNTRY_MAX:
            country = country.strip(TRIM)
            if len(country) > COUNTRY_MAX:
                problem = f"country is {len(country)} characters long: no country is"
                return _refused(number, line, obj, _raw_text(text), problem, INVALID_COUNTRY)
        # Its text, not the decoded object, is kept for the rejects file, in case the rules
        # refuse it (Source.raw_of decodes it again): a third of the memory, or less.
        return Record(number, line, values, text)


_TEXT_TYPES = frozenset((str, type(None)))


def _refused(
    number: int, line: int | None, obj: dict[str, Any], raw: Any, problem: str,
    reason: RejectReason = MALFORMED, size: int = 0,
) -> Record:  # fmt: skip
    """A record the reader refuses, with the id fields its object gives (every one, for an
    object that names it twice): a snapshot keeps their residents (pipeline.dispatch)."""
    pairs = obj.pairs if isinstance(obj, Repeated) else obj.items()
    ids = tuple(v for k, v in pairs if str(k).strip(TRIM).lower() == "id")
    return Record(number, line, None, raw, problem, reason, id_texts(ids), size)


def _text(column: str, value: Any) -> str | None:
    """A JSON value as the text COPY sends; refuse what no column can hold."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{column}: {json.dumps(value)} is not a valid value")
    if isinstance(value, int):
        return str(value)
    raise ValueError(f"{column}: a {type(value).__name__}, not a single value")


def _named_twice(obj: dict[str, Any]) -> str:
    """The keys of a record that name the same column once trimmed and lower-cased."""
    names: dict[str, list[str]] = {}
    for key in obj:
        names.setdefault(key.strip(TRIM).lower(), []).append(key)
    return "; ".join(", ".join(map(repr, keys)) for keys in names.values() if len(keys) > 1)


def _has_surrogate(obj: Any, depth: int) -> bool:
    """Whether a decoded JSON value holds a lone surrogate (in a key or a string); a value
    nested deeper than `depth` is searched no further (it is rejected for its nesting)."""
    if isinstance(obj, str):
        return not obj.isascii() and SURROGATE.search(obj) is not None
    if depth <= 0:
        return False
    if isinstance(obj, dict):
        return any(_has_surrogate(k, depth) or _has_surrogate(v, depth - 1) for k, v in obj.items())
    if isinstance(obj, list):
        return any(_has_surrogate(v, depth - 1) for v in obj)
    return False


def _within_depth(obj: Any, depth: int) -> bool:
    if not isinstance(obj, (dict, list)):
        return True
    if depth <= 0:
        return False
    items = obj.values() if isinstance(obj, dict) else obj
    return all(_within_depth(v, depth - 1) for v in items)


def _raw_json(obj: Any, text: str, limits: Limits) -> tuple[Any, int]:
    """The raw record of a rejected JSON value and its Record.size: the value and the
    characters of its text, unless it is nested too deeply to be written back (then the
    start of its text, and 0)."""
    if _within_depth(obj, limits.max_depth):
        return obj, len(text)
    return _raw_text(text), 0


def _raw_text(text: str) -> str:
    """A record's text as its raw record: at most RAW_KEPT characters, always valid Unicode."""
    return escaped_text(cut(text.rstrip("\r\n")))
