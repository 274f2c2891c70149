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
shard is spared duplicates.sql and, for an append, load_seen (`ids_once`). A snapshot of
such a file is spared load_seen too: each batch's probe starts where the one before ended,
so the client learns every row the shard holds in one unbroken range of ids, and sends
back only those the file does not give (load_missing: `covered`, `deletion`).

The direct COPY fails with a unique violation when the file holds one of its new ids twice,
or someone inserts one by hand meanwhile; the batch itself is checked for the first case.
Either way `Conflict` is raised: the caller rolls the file back and takes this shard's rows
through staging alone (`direct=False`), which handles both.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql

from pipeline import threads
from pipeline.columns import FIELDS
from pipeline.copyin import QueuedWriter
from pipeline.direct_copy import DirectCopy
from pipeline.encodable import python_codec, storable
from pipeline.errors import PipelineError
from pipeline.held import BinaryIds, packed_held, read_held, unchanged
from pipeline.queries import LOAD
from pipeline.spools import spool_errors
from pipeline.sqlfiles import Statement
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
# PROBE_RANGE_SPAN * BATCH_RECORDS rows: the packed values stay below 250 MB, far below
# what a bytea holds (1 GB), however large the rows.
PROBE_PACK = 2_048
# Refused ids a snapshot copies to a shard at a time (copy_kept.sql): their text is built in
# Python, a few MB at most.
KEPT_CHUNK = 65_536
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
        snapshot: bool = False,  # the file is a snapshot of `source`: see `covered`
        *,
        pools: tuple[ThreadPoolExecutor, ThreadPoolExecutor],  # the probes', the encoder's
    ) -> None:
        self._conn = conn
        self._probe = probe
        self._probe_watchdog = probe_watchdog or Watchdog(watchdog.seconds)
        # A thread each, the caller's for its run: started once, not once a file.
        self._pool, encoder = pools
        self._asked: deque[tuple[pa.Table, Future[pa.Table | None]]] = deque()
        self._source = source  # written on every row; a row held under another is changed
        self._watchdog = watchdog
        self.direct = direct
        self.inserted = 0  # rows written straight into residents
        self.spooled = 0
        self.deleting = False  # a delete marker was spooled
        self.copied = False  # rows went into the staging tables (pipeline.staging)
        # The last id given to staging or load_seen, while each was greater than the one
        # before (None: none yet); `_given` turns False at the first that is not.
        self._last_given: int | None = None
        self._given = True
        # The ids and record numbers of the rows the shard holds unchanged: only these are sent.
        self._seen = BinaryIds(("id", "record"), SPOOL_IN_MEMORY)
        # A snapshot's probes, while each starts where the one before ended (`covered`): the
        # range they covered, and the ids the shard holds in it that the file does not give.
        self.snapshot = snapshot
        self._unbroken = snapshot
        self._low: int | None = None
        self._high: int | None = None
        self._missing = BinaryIds(("id",), SPOOL_IN_MEMORY)
        # Closed by finish or abandon, which every file's end calls.
        self._spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
        self._direct = DirectCopy(conn, watchdog, load_id, source, encoder)
        # Set when the shard's encoding lacks characters (pipeline.encodable).
        self._codec = python_codec(conn.info.parameter_status("server_encoding"))

    def ask(self, table: pa.Table, mask: np.ndarray) -> None:
        """Start the probe of a batch's rows (`write` takes its answer): it runs on the
        second connection, in a thread, while the caller reads and checks the next batch
        and the other shards probe theirs."""
        if self.direct and not _marks(table):
            ids = table.column("id").filter(mask)
            self._asked.append((table, self._submit(ids)))

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
            self._unbroken = self._unbroken and not mask.any()  # a batch left unprobed
            self._note_given(table.column("id"), mask)
            self._to_spool(table.filter(mask))
            return
        id_column = table.column("id")
        held = self._answer(table, id_column.filter(mask))
        # Rows without an id take the identity's next value, which COPY would not give them.
        staged = mask & as_mask(pc.is_null(id_column))
        seen = np.zeros(len(mask), dtype=bool)
        if held is not None:
            # Where each id of the batch is among the rows held (null: not held).
            at = pc.index_in(id_column, value_set=held.column("id"))
            existing = mask & as_mask(pc.is_valid(at))
            rows = np.flatnonzero(existing)
            picked = pa.array(existing)
            # Only the compared columns: a batch carries the raw fields too (twice the bytes).
            compared = table.select(list(OUTPUT)).filter(picked)
            same = unchanged(compared, _aligned(held, at.filter(picked)), self._source)
            seen[rows[same]] = True
            staged[rows[~same]] = True
            if self._unbroken:
                given = pc.is_in(held.column("id"), value_set=id_column.filter(mask))
                # This source's rows only: the deletion takes no other (another source's,
                # or a hand-written row, stays), and the list is its array of ids
                # (sql/load/gone_in_range.sql), which must not grow with the shard.
                theirs = pc.fill_null(pc.equal(held.column("source"), self._source), False)
                gone = pc.and_(pc.invert(given), theirs)
                self._missing.add(held.column("id").filter(gone).to_numpy())
        new = mask & ~staged & ~seen
        self._note_given(id_column, staged | seen)
        new_ids = id_column.filter(new).to_numpy()  # no nulls: rows without an id are staged
        if not _rising(new_ids) and len(np.unique(new_ids)) != len(new_ids):
            raise Conflict("an id twice in the file")
        if staged.any():
            self._to_spool(table.filter(staged))
        if seen.any():
            picked = table.select(["id", "record"]).filter(pa.array(seen))  # held: no null id
            self._seen.add(picked.column("id").to_numpy(), picked.column("record").to_numpy())
        if new.any():
            self._write_direct(table.select(list(OUTPUT)).filter(new))

    @property
    def seen(self) -> int:
        """The rows the shard holds unchanged (only their ids are sent)."""
        return self._seen.count

    @property
    def covered(self) -> tuple[int, int] | None:
        """For a snapshot whose every probe started where the one before ended (a file
        sorted by id, probed by range): the ids from the first probe's start to the last's
        end, (low, high). The shard's rows in that range that the file does not give are in
        load_missing once `finish`ed: the deletion needs no other id of the file
        (gone_in_range.sql). None otherwise (gone_unlisted.sql reads every id it gives)."""
        if not self._unbroken or self._low is None or self._high is None:
            return None
        return self._low, self._high

    def deletion(self) -> tuple[sql.Composed, dict[str, int | None]]:
        """A snapshot's deletion here, once the file is `finish`ed: sql/load/snapshot_delete.sql
        for the range `covered` (gone_in_range.sql) or, if none, for the ids the file gives
        (gone_unlisted.sql); with the range's parameters."""
        if (covered := self.covered) is None:
            gone, (low, high) = LOAD.gone_unlisted, (None, None)
        else:
            gone, (low, high) = LOAD.gone_in_range, covered
        return LOAD.snapshot_delete.format(gone=gone), {"low": low, "high": high}

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

    def _answer(self, table: pa.Table, ids: pa.ChunkedArray) -> pa.Table | None:
        """The probe's answer for this batch: the one `ask` started, or a new one."""
        while self._asked:
            asked, future = self._asked.popleft()
            if asked is table:
                return threads.result(future)
            _settle(future)  # a batch asked for and then not written (a restart)
            self._unbroken = False  # its range is not the file's
        return threads.result(self._submit(ids))

    def _stop_probes(self) -> None:
        """Wait for the probes still running (their answers are not needed)."""
        self._unbroken = self._unbroken and not self._asked  # a batch probed and not written
        while self._asked:
            _settle(self._asked.popleft()[1])

    def _submit(self, ids: pa.ChunkedArray) -> Future[pa.Table | None]:
        """Start the probe of a batch's ids (batches in file order: see `covered`)."""
        bounds = pc.min_max(ids).as_py()
        low, high = bounds["min"], bounds["max"]
        if low is None:
            return self._pool.submit(lambda: None)
        start = low
        if self._unbroken and self._high is not None:
            if low > self._high:  # from where the last probe ended: no id left between
                start = self._high + 1
            else:
                self._unbroken = False
        span = PROBE_RANGE_SPAN * len(ids)
        if high - start + 1 > span:
            self._unbroken, start = False, low
        if high - start + 1 <= span:
            where = _PROBE_RANGE.format(low=sql.Literal(start), high=sql.Literal(high))
            if self._unbroken:
                self._low = start if self._low is None else self._low
                self._high = high
        else:
            wanted = pc.cast(pc.unique(ids.drop_null()), pa.string())
            listed = pa.ListArray.from_arrays(pa.array([0, len(wanted)], pa.int32()), wanted)
            text = "{" + pc.binary_join(listed, ",")[0].as_py() + "}"
            where = _PROBE_IDS.format(ids=sql.Literal(text))
        return self._pool.submit(self._held, where)

    def _held(self, where: sql.Composable) -> pa.Table | None:
        """The rows the shard holds (committed) where `where`; None when it holds none."""
        conn = self._probe()
        packed = packed_held(conn.info.parameter_status("server_encoding") or "")
        query = LOAD.probe.format(where=where, packed=packed, pack_bytes=sql.Literal(PROBE_PACK))
        with self._probe_watchdog.waiting(conn), conn.cursor(binary=True) as cursor:
            packs = cursor.execute(query).fetchall()
        return read_held(packs) if packs else None

    def _write_direct(self, rows: pa.Table) -> None:
        try:
            self._direct.write(rows)
        except psycopg.errors.UniqueViolation:  # the server tells it at the COPY's end, as
            raise Conflict("an id the shard holds") from None  # a rule: see finish
        self.inserted += rows.num_rows

    def _to_spool(self, rows: pa.Table) -> None:
        columns = {name: rows.column(source) for name, source in _STAGED.items()}
        # Marked by pipeline.erased in a batch that bears an erased person's name.
        unquoted = "unquoted" in rows.column_names
        columns["unquoted"] = (
            rows.column("unquoted") if unquoted else pa.array(np.zeros(rows.num_rows, bool))
        )
        table = pa.table(columns)
        if self._codec is not None:
            # The fields as read (for the rejects file only) and a delete marker's text (never
            # stored) may hold what the shard's encoding lacks: escaped, not refused.
            for i, name in enumerate(table.column_names):
                if pa.types.is_string(table.schema.field(i).type):
                    table = table.set_column(i, name, storable(table.column(i), self._codec))
        with spool_errors():  # the spool's file in $TMPDIR past SPOOL_IN_MEMORY
            pcsv.write_csv(table, self._spool, write_options=_CSV)
        self.spooled += rows.num_rows

    def finish(self, seen: bool = True) -> None:
        """End the direct COPY, then copy the spooled rows into the staging tables; the
        unchanged rows' ids into load_seen only when `seen` (duplicates.sql or a snapshot
        not `covered` needs them), a covered snapshot's missing ids into load_missing."""
        self._stop_probes()
        try:
            self._direct.finish()
        except psycopg.errors.UniqueViolation:
            raise Conflict("an id the shard holds") from None
        if self.spooled:
            self._spool.seek(0)
            self._copy_in(LOAD.copy, iter(lambda: self._spool.read(SPOOL_CHUNK), b""))
        if seen and self.seen:
            self._copy_in(LOAD.copy_seen, self._seen.chunks(SPOOL_CHUNK))
        if self.covered is not None and self._missing.count:
            self._copy_in(LOAD.copy_missing, self._missing.chunks(SPOOL_CHUNK))
        self._close_spools()

    def keep(self, ids: np.ndarray) -> None:
        """Copy the ids of the file's records the rules refused into load_kept: a
        snapshot's deletion leaves them alone (copy_kept.sql)."""
        if not len(ids):
            return
        self.copied = True
        with self._conn.cursor().copy(LOAD.copy_kept) as copy:
            for start in range(0, len(ids), KEPT_CHUNK):
                copy.write("\n".join(map(str, ids[start : start + KEPT_CHUNK].tolist())) + "\n")

    def _copy_in(self, statement: Statement, chunks: Iterable[bytes]) -> None:
        self.copied = True
        cursor = self._conn.cursor()
        writer = QueuedWriter(cursor, self._watchdog)
        with cursor.copy(statement, writer=writer) as copy:
            for chunk in chunks:
                copy.write(chunk)

    def _close_spools(self) -> None:
        self._spool.close()
        self._seen.close()
        self._missing.close()

    def abandon(self) -> None:
        """End a COPY still open with an error (the server drops what it got)."""
        self._stop_probes()
        self._direct.abandon()
        self._close_spools()


def _aligned(held: pa.Table, positions: pa.ChunkedArray) -> pa.Table:
    """The held rows at `positions` (one for each of the batch's rows the shard holds):
    `held` itself when that is all of them in order, as a probe by range of a file sorted
    by id answers, else taken."""
    if len(positions) == held.num_rows:
        order = positions.to_numpy()
        if not len(order) or (order[0] == 0 and _rising(order) and order[-1] == len(order) - 1):
            return held
    return held.take(positions)


def _marks(table: pa.Table) -> bool:
    """Whether a batch holds a delete marker."""
    return bool(pc.any(table.column("deleting")).as_py())


def _rising(ids: np.ndarray) -> bool:
    """Whether each id is greater than the one before (then none is there twice): the
    ids of a file sorted by id, found in one pass instead of a hash of them all."""
    return bool(np.all(ids[1:] > ids[:-1]))


def _settle(future: Future[Any]) -> None:
    """Wait for a probe whose answer is not needed; its error, if any, is not either."""
    with contextlib.suppress(Exception):
        threads.result(future)
