"""Two shards must be two databases: one reached under two DSN spellings is refused.

`host=/tmp dbname=x` and `postgresql:///x?host=/tmp` name the same database, which no
comparison of strings can tell. Were it let through, `init` would set the two shards'
residency rules in turn on one table (each run undoing the other) and `load` would commit
both shards' rows into it. So every command that writes asks the databases themselves,
before it changes anything: `refuse_shared_databases(shard_map)`.

The test works for any role, without privileges or writes: each shard's connection takes
an advisory lock under a random key, then each looks in `pg_locks` for the others' keys in
its own database. Advisory locks are per database and `pg_locks` is readable by every role
(where `pg_control_system()`, the cluster's system identifier, needs pg_monitor or a
superuser, and `data_directory` pg_read_all_settings), so a key seen is a connection to
the same database of the same server. A shard that cannot be reached is left out: it takes
no rows, and the command reports it as it does any unreachable shard.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import psycopg

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.dsn import scrub
from pipeline.errors import ConfigError, PipelineError, ShardError
from pipeline.sqlfiles import query

PROBE_TIMEOUT = "10s"  # the probe's statements are instant; a server that hangs must not hang us


def shared_databases(shard_map: ShardMap) -> dict[str, str]:
    """Shard name -> the earlier shard (in map order) whose database it is, for every shard
    that shares its database with an earlier one. Unreachable shards are left out."""
    if len(shard_map.shards) < 2:
        return {}
    with ThreadPoolExecutor(max_workers=len(shard_map.shards)) as pool:
        opened = list(pool.map(lambda s: _open(shard_map, s), shard_map.shards))
    pairs = zip(shard_map.shards, opened, strict=True)
    connections = [(shard, conn) for shard, conn in pairs if conn is not None]
    try:
        return _probe(connections)
    finally:
        for _shard, conn in connections:
            conn.close()


def refuse_shared_databases(shard_map: ShardMap) -> None:
    """Raise ConfigError (exit 2) when two shards of the map are one database. Call it before
    a command writes anything."""
    shared = shared_databases(shard_map)
    if shared:
        name, first = next(iter(shared.items()))
        raise ConfigError(f"{shard_map.path}: {same_database_message(name, first)}")


def same_database_message(shard: str, first: str) -> str:
    return (
        f"shards.{shard}.dsn: the same database as shard {first} (another spelling of one "
        "DSN): each shard needs a database of its own; nothing was changed"
    )


def _open(shard_map: ShardMap, shard: Shard) -> psycopg.Connection[Any] | None:
    try:
        return db.open_connection(db.resolve_dsn(shard_map, shard))
    except (psycopg.Error, PipelineError):
        return None  # unreachable: the command itself says so


def _probe(connections: list[tuple[Shard, psycopg.Connection[Any]]]) -> dict[str, str]:
    keys = {shard.name: secrets.randbits(63) for shard, _conn in connections}
    owner = {key: name for name, key in keys.items()}
    order = list(keys)
    try:
        for shard, conn in connections:
            with _as_config_error(shard):
                conn.execute(f"SET LOCAL statement_timeout = '{PROBE_TIMEOUT}'")
                conn.execute(query("same_database_try_lock"), [keys[shard.name]])
        shared: dict[str, str] = {}
        for shard, conn in connections:
            with _as_config_error(shard):
                rows = conn.execute(query("same_database_probe"), [list(owner)]).fetchall()
            seen = [owner[row[0]] for row in rows if row[0] in owner]
            first = min(seen, key=order.index, default=shard.name)
            if order.index(first) < order.index(shard.name):
                shared[shard.name] = first
        return shared
    finally:
        for _shard, conn in connections:
            if not conn.closed:
                conn.rollback()  # releases the locks (transaction-level)


@contextmanager
def _as_config_error(shard: Shard) -> Iterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        # Reachable a moment ago: the command cannot know whether it may write.
        raise ShardError(
            shard.name, f"could not compare the shards' databases: {scrub(str(exc), shard.dsn)}"
        ) from None
