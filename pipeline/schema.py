"""`pipeline init`: bring every shard's schema to the latest migration and its residency
constraint in step with the shard map.

Residency is enforced by PostgreSQL, not by the loader: each shard's `residents`
table carries a CHECK constraint derived from the map (a routed shard accepts only
its countries; the default shard refuses every country routed elsewhere), so no
code path, ours or a person's psql session, can put a resident in the wrong region.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.errors import ResidencyViolation, ShardError
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import SCHEMA
from pipeline.roles import grant_roles
from pipeline.shards import Outcome, on_every_shard
from pipeline.sqlfiles import migrations

CONSTRAINT = "residents_residency"


@dataclass(frozen=True)
class ResidencyRule:
    """What a shard may hold: `countries IN (...)`, `NOT IN (...)`, or anything."""

    allowed: frozenset[str] | None  # None: not an allow-list
    refused: frozenset[str]

    def condition(self) -> sql.Composable:
        # A fragment built from the shard map (a list of literals), composed here: the
        # statements it goes into are sql/schema/residency_*.sql and sql/check/residency.sql.
        if self.allowed is not None:
            if not self.allowed:
                return sql.SQL("false")
            return sql.SQL("country IN ({})").format(_literals(self.allowed))
        if not self.refused:
            return sql.SQL("true")
        return sql.SQL("country NOT IN ({})").format(_literals(self.refused))

    def describe(self) -> str:
        """Stable text of the rule; stored in the constraint's comment to detect changes."""
        if self.allowed is not None:
            return f"country IN ({', '.join(sorted(self.allowed))})"
        if not self.refused:
            return "any country"
        return f"country NOT IN ({', '.join(sorted(self.refused))})"


def residency_rule(shard_map: ShardMap, shard: Shard) -> ResidencyRule:
    """The rule the map asks of `shard`."""
    if shard.is_default:
        # The default shard holds its own routed countries plus every unrouted one.
        return ResidencyRule(allowed=None, refused=shard_map.other_routed_countries(shard))
    return ResidencyRule(allowed=shard.countries, refused=frozenset())


@dataclass(frozen=True)
class InitResult:
    shard: str
    from_version: int
    to_version: int
    rule: str
    rule_changed: bool
    roles_created: list[str] | None = None  # None: --roles not asked for


def latest_version() -> int:
    return len(migrations())


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The shard's schema version; 0 when it was never initialised."""
    exists = conn.execute(SCHEMA.table_exists, ["schema_migrations"]).fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.execute(SCHEMA.version).fetchone()
    return int(row[0]) if row else 0


def init_shard(shard_map: ShardMap, shard: Shard, roles: bool = False) -> InitResult:
    """Apply missing migrations, then set the residency constraint, then (with `roles`)
    create and grant the group roles (see pipeline.roles); idempotent."""
    with db.connect(shard_map, shard) as conn:
        conn.execute(SCHEMA.lock, [db.LOCK_INIT])
        conn.execute(SCHEMA.migrations_table)
        before = current_version(conn)
        conn.commit()
        for migration in migrations()[before:]:
            # One transaction per migration, re-checked under the lock: two inits at
            # once apply each migration exactly once.
            with conn.transaction():
                conn.execute(SCHEMA.lock, [db.LOCK_INIT])
                if current_version(conn) >= migration.version:
                    continue
                try:
                    conn.execute(migration.text.encode())
                except psycopg.errors.DuplicateTable as exc:
                    if before:
                        raise
                    raise _not_ours(shard, exc) from None
                conn.execute(SCHEMA.record_migration, [migration.version, migration.name])
        rule = residency_rule(shard_map, shard)
        changed = set_residency(conn, shard, rule)
        created = grant_roles(conn, shard) if roles else None
        return InitResult(
            shard.name, before, current_version(conn), rule.describe(), changed, created
        )


def _not_ours(shard: Shard, exc: psycopg.errors.DuplicateTable) -> ShardError:
    """A first init that meets a table of the same name as one of ours: someone else's."""
    table = exc.diag.message_primary or str(exc)
    return ShardError(
        shard.name,
        f"{table}, and this pipeline did not make it (the shard was never initialised):"
        " point the shard at an empty database, or at a schema of its own (CREATE SCHEMA,"
        " then `options=-csearch_path=NAME` in its DSN)",
    )


def set_residency(conn: psycopg.Connection[Any], shard: Shard, rule: ResidencyRule) -> bool:
    with conn.transaction():
        conn.execute(SCHEMA.lock, [db.LOCK_INIT])
        row = conn.execute(SCHEMA.residency_rule).fetchone()
        if row is not None and row[0] == rule.describe():
            return False
        conn.execute(SCHEMA.residency_drop)
        condition = rule.condition()
        bad = conn.execute(SCHEMA.residency_violations.format(condition=condition)).fetchall()
        if bad:
            # Leaving the transaction by an exception rolls the DROP back: the old rule stays.
            raise ResidencyViolation(shard.name, rule.describe(), {c: int(n) for c, n in bad})
        conn.execute(
            SCHEMA.residency_add.format(condition=condition, rule=sql.Literal(rule.describe()))
        )
    return True


def init_all(shard_map: ShardMap, roles: bool = False) -> list[Outcome[InitResult]]:
    """Initialise every shard at once; a shard that fails does not stop the others. Two
    shards that are one database stop it before anything changes (ConfigError)."""
    refuse_shared_databases(shard_map)
    return on_every_shard(shard_map.shards, lambda shard: init_shard(shard_map, shard, roles))


def _literals(values: frozenset[str]) -> sql.Composable:
    return sql.SQL(", ").join(sql.Literal(v) for v in sorted(values))
