"""The checks no single database can answer, computed by the tool across shards.

- cross_shard_ids: ids present on more than one shard (the original data has some, by design);
- cross_shard_people: the same person (name, age, address) on more than one shard;
- ledger agreement (part of the `ledger` kind): every shard's ledger holds the same files.

The first two stream each shard's sorted ids (or digests of the person fields, so that no
personal data leaves a shard) and merge them: memory stays constant whatever the size.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from pipeline.checks import SAMPLES, CheckError, CheckResult, CheckSpec, flat_sql
from pipeline.config import ShardMap
from pipeline.errors import ShardError
from pipeline.extract import snapshot
from pipeline.sqlfiles import query


def run_cross_shard(shard_map: ShardMap, specs: list[CheckSpec]) -> list[CheckResult]:
    results = []
    try:
        for spec in specs:
            if spec.kind == "cross_shard_ids":
                results.append(_duplicates(shard_map, spec, "check_ids", _id_key))
            elif spec.kind == "cross_shard_people":
                results.append(_duplicates(shard_map, spec, "check_people", _person_key))
            elif spec.kind == "ledger":
                results.append(_ledger_agreement(shard_map, spec))
    except ShardError as exc:
        raise CheckError(str(exc)) from None
    return results


def _id_key(line: bytes) -> tuple[Any, str]:
    return int(line), line.decode()


def _person_key(line: bytes) -> tuple[Any, str]:
    digest, _, rid = line.partition(b"\t")
    return digest, rid.decode()


def _duplicates(shard_map: ShardMap, spec: CheckSpec, name: str, key: Any) -> CheckResult:
    """Keys found on more than one shard, by merging every shard's key-ordered stream."""
    shards = [s for s in shard_map.shards if spec.applies_to(s.name)]
    failing, samples = 0, list[str]()
    with ExitStack() as stack:
        streams = []
        for shard in shards:
            conn = stack.enter_context(snapshot(shard_map, shard))
            streams.append(_tagged(_lines(stack, conn, name), key, shard.name))
        merged = heapq.merge(*streams, key=lambda item: item[0])
        for _, group in itertools.groupby(merged, key=lambda item: item[0]):
            found = list(group)
            if len({shard for _, _, shard in found}) > 1:
                failing += 1
                if len(samples) < SAMPLES:
                    samples.append(" = ".join(f"{shard}:{rid}" for _, rid, shard in found))
    statement = flat_sql(query(name).as_string())
    return _result(spec, failing, statement, samples)


def _lines(stack: ExitStack, conn: Any, name: str) -> Iterator[bytes]:
    cursor = stack.enter_context(conn.cursor())
    copy = stack.enter_context(cursor.copy(query(name)))
    rest = b""
    for block in copy:
        lines = (rest + bytes(block)).split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def _tagged(lines: Iterator[bytes], key: Any, shard: str) -> Iterator[tuple[Any, str, str]]:
    for line in lines:
        k, rid = key(line)
        yield k, rid, shard


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
