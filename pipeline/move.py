"""One country's rows moved from one shard to another: the copy, the verification, the delete.

Two steps, each one transaction on one side, each recording itself in that side's move
ledger (sql/migrations/0006_rebalance_ledger.sql) in the same transaction:

1. `copy`: on the source, in one REPEATABLE READ snapshot, count and hash the country's
   rows (sql/rebalance/hash.sql) and stream them out with COPY (binary, in chunks of
   about 1 MB: pipeline.copyout); on the target, stream them into a staging table
   (pipeline.copyin's queued writer sends while the source is read), find the rows it
   already holds (the same row: left as it is; a different one under the same id: a
   collision), renumber or stop, insert the rest, hash what it now holds for those rows,
   and commit only when the count and hash are the source's. Killed before that commit,
   nothing of it stays.
2. `delete`: on the source, in one REPEATABLE READ transaction, hash the country's rows
   again and delete them only when they are still the rows the target's ledger says it
   copied (a hand edit since would be lost: then the copy runs again instead).

The caller (pipeline.rebalance) holds both shards' load lock and orders the constraint
changes around these steps; a re-run finds a copy without its delete (`unfinished`) and
goes on from there.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from pipeline.copyin import QueuedWriter
from pipeline.copyout import Chunk, CopyOut
from pipeline.errors import PipelineError
from pipeline.queries import REBALANCE

COLLISIONS_SHOWN = 20  # colliding ids named in the error; the count says how many in all


@dataclass(frozen=True)
class Copied:
    """A copy the target committed (this run's or an earlier one's)."""

    move_id: str
    rows: int
    hash: str
    inserted: int = 0  # rows written to the target (the others it held already)
    renumbered: int = 0


@dataclass
class MoveCounts:
    copied: Copied | None = None
    deleted: int = 0
    resumed: bool = False  # the copy was an earlier run's
    notes: list[str] = field(default_factory=list)


class IdConflict(PipelineError):
    """The target holds other rows under ids of the rows to move: nothing was changed."""

    def __init__(self, country: str, source: str, target: str, count: int, ids: list[int]):
        shown = ", ".join(map(str, ids)) + (", ..." if count > len(ids) else "")
        super().__init__(
            f"{country} {source} -> {target}: {count} row(s) have an id that {target} holds "
            f"for a different row ({shown}); nothing of {country} was moved (re-run with "
            "--on-id-conflict renumber to give them new ids there)"
        )
        self.count = count
        self.ids = ids


class SourceChanged(PipelineError):
    """The source's rows are no longer those verified on the target."""


@contextlib.contextmanager
def on_shard(name: str) -> Iterator[None]:
    """Tags a database error raised inside with the shard it came from (`shard_of`): a move
    talks to two shards at once, and psycopg's errors do not say which."""
    try:
        yield
    except psycopg.Error as exc:
        if not hasattr(exc, "rebalance_shard"):
            exc.rebalance_shard = name  # type: ignore[attr-defined]  # ours, read by shard_of
        raise


def shard_of(exc: psycopg.Error) -> str | None:
    """The shard an error came from, when `on_shard` said."""
    name = getattr(exc, "rebalance_shard", None)
    return name if isinstance(name, str) else None


def _read(rows: CopyOut, name: str) -> Iterator[Chunk]:
    with on_shard(name):
        yield from rows


def rows_hash(conn: psycopg.Connection[Any], rows: sql.Composable, params: Any) -> tuple[int, str]:
    row = conn.execute(REBALANCE.hash.format(rows=rows), params).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def unfinished(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    country: str,
    names: tuple[str, str],
) -> Copied | None:
    """The target's latest copy of `country` from the source whose delete the source has
    not recorded: a move an earlier run left half-way."""
    params = {"country": country, "source": names[0], "target": names[1]}
    with on_shard(names[1]), target.transaction():
        row = target.execute(REBALANCE.unfinished, params).fetchone()
    if row is None:
        return None
    with on_shard(names[0]), source.transaction():
        done = source.execute(REBALANCE.deleted, [row[0]]).fetchone()
    if done and done[0]:
        return None
    return Copied(str(row[0]), int(row[1]), str(row[2]))


def copy(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    country: str,
    names: tuple[str, str],
    renumber: bool,
) -> Copied:
    """Step 1: the country's rows onto the target, verified there, committed there."""
    move_id = str(uuid.uuid4())
    keys = {"country": country, "source": names[0], "target": names[1], "move_id": move_id}
    with source.transaction(), target.transaction():
        with on_shard(names[0]):
            count, digest = rows_hash(source, REBALANCE.source_rows, keys)
        rows = CopyOut(source, REBALANCE.copy_out.format(country=sql.Literal(country)))
        with on_shard(names[1]), target.cursor() as cursor:
            cursor.execute(REBALANCE.staging)
            with cursor.copy(REBALANCE.copy_in, writer=QueuedWriter(cursor)) as into:
                for chunk in _read(rows, names[0]):  # about 1 MB each, sent as the next is read
                    into.write(chunk)
            inserted, renumbered = _write(target, country, names, keys, renumber)
            held = rows_hash(target, REBALANCE.target_rows, keys)
        if held != (count, digest):
            # Cannot happen unless a server mangles rows: roll both sides back, say so.
            raise SourceChanged(
                f"{country} {names[0]} -> {names[1]}: {names[1]} holds {held[0]} row(s) after "
                f"the copy where {names[0]} has {count}, or other content; nothing was changed"
            )
        record = {**keys, "step": "copied", "rows": count, "hash": digest}
        with on_shard(names[1]):
            target.execute(REBALANCE.ledger_insert, {**record, "renumbered": renumbered})
    return Copied(move_id, count, digest, inserted, renumbered)


def _write(
    target: psycopg.Connection[Any],
    country: str,
    names: tuple[str, str],
    keys: dict[str, str],
    renumber: bool,
) -> tuple[int, int]:
    """The staged rows into the target's residents, but never over a different row: returns
    (rows inserted, rows renumbered), or raises IdConflict."""
    target.execute(REBALANCE.earlier_renumbered, keys)
    target.execute(REBALANCE.present, keys)
    target.execute(REBALANCE.sequence)
    renumbered = target.execute(REBALANCE.renumber).rowcount if renumber else 0
    found = target.execute(REBALANCE.collisions, [COLLISIONS_SHOWN]).fetchone()
    if found is not None and found[0]:
        ids = [int(i) for i in found[1]]
        raise IdConflict(country, names[0], names[1], int(found[0]), ids)
    inserted = target.execute(REBALANCE.insert).rowcount
    target.execute(REBALANCE.record_renumbered, keys)
    target.execute(REBALANCE.record_loads, keys)
    return inserted, renumbered


def delete(
    source: psycopg.Connection[Any], country: str, names: tuple[str, str], copied: Copied
) -> int | None:
    """Step 2: the country's rows off the source, if they are still the rows copied;
    returns how many were deleted, or None (nothing done) when they are not."""
    keys = {"country": country, "source": names[0], "target": names[1]}
    with on_shard(names[0]), source.transaction():
        if rows_hash(source, REBALANCE.source_rows, keys) != (copied.rows, copied.hash):
            return None
        deleted = source.execute(REBALANCE.delete, keys).rowcount
        record = {**keys, "move_id": copied.move_id, "step": "deleted", "rows": deleted}
        source.execute(
            REBALANCE.ledger_insert,
            {**record, "hash": copied.hash, "renumbered": copied.renumbered},
        )
    return deleted
