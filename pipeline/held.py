"""What a load's probe answers, and what the client makes of it (for pipeline.shard_rows):
the rows a shard holds, unpacked from sql/load/probe.sql's packed columns (`read_held`);
which of the file's rows are the same (`unchanged`); and ids sent back as rows of a binary
COPY (`BinaryIds`: the unchanged rows' ids for load_seen, a snapshot's missing ones for
load_missing), which numpy lays out where CSV would format every number.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from pipeline import binary_rows
from pipeline.errors import PipelineError
from pipeline.packed import packed_columns, unpack_all
from pipeline.spools import spool_errors
from pipeline.validate import OUTPUT, as_mask

HELD = (*OUTPUT, "source")
_HELD_KINDS = [pa.int64(), pa.string(), pa.string(), pa.string(), pa.int16(), pa.string(),
               pa.string()]  # fmt: skip


def packed_held(server_encoding: str) -> sql.Composable:
    """The select list of sql/load/probe.sql: HELD's columns packed, for a server of
    `server_encoding`."""
    return packed_columns(HELD, server_encoding)


def read_held(packs: list[tuple[Any, ...]]) -> pa.Table:
    """A probe's answer (sql/load/probe.sql: rows of a count and packed columns) as a table
    of HELD's columns."""
    tables = []
    for count, *packed in packs:
        try:
            columns = unpack_all([memoryview(v) for v in packed], HELD, _HELD_KINDS, count)
        except PipelineError as exc:
            raise PipelineError(f"the shard's answer to a probe is not whole: {exc}") from None
        tables.append(pa.Table.from_arrays(columns, names=list(HELD)))
    return pa.concat_tables(tables).combine_chunks()


def unchanged(rows: pa.Table, theirs: pa.Table, source: str | None) -> np.ndarray:
    """For each row of the file the shard holds: whether its content is the shard's row's,
    `theirs` (the held rows, row for row) (and, for a load that names its source, whether
    the row is that source's already)."""
    same = None
    if source is not None:
        same = pc.fill_null(pc.equal(theirs.column("source"), source), False)
    for name in OUTPUT[1:]:
        mine, held = rows.column(name), theirs.column(name)
        equal = pc.equal(mine, held)
        # Nulls only where a column has some: a null is equal to a null alone. (Two
        # kernels a column without, where all took seven: a --force load's comparison
        # took twice the time.)
        if mine.null_count or held.null_count:
            both_null = pc.and_(pc.is_null(mine), pc.is_null(held))
            equal = pc.or_(pc.fill_null(equal, False), both_null)
        same = equal if same is None else pc.and_(same, equal)
    return as_mask(same) if same is not None else np.ones(rows.num_rows, dtype=bool)


class BinaryIds:
    """Rows of bigint columns (`columns`: their names, in the COPY's order) spooled as a
    binary COPY: in memory up to `in_memory` bytes, then in a temporary file. `count` holds
    the rows added."""

    def __init__(self, columns: tuple[str, ...], in_memory: int) -> None:
        fields = [("fields", ">i2")]
        for name in columns:
            fields += [(f"{name}_size", ">i4"), (name, ">i8")]
        self._dtype = np.dtype(fields)
        self._columns = columns
        self.count = 0
        self.spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=in_memory)  # noqa: SIM115
        self.spool.write(binary_rows.HEADER)

    def add(self, *values: np.ndarray) -> None:
        """Spool rows: one array of int64 a column, all as long."""
        rows = np.empty(len(values[0]), dtype=self._dtype)
        rows["fields"] = len(self._columns)
        for name, column in zip(self._columns, values, strict=True):
            rows[f"{name}_size"] = 8
            rows[name] = column
        with spool_errors():  # its file in $TMPDIR past `in_memory`
            self.spool.write(rows.tobytes())
        self.count += len(rows)

    def chunks(self, size: int) -> Iterator[bytes]:
        """The COPY's bytes, from the start, in reads of `size` bytes (the trailer last)."""
        self.spool.seek(0)
        while chunk := self.spool.read(size):
            yield chunk
        yield binary_rows.TRAILER

    def close(self) -> None:
        self.spool.close()
