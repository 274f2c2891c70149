"""The `erasures` check of `pipeline check`: no person `pipeline erase` removed is on any
shard again (put back by hand, by another tool, or by a load that ran without the log).

Every shard's erasure log is read first (a few rows), and the logs taken together: any
shard's log is enough. No erasure anywhere: every shard passes, and no shard is scanned.
Otherwise each shard, at once, in its own snapshot, hashes its residents' names on the
server (sql/erase/person.sql, the same HMAC as the load's, with the key's padded halves as
parameters: the key is never sent, and no name leaves the shard) and hashes again, at each
erasure's level, only the residents whose name was erased (sql/check/erasures.sql). A
shard whose own log lacks an erasure that another holds (an erase that failed there and
was not run again) fails too.

It cannot verify without the erasure key, or with another key than the erasures were
made with: then every shard fails, the sample saying why, rather than pass unverified.
"""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pipeline.checks import SAMPLES, CheckError, CheckResult, CheckSpec, flat_sql
from pipeline.config import Shard, ShardMap
from pipeline.db import snapshot
from pipeline.erase import Entry, read_log
from pipeline.erasure_key import ErasureKey, erasure_key
from pipeline.errors import PipelineError
from pipeline.queries import CHECK, ERASE
from pipeline.shards import on_every_shard


def run_erasures(shard_map: ShardMap, spec: CheckSpec) -> list[CheckResult]:
    """The erasures check on each of the spec's shards (see the module docstring)."""
    logs = _logs(shard_map)
    every = {e.key: e for log in logs.values() for e in log}
    shards = [s for s in shard_map.shards if spec.applies_to(s.name)]
    if not every:
        text = flat_sql(ERASE.log.as_string())
        return [_result(spec, shard, 0, [], text) for shard in shards]
    key = erasure_key(shard_map)
    why = _unverifiable(key, every.values())
    if why is not None or key is None:
        text = flat_sql(ERASE.log.as_string())
        return [_result(spec, shard, len(every), [why or ""], text) for shard in shards]
    statement = _statement()
    params = {
        **key.pads(),
        "names": sorted({bytes(e.name_hash) for e in every.values()}),
        "levels": [e.fields for e in every.values()],
        "hashes": [bytes(e.person_hash) for e in every.values()],
    }

    def one(shard: Shard) -> CheckResult:
        with snapshot(shard_map, shard) as conn:
            row = conn.execute(statement, params).fetchone()
            text = flat_sql(statement.as_string(conn))
        assert row is not None
        count, ids = int(row[0]), [str(i) for i in row[1]]
        lacking = len(every.keys() - {e.key for e in logs[shard.name]})
        if lacking:
            count += lacking
            ids.append(
                f"its erasure log lacks {lacking} erasure(s) other shards hold: run the erase again"
            )
        return _result(spec, shard, count, ids[:SAMPLES], text)

    return [_unwrapped(o.error, o.value) for o in on_every_shard(shards, one)]


def _logs(shard_map: ShardMap) -> dict[str, list[Entry]]:
    """Every shard's log; a shard that cannot be read stops the checks (exit 2)."""

    def read(shard: Shard) -> list[Entry]:
        with snapshot(shard_map, shard) as conn:
            return read_log(conn, shard)

    return {
        o.shard.name: _unwrapped(o.error, o.value) for o in on_every_shard(shard_map.shards, read)
    }


def _unwrapped(error: PipelineError | None, value: Any) -> Any:
    if error is not None:
        raise CheckError(f"check erasures: {error}")
    return value


def _unverifiable(key: ErasureKey | None, entries: Any) -> str | None:
    """Why the check cannot verify the erasures, if it cannot."""
    entries = list(entries)
    if key is None:
        return (
            f"cannot verify {len(entries)} erasure(s): no erasure key (set PIPELINE_ERASURE_KEY"
            " or erasure_key_file: in the shard map)"
        )
    others = sum(1 for e in entries if bytes(e.key_id) != key.key_id)
    if others:
        return f"cannot verify {others} erasure(s) made with another erasure key"
    return None


def _statement() -> sql.Composed:
    row = sql.Identifier("r")
    return CHECK.erasures.format(
        name=ERASE.person.format(fields=sql.Literal("name"), row=row),
        person=ERASE.person.format(fields=sql.SQL("l.fields"), row=row),
    )


def _result(
    spec: CheckSpec, shard: Shard, failing: int, samples: list[str], text: str
) -> CheckResult:
    return CheckResult(
        spec.name, spec.kind, spec.level, shard.name, failing, spec.threshold(), text, samples
    )
