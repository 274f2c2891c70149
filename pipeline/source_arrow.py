"""CSV read in bulk by pyarrow's C++ parser, with the record and line numbers the rejects
file needs, for files that need none of the Python reader's care.

The file is cut into blocks at record ends, found with numpy: a newline ends a record
where the count of quotes before it is even (RFC 4180's doubled quote keeps the parity).
Each block's newlines give each record's first line; pyarrow parses the block into text
columns, and its row count must be the count of records the cut found.

The block is taken only when Python's csv reader (pipeline.source_csv, strict) would read
it the same way and no limit is near: every quote opens a field (after a delimiter or a
line start) or closes one (before a delimiter, a line end or a doubled quote); no carriage
return but in a CRLF line end; no NUL; no line, record or field longer in bytes than its
limit in characters; no country field longer than any country. Anything else raises
`NotSimple`, and the caller reads the whole file again with the Python reader, which knows
every such case (tests/test_source_arrow.py reads the same files through both).
"""

from __future__ import annotations

import contextlib
import io
import zlib
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from pipeline.batch import BATCH_RECORDS, Batch
from pipeline.rules import COUNTRY_MAX
from pipeline.source_file import READ, SourceError

# Bytes read at a time: a batch is the records that end in them, BATCH_RECORDS of a
# resident file's 70-100-byte records (1.5 MiB).
BLOCK_BYTES = 3 << 19
# pyarrow keeps a builder per column for every block: past this many columns (a resident
# file has six and a few extra), Python's reader, which keeps only the row, takes the file.
MAX_COLUMNS = 256
_QUOTE, _NL, _CR = 34, 10, 13
BOM = b"\xef\xbb\xbf"


class NotSimple(Exception):
    """This file needs the Python reader; says why (for tests and the curious)."""


class ArrowCsv:
    """The records of one CSV file, block by block (see the module docstring). `source` is
    the pipeline.sources.Source whose header rules, limits and hash apply."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.limits = source.limits

    def batches(self, binary: IO[bytes]) -> Iterator[Batch]:
        head = binary.read(BLOCK_BYTES)
        if head.startswith(BOM):
            head = head[len(BOM) :]
        end = head.find(b"\n")
        if end < 0 or end + 1 > self.limits.max_line:  # Python's limit counts the line end
            raise NotSimple("no header line within the first block")
        header_bytes = head[: end + 1]
        try:
            header_line = header_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise NotSimple("the header is not UTF-8") from None
        if not header_line.strip() or b"\r" in header_bytes[:-2]:
            raise NotSimple("a blank or unusual header line")
        delimiter, header = self.source._csv_header(header_line)
        if len(header) > MAX_COLUMNS:
            raise NotSimple("more columns than pyarrow is given")
        self.source._header = header
        positions = self.source._header_positions(header)
        self._delimiter = ord(delimiter)
        self._names = [f"c{i}" for i in range(len(header))]
        self._parse = pcsv.ParseOptions(
            delimiter=delimiter, newlines_in_values=True, double_quote=True, escape_char=False
        )
        self._convert = pcsv.ConvertOptions(
            column_types=dict.fromkeys(self._names, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        self._header = header
        self._positions = positions
        line = 2  # the first data line
        number = 0
        pending = head[end + 1 :]
        known = _NONE_FOUND  # the newlines and quotes of pending's first bytes
        eof = False
        starved = False  # the pending bytes hold no whole record: read more
        while not eof or pending:
            # Read while less than a block is pending: a batch of BATCH_RECORDS short
            # records leaves the rest of a block pending, which is not read again.
            if not eof and (starved or len(pending) < BLOCK_BYTES):
                data = binary.read(BLOCK_BYTES)
                eof = not data
                pending += data
            starved = False
            if eof and not pending:
                break
            if not pending.strip(b"\n"):  # blank lines only: counted, nothing to parse
                line += len(pending)
                pending, known = b"", _NONE_FOUND
                continue
            known = _found(pending, known)
            found = self._split(len(pending), eof, known)
            if found is None:
                if eof:
                    raise NotSimple("a quote open at the end of the file")
                if len(pending) > self.limits.max_record:  # bytes: at least as many characters
                    raise NotSimple("a record near its limit")
                starved = True
                continue
            cut, newlines, quotes, ends = found
            block, pending = pending[:cut], pending[cut:]
            known = _after(known, cut)
            batch, lines = self._block(block, newlines, quotes, ends, line, number)
            line += lines
            number += len(batch)
            if len(batch):
                yield batch

    def _split(
        self, size: int, eof: bool, known: Found
    ) -> tuple[int, np.ndarray, np.ndarray, np.ndarray] | None:
        """Where the last whole record of the `size` pending bytes ends (after its newline),
        with the positions of the newlines and quotes before that (`known`: all of them) and
        of the newlines among them that end a record; None when no record ends in them."""
        _, newlines, quotes = known
        even = (
            np.flatnonzero((np.searchsorted(quotes, newlines) & 1) == 0)
            if len(quotes)
            else np.arange(len(newlines))
        )
        if eof and len(quotes) % 2 == 0 and len(newlines) < BATCH_RECORDS:
            # the last record, with or without its line end
            return size, newlines, quotes, newlines[even]
        if not len(even):
            return None
        taken = even[: min(len(even), BATCH_RECORDS)]  # a batch of at most BATCH_RECORDS
        cut = int(newlines[taken[-1]]) + 1
        cut_quotes = quotes[: np.searchsorted(quotes, cut)]
        return cut, newlines[: taken[-1] + 1], cut_quotes, newlines[taken]

    def _block(
        self,
        block: bytes,
        newlines: np.ndarray,
        quotes: np.ndarray,
        ends: np.ndarray,
        first_line: int,
        first_record: int,
    ) -> tuple[Batch, int]:
        """The records of one block (whole records), given the positions of its newlines,
        its quotes and the newlines that end a record; (the batch, the block's line count)."""
        arr = np.frombuffer(block, dtype=np.uint8)
        limits = self.limits
        self._check_bytes(block, arr, newlines, quotes)
        if not len(ends) or ends[-1] != len(block) - 1:
            # the file's last record, no line end
            ends = np.append(ends, np.int32(len(block) - 1))
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        longest = int(np.max(ends - starts + 1))
        if longest > limits.max_record:
            raise NotSimple("a record near its limit")
        after_start = np.minimum(starts + 1, len(block) - 1)
        blank = (arr[starts] == _NL) | ((arr[starts] == _CR) & (arr[after_start] == _NL))
        starts = starts[~blank]
        lines = first_line + np.searchsorted(newlines, starts)
        if not len(starts):  # blank lines only
            return empty_batch(), len(newlines)
        if block.startswith(BOM):
            # pyarrow takes a byte order mark opening its input for the encoding's, and
            # drops it: here it opens the block's first record, whose field holds it.
            raise NotSimple("a record starting with a byte order mark")
        try:
            table = pcsv.read_csv(
                io.BytesIO(block),
                read_options=pcsv.ReadOptions(
                    column_names=self._names,
                    # The block in one piece, on this thread: pyarrow's threads parsed it
                    # in pieces 10% faster alone, but for 0.13 s more CPU a 1M rows, which
                    # the servers need (1M rows, 8 interleaved rounds: --force 2.68 ->
                    # 2.53 s, into empty shards 2.73 -> 2.68 s; 6-9 MB less at the peak).
                    block_size=len(block) + 1,
                    use_threads=False,
                ),
                parse_options=self._parse,
                convert_options=self._convert,
            )
        except pa.ArrowInvalid as exc:
            raise NotSimple(f"pyarrow: {exc}") from None
        if table.num_rows != len(starts):
            raise NotSimple("pyarrow found other records than the cut")
        width = len(self._header)
        columns = [table.column(i).combine_chunks() for i in range(width)]
        for column in columns:
            if len(column) and pc.max(pc.binary_length(column)).as_py() > limits.max_field:
                raise NotSimple("a field near its limit")
        n = table.num_rows
        empty = pc.fill_null(pa.nulls(n, pa.string()), "")
        fields = {
            name: empty if at is None else columns[at]
            for name, at in zip(READ, self._positions, strict=True)
        }
        country = fields["country"]
        if n and pc.max(pc.binary_length(country)).as_py() > COUNTRY_MAX:
            raise NotSimple("a country longer than any")
        header = self._header

        def raws(rows: list[int]) -> list[dict[str, Any]]:
            taken = [c.take(pa.array(rows, pa.int64())).to_pylist() for c in columns]
            return [dict(zip(header, values, strict=False)) for values in zip(*taken, strict=True)]

        records = pa.array(np.arange(first_record + 1, first_record + n + 1, dtype=np.int64))
        lines_array = pa.array(lines.astype(np.int64))
        batch = Batch(records, lines_array, fields, raws, nul_free=True)
        return batch, len(newlines)

    def _check_bytes(
        self, block: bytes, arr: np.ndarray, newlines: np.ndarray, quotes: np.ndarray
    ) -> None:
        """NotSimple unless Python's reader would read these bytes as pyarrow does."""
        if block.find(b"\0") >= 0:
            raise NotSimple("a NUL")
        if block.find(b"\r") >= 0:
            returns = np.flatnonzero(arr == _CR)
            following = returns + 1
            if following[-1] >= len(arr) or np.any(arr[following] != _NL):
                raise NotSimple("a carriage return that ends no line")
        limit = self.limits.max_line
        if len(newlines):
            longest = max(int(newlines[0]) + 1, len(arr) - 1 - int(newlines[-1]))
            if len(newlines) > 1:
                longest = max(longest, int(np.max(np.diff(newlines))))
        else:
            longest = len(arr)
        if longest > limit:
            raise NotSimple("a line near its limit")
        if not len(quotes):
            return
        opening, closing = quotes[0::2], quotes[1::2]
        before = arr[np.maximum(opening - 1, 0)]
        # An opening quote right after a closing one is the second of a doubled quote.
        doubled = np.zeros(len(opening), dtype=bool)
        doubled[1:] = opening[1:] - 1 == closing[: len(opening) - 1]
        starts_field = (before == self._delimiter) | (before == _NL) | (opening == 0)
        if not np.all(starts_field | doubled):
            raise NotSimple("a quote inside an unquoted field")
        nxt = arr[np.minimum(closing + 1, len(arr) - 1)]
        at_end = closing + 1 >= len(arr)
        ends_field = (nxt == self._delimiter) | (nxt == _NL) | (nxt == _CR) | (nxt == _QUOTE)
        if not np.all(ends_field | at_end):
            raise NotSimple("text after a closing quote")


# The positions of the newlines and quotes in the first bytes of the pending data:
# (how many bytes, newlines, quotes). A batch leaves the rest of a block pending (a block
# holds more than BATCH_RECORDS short records); its positions are kept, so that each byte
# of the file is searched once (searching all of the pending bytes again: 0.22 s of CPU
# a 1M-row file, against 0.15 s).
Found = tuple[int, np.ndarray, np.ndarray]
_NONE_FOUND: Found = (0, np.zeros(0, np.int32), np.zeros(0, np.int32))


def _found(data: bytes, known: Found) -> Found:
    """The positions of every newline and quote in `data`, given those of its first bytes."""
    scanned, newlines, quotes = known
    if scanned == len(data):
        return known
    rest = np.frombuffer(data, dtype=np.uint8)[scanned:]
    more_newlines = np.flatnonzero(rest == _NL).astype(np.int32)
    more_quotes = np.flatnonzero(rest == _QUOTE).astype(np.int32)
    if scanned:
        more_newlines += scanned
        more_quotes += scanned
        more_newlines = np.concatenate((newlines, more_newlines))
        more_quotes = np.concatenate((quotes, more_quotes))
    return len(data), more_newlines, more_quotes


def _after(known: Found, cut: int) -> Found:
    """The positions `known` of the bytes from `cut` on, counted from there."""
    scanned, newlines, quotes = known
    return (
        scanned - cut,
        newlines[np.searchsorted(newlines, cut) :] - cut,
        quotes[np.searchsorted(quotes, cut) :] - cut,
    )


def empty_batch() -> Batch:
    """A batch of no records (a block of blank lines)."""
    empty = pa.array(np.zeros(0, dtype=np.int64))
    fields = {name: pa.nulls(0, pa.string()) for name in READ}
    return Batch(empty, empty, fields, lambda rows: [], nul_free=True)


@contextlib.contextmanager
def reading_errors() -> Iterator[None]:
    """The reading errors Python's reader gives as file errors, given as file errors."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"cannot read: {exc}") from None


def arrow_batches(source: Any, binary: IO[bytes]) -> Iterator[Batch]:
    """ArrowCsv(source).batches, with reading errors as file errors."""
    with reading_errors():
        yield from ArrowCsv(source).batches(binary)
