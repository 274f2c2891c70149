"""One country's rows moved from one shard to another: the copy, the verification, the delete.

`move_rows` reads the source in one REPEATABLE READ snapshot, so that the rows streamed
out, hashed and deleted are the same rows, whatever else happens on the shard:

1. stream the rows out with COPY (binary, about 1 MB at a time: pipeline.copyout) into the
   target (pipeline.copyin's queued writer sends while the source is read): straight into
   residents when the target holds none of the country, or else (or when an id is taken)
   into a staging table, from which the rows the target does not hold go in; the same row
   under the same id is left as it is, a different one is a collision (renumbered, or the
   move stops: IdConflict). Meanwhile a second session on the source, in the snapshot the
   copy's transaction exported, counts and hashes the rows (sql/rebalance/hash.sql), then
   deletes them (not committed);
2. once the copy is done, count and hash what the target now holds for them;
3. when the counts and hashes agree, commit the target, with a `copied` row in its move
   ledger (sql/migrations/0006_rebalance_ledger.sql), then the source, with a `deleted`
   row in its own; otherwise roll both back.

Killed before the target's commit, nothing happened; between the two commits, a re-run
finds the copy without its delete (`unfinished`) and deletes the rows (`delete`), once
they hash as they did, without copying them again. The caller (pipeline.rebalance) holds
both shards' load lock and orders the constraint changes around this.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from pipeline import threads, watchdog
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


class IdConflict(PipelineError):
    """The target holds other rows under ids of the rows to move: nothing was changed."""

    def __init__(self, country: str, target: str, count: int, ids: list[int]):
        shown = ", ".join(map(str, ids)) + (", ..." if count > len(ids) else "")
        super().__init__(
            f"{count} row(s) have an id that {target} holds "
            f"for a different row ({shown}); nothing of {country} was moved (re-run with "
            "--on-id-conflict renumber to give them new ids there)"
        )
        self.count = count
        self.ids = ids


class NotVerified(PipelineError):
    """The target does not hold the rows the source sent (count or hash): nothing changed."""


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


# The prefix of the digests sql/rebalance/hash.sql gives; earlier versions recorded those of
# hash_md5.sql (32 hex characters), which a move they left half-way is checked against.
DIGEST_PREFIX = "h64:"


def rows_hash(
    conn: psycopg.Connection[Any], rows: sql.Composable, params: Any, like: str = DIGEST_PREFIX
) -> tuple[int, str]:
    """The rows' count and digest, by the formula that gave `like` (a digest recorded)."""
    formula = REBALANCE.hash if like.startswith(DIGEST_PREFIX) else REBALANCE.hash_md5
    row = conn.execute(formula.format(rows=rows), params).fetchone()
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


def move_rows(
    source: psycopg.Connection[Any],
    beside: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    country: str,
    names: tuple[str, str],
    renumber: bool,
) -> tuple[Copied, int]:
    """The country's rows onto the target, verified, and off the source (see the module
    docstring; `beside` is a second session on the source); returns the copy and how many
    rows left the source."""
    move_id = str(uuid.uuid4())
    keys: dict[str, Any] = {
        "country": country, "source": names[0], "target": names[1], "move_id": move_id
    }  # fmt: skip
    with on_shard(names[0]), source.transaction(), beside.transaction():
        snapshot = source.execute(REBALANCE.export_snapshot).fetchone()
        assert snapshot is not None
        known = source.execute(REBALANCE.known_loads).fetchone()
        keys["known"] = known[0] if known else []
        with (
            _gone_beside(beside, str(snapshot[0]), keys) as gone,
            on_shard(names[1]),
            target.transaction(),
        ):
            inserted, renumbered, direct = _copy_in(source, target, keys, renumber)
            rows = REBALANCE.source_rows if direct else REBALANCE.target_rows
            held = rows_hash(target, rows, keys)
            (count, digest), deleted = threads.result(gone)
            if held != (count, digest) or deleted != count:
                # Cannot happen unless a server mangles rows: roll both back, say so.
                raise NotVerified(
                    f"{names[1]} holds {held[0]} row(s) "
                    f"after the copy where {names[0]} had {count} (deleting {deleted}), "
                    "or other content; nothing was changed"
                )
            record = {**keys, "step": "copied", "rows": count, "hash": digest}
            target.execute(REBALANCE.ledger_insert, {**record, "renumbered": renumbered})
        # The delete commits only after the target has.
        record = {**keys, "step": "deleted", "rows": deleted, "hash": digest}
        beside.execute(REBALANCE.ledger_insert, {**record, "renumbered": renumbered})
    return Copied(move_id, count, digest, inserted, renumbered), deleted


@contextlib.contextmanager
def _gone_beside(
    beside: psycopg.Connection[Any], snapshot: str, keys: dict[str, str]
) -> Iterator[Future[tuple[tuple[int, str], int]]]:
    """On a thread while the block copies the rows: from `beside`, in the copy's `snapshot`
    (a row changed since fails the delete: REPEATABLE READ), the source's count and hash of
    the rows, then their delete (committed by the caller, after the target); ((count,
    hash), rows deleted). Both used to follow the copy: on 10M rows the source hashed 10.5
    s, then deleted 8.5 s, after a 28 s copy during which its server mostly waited for the
    target's (bench/PROFILE.md, Session 22)."""

    stop = threading.Event()

    def hash_and_delete() -> tuple[tuple[int, str], int]:
        def go_on() -> None:
            if stop.is_set():  # the move failed meanwhile: no further
                raise psycopg.errors.QueryCanceled("the move stopped")

        with on_shard(keys["source"]):
            beside.execute(REBALANCE.use_snapshot.format(snapshot=sql.Literal(snapshot)))
            go_on()
            found = rows_hash(beside, REBALANCE.source_rows, keys)
            go_on()
            beside.execute(REBALANCE.forget_renumbered, keys)
            go_on()
            return found, beside.execute(REBALANCE.delete, keys).rowcount

    with threads.pool(1, "source") as pool:
        gone = pool.submit(hash_and_delete)
        try:
            yield gone
        except BaseException:
            # The move failed: the answer would not be read, and the pool's end waits for
            # its thread, so stop it rather than wait for it. A cancel that lands between
            # two of its statements is lost, so it is sent until the thread is done.
            stop.set()
            while not gone.done():
                watchdog.cancel(beside, watchdog.CANCEL_TIMEOUT_SECONDS)
                threads.wait_all([gone], timeout=threads.SLICE)
            raise


def _copy_in(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    keys: dict[str, str],
    renumber: bool,
) -> tuple[int, int, bool]:
    """The rows into the target's residents: (inserted, renumbered, whether straight in)."""
    taken = target.execute(REBALANCE.taken, keys).fetchone()
    if taken is not None and not taken[0]:
        try:
            with target.transaction():  # a savepoint: a taken id rolls back to here
                inserted = _stream(source, target, keys, REBALANCE.copy_direct)
                target.execute(REBALANCE.sequence_direct)
                target.execute(REBALANCE.record_loads_direct, keys)
            return inserted, 0, True
        except psycopg.errors.UniqueViolation:
            pass  # an id the target holds for another country's row: the staging way says
    target.execute(REBALANCE.staging)
    _stream(source, target, keys, REBALANCE.copy_in)
    inserted, renumbered = _write(target, keys, renumber)
    return inserted, renumbered, False


def _stream(
    source: psycopg.Connection[Any],
    target: psycopg.Connection[Any],
    keys: dict[str, str],
    into_statement: sql.SQL,
) -> int:
    """COPY the country's rows out of the source into the target; returns how many."""
    rows = CopyOut(source, REBALANCE.copy_out.format(country=sql.Literal(keys["country"])))
    with target.cursor() as cursor:
        with cursor.copy(into_statement, writer=QueuedWriter(cursor)) as into:
            for chunk in _read(rows, keys["source"]):  # about 1 MB, sent as the next is read
                into.write(chunk)
        return cursor.rowcount


def _write(
    target: psycopg.Connection[Any], keys: dict[str, str], renumber: bool
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
        raise IdConflict(keys["country"], keys["target"], int(found[0]), ids)
    inserted = target.execute(REBALANCE.insert).rowcount
    target.execute(REBALANCE.record_renumbered, keys)
    target.execute(REBALANCE.record_loads, keys)
    return inserted, renumbered


def delete(
    source: psycopg.Connection[Any], country: str, names: tuple[str, str], copied: Copied
) -> int | None:
    """Finishing a move an earlier run copied: the country's rows off the source, if they are
    still the rows copied; returns how many were deleted, or None (nothing done) when not."""
    keys = {"country": country, "source": names[0], "target": names[1]}
    done: int | None = None
    with on_shard(names[0]), source.transaction():
        found = rows_hash(source, REBALANCE.source_rows, keys, like=copied.hash)
        if found != (copied.rows, copied.hash):
            raise psycopg.Rollback()  # not the rows copied: none deleted
        source.execute(REBALANCE.forget_renumbered, keys)
        deleted = source.execute(REBALANCE.delete, keys).rowcount
        record = {**keys, "move_id": copied.move_id, "step": "deleted", "rows": deleted}
        source.execute(
            REBALANCE.ledger_insert,
            {**record, "hash": copied.hash, "renumbered": copied.renumbered},
        )
        done = deleted
    return done
