"""The checks no single database can answer, computed by the tool across shards.

- cross_shard_ids: ids present on more than one shard (the original data has some, by design);
- cross_shard_people: the same person (name, age, address) on more than one shard;
- ledger agreement (part of the `ledger` kind): every shard's ledger holds the same files.

For the first two every shard sends its ids (or a hash of the person fields, so that no
personal data leaves a shard) gathered in hash buckets, a few large rows instead of one
row a resident; the buckets are compared one at a time with numpy, and they are as many
as it takes for memory to hold about the same number of keys whatever the size. Two
different people on two shards whose 64-bit hashes collide would be reported as one: at
ten million residents the odds are about one in a million.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from pipeline.checks import SAMPLES, CheckError, CheckResult, CheckSpec, flat_sql
from pipeline.config import Shard, ShardMap
from pipeline.db import snapshot
from pipeline.dsn import scrub
from pipeline.errors import ShardError
from pipeline.sqlfiles import query

# Keys are gathered in hash buckets, as many as it takes for at most about KEYS_A_BUCKET keys
# a bucket on the largest shard; memory holds BUCKETS_A_FETCH buckets a shard, so it stays
# flat however large the shards grow. Buckets are a power of two: the top bits of the hash.
KEYS_A_BUCKET = 2048
BUCKETS_A_FETCH = 16  # a round trip: few enough to keep memory flat, enough to hide latency


def run_cross_shard(shard_map: ShardMap, spec: CheckSpec) -> CheckResult:
    """One check across shards: cross_shard_ids, cross_shard_people or ledger (agreement)."""
    try:
        if spec.kind == "cross_shard_ids":
            return _duplicates(shard_map, spec, "check_ids")
        if spec.kind == "cross_shard_people":
            return _duplicates(shard_map, spec, "check_people")
        if spec.kind == "ledger":
            return _ledger_agreement(shard_map, spec)
    except ShardError as exc:
        raise CheckError(str(exc)) from None
    except psycopg.Error as exc:
        raise CheckError(f"check {spec.name}: {' '.join(str(exc).split())}") from None
    raise ValueError(f"{spec.kind} is not a cross-shard check")


Bucket = tuple[int, int, np.ndarray, np.ndarray]  # bucket, shard index, keys, ids


def _duplicates(shard_map: ShardMap, spec: CheckSpec, name: str) -> CheckResult:
    """Keys found on more than one shard: every shard sends its keys in hash buckets, in
    bucket order, and the buckets are compared one at a time."""
    shards = [s for s in shard_map.shards if spec.applies_to(s.name)]
    failing, found = 0, list[tuple[int, str]]()  # (smallest id, sample) of the first groups
    with ExitStack() as stack:
        conns = [stack.enter_context(snapshot(shard_map, shard)) for shard in shards]
        sizes = [_on(shard, _size, conn) for shard, conn in zip(shards, conns, strict=True)]
        statement = query(name).format(shift=sql.Literal(_shift(max(sizes, default=0))))
        cursors = []
        for shard, conn in zip(shards, conns, strict=True):
            cursor = stack.enter_context(conn.cursor(name="cross_shard", binary=True))
            _on(shard, cursor.execute, statement)
            cursors.append(cursor)
        # The first fetch makes each server hash and sort its rows: let them work at once.
        with ThreadPoolExecutor(max_workers=len(cursors)) as pool:
            firsts = list(pool.map(_fetch, shards, cursors))
        streams = [
            _buckets(i, shard, cursor, first)
            for i, (shard, cursor, first) in enumerate(zip(shards, cursors, firsts, strict=True))
        ]
        merged = heapq.merge(*streams, key=lambda bucket: bucket[0])
        for _, group in itertools.groupby(merged, key=lambda bucket: bucket[0]):
            count, groups = _shared_keys([(i, keys, ids) for _, i, keys, ids in group], shards)
            failing += count
            found = sorted([*found, *groups])[:SAMPLES]
        text = statement.as_string(cursors[0].connection) if cursors else ""
    return _result(spec, failing, flat_sql(text), [sample for _, sample in found])


def _size(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(query("check_size")).fetchone()
    return int(row[0]) if row else 0


def _shift(rows: int) -> int:
    """How far to shift a 64-bit hash right to leave the bucket number: at least 64 buckets,
    at most 2**24, and about KEYS_A_BUCKET keys a bucket for `rows`."""
    bits = min(24, max(6, math.ceil(math.log2(max(rows, 1) / KEYS_A_BUCKET))))
    return 64 - bits


def _on(shard: Shard, action: Callable[..., Any], *args: Any) -> Any:
    """Run `action(*args)` on `shard`'s cursor; an error names that shard (not whichever
    shard's connection happens to unwind first)."""
    try:
        return action(*args)
    except psycopg.Error as exc:
        raise ShardError(shard.name, scrub(str(exc), shard.dsn)) from None


def _fetch(shard: Shard, cursor: Any) -> list[Any]:
    return list(_on(shard, cursor.fetchmany, BUCKETS_A_FETCH))


def _buckets(index: int, shard: Shard, cursor: Any, first: list[Any]) -> Iterator[Bucket]:
    rows = first
    while rows:
        for bucket, keys, ids in rows:
            found = np.array(keys, dtype=np.int64)
            # check_ids.sql sends the ids once, as the keys
            yield bucket, index, found, found if ids is None else np.array(ids, dtype=np.int64)
        rows = _fetch(shard, cursor)


def _shared_keys(
    parts: list[tuple[int, np.ndarray, np.ndarray]], shards: list[Shard]
) -> tuple[int, list[tuple[int, str]]]:
    """How many keys of one bucket are on more than one shard, and the SAMPLES of them with
    the smallest ids as samples ("default:1 = db_us:1"), each with that id to order by."""
    if len(parts) < 2:
        return 0, []
    every = np.concatenate([np.unique(keys) for _, keys, _ in parts])
    values, counts = np.unique(every, return_counts=True)
    shared = values[counts > 1]
    if not len(shared):
        return 0, []
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
            rows = conn.execute(query("check_ledger_files")).fetchall()
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
    statement = flat_sql(query("check_ledger_files").as_string())
    return _result(spec, failing, statement, samples)


def _result(spec: CheckSpec, failing: int, statement: str, samples: list[str]) -> CheckResult:
    return CheckResult(
        spec.name, spec.kind, spec.level, "*", failing, spec.threshold(), statement, samples
    )
