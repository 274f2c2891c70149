"""Writing one file's rows to one shard: direct COPY and staging, checks, ledger; one
transaction.

For each file, a `ShardWriter`:
1. `begin`:  BEGIN; take the shard's load lock (concurrent loads queue here); look the
   file's sha256 up in the ledger (after the lock, so a load that waited sees what the
   other one committed); set a savepoint the file can start again from (`restart`). The
   staging tables (sql/load/staging.sql) are made once a connection (pipeline.shard_link).
2. `write`:  send each batch of valid rows (the rules ran on the client, pipeline.validate):
   new ids straight into residents, from a thread of the shard's while the main thread
   reads on, the others spooled for staging (pipeline.shard_rows, direct_copy).
3. `check`:  end the COPYs, copy the spool into staging, find the ids the file holds twice
   (sql/load/duplicates.sql; not needed when they came in rising order).
4. `commit`: update the changed staged rows and insert the new ones (pipeline.staged_write;
   falling back to one INSERT ... ON CONFLICT when someone inserted one of the ids
   meanwhile), write the ledger row, COMMIT (or, for a dry run, preview the counts and roll
   back). `rollback` abandons the file on this shard.
`write` and `check` raise Conflict when the direct COPY meets an id the shard holds: the
caller `restart`s every shard and reads the file again, this one through staging alone.
A shard that fails raises ShardError; the caller carries on with the other shards, and
`hold`s this one: it takes no later file of the run (those must not land before this one).

A file completed late, by a re-run, must not overwrite what a later file of the same command
already wrote on this shard: `begin` looks the later files up in the ledger (protected.sql)
and the upsert leaves their (staged: never direct) rows alone ("kept").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa

from pipeline import db, threads
from pipeline.columns import FIELDS
from pipeline.config import Shard, ShardMap
from pipeline.encodable import python_codec, storable_text
from pipeline.errors import ShardError
from pipeline.later_files import NOTHING_PROTECTED, LaterFiles
from pipeline.load_result import ShardCounts
from pipeline.queries import LOAD, SCHEMA
from pipeline.reasons import RejectReason
from pipeline.renumbered import Taken
from pipeline.routing import Budget
from pipeline.rules import Rules
from pipeline.shard_link import ShardLink, Timeouts
from pipeline.shard_rows import Conflict, ShardRows
from pipeline.staged_write import scalar, write_staged
from pipeline.sync import Source
from pipeline.watchdog import CANCEL_TIMEOUT_SECONDS

# Refused rows fetched at a time: 10,000 took 12 MB more at 10M rows, where every fetch is
# full, than at 1M, where none was.
REJECTS_BATCH = 2_000


@dataclass(frozen=True)
class SqlReject:
    record: int
    line: int | None
    reason: RejectReason
    raw: dict[str, Any]
    unquoted: bool  # it bears an erased person's name: no value of it is quoted


class ShardWriter(ShardLink):
    """One shard's side of a load run: a connection reused file after file."""

    def __init__(
        self,
        shard_map: ShardMap,
        shard: Shard,
        rules: Rules,
        load_id: str,
        dry_run: bool,
        timeouts: Timeouts | None = None,
    ):
        super().__init__(shard_map, shard, timeouts)
        self.rules = rules
        self.load_id = load_id
        self.dry_run = dry_run
        self._rows: ShardRows | None = None  # the current file's rows, once begun
        self._duplicates = 0
        self.direct = True  # new rows straight into residents (shard_rows.py)
        self._protected = NOTHING_PROTECTED
        self._later_files = LaterFiles()  # of this run, in this shard's ledger
        # (old id, country) -> new id: what renumbering moves took here (pipeline.renumbered)
        self.renumbered: Taken = {}
        self.counts = ShardCounts()
        self.committed = False  # the current file, on this shard
        self.source: Source | None = None  # the current file's
        self._pools = (threads.pool(1, "probe"), threads.pool(1, "direct-copy"))  # ShardRows'

    # -- one file ---------------------------------------------------------------------------

    def begin(
        self,
        sha256: str,
        force: bool,
        later: Sequence[str] = (),
        source: Source | None = None,
        last: bool = False,
    ) -> bool:
        """Open this file's transaction; False when the ledger already holds the file.
        `later` are the sha256 of the files that come after this one in the run; `source`
        the one the file loads under (pipeline.sync); `last`: the last snapshot of its
        source in the run, loaded again where another file of the source came since."""
        self.counts = ShardCounts()
        self.committed = False
        self.source = source
        self._protected = NOTHING_PROTECTED
        self.direct = True  # a conflict in the file before does not carry over
        self._watchdog.take()  # a time-out of the file before is told already
        self._probe_watchdog.take()
        if self._stopping is not None:
            raise ShardError(self.shard.name, self._stopping)
        conn = self._connection()
        try:
            with self._watchdog.waiting(conn):
                return self._begin(conn, sha256, force, later, last)
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None

    def _begin(
        self,
        conn: psycopg.Connection[Any],
        sha256: str,
        force: bool,
        later: Sequence[str],
        last: bool,
    ) -> bool:
        self._staging.ready(conn)
        lock = self.timeouts.lock
        found = {"sha256": sha256, **self._source_params()}
        # The server ends a lock wait at the lock time-out; the watchdog, if it does not answer.
        lock_wait = lock and lock + CANCEL_TIMEOUT_SECONDS
        with self._watchdog.waiting(conn, lock_wait, "--lock-timeout"), db.pipelined(conn):
            conn.execute(LOAD.begin, {"lock": f"{lock * 1000:.0f}ms"})
            conn.execute(SCHEMA.lock, [db.LOCK_LOAD])
        # After the lock (a load that waited sees what the one before committed), all at once.
        with db.pipelined(conn):
            rule = conn.execute(SCHEMA.residency_rule)
            ledger = None if force else conn.execute(LOAD.ledger_find, found)
            asked = self._later_files.ask(conn, later)
            renumbered = conn.execute(LOAD.renumbered)
            conn.execute(LOAD.file_start)  # undone by the rollback below, if any
        self.renumbered = self._taken(renumbered.fetchall())
        lag = self.residency_lag(rule.fetchone())
        if lag is not None:
            conn.rollback()
            raise self._mark_down(lag)
        earlier = None if ledger is None else ledger.fetchone()
        if earlier is not None and not (last and earlier[1]):  # superseded: the state again
            conn.rollback()
            self.counts.already_loaded = True
            self.counts.earlier_rejected = int(earlier[0])
            return False
        self._protected = self._later_files.protected(conn, sha256, later, asked)
        self.counts.before_later = bool(self._protected["kept_load"])
        self._rows = self._new_rows(conn)
        return True

    def _taken(self, found: list[tuple[Any, ...]]) -> Taken:
        """sql/load/renumbered.sql's rows as pipeline.renumbered takes them: those of a
        resident whose source is this file's, or either not known (then its old id and
        country may be either resident's: refused, never written over the other)."""
        mine = self.source.name if self.source else None
        return {
            (int(old), str(country)): (int(new), bool(alike))
            for old, country, new, theirs, alike in found
            if mine is None or theirs is None or theirs == mine
        }

    def _new_rows(self, conn: psycopg.Connection[Any]) -> ShardRows:
        source = self.source
        return ShardRows(
            conn, self._probe, self.load_id, self._watchdog, self.direct,
            source.name if source else None, self._probe_watchdog, bool(source and source.snapshot),
            pools=self._pools,
        )  # fmt: skip

    def _source_params(self) -> dict[str, Any]:
        source = self.source
        return {
            "source": source.name if source else None,
            "mode": source.mode if source else "append",
        }

    def restart(self, direct: bool) -> None:
        """Undo what this file sent (back to file_start.sql), to send it again: `direct`
        False takes every row through staging."""
        self.direct = direct
        self.counts = ShardCounts(before_later=self.counts.before_later)  # what begin found
        conn = self._connection()
        rows, self._rows = self._rows, None
        try:
            if rows is not None:
                self._staging.filled(rows.copied)
                rows.abandon()
            with self._watchdog.waiting(conn):
                conn.execute(LOAD.file_restart)
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        self._rows = self._new_rows(conn)

    def ask(self, table: pa.Table, mask: np.ndarray) -> None:
        """Start looking up which of a batch's rows the shard holds (see ShardRows.ask);
        `write` of the same batch follows."""
        assert self._rows is not None
        self._rows.ask(table, mask)

    def write(self, table: pa.Table, mask: np.ndarray) -> None:
        """Send the rows of a batch that are valid and this shard's (`mask`; counted `staged`
        by the caller); raises Conflict when the shard must take the file through staging."""
        assert self._rows is not None
        try:
            self._rows.write(table, mask)
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None

    @property
    def active(self) -> bool:
        return self._rows is not None

    def check(self) -> int:
        """End the COPYs and find the ids the file holds twice; returns how many rows that
        refused. Raises Conflict as `write` does."""
        conn = self._connection()
        try:
            with self._watchdog.waiting(conn):
                rows = self._rows
                assert rows is not None
                # Rising ids cannot repeat (ShardRows.ids_once): load_seen is for a snapshot
                # whose probes did not cover one range (ShardRows.covered).
                rows.finish(seen=not rows.ids_once or (rows.snapshot and rows.covered is None))
                self._staging.filled(rows.copied)
                self._duplicates = 0
                if not rows.ids_once and conn.execute(LOAD.duplicates).rowcount:
                    if scalar(conn.execute(LOAD.seen_superseded).fetchone()):
                        # An unchanged row that was not sent comes again later: its raw
                        # record is needed for the rejects file.
                        raise Conflict("an unchanged row's id twice in the file")
                    self._duplicates = conn.execute(LOAD.superseded).rowcount
                self.counts.rejected += self._duplicates
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        return self._duplicates

    def refused(self) -> Iterator[SqlReject]:
        """The rows `check` refused, in file order, streamed (a server-side cursor)."""
        if not self._duplicates:
            return
        conn = self._connection()
        try:
            with self._watchdog.waiting(conn), conn.cursor(name="load_rejects") as cursor:
                cursor.itersize = REJECTS_BATCH
                cursor.execute(LOAD.rejects)
                for r in cursor:
                    raw = dict(zip(FIELDS, r[3:9], strict=True))
                    yield SqlReject(r[0], r[1], RejectReason(r[2]), raw, r[9])
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None

    def sweep(self, refused_ids: np.ndarray, with_ids: bool, budget: Budget) -> None:
        """A snapshot's deletions (sql/load/snapshot_delete.sql), before `commit` writes the
        file's rows, by country (and the ids, `with_ids`), within `budget` (--max-deletes)."""
        source = self.source
        if source is None or not source.snapshot:
            return
        conn = self._connection()
        counts = self.counts
        params = {"source": source.name, "load_id": self.load_id}
        try:
            with self._watchdog.waiting(conn):
                assert self._rows is not None
                self._rows.keep(refused_ids)
                self._staging.filled(self._rows.copied)
                conn.execute(LOAD.no_nested_loops)  # hash joins, for the next statement
                statement, covered = self._rows.deletion()
                delete = {**params, **self._protected, "with_ids": with_ids, **covered}
                found = conn.execute(statement, delete).fetchall()
                conn.execute(LOAD.nested_loops)
                counts.deleted_by_country = {country: int(n) for country, n, _ in found}
                counts.deleted = sum(counts.deleted_by_country.values())
                if with_ids:
                    counts.deleted_ids = sorted(i for *_, ids in found for i in ids)
                # A lower bound (rows given unchanged are the source's): counted only if over.
                counts.source_rows = counts.deleted + self._rows.seen
                if counts.deleted and budget.exceeded(counts.deleted, counts.source_rows):
                    held = scalar(conn.execute(LOAD.source_rows, params).fetchone())
                    counts.source_rows = counts.deleted + held
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None

    def commit(self, ledger: dict[str, Any]) -> ShardCounts:
        """Upsert the valid rows and record the file in the ledger, then COMMIT."""
        conn = self._connection()
        counts = self.counts
        try:
            with self._watchdog.waiting(conn):
                valid = counts.staged - counts.rejected
                assert self._rows is not None
                rows = self._rows
                params = {**self._protected, **self._source_params()}
                row = (0, 0)
                if rows.spooled:
                    row = write_staged(
                        conn, counts, params, rows.deleting, self.dry_run, self.load_id
                    )
                counts.inserted = int(row[0]) + self._rows.inserted
                self._rows = None  # the file's rows are all written
                counts.updated = int(row[1])
                counts.unchanged = valid - counts.inserted - counts.updated - counts.marked_deleted
                counts.unchanged -= counts.not_found
                if self.dry_run:
                    conn.rollback()
                    self._staging.rolled_back()
                    return counts
                name = storable_text(ledger["source_file"], python_codec(self.server_encoding))
                conn.execute(
                    LOAD.ledger_insert,
                    {
                        **ledger,
                        "source_file": name,  # escaped where the shard's encoding lacks some
                        "load_id": self.load_id,
                        "rows_read": counts.staged,
                        "rows_loaded": counts.loaded,
                        "rows_rejected": counts.rejected,
                        "inserted": counts.inserted,
                        "updated": counts.updated,
                        "unchanged": counts.unchanged,
                        "deleted": counts.deleted,
                        "marked_deleted": counts.marked_deleted,
                        "not_found": counts.not_found,
                        **self._source_params(),
                    },
                )
                if self._stopping is not None:  # interrupted while the upsert ran: do not commit
                    self._abandon()
                    raise ShardError(self.shard.name, self._stopping)
                conn.commit()
                self.committed = True
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        return counts

    def rollback(self) -> None:
        """Abandon this file on this shard (nothing of it stays)."""
        self._abandon()

    def close(self) -> None:
        self._abandon()
        self._close()
        for pool in self._pools:
            pool.shutdown(wait=True)  # idle: each file waited for its own work

    def _abandon(self) -> None:
        rows, self._rows = self._rows, None
        conn = self._conn
        if rows is not None:
            self._staging.filled(rows.copied)  # a COPY into them may have failed half-way
            # Ending a COPY with an exception sends CopyFail: the server drops what it got
            # (after the rows queued for it: a wait like any other).
            rows.abandon()
        if conn is not None and not conn.closed:
            try:
                with self._watchdog.waiting(conn):
                    conn.rollback()
            except psycopg.Error:
                conn.close()  # a broken connection: the next file opens a new one
        self._staging.rolled_back()
