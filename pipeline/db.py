"""Connections to shards: DSN resolution (including the embedded default) and clean errors.

Every connection the project opens goes through `connect()`, so that a failure
anywhere reads `shard db_us: <reason>` with the password scrubbed (and says whether it is
transient: `is_transient`, the one place psycopg's errors are sorted), and so that an
unreachable shard costs seconds, not libpq's default of waiting forever. `snapshot()` is
such a connection whose statements all see one consistent, read-only view of the shard:
what extract, report and check read in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import conninfo, pq, sql

from pipeline import embedded
from pipeline.config import Shard, ShardMap
from pipeline.dsn import redact, scrub
from pipeline.errors import ConfigError, ShardError
from pipeline.queries import DB
from pipeline.watchdog import CANCEL_TIMEOUT_SECONDS

CONNECT_TIMEOUT_SECONDS = 10
APPLICATION_NAME = "resident-pipeline"
# The server's time-outs that a role or a database may set and that would end the tool's
# long statements and transactions part-way, with the first server version
# (server_version_num) that has each: off for its sessions (sql/db/server_timeout.sql)
# unless the connection's own options set them. lock_timeout stays as the server has it: it
# guards the database against queues behind a lock (a load and an erasure set their own).
SERVER_TIMEOUTS = {
    "statement_timeout": 0,
    "idle_in_transaction_session_timeout": 0,
    "transaction_timeout": 170000,
}

# Advisory lock keys (pg_advisory_xact_lock takes a bigint; these spell "RPinit"/"RPload").
LOCK_INIT = 0x5250_696E_6974
LOCK_LOAD = 0x5250_6C6F_6164


def display_dsn(shard: Shard) -> str:
    """The shard's DSN as it may be printed."""
    return shard.dsn if shard.embedded_database is not None else redact(shard.dsn)


def dsn_key(shard_map: ShardMap, shard: Shard) -> str:
    """Where the shard map gives the shard's DSN, as its errors name it."""
    return f"{shard_map.path}: shards.{shard.name}.dsn"


def resolve_dsn(shard_map: ShardMap, shard: Shard) -> str:
    """A DSN libpq understands: embedded:NAME becomes the embedded server's URI."""
    database = shard.embedded_database
    if database is None:
        return shard.dsn
    return embedded.server_uri(shard_map.embedded_dir, database)


@contextmanager
def pipelined(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Statements executed in the block go to the server together and are answered
    together, at its end (libpq's pipeline mode): one round trip for all of them (psycopg
    adds one for the BEGIN it sends first, if any), which the server still runs one after
    the other. Where libpq is older than 14, one at a time."""
    if not psycopg.Pipeline.is_supported():
        yield
        return
    with conn.pipeline():
        yield


# What libpq says of a DSN value it refuses before it connects (fe-connect.c, PostgreSQL
# 13-18): no re-run gets past it, so it is a configuration error, not an unreachable shard.
# In libpq's own shapes, a quoted value after them: a server's message that quotes a name
# ('database "invalid test value" does not exist') is not one.
_REFUSED_VALUE = re.compile(
    r"\binvalid (port number: |integer value |\w+ value: |\w+ method: )\""
    r"|\binvalid SSL protocol version range"
    r"|could not match \d+ (port numbers|host names) to \d+"
    r"|could not parse network address \""
    r"|value \"[^\"]*\" invalid when"
)


def open_connection(dsn: str, *, where: str = "dsn", **kwargs: Any) -> psycopg.Connection[Any]:
    """psycopg.connect with our defaults for what the DSN leaves open (the user's settings
    win), the server's time-outs included (SERVER_TIMEOUTS), and ISO dates, which psycopg
    needs to read any (sql/db/date_style.sql). A value libpq refuses before connecting (a
    port of 99999, an unknown sslmode) raises ConfigError, said to be in `where` (the shard
    map's key)."""
    params = conninfo.conninfo_to_dict(dsn)
    extra: dict[str, Any] = {
        key: value
        for key, value in (
            ("connect_timeout", CONNECT_TIMEOUT_SECONDS),
            ("application_name", APPLICATION_NAME),
            # Files are read and written as UTF-8 whatever the database's own default.
            ("client_encoding", "UTF8"),
        )
        if key not in params
    }
    autocommit = kwargs.pop("autocommit", False)
    # In autocommit for the settings: a transaction begun for them would hold back the
    # isolation level a snapshot sets.
    try:
        conn = psycopg.connect(dsn, **extra, **kwargs, autocommit=True)
    except psycopg.OperationalError as exc:
        if _REFUSED_VALUE.search(str(exc)):
            raise ConfigError(f"{where}: libpq refuses it: {scrub(str(exc), dsn)}") from None
        raise
    try:
        # The options libpq used: the DSN's, PGOPTIONS or a service file's.
        given = options_set(conn.info.get_parameters().get("options", ""))
        version = conn.info.server_version
        settings = [DB.date_style] + [
            DB.server_timeout.format(name=sql.Identifier(name))
            for name, since in SERVER_TIMEOUTS.items()
            if version >= since and name not in given
        ]
        conn.execute(sql.SQL("; ").join(settings))
        conn.autocommit = autocommit
    except BaseException:
        conn.close()
        raise
    return conn


def options_set(options: str) -> set[str]:
    """The settings libpq's `options` set: `-c name=value`, `-cname=value`, `--name=value`
    (a dash in a name stands for an underscore), words split at white space that no
    backslash escapes."""
    words = re.split(r"(?<!\\)\s+", options.strip())
    names = set()
    for i, word in enumerate(words):
        if word == "-c":
            setting = words[i + 1] if i + 1 < len(words) else ""
        elif word.startswith(("-c", "--")):
            setting = word[2:]
        else:
            continue
        if name := setting.split("=", 1)[0].strip().lower().replace("-", "_"):
            names.add(name)
    return names


@contextmanager
def connect(shard_map: ShardMap, shard: Shard, **kwargs: Any) -> Iterator[psycopg.Connection[Any]]:
    """A connection to `shard`; any psycopg error inside the block becomes a ShardError."""
    dsn = shard.dsn
    try:
        dsn = resolve_dsn(shard_map, shard)  # may start the embedded server: it can fail too
        conn = open_connection(dsn, where=dsn_key(shard_map, shard), **kwargs)
    except psycopg.Error as exc:
        if (spent := _no_file_left()) is not None:  # libpq's message does not say so
            raise ShardError(shard.name, f"cannot connect: {spent}") from None
        reason = f"unreachable: {scrub(str(exc), dsn)}"
        raise ShardError(shard.name, reason, is_transient(exc)) from None
    try:
        with conn:
            try:
                yield conn
            except BaseException:
                _drop_if_busy(conn)
                raise
    except psycopg.Error as exc:
        raise ShardError(shard.name, error_text(exc, dsn), is_transient(exc)) from None


def _no_file_left() -> str | None:
    """Why a connection failed when this process has no file descriptor left for its socket
    (its `ulimit -n` reached: libpq said "connection is bad: no error details available");
    None when it has one."""
    try:
        os.close(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            return (
                f"this process has no file descriptor left ({os.strerror(exc.errno)};"
                f" ulimit -n is {limit})"
            )
    return None


def error_text(exc: psycopg.Error, dsn: str) -> str:
    """A shard's error on one line, without the password; where a table or a column the
    pipeline reads is missing, the likely cause (a shard never initialised, or initialised
    by an older pipeline) and what tells."""
    text = scrub(str(exc), dsn)
    if isinstance(exc, psycopg.errors.UndefinedTable | psycopg.errors.UndefinedColumn):
        text += f" ({SCHEMA_HINT})"
    return text


SCHEMA_HINT = (
    "is the shard's schema this pipeline's? `pipeline status` shows its version;"
    " `pipeline init` brings it up to date; `pipeline check --only schema` finds a column"
    " changed by hand"
)


def _drop_if_busy(conn: psycopg.Connection[Any]) -> None:
    """For a block left by an exception: when a query still runs on `conn` (an interrupt
    that landed between a query's send and its result), cancel it and close the connection.
    psycopg's rollback would be sent into the busy connection, fail with "another command is
    already in progress", and print that to stderr; the transaction ends with the connection
    anyway."""
    if conn.closed or conn.pgconn.transaction_status != pq.TransactionStatus.ACTIVE:
        return
    with contextlib.suppress(psycopg.Error):
        conn.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
    conn.close()


@contextmanager
def snapshot(shard_map: ShardMap, shard: Shard) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose statements share one REPEATABLE READ, READ ONLY transaction,
    begun before the block runs (a `CopyOut` begins none of its own)."""
    with connect(shard_map, shard) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        # The BEGIN goes out with this first statement, inside connect()'s guard: begun by
        # psycopg's `transaction()`, an interrupt between its send and its result made
        # psycopg roll back into the busy connection itself (see CopyOut).
        conn.execute(DB.snapshot_settings)  # UTC: the same output on any server
        yield conn


# SQLSTATE classes and codes of errors that a later try may not meet: connection exceptions,
# transaction rollbacks (serialization failure, deadlock), operator intervention (a cancel,
# a time-out, a shutdown), a lock not available, too many connections.
TRANSIENT_CLASSES = ("08", "40", "57")
TRANSIENT_CODES = ("55P03", "53300")
TRANSIENT_REFUSALS = ("starting up", "shutting down", "recovery mode", "too many clients")


def is_transient(exc: psycopg.Error) -> bool:
    """Whether re-running the same command can be expected to get past `exc`."""
    code = exc.sqlstate
    if code is not None:
        return code[:2] in TRANSIENT_CLASSES or code in TRANSIENT_CODES
    if not isinstance(exc, psycopg.OperationalError):
        return False
    # A connection error carries no code: no answer at all (refused, dropped, timed out) is
    # transient; of the server's own refusals (FATAL), only a server starting, stopping or full.
    text = str(exc)
    return "FATAL" not in text or any(p in text for p in TRANSIENT_REFUSALS)


def one_line(exc: psycopg.Error) -> str:
    """psycopg's message on one line (libpq's connection errors take several), its lines
    joined by "; " as pipeline.dsn.scrub joins them."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
