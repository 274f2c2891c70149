"""The checks no single database can answer, computed by the tool across shards.

- cross_shard_ids: ids present on more than one shard (the original data has some, by design);
- cross_shard_people: the same person (name, age, address) on more than one shard;
- ledger agreement (part of the `ledger` kind): every shard's ledger holds the same files.

For the first two every shard sends its ids (or the person key, a 64-bit hash of the person
fields that PostgreSQL keeps with each row, with the id: no personal data leaves a shard) in
chunks of the table read in order, one bytea of 8-byte integers a chunk in COPY's binary
format, which numpy reads as they come: the servers neither sort nor hash (sorting into
buckets cost them more than the rest of the checks), and no Python code runs a key. Here the keys
are spread over partitions by a hash of the key, as many as it takes for a partition of
every shard to fit in memory at once (KEYS_A_PARTITION keys a shard at most); past one
partition they wait in temporary files (in TMPDIR, 16 bytes a resident for the people, 8 for
the ids) and the partitions are compared one at a time, so memory stays flat however large
the shards grow. Two different people on two shards whose 64-bit hashes collide would be
reported as one: at ten million residents the odds are about one in a million.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from pipeline import threads
from pipeline.checks import SAMPLES, CheckError, CheckResult, CheckSpec, flat_sql
from pipeline.config import Shard, ShardMap
from pipeline.copyout import CopyOut
from pipeline.db import snapshot
from pipeline.dsn import scrub
from pipeline.errors import ShardError
from pipeline.queries import CHECK
from pipeline.schema import current_version, latest_version
from pipeline.spools import spool_errors

# A partition holds at most about KEYS_A_PARTITION keys of the largest shard (2 MB of keys
# and ids); partitions are a power of two, at most 2**MAX_PARTITION_BITS (past 2**29
# residents a shard they grow instead). Keys are written to a partition's file once
# SPILL_ROWS of them wait, so that a file is opened a few times, not once a COPY chunk.
# Both were 65,536: a 10M-row check spent most of its client's time opening partition
# files (128 a flush, a flush every 65,536 keys); at 131,072 it takes a third less time
# (10M rows: 11.6 -> 7.9-8.7 s, peak 70 -> 76 MB, and 76 MB at 1M: flat).
KEYS_A_PARTITION = 1 << 17
MAX_PARTITION_BITS = 12
SPILL_ROWS = 1 << 17
# A chunk of the table sent at once: CHUNK_BLOCKS blocks of 8 kB (about 8,000 residents),
# or on PostgreSQL 13, which cannot scan a range of blocks, about CHUNK_ROWS residents.
CHUNK_BLOCKS = 128
CHUNK_ROWS = 8192
TID_RANGES_SINCE = 140000  # server_version_num of the first release with TID range scans
# Fibonacci hashing: spreads ids (and re-spreads hashes) over the partitions' top bits.
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"  # the binary COPY header starts with it
_TRAILER = b"\xff\xff"  # and ends with a field count of -1


def run_cross_shard(shard_map: ShardMap, specs: list[CheckSpec]) -> list[CheckResult]:
    """Checks across shards: the ledger's agreement, one by one, or cross_shard_ids and
    cross_shard_people on the same shards, together from one read of each shard (the
    person keys come with the ids)."""
    try:
        if all(spec.kind == "ledger" for spec in specs):
            return [_ledger_agreement(shard_map, spec) for spec in specs]
        if all(spec.kind in KEYS for spec in specs) and len({s.shards for s in specs}) == 1:
            return _duplicates(shard_map, specs)
    except ShardError as exc:
        raise CheckError(str(exc)) from None
    except psycopg.Error as exc:
        raise CheckError(f"check {specs[0].name}: {' '.join(str(exc).split())}") from None
    raise ValueError(f"{[s.kind for s in specs]} cannot run together across shards")


# The duplicate checks: the query that sends their keys, and how many columns it has.
KEYS = {"cross_shard_ids": (CHECK.ids, 1), "cross_shard_people": (CHECK.people, 2)}
# Their results' `sql`: the keys as a person would ask for them, not the chunked read.
SHOWN = {"cross_shard_ids": CHECK.ids_shown, "cross_shard_people": CHECK.people_shown}


def _duplicates(shard_map: ShardMap, specs: list[CheckSpec]) -> list[CheckResult]:
    """Keys found on more than one shard, for each of `specs` (which run on the same shards):
    every shard sends its keys once (the ids alone, or the person keys with the ids), they
    are partitioned here, a partition a check and shard, and the partitions are compared
    one at a time."""
    shards = [s for s in shard_map.shards if specs[0].applies_to(s.name)]
    # people.sql sends the ids too: one read serves both checks
    aggregates, columns = max((KEYS[spec.kind] for spec in specs), key=lambda k: k[1])
    with ExitStack() as stack:
        conns = [stack.enter_context(snapshot(shard_map, shard)) for shard in shards]
        people = [spec for spec in specs if spec.kind == "cross_shard_people"]
        if people:
            _same_person_keys(people[0], shards, conns)
        sizes = [_on(shard, _size, conn) for shard, conn in zip(shards, conns, strict=True)]
        bits = _bits(max(sizes, default=0))
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pipeline-check-")))
        # spills[check][shard]; the ids are the last column of every query
        spills = [
            [Spill(folder / f"{c}-{i}", bits, KEYS[spec.kind][1]) for i in range(len(shards))]
            for c, spec in enumerate(specs)
        ]
        statements = [
            _chunks(conn, aggregates, size) for conn, size in zip(conns, sizes, strict=True)
        ]

        def read(i: int) -> None:
            mine = [per_shard[i] for per_shard in spills]
            _on(shards[i], _read_keys, conns[i], statements[i], columns, mine)

        # Every server scans at once; each thread waits in select, not in libpq.
        with threads.pool(max(1, len(shards)), "keys") as pool:
            for done in [pool.submit(read, i) for i in range(len(shards))]:
                threads.result(done)
        # The checks' partitions are compared once every shard has sent its keys, with the
        # servers done: each check on a core of its own (numpy's sorts let go of Python's
        # lock). 10M rows, both checks: the last 1.3 s of the check, now 0.7 s.
        with threads.pool(len(specs), "compare") as pool:
            compared = [
                pool.submit(_compare, spec, shards, per_shard, bits)
                for spec, per_shard in zip(specs, spills, strict=True)
            ]
            return [threads.result(done) for done in compared]


def _same_person_keys(
    spec: CheckSpec, shards: list[Shard], conns: list[psycopg.Connection[Any]]
) -> None:
    """CheckError unless every shard's person keys are this version's: a shard whose
    migrations are behind keeps keys of another formula (migration 9 changed it), which would
    match nobody's, and the check would pass without comparing anything."""
    latest = latest_version()
    for shard, conn in zip(shards, conns, strict=True):
        version = _on(shard, current_version, conn)
        if version != latest:
            raise CheckError(
                f"check {spec.name}: shard {shard.name} is at schema version {version}, this"
                f" pipeline's is {latest}: its person keys do not compare with the others';"
                " run `pipeline init`"
            )


def _compare(spec: CheckSpec, shards: list[Shard], spills: list[Spill], bits: int) -> CheckResult:
    """One check's result from its shards' partitioned keys."""
    failing, found = (
        0,
        list[tuple[int, str]](),
    )  # (smallest id, sample) of the first groups
    for partition in range(1 << bits):
        parts = [(i, *spill.read(partition)) for i, spill in enumerate(spills)]
        count, groups = _shared_keys(parts, shards)
        failing += count
        found = sorted([*found, *groups])[:SAMPLES]
    shown = flat_sql(SHOWN[spec.kind].as_string())
    return _result(spec, failing, shown, [sample for _, sample in found])


def _chunks(conn: psycopg.Connection[Any], aggregates: sql.Composable, rows: int) -> sql.Composable:
    """The query sending a shard's keys (`aggregates`: CHECK.ids or CHECK.people) in chunks of
    a few thousand rows: by TID ranges, or on PostgreSQL 13 by groups of ids."""
    if conn.info.server_version >= TID_RANGES_SINCE:
        return CHECK.keys.format(aggregates=aggregates, blocks=sql.Literal(CHUNK_BLOCKS))
    groups = max(1, rows // CHUNK_ROWS)
    return CHECK.keys_pg13.format(aggregates=aggregates, groups=sql.Literal(groups))


def _size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(CHECK.size).fetchone()
    return int(row[0]) if row else 0


def _bits(rows: int) -> int:
    """How many top bits of a key's mixed hash name its partition: about KEYS_A_PARTITION
    keys a partition for `rows`."""
    wanted = math.ceil(math.log2(max(rows, 1) / KEYS_A_PARTITION)) if rows > KEYS_A_PARTITION else 0
    return min(MAX_PARTITION_BITS, wanted)


def _on(shard: Shard, action: Callable[..., Any], *args: Any) -> Any:
    """Run `action(*args)` on `shard`'s connection; an error names that shard (not whichever
    shard's connection happens to unwind first)."""
    try:
        return action(*args)
    except psycopg.Error as exc:
        raise ShardError(shard.name, scrub(str(exc), shard.dsn)) from None


class Spill:
    """One shard's keys and ids by partition: in memory while there is one partition,
    else in a file a partition, written SPILL_ROWS rows at a time."""

    def __init__(self, folder: Path, bits: int, columns: int) -> None:
        self.folder, self.bits, self.columns = folder, bits, columns
        self.waiting: list[np.ndarray] = []  # rows of `columns` int64: key (and id)
        self.held = 0
        if bits:
            folder.mkdir()

    def add(self, rows: np.ndarray) -> None:
        self.waiting.append(rows)
        self.held += len(rows)
        if self.bits and self.held >= SPILL_ROWS:
            self.flush()

    def flush(self) -> None:
        """Write the waiting rows to their partitions' files (with one partition, they stay)."""
        if not self.bits or not self.waiting:
            return
        rows = np.concatenate(self.waiting)
        self.waiting, self.held = [], 0
        mixed = rows[:, 0].view(np.uint64) * _MIX  # wraps around: modulo 2**64, as meant
        # Partitions fit 16 bits (MAX_PARTITION_BITS): numpy's stable sort of int16 is a
        # radix sort, eight times faster than of int64.
        partition = (mixed >> np.uint64(64 - self.bits)).astype(np.int16)
        order = np.argsort(partition, kind="stable")
        rows, partition = rows[order], partition[order]
        bounds = np.searchsorted(partition, np.arange((1 << self.bits) + 1))
        with spool_errors():  # the folder is in $TMPDIR
            for p in np.flatnonzero(np.diff(bounds)):
                with (self.folder / str(p)).open("ab") as out:
                    out.write(rows[bounds[p] : bounds[p + 1]].tobytes())

    def read(self, partition: int) -> tuple[np.ndarray, np.ndarray]:
        """The keys and ids of one partition (for ids, the same array twice)."""
        if not self.bits:
            rows = np.concatenate(self.waiting) if self.waiting else _empty(self.columns)
        else:
            path = self.folder / str(partition)
            rows = _empty(self.columns)
            if path.exists():
                rows = np.fromfile(path, dtype=np.int64).reshape(-1, self.columns)
                path.unlink()  # its disk space back before the next partition
        return rows[:, 0], rows[:, self.columns - 1]


def _empty(columns: int) -> np.ndarray:
    return np.empty((0, columns), dtype=np.int64)


def _read_keys(
    conn: psycopg.Connection[Any],
    statement: sql.Composable,
    columns: int,
    spills: list[Spill],
) -> None:
    """A shard's keys, from a binary COPY of their chunks, into each of `spills`: a spill of
    one column takes the ids (the last column), a spill of two the person keys and ids."""
    copy = CHECK.copy.format(rows=statement)
    for rows in _binary_keys(CopyOut(conn, copy), columns):
        for spill in spills:
            spill.add(rows[:, columns - spill.columns :])
    for spill in spills:
        spill.flush()


def _binary_keys(chunks: Iterable[bytes | bytearray], columns: int) -> Iterator[np.ndarray]:
    """From COPY's binary format, rows of one bytea of `columns` big-endian int64 a resident
    (ids.sql, people.sql): each row as an int64 array of `columns` columns.

    A row is a field count (int16, here 1), then the field's length (int32) and its bytes.
    The stream starts with a header and ends with a trailer. A partial row is carried over."""
    data, at, started = b"", 0, False
    for chunk in chunks:
        data = data[at:] + chunk if at < len(data) else bytes(chunk)
        at = 0
        if not started:
            if len(data) < 19:  # the header: signature, flags, extension length
                continue
            if data[:11] != _SIGNATURE:
                raise psycopg.DataError("not COPY's binary format")
            at = 19 + int.from_bytes(data[15:19], "big")
            started = True
        while (row := _keys_row(data, at, columns)) is not None:
            at, keys = row
            yield keys
    if data[at:] != _TRAILER:
        raise psycopg.DataError("the COPY ended inside a row")


def _keys_row(data: bytes, at: int, columns: int) -> tuple[int, np.ndarray] | None:
    """The row of keys at `at` in `data` and where the next starts; None if not whole."""
    if len(data) - at < 2 or data[at : at + 2] == _TRAILER:
        return None
    if int.from_bytes(data[at : at + 2], "big", signed=True) != 1:
        raise psycopg.DataError("expected one column a row")
    if len(data) - at < 6:
        return None
    length = int.from_bytes(data[at + 2 : at + 6], "big", signed=True)
    if length == -1:
        raise psycopg.DataError("a chunk of keys was NULL")
    if length < 0 or length % (8 * columns):
        raise psycopg.DataError(f"a chunk of keys was not {columns} bigint a resident")
    if len(data) - at - 6 < length:
        return None
    keys = np.frombuffer(data, dtype=">i8", count=length // 8, offset=at + 6)
    return at + 6 + length, keys.astype(np.int64).reshape(-1, columns)


def _shared_keys(
    parts: list[tuple[int, np.ndarray, np.ndarray]], shards: list[Shard]
) -> tuple[int, list[tuple[int, str]]]:
    """How many keys of one bucket are on more than one shard, and the SAMPLES of them with
    the smallest ids as samples ("default:1 = db_us:1"), each with that id to order by."""
    if len(parts) < 2:
        return 0, []
    # Each shard's distinct keys, side by side and sorted: a key shared by shards is there
    # more than once. Sorting, not np.unique, which hashes: measured ten times faster here.
    every = np.sort(np.concatenate([_distinct(keys) for _, keys, _ in parts]))
    repeated = every[1:][every[1:] == every[:-1]]
    if not len(repeated):
        return 0, []
    shared = _distinct(repeated)  # a key on three shards is repeated twice
    keys = np.concatenate([keys for _, keys, _ in parts])
    ids = np.concatenate([ids for _, _, ids in parts])
    chosen = np.isin(keys, shared)
    keys, ids = keys[chosen], ids[chosen]
    order = np.lexsort((ids, keys))  # by key, then id: each key's first entry is its smallest id
    keys, ids = keys[order], ids[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    smallest = np.argsort(ids[starts], kind="stable")[:SAMPLES]
    groups = []
    for key in keys[starts[smallest]]:
        members = sorted((i, int(rid)) for i, k, found in parts for rid in found[k == key])
        text = " = ".join(f"{shards[i].name}:{rid}" for i, rid in members)
        groups.append((min(rid for _, rid in members), text))
    return len(shared), groups


def _distinct(keys: np.ndarray) -> np.ndarray:
    """The distinct keys, sorted."""
    ordered = np.sort(keys)
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _ledger_agreement(shard_map: ShardMap, spec: CheckSpec) -> CheckResult:
    """Files some shards' ledgers hold and others do not: a load that did not complete.

    A file counts as missing on a shard only if that shard was already loading when the
    file was first loaded somewhere: a shard added to the map later holds no earlier file.
    """
    held: dict[str, dict[str, tuple[str, Any]]] = {}  # shard -> sha -> (file, loaded at)
    started: dict[str, Any] = {}  # shard -> its first load, if any
    for shard in shard_map.shards:
        if not spec.applies_to(shard.name):
            continue
        with snapshot(shard_map, shard) as conn:
            rows = conn.execute(CHECK.ledger_files).fetchall()
        held[shard.name] = {sha: (file, at) for sha, file, at, _ in rows}
        started[shard.name] = rows[0][3] if rows else None
    first: dict[str, tuple[str, Any]] = {}
    for files in held.values():
        for sha, (file, at) in files.items():
            if sha not in first or at < first[sha][1]:
                first[sha] = (file, at)
    samples, failing = list[str](), 0
    for sha, (file, at) in sorted(first.items(), key=lambda item: item[1][1]):
        lacking = [
            name
            for name, files in held.items()
            if sha not in files and started[name] is not None and started[name] <= at
        ]
        if lacking:
            failing += 1
            if len(samples) < SAMPLES:
                samples.append(f"{file} not on {', '.join(lacking)}")
    statement = flat_sql(CHECK.ledger_files.as_string())
    return _result(spec, failing, statement, samples)


def _result(spec: CheckSpec, failing: int, statement: str, samples: list[str]) -> CheckResult:
    return CheckResult(
        spec.name,
        spec.kind,
        spec.level,
        "*",
        failing,
        spec.threshold(),
        statement,
        samples,
    )
