"""Reading a CSV (or TSV) source: the header, then one Record a row, within the limits.

The delimiter is the one of `,` `;` and tab the header holds most of. Rows are read by the
csv module in strict mode from bounded blocks of lines (pipeline.bounded.LineBlocks); a row
in a block that holds a long line, or one that runs over several lines, takes the slow
checks (`_row_check`). Mixed into pipeline.sources.Source.
"""

from __future__ import annotations

import csv
import itertools
import operator
from collections.abc import Iterator
from typing import IO, Any

from pipeline.bounded import (
    BLANK_RUN,
    MALFORMED,
    MARK,
    SURROGATE,
    TOO_LARGE,
    LineBlocks,
    cut,
    escaped_text,
)
from pipeline.reasons import RejectReason
from pipeline.rules import COUNTRY_MAX, TRIM
from pipeline.source_file import (
    _REQUIRED,
    INVALID_COUNTRY,
    INVALID_TEXT,
    REQUIRED,
    Record,
    SourceError,
    SourceFile,
    _shown,
)

_DELIMITERS = (",", ";", "\t")


class CsvRecords(SourceFile):
    """The records of a CSV source (see pipeline.sources.Source.records)."""

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
        delimiter, header = self._csv_header(header_line)
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
        # picks the fields in C (this loop runs once per record: keep it lean).
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
                        why = self._row_check(row, -1)[1]
                        reason = MALFORMED
                        if why is not None:
                            problem, reason = why
                        ids: tuple[str, ...] = _shifted_ids(row, positions[0], width)
                        raw = _cut_row(row)  # as many fields as it holds: bounded
                        yield Record(number, start + folded, None, raw, problem, reason, ids)
                        continue
                    number += 1
                    if source.careful or line > start:
                        raw, why = self._row_check(row, positions[1])
                        if why is not None:
                            # No id column: its position is past the row's end (see pad).
                            given = row[positions[0]] if positions[0] < len(row) else ""
                            yield Record(number, start + folded, None, raw, *why, (given,))
                            continue
                    if pad:
                        row.append("")
                    values = pick(row)
                    if len(values[1]) > COUNTRY_MAX:  # one len(): lines this long are common
                        raw, why = self._row_check(row, positions[1])
                        if why is not None:
                            yield Record(number, start + folded, None, raw, *why, values[:1])
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
                whole: list[str] | None = None
                text = source.text(start, line)
                if text is not None:
                    again = csv.reader(itertools.chain(text, lines), delimiter=delimiter)
                    try:
                        whole = next(again, None)
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
                ids = _shifted_ids(whole, positions[0], width) if whole else ()
                yield Record(number, start + folded, None, raw, problem, MALFORMED, ids)

    def _csv_header(self, header_line: str) -> tuple[str, list[str]]:
        """(the delimiter, the column names) of a header line (one line, within its limit)."""
        delimiter = max(_DELIMITERS, key=header_line.count)
        # The csv module's field limit is the process's, and an earlier file's read set it
        # to that file's record limit: a header cell is bounded by its line, whatever came
        # before (a header read the same in a new process and after a load).
        csv.field_size_limit(self.limits.max_line)
        try:
            cells = next(csv.reader([header_line], delimiter=delimiter))
        except csv.Error as exc:
            raise SourceError(f"line 1: unreadable header: {exc}") from None
        # Only the line end itself can be inside a cell of one line: a quote left open.
        if any("\n" in c or "\r" in c for c in cells):
            raise SourceError("line 1: unreadable header: a quote is not closed on the line")
        if self._surrogates_possible and SURROGATE.search(header_line):
            raise SourceError("line 1: the header is not valid Unicode (a lone surrogate)")
        return delimiter, [c.strip(TRIM).lower() for c in cells]

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

    def _header_positions(self, header: list[str]) -> list[int | None]:
        seen: set[str] = set()
        for name in header:  # a set: a header may have thousands of columns
            if name and name in seen:
                raise SourceError(f"column {_shown(name)!r} appears twice in the header")
            seen.add(name)
        self.required_seen.update(set(header) & _REQUIRED)
        columns = self.columns
        self._note_unknown(h or "(blank)" for h in header if h not in columns)
        for column in REQUIRED:
            if column not in header:
                raise SourceError(f"required column {column!r} is missing from the header")
        return [header.index(c) if c in header else None for c in columns]


# Fields of a row kept as its raw record: a line of a million commas is a million fields,
# and 15,000 such rows a batch would hold them all (a 50 MB file of 100 of them: 0.9 GB).
RAW_FIELDS = 64


def _cut_row(row: list[str]) -> list[str]:
    kept = [escaped_text(cut(f.replace(MARK, "…"))) for f in row[:RAW_FIELDS]]
    return [*kept, f"… ({len(row)} fields)"] if len(row) > RAW_FIELDS else kept


def _shifted_ids(row: list[str], at: int, width: int) -> tuple[str, ...]:
    """The fields that could be the id of a row whose fields do not fit the header (`at`:
    the id's place in it): a delimiter too many or too few before it moves it by as many
    places; no more than 16 either way (a row further off is no record)."""
    off = min(abs(len(row) - width), 16)
    return tuple(row[max(0, at - off) : at + off + 1])


def _blank(stream: IO[str]) -> bool:
    """Whether the rest of the stream is white space (read to its end if so)."""
    while line := stream.readline(1 << 16):
        if not (line.isspace() or line.startswith(BLANK_RUN)):
            return False
    return True
