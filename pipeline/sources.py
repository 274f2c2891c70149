"""Reading incoming files: CSV, JSON arrays and NDJSON, optionally gzipped, streamed.

A source yields `Record`s: the record's number in the file (1-based), the line it
starts on (CSV and NDJSON), its six known fields as text (or None), and the raw
record for a rejects file. Nothing here holds more than one record in memory, and what
one record may hold is bounded (`pipeline.rules.Limits`): memory stays bounded and time
linear in the file, whatever it holds.

File-level problems (no header, a required column missing, undecodable bytes,
broken JSON, a quote left open to the end of a CSV file, not a regular file) raise
`SourceError`; a single bad record is yielded with `problem` set and the `reason` it is
rejected for: `malformed_record` (not a record, nested too deeply), `too_large` (a line,
record or field over its limit), `invalid_text` (text that is not valid Unicode: a lone
surrogate) or `invalid_country` (longer than any country). An empty file (nothing but
white space, or `[]`) holds no records, whatever its format.

Numbers in JSON are taken as written, as CSV's text is: the rules judge `1e3` or `22.0`
the same way in every format.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import hashlib
import io
import itertools
import json
import operator
import os
import stat
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from pipeline.bounded import (
    BLANK_RUN,
    BLOCK,
    DECODER,
    MALFORMED,
    MARK,
    NOT_UNICODE,
    SURROGATE,
    TOO_LARGE,
    BrokenInput,
    JsonArray,
    LineBlocks,
    LineGuard,
    cut,
    escaped_text,
)
from pipeline.columns import FIELDS
from pipeline.reasons import RejectReason
from pipeline.rules import COUNTRY_MAX, DEFAULT_LIMITS, TRIM, Limits

COLUMNS = FIELDS
REQUIRED = ("country", "name")
_KNOWN = frozenset(COLUMNS)
_REQUIRED = frozenset(REQUIRED)
UNKNOWN_COLUMNS_KEPT = 50  # names remembered for the warning; keys can vary per record
NAME_SHOWN = 60  # characters of an unknown column's name shown in the warning
SUPPORTED = ".csv, .tsv, .json, .ndjson or .jsonl, each maybe .gz"
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
_DELIMITERS = (",", ";", "\t")

INVALID_TEXT = RejectReason.INVALID_TEXT
INVALID_COUNTRY = RejectReason.INVALID_COUNTRY

# Encodings whose strict decoding can yield no surrogate (UTF-8 is checked where JSON
# escapes can make one). Others (unicode_escape, utf-7, ...) are checked block by block.
_NO_SURROGATES = frozenset(
    ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "ascii")
)


class SourceError(Exception):
    """The whole file cannot be read: nothing from it may be loaded. Always one line (parsers
    quote the input over several)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Record(NamedTuple):
    number: int
    line: int | None
    values: tuple[str | None, ...] | None  # in COLUMNS order; None when rejected here
    raw: Any
    problem: str | None = None
    reason: RejectReason = MALFORMED  # why it is rejected, when values is None


@dataclass
class Source:
    path: Path
    format: str  # csv | json | ndjson
    compressed: bool
    encoding: str = "utf-8"
    sha256: str | None = None  # when set, the bytes read must hash to it (see records)
    limits: Limits = DEFAULT_LIMITS
    required_seen: set[str] = field(default_factory=set)
    unknown_columns: set[str] = field(default_factory=set)  # at most UNKNOWN_COLUMNS_KEPT + 1
    _header: list[str] | None = field(default=None, repr=False)
    _objects: int = field(default=0, repr=False)  # JSON and NDJSON records read

    @property
    def label(self) -> str:
        return self.format + (".gz" if self.compressed else "")

    @functools.cached_property
    def _surrogates_possible(self) -> bool:
        return codecs.lookup(self.encoding).name not in _NO_SURROGATES

    def records(self) -> Iterator[Record]:
        """Every record of the file, in order; raises SourceError for file-level problems."""
        try:
            with _open_regular(self.path) as raw:
                hashing = _HashingReader(raw)
                with self._text(hashing) as stream:
                    if self.format == "csv":
                        yield from self._csv(stream)
                    elif self.format == "ndjson":
                        yield from self._ndjson(stream)
                    else:
                        yield from self._json(stream)
                    while stream.read(BLOCK):  # the rest (none, or white space): all hashed
                        pass
        except BrokenInput as exc:
            raise SourceError(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"not valid {self.encoding} ({exc.reason}); "
                "use --encoding for files in another encoding"
            ) from None
        except UnicodeError as exc:  # codecs such as utf-16 (no BOM) or punycode
            raise SourceError(
                f"cannot be read as {self.encoding} ({cut(str(exc))}); "
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
        codec = codecs.lookup(self.encoding).name
        if self._guarded:
            binary = LineGuard(binary, 4 * self.limits.max_line + 4, utf8=codec == "utf-8")  # type: ignore[assignment]
        # utf-8-sig reads files with and without a byte-order mark alike.
        encoding = "utf-8-sig" if codec == "utf-8" else self.encoding
        return io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")

    @functools.cached_property
    def _guarded(self) -> bool:
        """Whether lines can be bounded beneath the decoder (LineGuard): CSV and NDJSON in
        UTF-8 or an encoding of one byte a character, where a line end is a \\n or \\r byte
        and nothing else is."""
        codec = codecs.lookup(self.encoding).name
        one_byte = codec in ("ascii", "latin-1") or codec.startswith(("iso8859", "cp125"))
        return self.format != "json" and (codec == "utf-8" or one_byte)

    # -- CSV ------------------------------------------------------------------------------

    def _csv(self, stream: IO[str]) -> Iterator[Record]:
        limits = self.limits
        header_line = stream.readline(limits.max_line + 1)
        if header_line.startswith(BLANK_RUN):
            header_line = "\n"  # blank lines, folded (LineGuard)
        if not header_line.strip():
            if _blank(stream):
                return  # an empty file, like an empty JSON array: no records
            raise SourceError("no header row (the first line must name the columns)")
        if len(header_line) > limits.max_line:
            raise SourceError(
                f"line 1: the header is longer than {limits.max_line} characters (limits.max_line)"
            )
        delimiter = max(_DELIMITERS, key=header_line.count)
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter))
        except csv.Error as exc:
            raise SourceError(f"line 1: unreadable header: {exc}") from None
        # Only the line end itself can be inside a cell of one line: a quote left open.
        if any("\n" in c or "\r" in c for c in cells):
            raise SourceError("line 1: unreadable header: a quote is not closed on the line")
        header = [c.strip(TRIM).lower() for c in cells]
        if self._surrogates_possible and SURROGATE.search(header_line):
            raise SourceError("line 1: the header is not valid Unicode (a lone surrogate)")
        # A quoted field may run over lines: it is bounded by the record's limit (the csv
        # module's limit is the process's; set for each file, read by one thread).
        csv.field_size_limit(limits.max_record)
        # Strict: a quote left open would otherwise take every line after it, to the end of
        # the file, into one field without a word; and a quoted field followed by more text
        # ("Bob" Smith) would lose its quotes.
        # Rows of a block holding a line over max_field take the slow checks (_row_check).
        source = LineBlocks(
            stream,
            2,
            limits.max_line,
            limits.max_field,
            self._surrogates_possible,
            self._guarded,
        )
        lines = itertools.chain.from_iterable(source)
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        reread = 0  # lines read again below, after a strict error, which line_num misses
        folded = 0  # blank lines the line reader folded away (see LineBlocks)
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
                    if len(row) != width:
                        if row[0].startswith(MARK) and len(row) == 1:
                            if row[0].startswith(BLANK_RUN):
                                folded += int(row[0][len(BLANK_RUN) :]) - 1
                                continue
                            number += 1
                            problem = f"a line longer than {limits.max_line} characters"
                            yield Record(number, start + folded, None, None, problem, TOO_LARGE)
                            continue
                        if not any(f.strip() for f in row):  # white space only: blank too
                            continue
                        number += 1
                        problem = f"{len(row)} fields where the header has {width}"
                        if line > start:
                            problem += (
                                f" (the record runs from line {start + folded} to"
                                f" {line + folded}: a quote not closed?)"
                            )
                        raw, why = self._row_check(row, -1)
                        reason = MALFORMED
                        if why is not None:
                            problem, reason = why
                        yield Record(number, start + folded, None, raw, problem, reason)
                        continue
                    number += 1
                    if source.careful or line > start:
                        raw, why = self._row_check(row, positions[1])
                        if why is not None:
                            yield Record(number, start + folded, None, raw, why[0], why[1])
                            continue
                    if pad:
                        row.append("")
                    values = pick(row)
                    if len(values[1]) > COUNTRY_MAX:  # one len(): lines this long are common
                        raw, why = self._row_check(row, positions[1])
                        if why is not None:
                            yield Record(number, start + folded, None, raw, why[0], why[1])
                            continue
                    yield Record(number, start + folded, values, row)
                return
            except csv.Error as exc:
                start, line = line + 1, reader.line_num + 1 + reread
                if "expected after" not in str(exc):  # the end inside a quote, a huge field
                    if "end of data" in str(exc):
                        raise SourceError(
                            f"line {start + folded}: a quote opened in this record is not"
                            " closed before the end of the file"
                        ) from None
                    if "field larger" in str(exc):
                        raise SourceError(
                            f"line {start + folded}: a quoted field runs over more than"
                            f" {limits.max_record} characters (limits.max_record): a quote"
                            " not closed?"
                        ) from None
                    raise SourceError(f"line {line + folded}: {exc}") from None
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
                        whole: list[str] | None = next(again, None)
                    except csv.Error:  # a field over the size limit
                        raise SourceError(
                            f"line {start + folded}: a quoted field runs over more than"
                            f" {limits.max_record} characters (limits.max_record)"
                        ) from None
                    raw = None if whole is None else self._row_check(whole, -1)[0]
                    more = again.line_num - len(text)  # lines past the bad one: its record's
                    reread += more
                    line += more
                if line > start:
                    problem += (
                        f" in the record running from line {start + folded} to {line + folded}"
                    )
                yield Record(number, start + folded, None, raw, problem)

    def _row_check(
        self, row: list[str], country: int
    ) -> tuple[Any, tuple[str, RejectReason] | None]:
        """(the row as it may go to a rejects file, (problem, reason) if it must be rejected):
        the slow path, for rows in a block that holds a long line, or over several lines."""
        limits = self.limits
        if any(MARK in f for f in row):  # a line over the limit inside a quoted field
            problem = f"a line longer than {limits.max_line} characters (limits.max_line)"
            return _cut_row(row), (problem, TOO_LARGE)
        if self._surrogates_possible and any(map(SURROGATE.search, row)):
            return _cut_row(row), (
                "text that is not valid Unicode (a lone surrogate)",
                INVALID_TEXT,
            )
        if sum(map(len, row)) > limits.max_record:
            problem = f"a record longer than {limits.max_record} characters (limits.max_record)"
            return _cut_row(row), (problem, TOO_LARGE)
        longest = max(row, key=len)
        if len(longest) > limits.max_field:
            at = row.index(longest)
            column = self._header[at] if self._header and at < len(self._header) else str(at + 1)
            problem = f"{_shown(column)}: longer than {limits.max_field} characters"
            return _cut_row(row), (problem + " (limits.max_field)", TOO_LARGE)
        if 0 <= country < len(row) and len(row[country]) > COUNTRY_MAX:
            length = len(row[country].strip(TRIM))
            if length > COUNTRY_MAX:
                problem = f"country is {length} characters long: no country is"
                return _cut_row(row), (problem, INVALID_COUNTRY)
        return row, None

    def raw_of(self, record: Record) -> Any:
        """The raw record for a rejects file: a CSV row as {column: value}, JSON as it was."""
        row = record.raw
        if self._header is not None and isinstance(row, list) and record.values is not None:
            return dict(zip(self._header, row, strict=False))
        return row

    def _header_positions(self, header: list[str]) -> list[int | None]:
        seen: set[str] = set()
        for name in header:  # a set: a header may have thousands of columns
            if name and name in seen:
                raise SourceError(f"column {_shown(name)!r} appears twice in the header")
            seen.add(name)
        self.required_seen.update(set(header) & _REQUIRED)
        self._note_unknown(h or "(blank)" for h in header if h not in COLUMNS)
        for column in REQUIRED:
            if column not in header:
                raise SourceError(f"required column {column!r} is missing from the header")
        return [header.index(c) if c in header else None for c in COLUMNS]

    def _note_unknown(self, names: Any) -> None:
        """Remember unknown column names for the warning: at most UNKNOWN_COLUMNS_KEPT, each
        shown short and printable; "…" stands for the ones left out."""
        for name in names:
            if len(self.unknown_columns) >= UNKNOWN_COLUMNS_KEPT:
                self.unknown_columns.add("…")
                return
            self.unknown_columns.add(_shown(name))

    # -- NDJSON ---------------------------------------------------------------------------

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
        self._objects = number

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
        self._objects = number

    def _object_record(self, number: int, line: int | None, obj: Any, text: str) -> Record:
        """A decoded JSON record; `text` is what it was decoded from."""
        limits = self.limits
        # A JSON escape (or a codec such as unicode_escape) can make a lone surrogate.
        unchecked = "\\u" in text or self._surrogates_possible
        if not isinstance(obj, dict):
            if unchecked and _has_surrogate(obj, limits.max_depth):
                return Record(number, line, None, _raw_text(text), NOT_UNICODE, INVALID_TEXT)
            problem = f"expected an object, got {type(obj).__name__}"
            return Record(number, line, None, _raw_json(obj, text, limits), problem)
        # This runs once per record: the common record (the six names as written here, text
        # and integers) takes the path with the fewest Python-level steps.
        fields = obj if obj.keys() <= _KNOWN else {k.strip(TRIM).lower(): v for k, v in obj.items()}
        if len(self.required_seen) < len(REQUIRED):
            self.required_seen.update(fields.keys() & _REQUIRED)
        if fields is not obj:
            extra = fields.keys() - _KNOWN
            if extra and len(self.unknown_columns) < UNKNOWN_COLUMNS_KEPT:
                self._note_unknown(sorted(extra))
        if unchecked and _has_surrogate(obj, limits.max_depth):
            return Record(number, line, None, _raw_text(text), NOT_UNICODE, INVALID_TEXT)
        values = tuple(map(fields.get, COLUMNS))
        if not _TEXT_TYPES.issuperset(map(type, values)):
            try:
                values = tuple(map(_text, COLUMNS, values))
            except ValueError as exc:
                return Record(number, line, None, _raw_json(obj, text, limits), str(exc))
        if len(text) > limits.max_field:
            for column, value in zip(COLUMNS, values, strict=True):
                if value is not None and len(value) > limits.max_field:
                    problem = f"{column}: longer than {limits.max_field} characters"
                    return Record(number, line, None, _raw_text(text), problem, TOO_LARGE)
        country = values[1]
        if country is not None and len(country) > COUNTRY_MAX:
            country = country.strip(TRIM)
            if len(country) > COUNTRY_MAX:
                problem = f"country is {len(country)} characters long: no country is"
                return Record(number, line, None, _raw_text(text), problem, INVALID_COUNTRY)
        return Record(number, line, values, obj)


def open_source(path: Path, encoding: str = "utf-8", limits: Limits = DEFAULT_LIMITS) -> Source:
    """A Source for `path`, by its extension (.csv .json .ndjson .jsonl, each maybe .gz)."""
    kind = source_format(path)
    if kind is None:
        raise SourceError(f"unsupported file type (expected {SUPPORTED})")
    return Source(path, kind, path.suffix.lower() == ".gz", encoding, limits=limits)


def source_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def regular_file_error(path: Path) -> str | None:
    """Why `path` (followed if a link) cannot be loaded as a file, or None if it can: only
    regular files are read (a FIFO would block, a device such as /dev/zero never ends)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return f"not a regular file (a {_kind_of(mode)}); only regular files are loaded"


def _kind_of(mode: int) -> str:
    kinds = {
        stat.S_ISFIFO: "FIFO",
        stat.S_ISCHR: "character device",
        stat.S_ISBLK: "block device",
        stat.S_ISSOCK: "socket",
    }
    return next((name for test, name in kinds.items() if test(mode)), "special file")


def _open_regular(path: Path) -> IO[bytes]:
    """The file opened for reading, if it is a regular file (checked on the open file, so a
    file swapped for a FIFO after it was listed cannot block: the open does not wait)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SourceError(
                f"not a regular file (a {_kind_of(mode)}); only regular files are loaded"
            )
        return open(fd, "rb")  # the caller's with-block closes it
    except BaseException:
        os.close(fd)
        raise


_TEXT_TYPES = frozenset((str, type(None)))


def _text(column: str, value: Any) -> str | None:
    """A JSON value as the text COPY sends; refuse what no column can hold."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise ValueError(f"{column}: {json.dumps(value)} is not a valid value")
    if isinstance(value, int):
        return str(value)
    raise ValueError(f"{column}: a {type(value).__name__}, not a single value")


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


def _raw_json(obj: Any, text: str, limits: Limits) -> Any:
    """The raw record of a rejected JSON value: the value, unless it is nested too deeply to
    be written back (then the start of its text)."""
    return obj if _within_depth(obj, limits.max_depth) else _raw_text(text)


def _raw_text(text: str) -> str:
    """A record's text as its raw record: at most RAW_KEPT characters, always valid Unicode."""
    return escaped_text(cut(text.rstrip("\r\n")))


def _cut_row(row: list[str]) -> list[str]:
    return [escaped_text(cut(f.replace(MARK, "…"))) for f in row]


def _escaped(row: list[str]) -> list[str]:
    return [escaped_text(f) for f in row]


def _shown(name: str) -> str:
    """A column name fit for a one-line message: short, printable."""
    name = name[:NAME_SHOWN] + ("…" if len(name) > NAME_SHOWN else "")
    return name if name.isprintable() else repr(name)[1:-1]


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


def _blank(stream: IO[str]) -> bool:
    """Whether the rest of the stream is white space (read to its end if so)."""
    while line := stream.readline(1 << 16):
        if not (line.isspace() or line.startswith(BLANK_RUN)):
            return False
    return True
