"""One file's valid rows on their way into one shard: new ones straight into `residents`,
the rest through the staging table.

A row whose id the shard does not hold is COPYed straight into `residents` (the load holds
the shard's lock, so no other load adds ids meanwhile). Which ids the shard holds is asked
batch by batch on a second connection (probe_range.sql, by the batch's id range when its
ids fill much of it, as files of consecutive ids do; else probe_ids.sql); reading only
committed rows, it cannot see this file's own rows. Rows whose id the shard holds, and rows
without an id, are spooled on the client (a temporary file past SPOOL_IN_MEMORY) and copied
into the staging table when the file ends, where sql/load/update.sql and insert.sql write
the changed and new ones and duplicates.sql finds ids the file holds twice.

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

from pipeline.columns import FIELDS
from pipeline.copyin import QueuedWriter
from pipeline.errors import PipelineError
from pipeline.queries import LOAD
from pipeline.validate import OUTPUT
from pipeline.watchdog import Watchdog

SPOOL_IN_MEMORY = 8 << 20  # bytes of spooled rows kept in memory before a temporary file
SPOOL_CHUNK = 1 << 20  # bytes sent to the staging COPY at a time
# Probe by range when the batch's id range is at most this many times its rows: the scan
# then reads at most that many ids per row (batches of consecutive ids split by shard fill
# half their range or less; sparse ones are probed id by id).
PROBE_RANGE_SPAN = 8
_CSV = pcsv.WriteOptions(include_header=False, quoting_style="needed")
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
        ids = table.column("id").filter(mask)
        held = self._held(ids)
        # Rows without an id take the identity's next value, which COPY would not give them.
        staged = mask & _mask(pc.is_null(table.column("id")))
        if held is not None:
            staged |= mask & _mask(pc.is_in(table.column("id"), value_set=held))
        new = mask & ~staged
        new_ids = table.column("id").filter(new)
        if len(new_ids) != pc.count_distinct(new_ids).as_py():
            raise Conflict("an id twice in the file")
        if staged.any():
            self._to_spool(table.filter(staged))
        if new.any():
            self._write_direct(table.select(list(OUTPUT)).filter(new))

    def _held(self, ids: pa.ChunkedArray) -> pa.Array | None:
        """The batch's ids the shard holds (committed), or None when it holds none."""
        bounds = pc.min_max(ids).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is None:
            return None
        conn = self._probe()
        with self._watchdog.waiting(conn):
            if high - low + 1 <= PROBE_RANGE_SPAN * len(ids):
                found = conn.execute(LOAD.probe_range, [low, high]).fetchone()
            else:
                wanted = pc.cast(pc.unique(ids.drop_null()), pa.string())
                listed = pa.ListArray.from_arrays(pa.array([0, len(wanted)], pa.int32()), wanted)
                text = "{" + pc.binary_join(listed, ",")[0].as_py() + "}"
                found = conn.execute(LOAD.probe_ids, [text]).fetchone()
        if found is None or found[0] is None:
            return None
        return pc.cast(pc.split_pattern(pa.array([found[0]]), ",").flatten(), pa.int64())

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
        except psycopg.errors.UniqueViolation:
            raise Conflict("an id the shard holds") from None
        self.inserted += rows.num_rows

    def _to_spool(self, rows: pa.Table) -> None:
        table = pa.table({name: rows.column(source) for name, source in _STAGED.items()})
        pcsv.write_csv(table, self._spool, write_options=_CSV)
        self.spooled += rows.num_rows

    def finish(self) -> None:
        """End the direct COPY, then copy the spooled rows into the staging table."""
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            try:
                stack.close()
            except psycopg.errors.UniqueViolation:
                raise Conflict("an id the shard holds") from None
        if not self.spooled:
            self._spool.close()
            return
        self._spool.seek(0)
        cursor = self._conn.cursor()
        with cursor.copy(LOAD.copy, writer=QueuedWriter(cursor, self._watchdog)) as copy:
            while chunk := self._spool.read(SPOOL_CHUNK):
                copy.write(chunk)
        self._spool.close()

    def abandon(self) -> None:
        """End a COPY still open with an error (the server drops what it got)."""
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception), self._watchdog.waiting(self._conn):
                stack.__exit__(RuntimeError, RuntimeError("load abandoned"), None)
        self._spool.close()


def _mask(condition: Any) -> np.ndarray:
    """A boolean column (null: false) as numpy."""
    return np.asarray(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), dtype=bool)
