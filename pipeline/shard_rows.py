"""One file's valid rows on their way into one shard: new ones straight into `residents`,
the rest through the staging table.

A row whose id the shard does not hold is COPYed straight into `residents` (the load holds
the shard's lock, so no other load adds ids meanwhile). Which ids the shard holds is asked
batch by batch on a second connection (probe.sql: by the batch's id range when its ids
fill much of it, as files of consecutive ids do; else id by id); reading only
committed rows, it cannot see this file's own rows. The probe answers with the rows'
content: a row the shard holds unchanged is not sent, only its id and record number
(load_seen, so that duplicates.sql sees every id the file gives); changed rows and rows
without an id are spooled on the client (a temporary file past SPOOL_IN_MEMORY) and copied
into the staging table when the file ends, where sql/load/update.sql and insert.sql write
them and duplicates.sql finds ids the file holds twice. (A row deleted by hand between two
batches that give its id is the one case this cannot see: the second goes straight in.)

Which ids went to staging or load_seen is watched as they go: while each is greater than
the one before, in file order (as in a file sorted by id), no id can be there twice, and the
shard is spared duplicates.sql and, for an append, load_seen (`ids_once`).

The direct COPY fails with a unique violation when the file holds one of its new ids twice,
or someone inserts one by hand meanwhile; the batch itself is checked for the first case.
Either way `Conflict` is raised: the caller rolls the file back and takes this shard's rows
through staging alone (`direct=False`), which handles both.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
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
from pipeline.packed import packed_columns, unpack
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
# Bytes of text up to which a held row is packed with the others in a probe's answer
# (sql/load/probe.sql); a larger row comes alone. A range probe reads at most
# PROBE_RANGE_SPAN * BATCH_RECORDS rows: the packed values stay below 200 MB, far below
# what a bytea holds (1 GB), however large the rows.
PROBE_PACK = 2_048
_HELD = (*OUTPUT, "source")
_HELD_KINDS = [pa.int64(), pa.string(), pa.string(), pa.string(), pa.int16(), pa.string(),
               pa.string()]  # fmt: skip
_PACKED = packed_columns(_HELD)
# load_seen's rows in COPY's binary format: a field count, then each field's size and
# big-endian value; the stream opens with a signature, flags and header extension size,
# and ends with a field count of -1.
_SEEN_ROW = np.dtype(
    [("fields", ">i2"), ("id_size", ">i4"), ("id", ">i8"), ("record_size", ">i4"),
     ("record", ">i8")]
)  # fmt: skip
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"
_PROBE_RANGE = sql.SQL("id BETWEEN {low} AND {high}")
_PROBE_IDS = sql.SQL("id = ANY({ids}::bigint[])")
# The staging table's columns (copy.sql), from a batch's columns.
_STAGED = {
    "record": "record",
    "line": "line",
    "country": "country",
    "country_raw": "raw_country",
    **{name: f"raw_{name}" for name in FIELDS if name != "country"},
    **{f"{name}_v": name for name in OUTPUT if name != "country"},
    "deleting": "deleting",
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
        source: str | None = None,
        probe_watchdog: Watchdog | None = None,  # the second connection's (its own thread's)
    ) -> None:
        self._conn = conn
        self._probe = probe
        self._probe_watchdog = probe_watchdog or Watchdog(watchdog.seconds)
        self._pool: ThreadPoolExecutor | None = None
        self._asked: deque[tuple[pa.Table, Future[pa.Table | None]]] = deque()
        self._load_id = load_id
        self._source = source  # written on every row; a row held under another is changed
        self._watchdog = watchdog
        self.direct = direct
        self.inserted = 0  # rows written straight into residents
        self.spooled = 0
        self.seen = 0  # rows the shard holds unchanged: only their ids are sent
        self.deleting = False  # a delete marker was spooled
        # The last id given to staging or load_seen, while each was greater than the one
        # before (None: none yet); `_given` turns False at the first that is not.
        self._last_given: int | None = None
        self._given = True
        self._seen = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self._seen.write(_BINARY_HEADER)
        # Closed by finish or abandon, which every file's end calls.
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self._copy_stack: contextlib.ExitStack | None = None
        self._copy: Any = None

    def ask(self, table: pa.Table, mask: np.ndarray) -> None:
        """Start the probe of a batch's rows (`write` takes its answer): it runs on the
        second connection, in a thread, while the caller reads and checks the next batch
        and the other shards probe theirs."""
        if self.direct and not _marks(table):
            ids = table.column("id").filter(mask)
            self._asked.append((table, self._probes().submit(self._held, ids)))

    def write(self, table: pa.Table, mask: np.ndarray) -> None:
        """Send the rows of a batch (validate.Checked.table) that `mask` picks: valid, and
        this shard's."""
        marked = _marks(table)
        if self.direct and marked:
            # A delete marker goes through staging, where duplicates.sql orders it with the
            # file's other rows of its id; rows that went straight in cannot be ordered so.
            if self.inserted:
                raise Conflict("a delete marker after rows went straight in")
            self.direct = False
        self.deleting = self.deleting or marked
        if not self.direct:
            self._note_given(table.column("id"), mask)
            self._to_spool(table.filter(mask))
            return
        id_column = table.column("id")
        held = self._answer(table, id_column.filter(mask))
        # Rows without an id take the identity's next value, which COPY would not give them.
        staged = mask & as_mask(pc.is_null(id_column))
        seen = np.zeros(len(mask), dtype=bool)
        if held is not None:
            existing = mask & as_mask(pc.is_in(id_column, value_set=held.column("id")))
            rows = np.flatnonzero(existing)
            # Only the compared columns: a batch carries the raw fields too (twice the bytes).
            compared = table.select(list(OUTPUT)).filter(pa.array(existing))
            same = _unchanged(compared, held, self._source)
            seen[rows[same]] = True
            staged[rows[~same]] = True
        new = mask & ~staged & ~seen
        self._note_given(id_column, staged | seen)
        new_ids = id_column.filter(new).to_numpy()  # no nulls: rows without an id are staged
        if not _rising(new_ids) and len(np.unique(new_ids)) != len(new_ids):
            raise Conflict("an id twice in the file")
        if staged.any():
            self._to_spool(table.filter(staged))
        if seen.any():
            seen_rows = _seen_rows(table, seen)
            self._seen.write(seen_rows.tobytes())
            self.seen += len(seen_rows)
        if new.any():
            self._write_direct(table.select(list(OUTPUT)).filter(new))

    @property
    def ids_once(self) -> bool:
        """Whether the ids given to staging and load_seen (duplicates.sql's) are each
        greater than the one before, in file order: then none is there twice."""
        return self._given

    def _note_given(self, ids: pa.ChunkedArray, picked: np.ndarray) -> None:
        """Watch the ids of the rows `picked` for staging or load_seen (see `ids_once`)."""
        if not self._given or not picked.any():
            return
        given = ids.filter(pa.array(picked)).drop_null().to_numpy()
        if not len(given):
            return
        after = self._last_given is None or int(given[0]) > self._last_given
        if after and _rising(given):
            self._last_given = int(given[-1])
        else:
            self._given = False

    def _probes(self) -> ThreadPoolExecutor:
        """The thread that runs this file's probes, one at a time (the second connection is
        its alone)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="probe")
        return self._pool

    def _answer(self, table: pa.Table, ids: pa.ChunkedArray) -> pa.Table | None:
        """The probe's answer for this batch: the one `ask` started, or a new one."""
        while self._asked:
            asked, future = self._asked.popleft()
            if asked is table:
                return future.result()
            _settle(future)  # a batch asked for and then not written (a restart)
        return self._probes().submit(self._held, ids).result()

    def _stop_probes(self) -> None:
        """Wait for the probes still running (their answers are not needed), end the thread."""
        while self._asked:
            _settle(self._asked.popleft()[1])
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _held(self, ids: pa.ChunkedArray) -> pa.Table | None:
        """The rows the shard holds (committed) of the batch's ids; None when it holds none."""
        bounds = pc.min_max(ids).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is None:
            return None
        if high - low + 1 <= PROBE_RANGE_SPAN * len(ids):
            where = _PROBE_RANGE.format(low=sql.Literal(low), high=sql.Literal(high))
        else:
            wanted = pc.cast(pc.unique(ids.drop_null()), pa.string())
            listed = pa.ListArray.from_arrays(pa.array([0, len(wanted)], pa.int32()), wanted)
            text = "{" + pc.binary_join(listed, ",")[0].as_py() + "}"
            where = _PROBE_IDS.format(ids=sql.Literal(text))
        query = LOAD.probe.format(where=where, packed=_PACKED, pack_bytes=sql.Literal(PROBE_PACK))
        conn = self._probe()
        with self._probe_watchdog.waiting(conn), conn.cursor(binary=True) as cursor:
            packs = cursor.execute(query).fetchall()
        return read_held(packs) if packs else None

    def _write_direct(self, rows: pa.Table) -> None:
        if self._copy is None:
            cursor = self._conn.cursor()
            self._copy_stack = contextlib.ExitStack()
            writer = QueuedWriter(cursor, self._watchdog)
            self._copy = self._copy_stack.enter_context(
                cursor.copy(LOAD.copy_direct, writer=writer)
            )
        # The same value on every row: a dictionary column costs one value and a byte a row.
        indices = pa.array([0] * rows.num_rows, pa.int8())
        table = rows.append_column(
            "load_id", pa.DictionaryArray.from_arrays(indices, pa.array([self._load_id]))
        ).append_column(
            "source", pa.DictionaryArray.from_arrays(indices, pa.array([self._source], pa.string()))
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

    def finish(self, seen: bool = True) -> None:
        """End the direct COPY, then copy the spooled rows into the staging tables; the
        unchanged rows' ids into load_seen only when `seen` (duplicates.sql or a snapshot
        needs them)."""
        self._stop_probes()
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            try:
                stack.close()
            except psycopg.errors.UniqueViolation:
                raise Conflict("an id the shard holds") from None
        for spool, count, statement in (
            (self._spool, self.spooled, LOAD.copy),
            (self._seen, self.seen if seen else 0, LOAD.copy_seen),
        ):
            if count:
                spool.seek(0)
                cursor = self._conn.cursor()
                writer = QueuedWriter(cursor, self._watchdog)
                with cursor.copy(statement, writer=writer) as copy:
                    while chunk := spool.read(SPOOL_CHUNK):
                        copy.write(chunk)
                    if spool is self._seen:
                        copy.write(_BINARY_TRAILER)
            spool.close()

    def abandon(self) -> None:
        """End a COPY still open with an error (the server drops what it got)."""
        self._stop_probes()
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            with contextlib.suppress(Exception), self._watchdog.waiting(self._conn):
                stack.__exit__(RuntimeError, RuntimeError("load abandoned"), None)
        self._spool.close()
        self._seen.close()


def _marks(table: pa.Table) -> bool:
    """Whether a batch holds a delete marker."""
    return bool(pc.any(table.column("deleting")).as_py())


def _seen_rows(table: pa.Table, seen: np.ndarray) -> np.ndarray:
    """The id and record number of the rows `seen` picks, as rows of a binary COPY
    (copy_seen.sql): numpy lays them out, where CSV would format every number."""
    picked = table.select(["id", "record"]).filter(pa.array(seen))  # no null id: held rows
    rows = np.empty(picked.num_rows, dtype=_SEEN_ROW)
    rows["fields"], rows["id_size"], rows["record_size"] = 2, 8, 8
    rows["id"] = picked.column("id").to_numpy()
    rows["record"] = picked.column("record").to_numpy()
    return rows


def _rising(ids: np.ndarray) -> bool:
    """Whether each id is greater than the one before (then none is there twice): the
    ids of a file sorted by id, found in one pass instead of a hash of them all."""
    return bool(np.all(ids[1:] > ids[:-1]))


def _settle(future: Future[Any]) -> None:
    """Wait for a probe whose answer is not needed; its error, if any, is not either."""
    with contextlib.suppress(Exception):
        future.result()


def read_held(packs: list[tuple[Any, ...]]) -> pa.Table:
    """A probe's answer (sql/load/probe.sql: rows of a count and packed columns) as a table
    of _HELD's columns."""
    tables = []
    for count, *packed in packs:
        values = zip(packed, _HELD_KINDS, strict=True)
        columns = [unpack(memoryview(value), kind, count) for value, kind in values]
        if any(len(column) != count for column in columns):
            raise PipelineError("the shard's answer to a probe is not whole")
        tables.append(pa.Table.from_arrays(columns, names=list(_HELD)))
    return pa.concat_tables(tables).combine_chunks()


def _unchanged(rows: pa.Table, held: pa.Table, source: str | None) -> np.ndarray:
    """For each row of the file the shard holds: whether its content is the shard's (and,
    for a load that names its source, whether the row is that source's already)."""
    at = pc.index_in(rows.column("id"), value_set=held.column("id"))
    same = np.ones(rows.num_rows, dtype=bool)
    if source is not None:
        same &= as_mask(pc.fill_null(pc.equal(held.column("source").take(at), source), False))
    for name in OUTPUT[1:]:
        mine, theirs = rows.column(name), held.column(name).take(at)
        equal = pc.fill_null(pc.equal(mine, theirs), False)
        both_null = pc.and_(pc.is_null(mine), pc.is_null(theirs))
        same &= as_mask(pc.or_(equal, both_null))
    return same
