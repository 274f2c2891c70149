"""`pipeline init`: bring every shard's schema to the latest migration and its residency
constraint in step with the shard map.

Residency is enforced by PostgreSQL, not by the loader: each shard's `residents`
table carries a CHECK constraint derived from the map (a routed shard accepts only
its countries; the default shard refuses every country routed elsewhere), so no
code path, ours or a person's psql session, can put a resident in the wrong region.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import psycopg
import pycountry
from psycopg import sql

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.errors import ConfigError, ResidencyViolation, ShardError
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import SCHEMA
from pipeline.roles import grant_roles
from pipeline.shards import Outcome, on_every_shard
from pipeline.sqlfiles import migrations

CONSTRAINT = "residents_residency"
# Codes a list of the constraint's condition holds, at most: PostgreSQL proves that a query's
# countries are not in a list of up to 100 (predtest.c's MAX_SAOP_ARRAY_SIZE) and skips the
# shard without reading a row (`extract --country`, sql/db/snapshot_settings.sql); a longer
# list it cannot, and the shard is scanned. A longer rule is written as a few shorter lists
# (of more than one code each: PostgreSQL writes a list of one as `=`, without a list).
LIST_MAX = 100
_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)


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
            lists = (sql.SQL("country IN ({})").format(codes) for codes in _lists(self.allowed))
            return sql.SQL("({})").format(sql.SQL(" OR ").join(lists))
        if not self.refused:
            return sql.SQL("true")
        lists = (sql.SQL("country NOT IN ({})").format(codes) for codes in _lists(self.refused))
        return sql.SQL("({})").format(sql.SQL(" AND ").join(lists))

    def lists(self) -> int:
        """How many lists of codes `condition` writes."""
        return len(_lists(self.named()))

    def describe(self) -> str:
        """Stable text of the rule; stored in the constraint's comment to detect changes."""
        if self.allowed is not None:
            return f"country IN ({', '.join(sorted(self.allowed))})"
        if not self.refused:
            return "any country"
        return f"country NOT IN ({', '.join(sorted(self.refused))})"

    @classmethod
    def parse(cls, text: str | None) -> ResidencyRule | None:
        """The rule `describe` wrote (a constraint's comment), or None for any other text."""
        if text == "any country":
            return cls(None, frozenset())
        match = re.fullmatch(r"country (NOT )?IN \(([A-Z, ]*)\)", text or "")
        if match is None:
            return None
        codes = frozenset(c for c in match.group(2).split(", ") if c)
        return cls(None, codes) if match.group(1) else cls(codes, frozenset())

    def accepts(self, country: str) -> bool:
        if self.allowed is not None:
            return country in self.allowed
        return country not in self.refused

    def named(self) -> frozenset[str]:
        return self.refused if self.allowed is None else self.allowed


# How a residency constraint init did not set (no rule in its comment) is shown.
NOT_INITS = "a constraint `pipeline init` did not set"


def rule_found(row: tuple[Any, ...] | None) -> str | None:
    """The rule a shard's constraint holds, as shown (sql/schema/residency_rule.sql's row):
    its comment; NOT_INITS for a constraint without one; None for no constraint."""
    if row is None:
        return None
    return NOT_INITS if row[0] is None else str(row[0])


def rule_in_lists(rule: ResidencyRule, lists: int) -> bool:
    """Whether a constraint of `rule` holding `lists` lists of codes is written as
    `condition` writes it now: a rule of more than LIST_MAX codes written as one list (as
    before session 29) is not, and is set again."""
    return len(rule.named()) <= LIST_MAX or lists == rule.lists()


def residency_rule(shard_map: ShardMap, shard: Shard) -> ResidencyRule:
    """The rule the map asks of `shard`."""
    if shard.is_default:
        # The default shard holds its own routed countries plus every unrouted one.
        return ResidencyRule(allowed=None, refused=shard_map.other_routed_countries(shard))
    return ResidencyRule(allowed=shard.countries, refused=frozenset())


def leaving(shard_map: ShardMap, shard: Shard, found: ResidencyRule | None) -> list[str]:
    """The countries `shard`'s constraint (`found`) still takes that the map sends elsewhere:
    its rows of them, if any, wait for `pipeline rebalance`."""
    expected = residency_rule(shard_map, shard)
    if found is None or found == expected:  # the usual answer, at every file's start
        return []
    codes = _COUNTRIES | found.named() | expected.named()
    return sorted(c for c in codes if found.accepts(c) and not expected.accepts(c))


def arrivals(shard_map: ShardMap, found: Mapping[str, ResidencyRule | None]) -> dict[str, str]:
    """The shards a load must not write to now, with why: each is where the map sends a
    country another shard's constraint still takes (`found`: each shard's, by name; a shard
    not known is left out). Its rows may still be on that shard: a resident loaded on the new
    one would be on two, until `pipeline rebalance` moves them."""
    moving: dict[str, str] = {}
    for shard in shard_map.shards:
        for country in leaving(shard_map, shard, found.get(shard.name)):
            moving.setdefault(country, shard.name)
    held = {}
    for shard in shard_map.shards:
        rule = residency_rule(shard_map, shard)
        arriving = [c for c in moving if rule.accepts(c)]
        if arriving:
            c = min(arriving)
            held[shard.name] = (
                f"the shard map moves {c} here from shard {moving[c]}, whose constraint still"
                f" takes it (its rows may be there): run `pipeline rebalance`, then re-run the"
                " same command"
            )
    return held


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
        try:
            return _init(conn, shard_map, shard, roles)
        except psycopg.errors.InsufficientPrivilege as exc:
            # A loader's or an analyst's DSN: the schema is the owner's to change.
            user = conn.info.user
            what = exc.diag.message_primary or str(exc)
            raise ConfigError(
                f"shard {shard.name}: the role {user} may not change the schema ({what}):"
                " run `pipeline init` as the database's owner (see Roles in the README)"
            ) from None


def _init(
    conn: psycopg.Connection[Any], shard_map: ShardMap, shard: Shard, roles: bool
) -> InitResult:
    """The body of init_shard, on its connection."""
    conn.execute(SCHEMA.lock, [db.LOCK_INIT])
    _refuse_others_tables(conn, shard)
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
            except (psycopg.errors.DuplicateTable, psycopg.errors.DuplicateObject) as exc:
                what = exc.diag.message_primary or str(exc)
                raise _not_ours(shard, what, done="") from None
            conn.execute(SCHEMA.record_migration, [migration.version, migration.name])
    rule = residency_rule(shard_map, shard)
    changed = set_residency(conn, shard, rule)
    created = grant_roles(conn, shard) if roles else None
    return InitResult(shard.name, before, current_version(conn), rule.describe(), changed, created)


# What this pipeline's schema_migrations holds (sql/schema/migrations_table.sql).
_MIGRATIONS_COLUMNS = [
    ("version", "integer"),
    ("name", "text"),
    ("applied_at", "timestamp with time zone"),
]


def _refuse_others_tables(conn: psycopg.Connection[Any], shard: Shard) -> None:
    """ShardError, before anything is changed, when the schema init would make its tables
    in holds another application's: a `schema_migrations` of other columns, or, on a shard
    this pipeline never initialised, any table or index its migrations make."""
    columns = conn.execute(SCHEMA.migrations_columns).fetchall()
    if columns and [tuple(c) for c in columns] != _MIGRATIONS_COLUMNS:
        raise _not_ours(shard, 'a table "schema_migrations" (another tool\'s migrations?)')
    if columns and current_version(conn):
        return  # this pipeline's, initialised: its migrations go on from there
    made = sorted(
        {name for m in migrations() for names in _MADE.findall(m.text) for name in names if name}
    )
    # No commit here: the init lock is held until schema_migrations is made (the caller).
    taken = [row[0] for row in conn.execute(SCHEMA.relations_taken, {"names": made})]
    if taken:
        quoted = ", ".join(f'"{name}"' for name in taken)
        raise _not_ours(shard, f"{quoted} already exist{'s' if len(taken) == 1 else ''}")


# The tables, named indexes and index-backed constraints a migration makes (a comment's
# "CREATE INDEX ON" names none).
_MADE = re.compile(
    r"CREATE (?:TABLE|(?:UNIQUE )?INDEX) (?:CONCURRENTLY )?(?:IF NOT EXISTS )?(?!ON\b)(\w+)"
    r"|CONSTRAINT (\w+) (?:UNIQUE|PRIMARY KEY|EXCLUDE)",
    re.IGNORECASE,
)


def _not_ours(shard: Shard, what: str, done: str = "nothing was changed; ") -> ShardError:
    """`what` is in the way of this pipeline's schema: someone else's."""
    return ShardError(
        shard.name,
        f"{what} in the schema where init makes its tables, and this pipeline did not make"
        f" it: {done}point the shard at an empty database, or at a schema of its own"
        " (CREATE SCHEMA, then `options=-csearch_path=NAME` in its DSN)",
    )


def set_residency(conn: psycopg.Connection[Any], shard: Shard, rule: ResidencyRule) -> bool:
    with conn.transaction():
        conn.execute(SCHEMA.lock, [db.LOCK_INIT])
        row = conn.execute(SCHEMA.residency_rule).fetchone()
        described, lists = (row[0], row[1]) if row is not None else (None, 0)
        same = row is not None and described == rule.describe()
        if same and rule_in_lists(rule, lists):
            return False
        conn.execute(SCHEMA.residency_drop)
        condition = rule.condition()
        # The same rule as lists (rule_in_lists): the constraint it replaces kept every row
        # in it. Adding it scans the table once, under the lock (violations, a second scan,
        # are asked only of a new rule).
        bad = []
        if not same:
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


def _lists(values: frozenset[str]) -> list[sql.Composable]:
    """`values`, sorted, as lists of literals, as few as LIST_MAX allows, of even sizes."""
    ordered = sorted(values)
    count = -(-len(ordered) // LIST_MAX)
    size = -(-len(ordered) // count) if count else 0
    return [
        sql.SQL(", ").join(sql.Literal(v) for v in ordered[start : start + size])
        for start in range(0, len(ordered), size or 1)
    ]
