"""`pipeline plan`: where residents are, against where the shard map routes them.

One GROUP BY country query per shard (through `on_every_shard`) gives the rows each shard
holds by country; every (shard, country) the map routes elsewhere is a move, with its
row count. A country the map routes nowhere (`default: reject`) cannot move: the plan
names it as stranded. Beside the moves, the residency constraint each shard has and the
one the map asks for. Nothing is changed: `pipeline rebalance` carries the plan out.

While a move is under way, a shard's constraint is an interim one (`interim_rule`): the
map's rule, relaxed to also accept the countries the shard still holds that are leaving
it, and the country arriving. Once nothing is left to move, it is the map's rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.errors import ShardError
from pipeline.moves_seen import Step, half_done, ledger_if_readable
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import REBALANCE, SCHEMA
from pipeline.schema import (
    LIST_MAX,
    NOT_INITS,
    ResidencyRule,
    current_version,
    latest_version,
    residency_rule,
    rule_in_lists,
)
from pipeline.shards import on_every_shard


@dataclass(frozen=True)
class Move:
    """One country's rows that sit on `source` and that the map routes to `target`."""

    country: str
    source: str
    target: str
    rows: int
    # An earlier rebalance's move that committed this copy on the target and not its delete
    # here: the rows are on both shards, and the rebalance finishes it (pipeline.move).
    unfinished_move: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "from": self.source,
            "to": self.target,
            "rows": self.rows,
            "unfinished_move": self.unfinished_move,
        }

    def line(self) -> str:
        """The move as `pipeline plan` prints it."""
        line = f"move {self.country}  {self.source} -> {self.target}  {self.rows} rows"
        if self.unfinished_move is not None:
            line += (
                f"  (copied by move {self.unfinished_move[:8]}, not yet deleted from"
                f" {self.source}: the rows are on both shards)"
            )
        return line


@dataclass(frozen=True)
class ConstraintChange:
    """A shard whose residency constraint is not yet the one the map asks for."""

    shard: str
    current: str | None  # None: the shard has none (never initialised), or `by_hand`
    wanted: str
    by_hand: bool = False  # a constraint of the pipeline's name without a rule in its comment
    as_lists: bool = False  # the same rule, to be written as lists (schema.rule_in_lists)

    def to_json(self) -> dict[str, Any]:
        return {
            "shard": self.shard, "from": self.current, "to": self.wanted,
            "made_by_hand": self.by_hand, "as_lists": self.as_lists,
        }  # fmt: skip

    def line(self) -> str:
        if self.as_lists:
            return (
                f"constraint {self.shard}  {self.current}: the same, to be written as lists of"
                f" at most {LIST_MAX} codes (`pipeline init`)"
            )
        current = NOT_INITS if self.by_hand else self.current or "none"
        return f"constraint {self.shard}  {current} -> {self.wanted}"


@dataclass(frozen=True)
class Stranded:
    """Rows of a country the map routes to no shard (`default: reject`): they stay."""

    country: str
    shard: str
    rows: int

    def to_json(self) -> dict[str, Any]:
        return {"country": self.country, "shard": self.shard, "rows": self.rows}


@dataclass(frozen=True)
class ShardHolding:
    """What one shard holds: rows by country, its residency rule, its schema version."""

    shard: str
    by_country: dict[str, int]
    rule: str | None  # its constraint's comment; None: no constraint, or `by_hand`
    version: int
    # Its rebalance moves' steps (pipeline.moves_seen); None: the role may not read them.
    ledger: tuple[Step, ...] | None = ()
    by_hand: bool = False  # a constraint without a rule in its comment
    lists: int = 0  # lists of codes in its constraint (schema.rule_in_lists)


@dataclass(frozen=True)
class Plan:
    moves: list[Move]
    constraints: list[ConstraintChange]
    stranded: list[Stranded]
    holdings: dict[str, ShardHolding] = field(repr=False)

    @property
    def empty(self) -> bool:
        return not (self.moves or self.constraints or self.stranded)

    def to_json(self) -> dict[str, Any]:
        return {
            "moves": [m.to_json() for m in self.moves],
            "constraints": [c.to_json() for c in self.constraints],
            "stranded": [s.to_json() for s in self.stranded],
        }

    def lines(self) -> list[str]:
        """The plan as `pipeline plan` prints it, one line each."""
        out = [m.line() for m in self.moves]
        out += [f"stranded {s.country}  on {s.shard}  {s.rows} rows" for s in self.stranded]
        out += [c.line() for c in self.constraints]
        return out or ["nothing to move; every shard's residency constraint is the map's"]


def holding(shard_map: ShardMap, shard: Shard) -> ShardHolding:
    """One shard's rows by country (one GROUP BY), residency rule and schema version."""
    with db.snapshot(shard_map, shard) as conn:
        version = current_version(conn)
        if version == 0:
            return ShardHolding(shard.name, {}, None, 0)
        by_country = {str(c): int(n) for c, n in conn.execute(REBALANCE.countries)}
        row = conn.execute(SCHEMA.residency_rule).fetchone()
        ledger = ledger_if_readable(conn, version)
    steps = None if ledger is None else tuple(ledger)
    rule, lists = (row[0], row[1]) if row is not None else (None, 0)
    by_hand = row is not None and rule is None
    return ShardHolding(shard.name, by_country, rule, version, steps, by_hand, lists)


def holdings(shard_map: ShardMap) -> dict[str, ShardHolding]:
    """Every shard's holding; a shard that cannot be read stops the plan (ShardError)."""
    found = {}
    for outcome in on_every_shard(shard_map.shards, lambda s: holding(shard_map, s)):
        found[outcome.shard.name] = outcome.unwrap()
    return found


def make_plan(
    shard_map: ShardMap, found: dict[str, ShardHolding], countries: Iterable[str] = ()
) -> Plan:
    """The moves (only those of `countries`, when given), the stranded rows and the
    constraint changes that take the shards from `found` to what the map asks."""
    only = set(countries)
    ledgers = {name: h.ledger for name, h in found.items() if h.ledger is not None}
    unfinished = {
        (m.country, m.source, m.target): m.move_id for m, copied in half_done(ledgers) if copied
    }
    moves, stranded = [], []
    for shard in shard_map.shards:
        for country, n in found[shard.name].by_country.items():
            if only and country not in only:
                continue
            target = shard_map.route_for(country)
            if target is None:
                stranded.append(Stranded(country, shard.name, n))
            elif target.name != shard.name:
                copied = unfinished.get((country, shard.name, target.name))
                moves.append(Move(country, shard.name, target.name, n, copied))
    moves.sort(key=lambda m: (m.country, m.source))
    changes = []
    for shard in shard_map.shards:
        rule = residency_rule(shard_map, shard)
        wanted, held = rule.describe(), found[shard.name]
        if held.rule != wanted:
            changes.append(ConstraintChange(shard.name, held.rule, wanted, held.by_hand))
        elif not rule_in_lists(rule, held.lists):
            changes.append(ConstraintChange(shard.name, held.rule, wanted, as_lists=True))
    return Plan(moves, changes, stranded, found)


def plan(shard_map: ShardMap, countries: Iterable[str] = ()) -> Plan:
    """`pipeline plan`: read every shard, change nothing. Two shards that are one database
    would each seem to hold the other's rows: ConfigError."""
    refuse_shared_databases(shard_map)
    return make_plan(shard_map, holdings(shard_map), countries)


def misplaced(shard_map: ShardMap, shard: Shard, by_country: dict[str, int]) -> set[str]:
    """The countries of rows on `shard` that its rule under the map refuses."""
    rule = residency_rule(shard_map, shard)
    if rule.allowed is not None:
        return {c for c, n in by_country.items() if n and c not in rule.allowed}
    return {c for c, n in by_country.items() if n and c in rule.refused}


def interim_rule(shard_map: ShardMap, shard: Shard, also: Iterable[str]) -> ResidencyRule:
    """The map's rule for `shard`, relaxed to also accept `also` (countries it still holds
    that are leaving, a country arriving). With nothing in `also`: the map's rule."""
    rule = residency_rule(shard_map, shard)
    extra = frozenset(also)
    if rule.allowed is not None:
        return ResidencyRule(allowed=rule.allowed | extra, refused=frozenset())
    return ResidencyRule(allowed=None, refused=rule.refused - extra)


def refuse_behind(
    shard_map: ShardMap, found: dict[str, ShardHolding], names: Sequence[str]
) -> None:
    """A shard a move touches must be at the latest schema (the move ledger): ShardError."""
    for name in names:
        version = found[name].version
        if version != latest_version():
            raise ShardError(
                name, f"schema version {version}, expected {latest_version()}: run `pipeline init`"
            )
