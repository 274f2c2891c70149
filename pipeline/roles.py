"""Least privilege: `pipeline init --roles` makes two group roles and grants them a shard.

- `pipeline_loader` may read and write `residents` and the ledger (SELECT, INSERT, UPDATE,
  DELETE, and the identity sequences): what `pipeline load` needs;
- `pipeline_analyst` may read them: what `extract`, `report` and `check` need.

Neither owns a table, so neither may drop, alter or truncate one. Both are NOLOGIN: an
administrator grants them to the roles people and services log in as
(`GRANT pipeline_loader TO etl;`). Roles belong to the whole server, so two shards on one
server share them; two inits at once may both try to create one, and the second to try
is told it exists, which is what it wanted.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import errors, sql

from pipeline.config import Shard
from pipeline.errors import ShardError
from pipeline.preflight import ANALYST_ROLE, LOADER_ROLE
from pipeline.queries import ROLES

GROUP_ROLES = (LOADER_ROLE, ANALYST_ROLE)


def grant_roles(conn: psycopg.Connection[Any], shard: Shard) -> list[str]:
    """Create the roles missing on the shard's server and grant them this shard's tables;
    returns the roles created. Runs after the migrations (the tables exist)."""
    created = []
    for role in _missing(conn):
        if _create(conn, shard, role):
            created.append(role)
    with conn.transaction():
        row = conn.execute(ROLES.objects).fetchone()
        assert row is not None  # the migrations made residents
        schema, residents_seq, ledger_seq = row
        conn.execute(
            ROLES.grant.format(
                schema=sql.Identifier(schema),
                loader=sql.Identifier(LOADER_ROLE),
                analyst=sql.Identifier(ANALYST_ROLE),
                residents_seq=sql.Identifier(residents_seq),
                ledger_seq=sql.Identifier(ledger_seq),
            )
        )
    return created


def _missing(conn: psycopg.Connection[Any]) -> list[str]:
    with conn.transaction():
        return [str(r[0]) for r in conn.execute(ROLES.missing, [list(GROUP_ROLES)])]


def _create(conn: psycopg.Connection[Any], shard: Shard, role: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(ROLES.create.format(role=sql.Identifier(role)))
        return True
    except (errors.DuplicateObject, errors.UniqueViolation):
        return False  # another init, on this shard or another on the same server, made it
    except errors.InsufficientPrivilege:
        raise ShardError(
            shard.name,
            f"cannot create role {role}: this role lacks CREATEROLE; have an administrator "
            f"run `CREATE ROLE {role} NOLOGIN;` on the server, then re-run `pipeline init "
            "--roles`",
        ) from None
