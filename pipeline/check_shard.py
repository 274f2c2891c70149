"""The checks that run on one shard: each compiles to one query returning its failing rows
(sql/check/*.sql), which yields its count and at most SAMPLES samples. The row checks
(residency, not_null, accepted_values, between), the row count and load reconciliation are
counted together in one scan of the shard first (sql/check/counts.sql); a check that fails
there runs its own query for its samples. The shards run in parallel
(pipeline.shards.on_every_shard), each in one REPEATABLE READ snapshot.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pipeline.checks import NOT_PER_SHARD, SAMPLES, CheckError, CheckResult, CheckSpec, flat_sql
from pipeline.columns import RESIDENTS
from pipeline.config import Shard, ShardMap
from pipeline.db import error_text, snapshot
from pipeline.errors import ShardError
from pipeline.queries import CHECK
from pipeline.schema import latest_version, residency_rule
from pipeline.shards import on_every_shard

# Kinds answered by counting rows that meet a condition: on a shard they all share one scan.
ROW_KINDS = {"residency", "not_null", "accepted_values", "between"}


def row_condition(
    spec: CheckSpec, shard_map: ShardMap, shard: Shard
) -> tuple[sql.Composable, sql.Composable]:
    """A row check's condition on `shard` (true for a failing row) and its sample expression."""
    p = spec.params
    sample: sql.Composable = CHECK.id_sample
    if spec.kind == "residency":
        condition = CHECK.residency.format(rule=residency_rule(shard_map, shard).condition())
        sample = CHECK.residency_sample
    elif spec.kind == "not_null":
        # One condition a column, joined here: how many is the check's configuration.
        condition = sql.SQL(" OR ").join(
            CHECK.not_null.format(column=sql.Identifier(c)) for c in p["columns"]
        )
    elif spec.kind == "accepted_values":
        column = sql.Identifier(p["column"])
        values = sql.SQL(", ").join(sql.Literal(str(v)) for v in p["values"])
        condition = CHECK.accepted_values.format(column=column, values=values)
        sample = CHECK.accepted_values_sample.format(name=sql.Literal(p["column"]), column=column)
    elif spec.kind == "between":
        condition = CHECK.between.format(
            column=sql.Identifier(p["column"]),
            min=sql.Literal(p.get("min", 0)),
            max=sql.Literal(p.get("max", 2**31)),
        )
    else:
        raise ValueError(f"{spec.kind} is not a row check")
    return condition, sample


def failing_query(spec: CheckSpec, shard_map: ShardMap, shard: Shard) -> sql.Composable:
    """The query that returns `spec`'s failing rows on `shard` (columns: sample, detail)."""
    p = spec.params
    if spec.kind in ROW_KINDS:
        condition, sample = row_condition(spec, shard_map, shard)
        return CHECK.rows.format(sample=sample, condition=condition)
    if spec.kind == "schema":
        expected = sql.SQL(", ").join(
            sql.SQL("({}, {})").format(sql.Literal(c.name), sql.Literal(c.pg_type))
            for c in RESIDENTS
        )  # rows of VALUES, one a column: built from the declaration
        return CHECK.schema.format(expected=expected, latest=sql.Literal(latest_version()))
    if spec.kind == "row_count":
        low, high = sql.Literal(p.get("min", 0)), sql.Literal(p.get("max", 2**62))
        # "17 rows (expected 20..any)": the figure beside what it failed.
        wanted = sql.Literal(f" rows (expected {spec.rows_expected()})")
        return CHECK.row_count.format(min=low, max=high, expected=wanted)
    if spec.kind == "ledger":
        return CHECK.ledger.format(written=CHECK.ledger_written)
    if spec.kind == "custom_sql":
        return CHECK.custom.format(custom=_custom(spec))
    if spec.kind == "unique":
        columns = sql.SQL(", ").join(map(sql.Identifier, p["columns"]))
        return CHECK.unique.format(columns=columns)
    raise ValueError(f"no per-shard query for {spec.kind}")


def run_on_shard(
    shard_map: ShardMap,
    shard: Shard,
    specs: list[CheckSpec],
    show_samples: bool = False,
) -> list[CheckResult]:
    """Every per-shard check on one shard, in one snapshot.

    The row checks are counted together in one scan (sql/check/counts.sql); only a
    check that fails runs its own query, for its first samples. Each other check runs its
    own query through sql/check/run.sql (a count and the first samples at once).
    With --show-samples, samples and rows come from one query, so that they match.
    """
    results = []
    try:
        with snapshot(shard_map, shard) as conn:
            counted = _count_row_checks(conn, shard_map, shard, specs)
            for spec in specs:
                failing = failing_query(spec, shard_map, shard)
                try:
                    count, samples, details = _found(
                        conn, failing, counted.get(spec.name), show_samples
                    )
                except psycopg.Error as exc:
                    message = error_text(exc, shard.dsn)
                    if spec.kind == "custom_sql" and exc.diag.statement_position is not None:
                        message = _custom_error(conn, spec) or message
                    raise CheckError(
                        f"check {spec.name} on shard {shard.name}: {message}"
                    ) from None
                results.append(
                    CheckResult(
                        name=spec.name,
                        kind=spec.kind,
                        level=spec.level,
                        shard=shard.name,
                        failing=count,
                        threshold=spec.threshold(),
                        sql=flat_sql(failing.as_string(conn)),
                        samples=samples,
                        details=details,
                    )
                )
    except ShardError as exc:
        raise CheckError(str(exc)) from None
    return results


def _count_row_checks(
    conn: psycopg.Connection[Any],
    shard_map: ShardMap,
    shard: Shard,
    specs: list[CheckSpec],
) -> dict[str, int]:
    """Check name -> failing rows, from one scan (sql/check/counts.sql): every row check,
    and the row count and load reconciliation when they pass (when one fails, its own
    query finds its samples)."""
    rows = [s for s in specs if s.kind in ROW_KINDS]
    sizes = [s for s in specs if s.kind == "row_count"]
    ledgers = [s for s in specs if s.kind == "ledger"]
    if not rows and not sizes and not ledgers:
        return {}
    counts = sql.SQL(", ").join(
        [sql.SQL("count(*)")]
        + [
            CHECK.failing_count.format(condition=row_condition(s, shard_map, shard)[0])
            for s in rows
        ]
    )
    by_load = sql.SQL("load_id") if ledgers else sql.SQL("NULL::uuid")
    group = sql.SQL("GROUP BY load_id") if ledgers else sql.SQL("")
    try:
        with conn.transaction():  # a savepoint: on an error, the checks run one by one
            found = conn.execute(
                CHECK.counts.format(by_load=by_load, counts=counts, group=group)
            ).fetchall()
            written = dict(conn.execute(CHECK.ledger_written).fetchall()) if ledgers else {}
    except psycopg.Error:
        return {}  # each check runs its own query, and an error names its check
    counted = {spec.name: sum(int(row[2 + i]) for row in found) for i, spec in enumerate(rows)}
    total = sum(int(row[1]) for row in found)
    for spec in sizes:
        if spec.params.get("min", 0) <= total <= spec.params.get("max", 2**62):
            counted[spec.name] = 0
    over = [load for load, n, *_ in found if load is not None and n > written.get(load, 0)]
    for spec in ledgers:
        if not over:
            counted[spec.name] = 0
    return counted


def _found(
    conn: psycopg.Connection[Any],
    failing: sql.Composable,
    counted: int | None,
    show_samples: bool,
) -> tuple[int, list[Any], list[Any]]:
    """A check's failing rows: (how many, the first samples, with --show-samples the rows),
    its count taken from the row checks' scan when that counted it."""
    if counted is not None:
        count, samples = counted, []
    else:
        statement = CHECK.run.format(failing=failing, limit=sql.Literal(SAMPLES))
        row = conn.execute(statement).fetchone()
        assert row is not None
        count, samples = int(row[0]), list(row[1])
    details = []
    if count and (show_samples or not samples):
        # Samples and rows from one query, so that they describe the same rows.
        first = _first(conn, failing, show_samples)
        samples = [r[0] for r in first]
        # A check whose failures are not rows (the ledger's loads, the schema's columns)
        # has no row to show: its samples say it all.
        details = [r[1] for r in first if r[1] is not None] if show_samples else []
    return count, samples, details


def _custom(spec: CheckSpec) -> sql.Composable:
    return sql.SQL(str(spec.params["sql"]).strip().rstrip(";"))  # the user's own query


def _custom_error(conn: psycopg.Connection[Any], spec: CheckSpec) -> str | None:
    """For a custom_sql check whose query failed at a place in its text: the error of the
    user's own query, planned alone (sql/check/custom_alone.sql), with where in it the
    server found it; None when it plans. The check stops on this error: the snapshot's
    transaction, which the error ended, is rolled back first."""
    conn.rollback()
    alone = CHECK.custom_alone.format(custom=_custom(spec))
    before = len(CHECK.custom_alone.format(custom=sql.SQL("")).as_string(conn))
    try:
        conn.execute(alone)
    except psycopg.Error as exc:
        message = exc.diag.message_primary or _one_line(exc)
        at = exc.diag.statement_position
        if at is not None and int(at) > before:
            message += f" (character {int(at) - before} of its sql)"
        if exc.diag.message_hint:
            message += f" {exc.diag.message_hint}"
        return message
    return None


def _first(
    conn: psycopg.Connection[Any], failing: sql.Composable, with_rows: bool
) -> list[tuple[Any, Any]]:
    """The first SAMPLES failing rows of a check: (sample, the row in full or None)."""
    detail = sql.Identifier("detail") if with_rows else sql.NULL
    statement = CHECK.first.format(detail=detail, failing=failing, limit=sql.Literal(SAMPLES))
    return [(row[0], row[1]) for row in conn.execute(statement)]


def run_per_shard(
    shard_map: ShardMap, specs: list[CheckSpec], show_samples: bool = False
) -> list[CheckResult]:
    """The per-shard checks on every shard at once; results in shard-map order. A shard that
    could not run them raises its CheckError (the first such shard in shard-map order)."""

    def one(shard: Shard) -> list[CheckResult]:
        mine = [s for s in specs if s.kind not in NOT_PER_SHARD and s.applies_to(shard.name)]
        return run_on_shard(shard_map, shard, mine, show_samples)

    outcomes = on_every_shard(shard_map.shards, one)
    return [r for outcome in outcomes for r in outcome.unwrap()]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
