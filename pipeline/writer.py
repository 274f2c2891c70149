"""Writing one file's rows to one shard: staging COPY, checks, upsert, ledger; one transaction.

For each file, a `ShardWriter`:
1. `begin`:  BEGIN; take the shard's load lock (concurrent loads queue here); look the
   file's sha256 up in the ledger (after the lock, so a load that waited sees what the
   other one committed); create the staging table, whose generated columns apply the
   rules (sql/load/staging.sql), and open a COPY into it.
2. `write`:  stream rows into the COPY. The queued writer sends them from a worker
   thread, so shards receive (and check) concurrently while the main thread parses.
3. `check`:  end the COPY; run the duplicate-id pass (sql/load/duplicates.sql);
   count the refused rows.
4. `commit`: update the changed rows and insert the new ones (falling back to one
   INSERT ... ON CONFLICT when someone inserted one of the ids meanwhile), write the ledger
   row, COMMIT (or, for a dry run, preview the counts and roll back). `rollback` abandons
   the file on this shard.
A shard that fails raises ShardError; the caller carries on with the other shards, and
`hold`s this one: it takes no later file of the run (those must not land before this one).

A file completed late, by a re-run, must not overwrite what a later file of the same
command already wrote on this shard: `begin` looks the later files up in the ledger
(sql/load/protected.sql) and the upsert leaves their rows alone ("kept").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo
from psycopg.copy import Copy

from pipeline import db
from pipeline.columns import FIELDS
from pipeline.config import Shard, ShardMap
from pipeline.copyin import QueuedWriter
from pipeline.dsn import scrub
from pipeline.errors import ShardError
from pipeline.load_result import ShardCounts
from pipeline.queries import LOAD, SCHEMA
from pipeline.reasons import RejectReason
from pipeline.rules import Rules
from pipeline.schema import current_version, latest_version, residency_rule
from pipeline.watchdog import CANCEL_TIMEOUT_SECONDS, Watchdog, cancel

REJECT_FIELDS = FIELDS
# Refused rows fetched at a time: 10,000 took 12 MB more at 10M rows, where every fetch is
# full, than at 1M, where none was.
REJECTS_BATCH = 2_000


@dataclass(frozen=True)
class Timeouts:
    """How long a load waits for a shard, in seconds (0: no limit). `connect`: to connect
    (None: the DSN's connect_timeout, else db.CONNECT_TIMEOUT_SECONDS); `lock`: for a lock
    another session holds (another load of the shard, a row being edited), enforced by the
    server; `statement`: for any one answer of the server, enforced by the load itself, which
    cancels the statement and, when the server does not answer that either (a frozen host),
    drops the connection."""

    connect: int | None = None
    statement: float = 900
    lock: float = 600


# The upsert's parameters when no later file of the run is in this shard's ledger.
_NOTHING_PROTECTED: dict[str, list[Any]] = {"kept_load": [], "kept_after": [], "kept_until": []}


@dataclass(frozen=True)
class SqlReject:
    record: int
    line: int | None
    reason: RejectReason
    raw: dict[str, Any]


class ShardWriter:
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
        self.timeouts = timeouts or Timeouts()
        self._watchdog = Watchdog(self.timeouts.statement)
        self.shard_map = shard_map
        self.shard = shard
        self.rules = rules
        self.load_id = load_id
        self.dry_run = dry_run
        self._conn: psycopg.Connection[Any] | None = None
        self._down: str | None = None  # why this shard is out of the run, once it is
        self._copy_stack: contextlib.ExitStack | None = None
        self._copy: Copy | None = None
        self._protected = _NOTHING_PROTECTED
        self._stopping: str | None = None  # the load was interrupted (`interrupt`), and why
        self.counts = ShardCounts()

    # -- connection -------------------------------------------------------------------------

    def _connection(self) -> psycopg.Connection[Any]:
        if self._down is not None:
            # Unreachable or behind the map once in this run: stay so, rather than pay a
            # connect timeout for every file. Its rows are reported pending.
            raise ShardError(self.shard.name, self._down)
        if self._conn is None or self._conn.closed:
            dsn = db.resolve_dsn(self.shard_map, self.shard)
            if self.timeouts.connect is not None:
                dsn = conninfo.make_conninfo(dsn, connect_timeout=self.timeouts.connect)
            try:
                conn = db.open_connection(dsn)
            except psycopg.Error as exc:
                raise self._mark_down(self._failure(exc, "unreachable: ")) from None
            try:
                self._preflight(conn)
            except ShardError as exc:
                conn.close()
                raise self._mark_down(exc) from None
            self._conn = conn
        return self._conn

    def interrupt(self, reason: str) -> None:
        """From another thread: the load is interrupted. Cancel the statement this shard runs
        (its file rolls back) and commit nothing more."""
        self._stopping = reason
        self._watchdog.hurry()  # drops the connection if the cancel does not end the wait
        conn = self._conn
        if conn is not None and not conn.closed:
            cancel(conn, CANCEL_TIMEOUT_SECONDS)

    def _mark_down(self, error: ShardError) -> ShardError:
        self._down = error.reason
        return error

    def hold(self, reason: str) -> None:
        """Take no later file in this run (its rows are reported pending): this shard failed
        a file, and a later file must not land before that one does."""
        if self._down is None:
            self._down = reason

    def _preflight(self, conn: psycopg.Connection[Any]) -> None:
        """Set the session up; refuse to load into a shard whose schema or residency rule
        lags the map."""
        try:
            # Not `with conn.transaction()`: its rollback of a dropped connection would have
            # psycopg log "error ignored in rollback" beside our error (the caller closes it).
            with self._watchdog.waiting(conn):
                conn.execute(LOAD.session)  # a SET: committed, it outlives the transaction
                version = current_version(conn)
                row = conn.execute(SCHEMA.residency_rule).fetchone() if version else None
                conn.commit()
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        if version != latest_version():
            raise self._error(
                f"schema version {version}, expected {latest_version()}: run `pipeline init`",
                transient=False,
            )
        expected = residency_rule(self.shard_map, self.shard).describe()
        if row is None or row[0] != expected:
            found = row[0] if row else "none"
            raise self._error(
                f"residency rule is {found!r} but the shard map asks for {expected!r}: "
                "run `pipeline init`",
                transient=False,
            )

    def _error(self, message: str, transient: bool = True) -> ShardError:
        """A ShardError with the password scrubbed; a transient one says how to finish the job,
        any other one that the same command fails again until it is fixed."""
        text = scrub(message, self.shard.dsn)
        if transient:
            text += "; re-running the same command completes this shard"
        return ShardError(self.shard.name, text)

    def _failure(self, exc: psycopg.Error, prefix: str = "") -> ShardError:
        """The ShardError for a psycopg error, sorted once: a transient one (the connection,
        a time-out, a conflict) goes away by itself; any other one (no privilege, a full
        disk, a broken table) fails the same way on every re-run until someone fixes it."""
        timed_out = self._watchdog.take()
        if timed_out is not None:  # the error is the watchdog's cancel or dropped connection
            return self._error(prefix + timed_out)
        if db.is_transient(exc):
            return self._error(prefix + db.one_line(exc))
        return self._error(
            f"{prefix}{db.one_line(exc)}; fix that, then re-run the same command", transient=False
        )

    # -- one file ---------------------------------------------------------------------------

    def begin(self, sha256: str, force: bool, later: Sequence[str] = ()) -> bool:
        """Open this file's transaction; False when the ledger already holds the file.
        `later` are the sha256 of the files that come after this one in the run."""
        self.counts = ShardCounts()
        self._protected = _NOTHING_PROTECTED
        self._watchdog.take()  # a time-out of the file before is told already
        if self._stopping is not None:
            raise ShardError(self.shard.name, self._stopping)
        conn = self._connection()
        watchdog = self._watchdog
        try:
            with watchdog.waiting(conn):
                return self._begin(conn, sha256, force, later)
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None

    def _begin(
        self, conn: psycopg.Connection[Any], sha256: str, force: bool, later: Sequence[str]
    ) -> bool:
        conn.execute(LOAD.begin)
        lock = self.timeouts.lock
        conn.execute(LOAD.timeouts, {"lock": f"{lock * 1000:.0f}ms"})
        # The server ends a lock wait at the lock time-out; the watchdog steps in only
        # when the server does not answer by then.
        with self._watchdog.waiting(conn, lock and lock + CANCEL_TIMEOUT_SECONDS, "--lock-timeout"):
            conn.execute(SCHEMA.lock, [db.LOCK_LOAD])
        # Read after the lock: a load that waited sees what the one before it committed.
        earlier = None if force else conn.execute(LOAD.ledger_find, [sha256]).fetchone()
        if earlier is not None:
            conn.rollback()
            self.counts.already_loaded = True
            self.counts.earlier_rejected = int(earlier[0])
            return False
        self._protected = self._protected_rows(conn, sha256, later)
        conn.execute(LOAD.staging.format(**self.rules.check_sql_params()))
        cursor = conn.cursor()
        self._copy_stack = contextlib.ExitStack()
        writer = QueuedWriter(cursor, self._watchdog)
        self._copy = self._copy_stack.enter_context(cursor.copy(LOAD.copy, writer=writer))
        return True

    @staticmethod
    def _protected_rows(
        conn: psycopg.Connection[Any], sha256: str, later: Sequence[str]
    ) -> dict[str, list[Any]]:
        """The rows that later files of this run already wrote here, as the upsert's
        parameters: (load, loaded_at after, loaded_at until) for each such file."""
        later = [h for h in later if h != sha256]
        if not later:
            return _NOTHING_PROTECTED
        found = conn.execute(LOAD.protected, {"later": later}).fetchall()
        return {
            "kept_load": [r[0] for r in found],
            "kept_after": [r[1] for r in found],
            "kept_until": [r[2] for r in found],
        }

    def write(self, row: tuple[Any, ...]) -> str | None:
        """Send one staged row; returns a message when the row itself cannot be sent."""
        assert self._copy is not None
        try:
            self._copy.write_row(row)
        except psycopg.DataError as exc:
            return str(exc)  # a NUL character: PostgreSQL text cannot hold one
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        self.counts.staged += 1
        return None

    @property
    def active(self) -> bool:
        return self._copy is not None

    def check(self) -> int:
        """End the COPY and run the checks; returns how many rows they refused."""
        conn = self._connection()
        try:
            with self._watchdog.waiting(conn):
                self._end_copy()
                if conn.execute(LOAD.duplicates).rowcount:
                    conn.execute(LOAD.superseded)
                self.counts.rejected = _scalar(conn.execute(LOAD.reject_count).fetchone())
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        return self.counts.rejected

    def refused(self) -> Iterator[SqlReject]:
        """The rows the checks refused, in file order, streamed (a server-side cursor)."""
        if not self.counts.rejected:
            return
        conn = self._connection()
        try:
            with self._watchdog.waiting(conn), conn.cursor(name="load_rejects") as cursor:
                cursor.itersize = REJECTS_BATCH
                cursor.execute(LOAD.rejects)
                for r in cursor:
                    raw = dict(zip(REJECT_FIELDS, r[3:], strict=True))
                    yield SqlReject(r[0], r[1], RejectReason(r[2]), raw)
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
                protected = self._protected
                if protected["kept_load"]:
                    # Counted before the upsert, which would move the rows it writes out of reach.
                    counts.kept = _scalar(conn.execute(LOAD.kept, protected).fetchone())
                if self.dry_run:
                    row = conn.execute(LOAD.preview).fetchone()
                    assert row is not None
                    row = (row[0], int(row[1]) - counts.kept)
                else:
                    row = self._write_rows(conn, {"load_id": self.load_id, **protected})
                assert row is not None
                counts.inserted, counts.updated = int(row[0]), int(row[1])
                counts.unchanged = valid - counts.inserted - counts.updated
                if self.dry_run:
                    conn.rollback()
                    return counts
                conn.execute(
                    LOAD.ledger_insert,
                    {
                        **ledger,
                        "load_id": self.load_id,
                        "rows_read": counts.staged,
                        "rows_loaded": counts.loaded,
                        "rows_rejected": counts.rejected,
                        "inserted": counts.inserted,
                        "updated": counts.updated,
                        "unchanged": counts.unchanged,
                    },
                )
                if self._stopping is not None:  # interrupted while the upsert ran: do not commit
                    self._abandon()
                    raise ShardError(self.shard.name, self._stopping)
                conn.commit()
        except psycopg.Error as exc:
            self._abandon()
            raise self._failure(exc) from None
        return counts

    @staticmethod
    def _write_rows(conn: psycopg.Connection[Any], params: dict[str, Any]) -> tuple[int, int]:
        """Write the file's valid rows: the changed ones updated, the new ones inserted.
        Returns (inserted, updated)."""
        conn.execute(LOAD.savepoint)
        try:
            updated = conn.execute(LOAD.update, params).rowcount
            inserted = conn.execute(LOAD.insert, params).rowcount
        except psycopg.errors.UniqueViolation:
            # Someone inserted one of these ids by hand after sql/load/update.sql looked (loads
            # cannot: they hold the lock). The one-statement upsert takes each row as it
            # finds it: such a row is updated, never duplicated, and the file still loads.
            conn.execute(LOAD.savepoint_undo)
            row = conn.execute(LOAD.upsert, params).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])
        return inserted, updated

    def rollback(self) -> None:
        """Abandon this file on this shard (nothing of it stays)."""
        self._abandon()

    def close(self) -> None:
        self._abandon()
        self._watchdog.close()
        if self._conn is not None:
            self._conn.close()

    def _end_copy(self) -> None:
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        if stack is not None:
            stack.close()

    def _abandon(self) -> None:
        stack, self._copy_stack, self._copy = self._copy_stack, None, None
        conn = self._conn
        if stack is not None and conn is not None:
            # Ending a COPY with an exception sends CopyFail: the server drops what it got
            # (after the rows queued for it: a wait like any other).
            with contextlib.suppress(Exception), self._watchdog.waiting(conn):
                stack.__exit__(RuntimeError, RuntimeError("load abandoned"), None)
        if conn is not None and not conn.closed:
            try:
                with self._watchdog.waiting(conn):
                    conn.rollback()
            except psycopg.Error:
                conn.close()  # a broken connection: the next file opens a new one


def _scalar(row: Any) -> int:
    return int(row[0]) if row else 0
