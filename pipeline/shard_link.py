"""A load's link to one shard: its connections (the one that writes, a second one that
looks ids up), what is made and checked once per connection (the staging tables, the schema
version, the residency rule), the time-outs, and the sorting of a failure into what the user
can do about it. Beneath pipeline.writer, which writes the files through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.dsn import scrub
from pipeline.errors import ShardError
from pipeline.queries import LOAD
from pipeline.schema import (
    ResidencyRule,
    current_version,
    latest_version,
    leaving,
    residency_rule,
    rule_found,
)
from pipeline.staging import Staging
from pipeline.watchdog import CANCEL_TIMEOUT_SECONDS, Watchdog, cancel


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


class ShardLink:
    """One shard's connections for a load run, reused file after file."""

    def __init__(self, shard_map: ShardMap, shard: Shard, timeouts: Timeouts | None) -> None:
        self.timeouts = timeouts or Timeouts()
        self._watchdog = Watchdog(self.timeouts.statement)
        # The second connection's waits run in a thread of their own (shard_rows' probes),
        # at the same time as the first's: a watchdog each.
        self._probe_watchdog = Watchdog(self.timeouts.statement)
        self.shard_map = shard_map
        self.shard = shard
        self._conn: psycopg.Connection[Any] | None = None
        self._probe_conn: psycopg.Connection[Any] | None = None
        self._down: str | None = None  # why this shard is out of the run, once it is
        self._stopping: str | None = None  # the load was interrupted (`interrupt`), and why
        self._staging = Staging()  # the first connection's working tables
        # The residency rule the shard's constraint had when last asked (None: not known):
        # kept once the shard fails, for the other shards' arrivals (pipeline.schema).
        self.found_rule: ResidencyRule | None = None

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
                conn = db.open_connection(dsn, where=db.dsn_key(self.shard_map, self.shard))
            except psycopg.Error as exc:
                raise self._mark_down(self._failure(exc, "unreachable: ")) from None
            try:
                self._preflight(conn)
            except ShardError as exc:
                conn.close()
                raise self._mark_down(exc) from None
            self._conn = conn
        return self._conn

    @property
    def server_encoding(self) -> str | None:
        """The shard database's encoding (UTF8, LATIN1...), as the server said on connecting;
        None while not connected."""
        conn = self._conn
        if conn is None or conn.closed:
            return None
        return conn.info.parameter_status("server_encoding")

    def interrupt(self, reason: str) -> None:
        """From another thread: the load is interrupted. Cancel the statement this shard runs
        (its file rolls back) and commit nothing more."""
        self._stopping = reason
        self._watchdog.hurry()  # drops the connection if the cancel does not end the wait
        self._probe_watchdog.hurry()
        for conn in (self._conn, self._probe_conn):
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
        """Set the session up; refuse to load into a shard whose schema lags the code."""
        try:
            # Not `with conn.transaction()`: its rollback of a dropped connection would have
            # psycopg log "error ignored in rollback" beside our error (the caller closes it).
            with self._watchdog.waiting(conn):
                conn.execute(LOAD.session)  # a SET: committed, it outlives the transaction
                self._staging.make(conn)
                version = current_version(conn)
                conn.commit()
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        if version != latest_version():
            raise self._error(
                f"schema version {version}, expected {latest_version()}: run `pipeline init`",
                transient=False,
            )
        if conn.info.encoding != "utf-8":
            # The load sends UTF-8 (pipeline.db sets it unless the DSN says otherwise), and
            # reads the probes' packed text as UTF-8: another encoding would store the bytes
            # as that encoding's letters and compare them as such.
            raise self._error(
                f"the DSN sets client_encoding to {conn.info.encoding}: the load sends"
                " UTF-8 (leave it out)",
                transient=False,
            )

    def residency_lag(self, row: tuple[Any, ...] | None) -> ShardError | None:
        """The error to give when the shard's residency rule (`row`, of
        sql/schema/residency_rule.sql) is not the one the map asks for, or None. Asked under
        the load lock, file after file: a rebalance changes the rule while it holds that
        lock, and a load that waited for it sees the rule it left."""
        expected = residency_rule(self.shard_map, self.shard).describe()
        self.found_rule = ResidencyRule.parse(row[0] if row else None)  # load: arrivals
        if row is not None and row[0] == expected:
            return None
        found = rule_found(row) or "none"
        advice = "run `pipeline init`"
        # Countries the map sends to another shard: rebalance moves them (init narrows a
        # rule only over no rows of them). One the map sends nowhere has nowhere to go.
        gone = [c for c in leaving(self.shard_map, self.shard, self.found_rule)
                if self.shard_map.route_for(c) is not None]  # fmt: skip
        if gone:
            shown = ", ".join(gone[:5]) + (f" and {len(gone) - 5} more" if len(gone) > 5 else "")
            advice = (
                f"run `pipeline rebalance`, which moves its rows of {shown} where the map"
                " sends them and then narrows it"
            )
        return self._error(
            f"residency rule is {found!r} but the shard map asks for {expected!r}: {advice}",
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
        timed_out = self._watchdog.take() or self._probe_watchdog.take()
        if timed_out is not None:  # the error is the watchdog's cancel or dropped connection
            return self._error(prefix + timed_out)
        if db.is_transient(exc):
            return self._error(prefix + db.one_line(exc))
        return self._error(
            f"{prefix}{db.one_line(exc)}; fix that, then re-run the same command", transient=False
        )

    def _probe(self) -> psycopg.Connection[Any]:
        """The second connection, for shard_rows' look-ups while the first one COPYs."""
        if self._probe_conn is None or self._probe_conn.closed:
            dsn = db.resolve_dsn(self.shard_map, self.shard)
            if self.timeouts.connect is not None:
                dsn = conninfo.make_conninfo(dsn, connect_timeout=self.timeouts.connect)
            where = db.dsn_key(self.shard_map, self.shard)
            self._probe_conn = db.open_connection(dsn, where=where, autocommit=True)
        return self._probe_conn

    def _close(self) -> None:
        self._watchdog.close()
        self._probe_watchdog.close()
        for conn in (self._conn, self._probe_conn):
            if conn is not None:
                conn.close()
