"""`pipeline rebalance`: carry the plan out, one move (country, source, target) at a time.

For each move, in this order (killed anywhere, a re-run goes on from there):
1. take the load lock (db.LOCK_LOAD) on both shards, for the whole move: a load of
   either shard waits, so no load writes the country to its old shard, nor to the new
   one under the copy's feet;
2. relax the target's residency constraint to accept the country (plan.interim_rule);
3. copy the rows, verify them on both shards and delete them from the source
   (pipeline.move.move_rows), or, when an earlier run committed its copy but not its
   delete (pipeline.move.unfinished), delete them if they are still the rows it copied
   (pipeline.move.delete);
4. tighten the source's constraint, no longer to accept the country;
5. let the locks go.
At the end, every shard's constraint is set to what the map asks, less whatever it still
holds that is to leave it (a move that failed, a country left out by --country).

A move that fails (an id conflict, a shard down) leaves its country where it was, or
copied and not yet deleted; the other moves go on, and the result says which failed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from pipeline import db, move
from pipeline.config import Shard, ShardMap
from pipeline.dsn import scrub
from pipeline.errors import EXIT_DATA, EXIT_OK, PipelineError, ShardError
from pipeline.plan import (
    Move,
    Plan,
    ShardHolding,
    holdings,
    interim_rule,
    make_plan,
    misplaced,
    refuse_behind,
)
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import REBALANCE
from pipeline.schema import ResidencyRule, latest_version, set_residency


@dataclass(frozen=True)
class RebalanceOptions:
    countries: tuple[str, ...] = ()  # only these countries' moves (all when empty)
    renumber: bool = False  # --on-id-conflict renumber
    dry_run: bool = False


@dataclass
class MoveOutcome:
    move: Move
    inserted: int = 0  # rows written to the target
    deleted: int = 0  # rows deleted from the source
    renumbered: int = 0
    resumed: bool = False  # an earlier run had copied the rows
    error: str | None = None
    constraints: list[str] = field(default_factory=list)  # "shard: rule" set on the way

    def line(self) -> str:
        m = self.move
        head = f"{m.country}  {m.source} -> {m.target}"
        if self.error is not None:
            return f"{head}: {self.error}"
        if self.resumed:
            return f"moved {head}  {self.deleted} rows (copied by an earlier run)"
        already = self.deleted - self.inserted
        return (
            f"moved {head}  {self.deleted} rows ({self.inserted} copied, "
            f"{already} already there, {self.renumbered} renumbered)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            **self.move.to_json(),
            "inserted": self.inserted,
            "deleted": self.deleted,
            "renumbered": self.renumbered,
            "resumed": self.resumed,
            "error": self.error,
            "constraints": self.constraints,
        }


@dataclass
class RebalanceResult:
    plan: Plan
    outcomes: list[MoveOutcome] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # "shard: rule" set by this run
    errors: list[str] = field(default_factory=list)  # constraint changes that failed
    before: dict[str, int] = field(default_factory=dict)  # residents per shard
    after: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        failed = self.errors or self.plan.stranded or any(o.error for o in self.outcomes)
        return EXIT_DATA if failed else EXIT_OK

    def to_json(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_json(),  # what was to be done (all of it, with --dry-run)
            "moves": [o.to_json() for o in self.outcomes],
            "stranded": [s.to_json() for s in self.plan.stranded],
            "constraints": self.constraints,
            "errors": self.errors,
            "residents_before": self.before,
            "residents_after": self.after,
        }


def rebalance(
    shard_map: ShardMap,
    options: RebalanceOptions,
    moved: Callable[[MoveOutcome], None] = lambda outcome: None,
) -> RebalanceResult:
    """Move every resident the map routes elsewhere (see the module docstring); `moved` is
    told of each move as it ends (the command line says it then: an interrupt leaves the
    moves done said)."""
    refuse_shared_databases(shard_map)
    found = holdings(shard_map)
    plan = make_plan(shard_map, found, options.countries)
    result = RebalanceResult(plan, before=_residents(found))
    if options.dry_run:
        result.after = result.before
        return result
    refuse_behind(shard_map, found, sorted({n for m in plan.moves for n in (m.source, m.target)}))
    held = {name: dict(h.by_country) for name, h in found.items()}
    for planned in plan.moves:
        outcome = MoveOutcome(planned)
        try:
            _move(shard_map, planned, held, options.renumber, outcome)
        except PipelineError as exc:
            outcome.error = str(exc)
        result.outcomes.append(outcome)
        moved(outcome)
    found = holdings(shard_map)
    _settle_constraints(shard_map, found, result)
    result.after = _residents(found)
    return result


def _move(
    shard_map: ShardMap,
    planned: Move,
    held: dict[str, dict[str, int]],
    renumber: bool,
    outcome: MoveOutcome,
) -> None:
    source, target = shard_map.shard(planned.source), shard_map.shard(planned.target)
    country, names = planned.country, (planned.source, planned.target)
    with _connected(shard_map, source, target) as (s, beside, t), _errors_named(source, target):
        _lock_both((s, source.name), (t, target.name))
        arriving = misplaced(shard_map, target, held[target.name]) | {country}
        _set(t, target, interim_rule(shard_map, target, arriving), outcome.constraints)
        copied = move.unfinished(s, t, country, names)
        deleted = None if copied is None else move.delete(s, country, names, copied)
        outcome.resumed = deleted is not None
        if deleted is None:
            # A re-copy over an unfinished one renumbers nothing: a row it finds changed
            # on the source since is a conflict to look at, not a second person to make.
            copied, deleted = move.move_rows(
                s, beside, t, country, names, renumber and copied is None
            )
            outcome.inserted, outcome.renumbered = copied.inserted, copied.renumbered
        outcome.deleted = deleted
        held[source.name].pop(country, None)
        held[target.name][country] = held[target.name].get(country, 0) + deleted
        leaving = misplaced(shard_map, source, held[source.name])
        _set(s, source, interim_rule(shard_map, source, leaving), outcome.constraints)


def _set(
    conn: psycopg.Connection[Any], shard: Shard, rule: ResidencyRule, changes: list[str]
) -> None:
    with move.on_shard(shard.name):
        changed = set_residency(conn, shard, rule)
    if changed:
        changes.append(f"{shard.name}: {rule.describe()}")


@contextlib.contextmanager
def _connected(
    shard_map: ShardMap, source: Shard, target: Shard
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """Connections to both shards and a second one to the source (pipeline.move hashes and
    deletes there while the first copies), in REPEATABLE READ; at the end, the first two let
    go of the load lock `_lock_both` took on each (ending the connection would too)."""
    with (
        db.connect(shard_map, source, autocommit=True) as s,
        # Not autocommit: should a statement of its thread outlive the move's end (a second
        # Ctrl-C while it is stopped), it starts a transaction that nothing commits.
        db.connect(shard_map, source) as beside,
        db.connect(shard_map, target, autocommit=True) as t,
    ):
        for conn in (s, beside, t):
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        try:
            yield s, beside, t
        finally:
            for conn in (s, t):
                if not conn.closed and not conn.broken:
                    with contextlib.suppress(psycopg.Error):
                        conn.rollback()
                        conn.execute(REBALANCE.unlock, [db.LOCK_LOAD])


def _lock_both(*sides: tuple[psycopg.Connection[Any], str]) -> None:
    """Both shards' load lock. It waits for one while holding none: waiting for the second
    while holding the first could wait forever on a load holding them the other way round
    (a deadlock across two servers, which neither can see)."""
    (first, first_name), (second, second_name) = sides
    while True:
        with move.on_shard(first_name):
            first.execute(REBALANCE.lock, [db.LOCK_LOAD])
        with move.on_shard(second_name):
            got = second.execute(REBALANCE.try_lock, [db.LOCK_LOAD]).fetchone()
        if got and got[0]:
            return
        with move.on_shard(first_name):
            first.execute(REBALANCE.unlock, [db.LOCK_LOAD])
        # Wait for the one it could not have.
        (first, first_name), (second, second_name) = (second, second_name), (first, first_name)


@contextlib.contextmanager
def _errors_named(source: Shard, target: Shard) -> Iterator[None]:
    """A database error during a move, as a ShardError naming the shard it came from."""
    try:
        yield
    except psycopg.Error as exc:
        name = move.shard_of(exc)
        text = db.one_line(exc)
        for shard in (source, target):
            text = scrub(text, shard.dsn)
        where = name or f"{source.name} or {target.name}"
        transient = db.is_transient(exc)
        # As the load says it: a connection lost or a time-out goes away by itself; anything
        # else (no privilege, a full disk, a trigger) fails again until someone fixes it.
        then = "re-running completes the move" if transient else "fix that, then re-run"
        raise ShardError(where, f"{text}; {then}", transient) from None


def _settle_constraints(
    shard_map: ShardMap, found: dict[str, ShardHolding], result: RebalanceResult
) -> None:
    """Each initialised shard's constraint: the map's, relaxed for what it still holds
    that is to leave it."""
    for shard in shard_map.shards:
        holding = found[shard.name]
        if holding.version != latest_version():
            continue  # not initialised, or behind: `pipeline init` sets it
        rule = interim_rule(shard_map, shard, misplaced(shard_map, shard, holding.by_country))
        try:
            with db.connect(shard_map, shard, autocommit=True) as conn:
                if set_residency(conn, shard, rule):
                    result.constraints.append(f"{shard.name}: {rule.describe()}")
        except PipelineError as exc:
            result.errors.append(str(exc))


def _residents(found: dict[str, ShardHolding]) -> dict[str, int]:
    return {name: sum(h.by_country.values()) for name, h in found.items()}
