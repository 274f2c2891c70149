"""Rebalance moves that the snapshots of one read of several shards catch half-way.

A move commits its copy on the target, then its delete on the source (pipeline.move). In
between, the country's rows are on both shards: for a millisecond, or, when the source's
commit failed or the run was killed there, until `pipeline rebalance` is run again. An
export of both shards would hold those rows twice, and a report would count them twice.
Snapshots taken on either side of both commits would miss them altogether.

So each shard's snapshot (extract, report) reads its move ledger first
(sql/extract/moves.sql; the query also begins the snapshot the rows are read in), and
before the first row goes out the steps they saw must agree (`half_done`): a move each read
shard took part in is seen `copied` on its target exactly when it is seen `deleted` on its
source. When they do not, the read stops with `MoveHalfDone` (exit 1, nothing written),
whatever --allow-partial says: leaving a shard out would not make the rest right. `status`
and `plan`, which read the shards one by one, name a move left copied and not deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.errors import PipelineError
from pipeline.queries import EXTRACT, STATUS

WAIT_STEP = 0.1  # seconds: a wait for the other shards' ledgers wakes this often (Ctrl-C)
LEDGER_VERSION = 6  # the schema version that adds rebalance_ledger (sql/migrations/0006_...)


class MoveHalfDone(PipelineError):
    """Rows a rebalance is moving would be read on both shards, or on neither."""


class ReadClosed(PipelineError):
    """A shard's read that the read's end stopped before its first row (MovesSeen.close)."""


@dataclass(frozen=True)
class Step:
    move_id: str
    step: str  # 'copied' (on the target) or 'deleted' (on the source)
    country: str
    source: str
    target: str
    rows: int
    at: datetime


class MovesSeen:
    """The move ledgers of the shards one command reads, each from its own snapshot."""

    def __init__(
        self, shard_map: ShardMap, shards: Sequence[Shard], countries: Iterable[str] = ()
    ) -> None:
        self.shard_map = shard_map
        # One shard alone cannot hold a row twice: its snapshot is read as it is.
        self._waiting = {s.name for s in shards} if len(shards) > 1 else set()
        self._countries = set(countries)  # empty: every country is read
        self._seen: dict[str, list[Step]] = {}
        self._closed = False
        self._changed = threading.Condition()

    @contextmanager
    def snapshot(self, shard: Shard) -> Iterator[psycopg.Connection[Any]]:
        """db.snapshot of `shard`, its ledger read first, then the others' awaited and all
        verified before the block reads any row (MoveHalfDone). Each shard verifies, not
        only the first: a first shard that cannot be reached (--allow-partial) would leave
        the others unverified."""
        try:
            with db.snapshot(self.shard_map, shard) as conn:
                if self._closed:
                    raise ReadClosed("the read was stopped")
                if shard.name in self._waiting:
                    self.read(shard.name, conn)
                    self.verify()
                yield conn
        finally:
            self.gone(shard.name)  # failed before its ledger was read: wait no longer

    def read(self, shard: str, conn: psycopg.Connection[Any]) -> None:
        """Read `shard`'s ledger on `conn`, as the first statement of its snapshot."""
        steps = read_ledger(conn)
        with self._changed:
            self._seen[shard] = steps
            self._waiting.discard(shard)
            self._changed.notify_all()

    def gone(self, shard: str) -> None:
        """`shard` will not say (it failed before, or is left out): wait no longer for it."""
        with self._changed:
            self._waiting.discard(shard)
            self._changed.notify_all()

    def close(self) -> None:
        """The read ends (its consumer stopped, or failed before its first shard began):
        a shard waiting for the others' ledgers waits no longer, and reads nothing."""
        with self._changed:
            self._closed = True
            self._waiting.clear()
            self._changed.notify_all()

    def verify(self) -> None:
        """Once every shard has read its ledger or gone: MoveHalfDone when their snapshots
        see a move between its two commits."""
        with self._changed:
            while self._waiting:
                self._changed.wait(WAIT_STEP)
            if self._closed:
                raise ReadClosed("the read was stopped")
            ledgers = dict(self._seen)
        for move, copied in half_done(ledgers, self._countries):
            if copied:
                raise MoveHalfDone(
                    f"shard {move.source} still holds the {move.rows} row(s) of {move.country}"
                    f" that a rebalance has copied to {move.target} (move {move.move_id[:8]}:"
                    " its delete is not committed): they would be read twice. If a rebalance"
                    " is running, try again; else run `pipeline rebalance`, which finishes"
                    " the move; nothing was written"
                )
            raise MoveHalfDone(
                f"a rebalance moved the {move.rows} row(s) of {move.country} from shard"
                f" {move.source} to {move.target} while this read began on the shards:"
                " they would be read on neither; try again; nothing was written"
            )


def read_ledger(conn: psycopg.Connection[Any]) -> list[Step]:
    """A shard's move ledger (sql/extract/moves.sql), from a shard at LEDGER_VERSION or later."""
    return [Step(*row) for row in conn.execute(EXTRACT.moves)]


def ledger_if_readable(conn: psycopg.Connection[Any], version: int) -> list[Step] | None:
    """The shard's move ledger (empty when its schema, at `version`, has none yet), or None
    when the role may not read it (the loader's, granted before the ledger was): a shard
    not read, which `half_done` leaves out, where an empty ledger would make every move
    from it look half-done."""
    if version < LEDGER_VERSION:
        return []
    row = conn.execute(STATUS.ledger_readable).fetchone()
    return read_ledger(conn) if row is not None and row[0] else None


def half_done(
    ledgers: Mapping[str, Iterable[Step]], countries: Collection[str] = ()
) -> Iterator[tuple[Step, bool]]:
    """(move, copied) for each move between two shards of `ledgers` (shard -> its ledger)
    that they see on one side only: copied when the target's ledger holds its copy and the
    source's not its delete (the rows are on both shards), else the reverse (on neither:
    only snapshots taken on either side of both commits see that). Only `countries`' moves,
    when given."""
    seen = {shard: {(s.move_id, s.step) for s in steps} for shard, steps in ledgers.items()}
    moves: dict[str, Step] = {}
    # A copy left without its delete whose rows were no longer the ones it copied is done
    # again by the next rebalance (pipeline.move.unfinished takes the latest copy): the
    # latest copy of each (country, source, target) stands for the earlier ones.
    latest: dict[tuple[str, str, str], Step] = {}
    # A copy whose rows a later move took back to its source (the map turned back before its
    # delete was done) is over: the last move back of each (country, from, to).
    back: dict[tuple[str, str, str], datetime] = {}
    for steps in ledgers.values():
        for step in steps:
            moves.setdefault(step.move_id, step)
            key = (step.country, step.source, step.target)
            if step.step == "copied":
                if key not in latest or step.at > latest[key].at:
                    latest[key] = step
            else:
                back[key] = max(back.get(key, step.at), step.at)
    for move in moves.values():
        if move.source not in seen or move.target not in seen:
            continue  # one side not read: its rows are read once at most
        if countries and move.country not in countries:
            continue
        copied = (move.move_id, "copied") in seen[move.target]
        deleted = (move.move_id, "deleted") in seen[move.source]
        if copied and latest[(move.country, move.source, move.target)].move_id != move.move_id:
            continue  # superseded by a later copy
        if copied and back.get((move.country, move.target, move.source), move.at) > move.at:
            continue  # moved back to the source since, over the rows it kept
        if copied != deleted:
            yield move, copied
