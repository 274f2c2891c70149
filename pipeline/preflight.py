"""What a command checks first, before it changes or reports anything: that every shard is a
database of its own, and, for `load`, that the shard's role may write the tables.

Two shards in one database. `host=/tmp dbname=x` and `postgresql:///x?host=/tmp` name
the same database, which no comparison of strings can tell. Were it let through, `init`
would set the two shards' residency rules in turn on one table (each run undoing the
other), `load` would commit both shards' rows into it, and `extract`, `report` and `plan`
would count every resident twice, once for each shard. So the databases themselves are
asked: each shard's connection takes an advisory lock under a random key, then each looks
in `pg_locks` for the others' keys in its own database. Advisory locks are per database
and `pg_locks` is readable by every role, where `pg_control_system()` (the cluster's
system identifier) needs pg_monitor or a superuser and `data_directory`
pg_read_all_settings; so this works for any role, without a write, and a key seen is a
connection to the same database of the same server.

A role that may not write. A load under a read-only role would stage and check a whole
file before its upsert is refused: `before_load` asks PostgreSQL what the role lacks
(`has_table_privilege` and friends) and refuses at once, naming the grant that fixes it.

A shard that cannot be reached is left out of both: it takes no rows, and the command
reports it as it does any unreachable shard.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from pipeline import db, threads
from pipeline.config import Shard, ShardMap
from pipeline.errors import ConfigError, PipelineError, ShardError
from pipeline.queries import PREFLIGHT

LOADER_ROLE = "pipeline_loader"
ANALYST_ROLE = "pipeline_analyst"

Connections = list[tuple[Shard, psycopg.Connection[Any]]]


def before_load(shard_map: ShardMap, dry_run: bool = False) -> None:
    """Refuse (ConfigError, exit 2) a load into two shards that are one database, or into a
    shard whose role may not write (not for a dry run, which writes nothing)."""
    with _connections(shard_map) as connections:
        _refuse_shared(shard_map, _probe(connections))
        if not dry_run:
            for shard, conn in connections:
                _refuse_read_only(shard, conn)


def refuse_shared_databases(shard_map: ShardMap, shards: Sequence[Shard] | None = None) -> None:
    """Raise ConfigError (exit 2) when two shards of the map (of `shards`, by default all) are
    one database. Call it before a command writes or reports anything."""
    _refuse_shared(shard_map, shared_databases(shard_map, shards))


def shared_databases(shard_map: ShardMap, shards: Sequence[Shard] | None = None) -> dict[str, str]:
    """Shard name -> the earlier shard (in map order) whose database it is, for every shard
    (of `shards`, by default all) that shares its database with an earlier one. Unreachable
    shards are left out."""
    chosen = list(shard_map.shards if shards is None else shards)
    if len(chosen) < 2:
        return {}
    with _connections(shard_map, chosen) as connections:
        return _probe(connections)


def same_database_message(shard: str, first: str) -> str:
    return (
        f"shards.{shard}.dsn: the same database as shard {first} (another spelling of one "
        "DSN): each shard needs a database of its own; nothing was changed"
    )


def _refuse_shared(shard_map: ShardMap, shared: dict[str, str]) -> None:
    if shared:
        name, first = next(iter(shared.items()))
        raise ConfigError(f"{shard_map.path}: {same_database_message(name, first)}")


@contextmanager
def _connections(
    shard_map: ShardMap, shards: Sequence[Shard] | None = None
) -> Iterator[Connections]:
    """A connection to every shard (of `shards`) that answers, opened at once (one connect
    time-out in all)."""
    chosen = list(shard_map.shards if shards is None else shards)
    with threads.pool(len(chosen), "preflight") as pool:
        opened = list(pool.map(lambda s: _open(shard_map, s), chosen))
    pairs = zip(chosen, opened, strict=True)
    connections = [(shard, conn) for shard, conn in pairs if conn is not None]
    try:
        yield connections
    finally:
        for _shard, conn in connections:
            conn.close()


def _open(shard_map: ShardMap, shard: Shard) -> psycopg.Connection[Any] | None:
    try:
        return db.open_connection(
            db.resolve_dsn(shard_map, shard), where=db.dsn_key(shard_map, shard)
        )
    except (psycopg.Error, PipelineError):
        return None  # unreachable: the command itself says so


def _probe(connections: Connections) -> dict[str, str]:
    if len(connections) < 2:
        return {}
    keys = {shard.name: secrets.randbits(63) for shard, _conn in connections}
    owner = {key: name for name, key in keys.items()}
    order = list(keys)
    try:
        for shard, conn in connections:
            with _as_shard_error(shard):
                conn.execute(PREFLIGHT.probe_timeout)
                conn.execute(PREFLIGHT.same_database_try_lock, [keys[shard.name]])
        shared: dict[str, str] = {}
        for shard, conn in connections:
            with _as_shard_error(shard):
                rows = conn.execute(PREFLIGHT.same_database_probe, [list(owner)]).fetchall()
            seen = [owner[row[0]] for row in rows if row[0] in owner]
            first = min(seen, key=order.index, default=shard.name)
            if order.index(first) < order.index(shard.name):
                shared[shard.name] = first
        return shared
    finally:
        for _shard, conn in connections:
            # Releases the locks (transaction-level). A connection the server has ended
            # meanwhile holds none, and its error is the one already on its way.
            with contextlib.suppress(psycopg.Error):
                conn.rollback()


def _refuse_read_only(shard: Shard, conn: psycopg.Connection[Any]) -> None:
    with _as_shard_error(shard):
        rows = conn.execute(PREFLIGHT.load_privileges_missing).fetchall()
        user = conn.info.user
        conn.rollback()
    missing = [str(row[0]) for row in rows]
    if missing:
        raise ConfigError(
            f"shard {shard.name}: role {user} may not load: it lacks {', '.join(missing)}; "
            f"grant it the loader role (`GRANT {LOADER_ROLE} TO {user};`, after "
            "`pipeline init --roles`); nothing was loaded"
        )


@contextmanager
def _as_shard_error(shard: Shard) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        # Reachable a moment ago: the command cannot know whether it may go on (two shards
        # in one database; for a load, a role that may not write).
        reason = f"could not check the shard before starting: {db.error_text(exc, shard.dsn)}"
        raise ShardError(shard.name, reason) from None
