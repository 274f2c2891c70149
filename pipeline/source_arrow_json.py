"""NDJSON read in bulk by pyarrow's C++ JSON parser, with the record and line numbers the
rejects file needs, for files that need none of the Python reader's care
(pipeline.source_json): its time per record was most of an NDJSON load's.

The file is cut into blocks at line ends (at most BATCH_RECORDS lines a block). pyarrow
parses a block against a schema of the file's column names, each text or, where the
block's values are all integers, int64 (the integers become their text, as Python's reader
writes them). A block is taken only when Python's reader would read it the same way and no
limit is near: every line is empty or starts with "{" and holds one object whose keys are
column names exactly as the rules spell them (no other key, none twice); every value is a
string, null or an int64 integer, in the same kind within a column of the block; no control
character but a line end (a tab and a carriage return outside a CRLF included); valid UTF-8;
no line longer in bytes than its limit in characters, no field over its limit, no country
longer than any. Anything else raises `NotSimple`, and the caller reads the whole file again
with the Python reader (tests/test_source_arrow_json.py reads the same files through both).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pjson

from pipeline.batch import BATCH_RECORDS, Batch
from pipeline.json_array import DECODER
from pipeline.rules import COUNTRY_MAX
from pipeline.source_arrow import (
    BLOCK_BYTES,
    BOM,
    NotSimple,
    empty_batch,
    reading_errors,
)
from pipeline.source_file import READ, REQUIRED

_NL, _CR, _BRACE = 10, 13, 123
# pyarrow's message when a column's values change kind: the column is parsed again as the
# other kind (text <-> integer), at most once a block.
_KIND_CHANGED = re.compile(r"Column\(/(.*)\) changed from (?:string|number) to (string|number)")
_KINDS = {"string": pa.string(), "number": pa.int64()}


class ArrowNdjson:
    """The records of one NDJSON file, block by block (see the module docstring). `source` is
    the pipeline.sources.Source whose columns, limits and hash apply."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.limits = source.limits
        self._names: tuple[str, ...] = source.columns  # the file's names, in READ order
        self._kinds = dict.fromkeys(self._names, pa.string())  # kept from block to block
        self._valued: set[str] = set()  # columns with a value in some record

    def batches(self, binary: IO[bytes]) -> Iterator[Batch]:
        pending = binary.read(BLOCK_BYTES)
        if pending.startswith(BOM):
            pending = pending[len(BOM) :]
        eof = not pending
        newlines = _newlines(pending)  # of `pending`, found once: the cuts take them in turn
        pos = at = 0  # where the next block starts; newlines[at] is the first after it
        line, number = 1, 0
        while pos < len(pending) or not eof:
            whole = len(newlines) - at  # lines pending with their line end
            if not eof and (not whole or len(pending) - pos < BLOCK_BYTES):
                data = binary.read(BLOCK_BYTES)
                eof = not data
                pending, pos, at = pending[pos:] + data, 0, 0
                newlines = _newlines(pending)
                if not len(newlines) and len(pending) > self.limits.max_line:
                    raise NotSimple("a line near its limit")  # bytes: at least as many chars
                continue
            first = at
            if eof and whole < BATCH_RECORDS:
                cut, at = len(pending), len(newlines)  # the last line, with or without its end
            else:
                at += BATCH_RECORDS if whole > BATCH_RECORDS else whole
                cut = int(newlines[at - 1]) + 1
            batch, lines = self._block(pending[pos:cut], newlines[first:at] - pos, line, number)
            pos = cut
            line += lines
            number += len(batch)
            if len(batch):
                yield batch
        self.source._objects = number
        self.source.required_seen.update(self._valued & set(REQUIRED))
        if number and not self.source.required_seen.issuperset(REQUIRED):
            # Python's reader tells a key given as null from a missing one; this one cannot.
            raise NotSimple("a required column with no value")

    def _block(
        self, block: bytes, newlines: np.ndarray, first_line: int, first_record: int
    ) -> tuple[Batch, int]:
        """The records of one block of whole lines, given where its newlines are (found once,
        by the cut); (the batch, the block's line count)."""
        arr = np.frombuffer(block, dtype=np.uint8)
        returns = block.count(b"\r") if b"\r" in block else 0
        if returns and returns != block.count(b"\r\n"):
            raise NotSimple("a carriage return that ends no line")
        if np.count_nonzero(arr < 0x20) != len(newlines) + returns:
            raise NotSimple("a control character")
        ends = newlines if len(newlines) and newlines[-1] == len(block) - 1 else (
            np.append(newlines, len(block) - 1)  # the file's last line, no line end
        )  # fmt: skip
        starts = np.empty_like(ends)
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
        longest = int(np.max(ends - starts + 1))
        if longest > self.limits.max_line:
            raise NotSimple("a line near its limit")
        first = arr[starts]
        blank = first == _NL
        if not np.all(blank | (first == _BRACE)):
            raise NotSimple("a line that is neither empty nor starts an object")
        taken = np.flatnonzero(~blank)
        if not len(taken):
            return empty_batch(), len(newlines)
        table = self._parse(block, len(taken))
        n = table.num_rows
        columns = {}
        nul_free = True
        for key, name in zip(READ, self._names, strict=True):
            column = table.column(name).combine_chunks()
            if column.type != pa.string():
                column = pc.cast(column, pa.string())
            nul_free = nul_free and not _holds_nul(column)
            if column.null_count < n:
                self._valued.add(key)
                longest = pc.max(pc.binary_length(column)).as_py()
                limit = self.limits.max_field
                if key == "country":
                    limit = min(limit, COUNTRY_MAX)
                if longest > limit:
                    raise NotSimple("a field near its limit, or a country longer than any")
            columns[key] = column
        record_starts, record_ends = starts[taken], ends[taken]

        def raws(rows: list[int]) -> list[Any]:
            return [
                DECODER.decode(block[record_starts[r] : record_ends[r] + 1].decode("utf-8"))
                for r in rows
            ]

        records = pa.array(np.arange(first_record + 1, first_record + n + 1, dtype=np.int64))
        lines = pa.array((first_line + taken).astype(np.int64))
        batch = Batch(records, lines, columns, raws, nul_free=nul_free)
        return batch, len(newlines)

    def _parse(self, block: bytes, records: int) -> pa.Table:
        """The block parsed by pyarrow into one column a name; NotSimple unless it holds
        exactly `records` objects of known keys and simple values.

        In one piece, on this thread, as the CSV reader has it (pipeline.source_arrow): in
        pieces of 256 KiB on pyarrow's threads, an NDJSON load of 1M unchanged rows took
        2.38 s and 2.45 s of CPU, in one piece 2.26 s and 2.29 s (8 alternating rounds; one
        piece on pyarrow's threads 2.39 s, pieces on this thread 2.50 s). One piece also
        takes any line whole: in pieces, pyarrow refuses a line much longer than a piece
        ("straddles two block boundaries")."""
        flipped: set[str] = set()
        while True:
            schema = pa.schema(list(self._kinds.items()))
            try:
                table = pjson.read_json(
                    io.BytesIO(block),
                    read_options=pjson.ReadOptions(use_threads=False, block_size=len(block) + 1),
                    parse_options=pjson.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="error"
                    ),
                )
                break
            except pa.ArrowInvalid as exc:
                changed = _KIND_CHANGED.search(str(exc))
                if changed is None or changed[1] not in self._kinds or changed[1] in flipped:
                    raise NotSimple(f"pyarrow: {exc}") from None
                flipped.add(changed[1])
                self._kinds[changed[1]] = _KINDS[changed[2]]
        if table.num_rows != records:
            raise NotSimple("pyarrow found other records than the lines")
        try:
            for column in table.columns:
                column.validate(full=True)  # UTF-8: pyarrow's JSON reader does not check it
        except pa.ArrowInvalid:
            raise NotSimple("not UTF-8") from None
        return table


def _holds_nul(column: pa.Array) -> bool:
    """Whether a value of the string column holds a NUL character (from a \\u0000 escape:
    the block holds no raw one). Its values' bytes looked at as one array: searching the
    block for the escape took 0.8 ms a 1.5 MB block (its backslashes and zeros are
    frequent), 75 ms a 1M-record file; this, 0.05 ms."""
    _, offsets, data = column.buffers()
    if data is None or not len(column):
        return False
    ends = np.frombuffer(offsets, dtype=np.int32)
    low, high = int(ends[column.offset]), int(ends[column.offset + len(column)])
    return not np.frombuffer(data, dtype=np.uint8)[low:high].all()


def _newlines(data: bytes) -> np.ndarray:
    return np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == _NL)


def ndjson_batches(source: Any, binary: IO[bytes]) -> Iterator[Batch]:
    """ArrowNdjson(source).batches, with reading errors as file errors."""
    with reading_errors():
        yield from ArrowNdjson(source).batches(binary)
