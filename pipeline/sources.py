"""Reading incoming files: CSV, JSON arrays and NDJSON, optionally gzipped, streamed.

A source yields `Record`s: the record's number in the file (1-based), the line it
starts on (CSV and NDJSON), its six known fields as text (or None), and the raw
record for a rejects file. Nothing here holds more than one record in memory.

File-level problems (no header, a required column missing, undecodable bytes,
broken JSON, a quote left open to the end of a CSV file) raise `SourceError`; a single
bad record is yielded with `problem` set, to be rejected as `malformed_record`. An
empty file (nothing but white space, or `[]`) holds no records, whatever its format.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import itertools
import json
import operator
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import ijson

COLUMNS = ("id", "country", "name", "gender", "age", "address")
REQUIRED = ("country", "name")
_KNOWN = frozenset(COLUMNS)
_REQUIRED = frozenset(REQUIRED)
MAX_LINE = 1 << 20  # characters in one NDJSON line: a record, not a whole file on one line
UNKNOWN_COLUMNS_KEPT = 50  # names remembered for the warning; keys can vary per record
SUPPORTED = ".csv, .tsv, .json, .ndjson or .jsonl, each maybe .gz"
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
_DELIMITERS = (",", ";", "\t")

# A resident's address is short, but the csv module's 128 KiB default would turn one
# long field into a file-level error; a runaway quote still fails at end of file.
csv.field_size_limit(16 * 1024 * 1024)


class SourceError(Exception):
    """The whole file cannot be read: nothing from it may be loaded. Always one line (parsers
    such as ijson's quote the input over several)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Record(NamedTuple):
    number: int
    line: int | None
    values: tuple[str | None, ...] | None  # in COLUMNS order; None when malformed
    raw: Any
    problem: str | None = None


@dataclass
class Source:
    path: Path
    format: str  # csv | json | ndjson
    compressed: bool
    encoding: str = "utf-8"
    sha256: str | None = None  # when set, the bytes read must hash to it (see records)
    required_seen: set[str] = field(default_factory=set)
    unknown_columns: set[str] = field(default_factory=set)  # at most UNKNOWN_COLUMNS_KEPT
    _header: list[str] | None = field(default=None, repr=False)
    _objects: int = field(default=0, repr=False)  # JSON and NDJSON records read

    @property
    def label(self) -> str:
        return self.format + (".gz" if self.compressed else "")

    def records(self) -> Iterator[Record]:
        """Every record of the file, in order; raises SourceError for file-level problems."""
        try:
            with open(self.path, "rb") as raw:
                hashing = _HashingReader(raw)
                with self._text(hashing) as stream:
                    if self.format == "csv":
                        yield from self._csv(stream)
                    elif self.format == "ndjson":
                        yield from self._ndjson(stream)
                    else:
                        yield from self._json(stream)
                    stream.read()  # the rest (after a JSON array): all of it is hashed
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"not valid {self.encoding} ({exc.reason}); "
                "use --encoding for files in another encoding"
            ) from None
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise SourceError(f"cannot read: {exc}") from None
        if self.sha256 is not None and hashing.hexdigest() != self.sha256:
            # The ledger records the hash taken before reading; it must describe these bytes.
            raise SourceError("the file changed while it was being loaded")
        missing = [c for c in REQUIRED if c not in self.required_seen]
        if missing and self.format != "csv" and self._objects:  # no record: nothing is missing
            raise SourceError(f"required column {missing[0]!r} is in no record")

    def _text(self, raw: io.RawIOBase) -> io.TextIOWrapper:
        binary: IO[bytes] = io.BufferedReader(raw, buffer_size=1 << 20)
        if self.compressed:
            binary = gzip.GzipFile(fileobj=binary, mode="rb")  # type: ignore[assignment]
        # utf-8-sig reads files with and without a byte-order mark alike.
        encoding = "utf-8-sig" if codecs.lookup(self.encoding).name == "utf-8" else self.encoding
        return io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")

    def _csv(self, stream: IO[str]) -> Iterator[Record]:
        header_line = stream.readline()
        if not header_line.strip():
            if _blank(stream):
                return  # an empty file, like an empty JSON array: no records
            raise SourceError("no header row (the first line must name the columns)")
        delimiter = max(_DELIMITERS, key=header_line.count)
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter))
        except csv.Error as exc:
            raise SourceError(f"line 1: unreadable header: {exc}") from None
        # Only the line end itself can be inside a cell of one line: a quote left open.
        if any("\n" in c or "\r" in c for c in cells):
            raise SourceError("line 1: unreadable header: a quote is not closed on the line")
        header = [c.strip().lower() for c in cells]
        # Strict: a quote left open would otherwise take every line after it, to the end of
        # the file, into one field without a word; and a quoted field followed by more text
        # ("Bob" Smith) would lose its quotes.
        source = _Lines(stream, first=2)
        lines = itertools.chain.from_iterable(source)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        reread = 0  # lines read again below, after a strict error, which line_num misses
        self._header = header
        width = len(header)
        # An absent optional column reads the "" appended past the row's end (SQL reads an
        # empty field as missing); itemgetter
        # picks the six fields in C (this loop runs once per record: keep it lean).
        positions = [width if p is None else p for p in self._header_positions(header)]
        pick = operator.itemgetter(*positions)
        pad = width in positions
        line = 1  # the header's; reader.line_num counts from the line after it
        number = 0
        while True:
            try:
                for row in reader:
                    start, line = line + 1, reader.line_num + 1 + reread
                    if not row:
                        continue  # a blank line is not a record
                    number += 1
                    if len(row) != width:
                        if not any(f.strip() for f in row):  # white space only: blank too
                            number -= 1
                            continue
                        problem = f"{len(row)} fields where the header has {width}"
                        if line > start:
                            problem += (
                                f" (the record runs from line {start} to {line}:"
                                " a quote not closed?)"
                            )
                        yield Record(number, start, None, row, problem)
                        continue
                    if pad:
                        row.append("")
                    yield Record(number, start, pick(row), row)
                return
            except csv.Error as exc:
                start, line = line + 1, reader.line_num + 1 + reread
                if "expected after" not in str(exc):  # the end inside a quote, a huge field
                    if "end of data" in str(exc):
                        raise SourceError(
                            f"line {start}: a quote opened in this record is not closed before"
                            " the end of the file"
                        ) from None
                    raise SourceError(f"line {line}: {exc}") from None
                # A field's closing quote followed by more text: the strict reader stops at
                # it and would go on with the next line, though a quote opened later on this
                # one may hold lines after it. The record is read again, leniently, from its
                # first line to its real end, and rejected whole with what it holds.
                number += 1
                problem = f"a quoted field goes on after its closing quote ({exc})"
                raw = None
                text = source.text(start, line)
                if text is not None:
                    again = csv.reader(itertools.chain(text, lines), delimiter=delimiter)
                    try:
                        raw = next(again, None)
                    except csv.Error as error:  # a field over the size limit
                        raise SourceError(f"line {start}: {error}") from None
                    more = again.line_num - len(text)  # lines past the bad one: its record's
                    reread += more
                    line += more
                if line > start:
                    problem += f" in the record running from line {start} to {line}"
                yield Record(number, start, None, raw, problem)

    def raw_of(self, record: Record) -> Any:
        """The raw record for a rejects file: a CSV row as {column: value}, JSON as it was."""
        row = record.raw
        if self._header is not None and isinstance(row, list) and record.values is not None:
            return dict(zip(self._header, row, strict=False))
        return row

    def _header_positions(self, header: list[str]) -> list[int | None]:
        for name in header:
            if name and header.count(name) > 1:
                raise SourceError(f"column {name!r} appears twice in the header")
        self.required_seen.update(set(header) & _REQUIRED)
        self.unknown_columns.update(h or "(blank)" for h in header if h not in COLUMNS)
        for column in REQUIRED:
            if column not in header:
                raise SourceError(f"required column {column!r} is missing from the header")
        return [header.index(c) if c in header else None for c in COLUMNS]

    def _ndjson(self, stream: IO[str]) -> Iterator[Record]:
        number = 0
        for line_number, text in enumerate(_lines(stream, MAX_LINE), start=1):
            if text is None:
                number += 1
                problem = f"a line longer than {MAX_LINE} characters (not one object a line?)"
                yield Record(number, line_number, None, None, problem)
                continue
            if not text.strip():
                continue
            number += 1
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Record(number, line_number, None, text.rstrip("\r\n"), f"not JSON: {exc.msg}")
                continue
            except RecursionError:
                yield Record(number, line_number, None, None, "nested too deeply to be a record")
                continue
            yield self._object_record(number, line_number, obj)
        self._objects = number

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
        try:
            items = ijson.items(_Utf8Bytes(stream, first), "item", use_float=True)
            number = 0
            for number, obj in enumerate(items, start=1):
                yield self._object_record(number, None, obj)
            self._objects = number
        except ijson.JSONError as exc:
            raise SourceError(f"not a JSON array of objects: {exc}") from None

    def _object_record(self, number: int, line: int | None, obj: Any) -> Record:
        if not isinstance(obj, dict):
            return Record(number, line, None, obj, f"expected an object, got {type(obj).__name__}")
        fields = {str(k).strip().lower(): v for k, v in obj.items()}
        if len(self.required_seen) < len(REQUIRED):
            self.required_seen.update(fields.keys() & _REQUIRED)
        extra = fields.keys() - _KNOWN
        if extra and len(self.unknown_columns) < UNKNOWN_COLUMNS_KEPT:
            self.unknown_columns.update(extra)
        try:
            values = tuple(_text(c, fields.get(c)) for c in COLUMNS)
        except ValueError as exc:
            return Record(number, line, None, obj, str(exc))
        return Record(number, line, values, obj)


def open_source(path: Path, encoding: str = "utf-8") -> Source:
    """A Source for `path`, by its extension (.csv .json .ndjson .jsonl, each maybe .gz)."""
    kind = source_format(path)
    if kind is None:
        raise SourceError(f"unsupported file type (expected {SUPPORTED})")
    return Source(path, kind, path.suffix.lower() == ".gz", encoding)


def source_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def _text(column: str, value: Any) -> str | None:
    """A JSON value as the text COPY sends; refuse what no column can hold."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{column}: {json.dumps(value)} is not a valid value")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise ValueError(f"{column}: a {type(value).__name__}, not a single value")


class _HashingReader(io.RawIOBase):
    """Passes a file's bytes through, hashing them on the way (cost: one update per block)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return int(n or 0)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _Lines:
    """A text stream's lines for csv.reader, read a megabyte at a time (as fast as the
    stream's own iteration: a generator a line would cost 0.3 s of 1M rows). The last two
    blocks are kept, so that a line just read can be had again by its number."""

    def __init__(self, stream: IO[str], first: int) -> None:
        self._stream = stream
        self._next = first  # the number of the next line to read
        self._kept: list[tuple[int, list[str]]] = []  # (number of its first line, lines)

    def __iter__(self) -> Iterator[list[str]]:
        while lines := self._stream.readlines(1 << 20):
            self._kept = [*self._kept[-1:], (self._next, lines)]
            self._next += len(lines)
            yield lines

    def text(self, first: int, last: int) -> list[str] | None:
        """Lines `first` to `last`, or None if they are no longer kept."""
        found = [
            lines[n - start]
            for start, lines in self._kept
            for n in range(max(first, start), min(last + 1, start + len(lines)))
        ]
        return found if len(found) == last - first + 1 else None


def _blank(stream: IO[str]) -> bool:
    """Whether the rest of the stream is white space (read to its end if so)."""
    while chunk := stream.read(1 << 16):
        if not chunk.isspace():
            return False
    return True


def _lines(stream: IO[str], limit: int) -> Iterator[str | None]:
    """The stream's lines, each read with at most `limit` characters in memory; a longer
    line is skipped to its end and comes out as None."""
    while True:
        line = stream.readline(limit)
        if not line:
            return
        if len(line) < limit or line.endswith("\n"):
            yield line
            continue
        while line and not line.endswith("\n"):
            line = stream.readline(limit)
        yield None


class _Utf8Bytes:
    """ijson reads bytes: give it the decoded text re-encoded as UTF-8, so that --encoding
    and the byte-order mark are handled in one place (the TextIOWrapper)."""

    def __init__(self, text: IO[str], head: str = "") -> None:
        self._text = text
        self._head = head.encode("utf-8")  # what was read ahead of it

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson asks for nothing first, to see whether it reads bytes
            return b""
        head, self._head = self._head, b""
        return head + self._text.read(size - len(head) if size > 0 else size).encode("utf-8")
