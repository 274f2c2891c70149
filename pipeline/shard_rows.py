"""One file's valid rows on their way into one shard: new ones straight into `residents`,
the rest through the staging table.

A row whose id the shard does not hold is COPYed straight into `residents` (the load holds
the shard's lock, so no other load adds ids meanwhile). Which ids the shard holds is asked
batch by batch on a second connection (probe_range.sql, by the batch's id range when its
ids fill much of it, as files of consecutive ids do; else probe_ids.sql); reading only
committed rows, it cannot see this file's own rows. The probe answers with the rows'
content: a row the shard holds unchanged is not sent, only its id and record number
(load_seen, so that duplicates.sql sees every id the file gives); changed rows and rows
without an id are spooled on the client (a temporary file past SPOOL_IN_MEMORY) and copied
into the staging table when the file ends, where sql/load/update.sql and insert.sql write
them and duplicates.sql finds ids the file holds twice. (A row deleted by hand between two
batches that give its id is the one case this cannot see: the second goes straight in.)

The direct COPY fails with a unique violation when the file holds one of its new ids twice,
or someone inserts one by hand meanwhile; the batch itself is checked for the first case.
Either way `Conflict` is raised: the caller rolls the file back and takes this shard's rows
through staging alone (`direct=False`), which handles both.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql

from pipeline.columns import FIELDS
from pipeline.copyin import QueuedWriter
from pipeline.errors import PipelineError
from pipeline.queries import LOAD
from pipeline.validate import OUTPUT, as_mask
from pipeline.watchdog import Watchdog

SPOOL_IN_MEMORY = 1 << 20  # bytes of spooled rows kept in memory before a temporary file
SPOOL_CHUNK = 1 << 20  # bytes sent to the staging COPY at a time
# Probe by range when the batch's id range is at most this many times its rows: the scan
# then reads at most that many ids per row (batches of consecutive ids split by shard fill
# half their range or less; sparse ones are probed id by id).
PROBE_RANGE_SPAN = 8
_CSV = pcsv.WriteOptions(include_header=False, quoting_style="needed")
PROBE_BLOCK = 1 << 20  # bytes of a probe's answer pyarrow parses at a time
_HELD_READ = pcsv.ReadOptions(column_names=list(OUTPUT), use_threads=False, block_size=PROBE_BLOCK)
_HELD_PARSE = pcsv.ParseOptions(newlines_in_values=True)  # an address of several lines
# What probe_range.sql and probe_ids.sql give: NULL is an unquoted empty field, '' a quoted
# one, and nothing else is NULL (pyarrow's default would read an address "N/A" as NULL).
_HELD_TYPES = pcsv.ConvertOptions(
    column_types={
        "id": pa.int64(),
        "country": pa.string(),
        "name": pa.string(),
        "gender": pa.string(),
        "age": pa.int16(),
        "address": pa.string(),
    },
    null_values=[""],
    strings_can_be_null=True,
    quoted_strings_can_be_null=False,
)
# The staging table's columns (copy.sql), from a batch's columns.
_STAGED = {
    "record": "record",
    "line": "line",
    "country": "country",
    "country_raw": "raw_country",
    **{name: f"raw_{name}" for name in FIELDS if name != "country"},
    **{f"{name}_v": name for name in OUTPUT if name != "country"},
}


class Conflict(PipelineError):
    """The direct COPY met an id the shard already holds. Never shown to the user: the load
    reads the file again (a PipelineError so that pipeline.shards hands it back as the
    shard's outcome)."""


class Restart(Exception):
    """The file must be read again from its start: `shards` take it through staging."""

    def __init__(self, shards: list[str]) -> None:
        super().__init__(", ".join(shards))
        self.shards = shards


class ShardRows:
    """The valid rows of one file for one shard (see the module docstring)."""

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        probe: Any,  # Callable[[], psycopg.Connection]: the second connection, opened on demand
        load_id: str,
        watchdog: Watchdog,
        direct: bool,
    ) -> None:
        self._conn = conn
        self._probe = probe
        self._load_id = load_id
        self._watchdog = watchdog
        self.direct = direct
        self.inserted = 0  # rows written straight into residents
        self.spooled = 0
        self.seen = 0  # rows the shard holds unchanged: only their ids are sent
        self._seen = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        # Closed by finish or abandon, which every file's end calls.
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self._copy_stack: contextlib.ExitStack | None = None
        self._copy: Any = None

    def write(self, table: pa.Table, mask: np.ndarray) -> None:
        """Send the rows of a batch (validate.Checked.table) that `mask` picks: valid, and
        this shard's."""
        if not self.direct:
            self._to_spool(table.filter(mask))
            return
        id_column = table.column("id")
        held = self._held(id_column.filter(mask))
        # Rows without an id take the identity's next value, which COPY would not give them.
        staged = mask & as_mask(pc.is_null(id_column))
        seen = np.zeros(len(mask), dtype=bool)
        if held is not None:
            existing = mask & as_mask(pc.is_in(id_column, value_set=held.column("id")))
            rows = np.flatnonzero(existing)
            same = _unchanged(table.take(pa.array(rows)), held)
            seen[rows[same]] = True
            staged[rows[~same]] = True
        new = mask & ~staged & ~seen
        new_ids = id_column.filter(new)
        if len(new_ids) != pc.count_distinct(new_ids).as_py():
            raise Conflict("an id twice in the file")
        if staged.any():
            self._to_spool(table.filter(staged))
        if seen.any():
            seen_rows = table.select(["id", "record"]).filter(seen)
            pcsv.write_csv(seen_rows, self._seen, write_options=_CSV)
            self.seen += seen_rows.num_rows
        if new.any():
            self._write_direct(table.select(list(OUTPUT)).filter(new))

    def _held(self, ids: pa.ChunkedArray) -> pa.Table | None:
        """The rows the shard holds (committed) of the batch's ids; None when it holds none."""
        bounds = pc.min_max(ids).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is None:
            return None
        if high - low + 1 <= PROBE_RANGE_SPAN * len(ids):
            query = LOAD.probe_range.format(low=sql.Literal(low), high=sql.Literal(high))
        else:
            wanted = pc.cast(pc.unique(ids.drop_null()), pa.string())
            listed = pa.ListArray.from_arrays(pa.array([0, len(wanted)], pa.int32()), wanted)
            text = "{" + pc.binary_join(listed, ",")[0].as_py() + "}"
            query = LOAD.probe_ids.format(ids=sql.Literal(text))
        conn = self._probe()
        out = io.BytesIO()
        with self._watchdog.waiting(conn), conn.cursor().copy(query) as copy:
            for data in copy:
                out.write(data)
        if not out.tell():
            return None
        out.seek(0)
        return read_held(out)

    def _write_direct(self, rows: pa.Table) -> None:
        if self._copy is None:
            cursor = self._conn.cursor()
            self._copy_stack = contextlib.ExitStack()
            writer = QueuedWriter(cursor, self._watchdog)
            self._copy = self._copy_stack.enter_context(
                cursor.copy(LOAD.copy_direct, writer=writer)
            )
        table = rows.append_column(
            "load_id",
            pa.DictionaryArray.from_arrays(
                pa.array([0] * rows.num_rows, pa.int8()), pa.array([self._load_id])
            ),
        )
        out = io.BytesIO()
        pcsv.write_csv(table, out, write_options=_CSV)
        try:
            self._copy.write(out.getbuffer())
        except psycopg.errors.UniqueViolation:  # the server tells it at the COPY's end, as
            raise Conflict("an id the shard holds") from None  # a rule: see finish
        self.inserted += rows.num_rows

    def _to_spool(self, rows: pa.Table) -> None:
        table = pa.table({name: rows.column(source) for name, source in _STAGED.items()})
        pcsv.write_csv(table, self._spool, write_options=_CSV)
        self.spooled += rows.num_rows

    def finish(self) -> None:
        """End the direct COPY, then copy the spooled rows into the staging tables."""
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            try:
                stack.close()
            except psycopg.errors.UniqueViolation:
                raise Conflict("an id the shard holds") from None
        for spool, count, statement in (
            (self._spool, self.spooled, LOAD.copy),
            (self._seen, self.seen, LOAD.copy_seen),
        ):
            if count:
                spool.seek(0)
                cursor = self._conn.cursor()
                writer = QueuedWriter(cursor, self._watchdog)
                with cursor.copy(statement, writer=writer) as copy:
                    while chunk := spool.read(SPOOL_CHUNK):
                        copy.write(chunk)
            spool.close()

    def abandon(self) -> None:
        """End a COPY still open with an error (the server drops what it got)."""
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception), self._watchdog.waiting(self._conn):
                stack.__exit__(RuntimeError, RuntimeError("load abandoned"), None)
        self._spool.close()
        self._seen.close()


def read_held(answer: io.BytesIO) -> pa.Table:
    """A probe's answer (CSV) as a table of OUTPUT's columns."""
    return pcsv.read_csv(
        answer, read_options=_HELD_READ, parse_options=_HELD_PARSE, convert_options=_HELD_TYPES
    )


def _unchanged(rows: pa.Table, held: pa.Table) -> np.ndarray:
    """For each row of the file the shard holds: whether its content is the shard's."""
    at = pc.index_in(rows.column("id"), value_set=held.column("id"))
    same = np.ones(rows.num_rows, dtype=bool)
    for name in OUTPUT[1:]:
        mine, theirs = rows.column(name), held.column(name).take(at)
        equal = pc.fill_null(pc.equal(mine, theirs), False)
        both_null = pc.and_(pc.is_null(mine), pc.is_null(theirs))
        same &= as_mask(pc.or_(equal, both_null))
    return same
