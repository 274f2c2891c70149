"""`pipeline check`: declared data-quality checks (`config/checks.yaml`), compiled to SQL.

Every per-shard check compiles to one query returning its failing rows
(sql/check/*.sql), which yields its count and at most SAMPLES samples; the row
checks (residency, not_null, accepted_values, between) are counted together in one scan
of the shard first. The shards run in parallel, each in one REPEATABLE READ snapshot.
Samples are ids (or, for accepted_values, the offending value), never whole rows,
unless asked. The cross-shard checks, which no single database can answer, are in
`pipeline.crosscheck`. Residency always runs, at level error.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pipeline.columns import CHECKABLE, RESIDENTS
from pipeline.config import Shard, ShardMap, read_beside
from pipeline.db import snapshot
from pipeline.errors import ConfigError, PipelineError, ShardError
from pipeline.queries import CHECK
from pipeline.schema import latest_version, residency_rule

SAMPLES = 20
LEVELS = ("error", "warn")
COLUMNS = CHECKABLE
RESIDENCY = "residency"
# kind -> (required parameters, optional parameters)
KINDS: dict[str, tuple[set[str], set[str]]] = {
    "schema": (set(), set()),
    "row_count": (set(), {"min", "max"}),
    "not_null": ({"columns"}, set()),
    "accepted_values": ({"column", "values"}, set()),
    "between": ({"column"}, {"min", "max"}),
    "unique": ({"columns"}, set()),
    "custom_sql": ({"sql"}, set()),
    "residency": (set(), set()),
    "ledger": (set(), set()),
    "cross_shard_ids": (set(), set()),
    "cross_shard_people": (set(), set()),
}
CROSS_SHARD = {"cross_shard_ids", "cross_shard_people"}


class CheckError(PipelineError):
    """The checks could not run (a connection, an SQL error): exit 2, as configuration errors."""

    exit_code = 2


@dataclass(frozen=True)
class CheckSpec:
    name: str
    kind: str
    level: str
    params: dict[str, Any] = field(default_factory=dict)
    shards: tuple[str, ...] = ()  # empty: every shard

    def applies_to(self, shard: str) -> bool:
        return not self.shards or shard in self.shards

    def threshold(self) -> str:
        if self.kind == "row_count":
            return f"{self.params.get('min', 0)}..{self.params.get('max', 'any')} rows"
        return "0 failing"


@dataclass
class CheckResult:
    name: str
    kind: str
    level: str
    shard: str  # "*" for a check across shards
    failing: int
    threshold: str
    sql: str
    samples: list[str]
    details: list[Any] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failing == 0

    @property
    def status(self) -> str:
        return "pass" if self.passed else ("fail" if self.level == "error" else "warn")

    def to_json(self, show_samples: bool) -> dict[str, Any]:
        data = {
            "name": self.name,
            "kind": self.kind,
            "shard": self.shard,
            "level": self.level,
            "status": self.status,
            "observed": self.failing,
            "threshold": self.threshold,
            "sql": self.sql,
            "samples": self.samples,
        }
        if show_samples:
            data["rows"] = self.details
        return data


def load_checks(shard_map: ShardMap) -> list[CheckSpec]:
    """The data-quality checks the shard map points at (by default checks.yaml beside it)."""
    path = shard_map.checks_path
    names = [s.name for s in shard_map.shards]
    return parse_checks(path, read_beside(shard_map, path, "checks"), names)


def parse_checks(path: Path, doc: Any, shard_names: list[str]) -> list[CheckSpec]:
    """Checks from a parsed checks.yaml; ConfigError naming the file and key."""

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"{path}: {key}: {message}")

    if not isinstance(doc, dict) or not isinstance(doc.get("checks"), list):
        raise ConfigError(f"{path}: expected `checks:` with a list of checks")
    specs: list[CheckSpec] = []
    for i, item in enumerate(doc["checks"]):
        key = f"checks[{i}]"
        if not isinstance(item, dict):
            raise fail(key, "expected a mapping with name, kind and level")
        name, kind, level = (
            item.get("name"),
            item.get("kind"),
            item.get("level", "error"),
        )
        if not isinstance(name, str) or not name:
            raise fail(f"{key}.name", "missing")
        key = f"checks[{i}] ({name})"
        if name in {s.name for s in specs} or name == RESIDENCY:
            raise fail(key, f"the name {name!r} is taken")
        if not isinstance(kind, str) or kind not in KINDS or kind == RESIDENCY:
            choices = ", ".join(k for k in KINDS if k != RESIDENCY)
            raise fail(f"{key}.kind", f"{kind!r} is not a check kind ({choices})")
        if level not in LEVELS:
            raise fail(f"{key}.level", "expected error or warn")
        required, optional = KINDS[kind]
        params = {k: v for k, v in item.items() if k not in ("name", "kind", "level", "shards")}
        missing = sorted(required - params.keys())
        unknown = sorted(params.keys() - required - optional)
        if missing:
            raise fail(key, f"{kind} needs {missing[0]!r}")
        if unknown:
            raise fail(f"{key}.{unknown[0]}", f"not a parameter of {kind}")
        if "columns" in params and (
            not isinstance(params["columns"], list) or not params["columns"]
        ):
            raise fail(f"{key}.columns", "expected a list of columns, e.g. [gender, age]")
        if "values" in params and (not isinstance(params["values"], list) or not params["values"]):
            raise fail(f"{key}.values", "expected a non-empty list of values")
        for bound in ("min", "max"):
            value = params.get(bound, 0)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail(f"{key}.{bound}", f"expected a number, got {value!r}")
        for column in _columns_of(params):
            if column not in COLUMNS:
                raise fail(key, f"{column!r} is not a column of residents")
        shards = item.get("shards") or []
        if not isinstance(shards, list) or any(s not in shard_names for s in shards):
            raise fail(
                f"{key}.shards",
                "expected a list of shard names: " + ", ".join(shard_names),
            )
        specs.append(CheckSpec(name, kind, level, params, tuple(shards)))
    return specs


def _columns_of(params: dict[str, Any]) -> list[str]:
    columns = params.get("columns", [])
    columns = columns if isinstance(columns, list) else [columns]
    return [*columns, *([params["column"]] if "column" in params else [])]


def with_residency(specs: list[CheckSpec]) -> list[CheckSpec]:
    """The declared checks plus residency, which no configuration can switch off."""
    return [CheckSpec(RESIDENCY, RESIDENCY, "error"), *specs]


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
        return CHECK.row_count.format(min=low, max=high)
    if spec.kind == "ledger":
        return CHECK.ledger
    if spec.kind == "custom_sql":
        custom = sql.SQL(str(p["sql"]).strip().rstrip(";"))  # the user's own query
        return CHECK.custom.format(custom=custom)
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
                    if spec.name in counted:
                        count, samples = counted[spec.name], []
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
                        details = [r[1] for r in first] if show_samples else []
                except psycopg.Error as exc:
                    raise CheckError(
                        f"check {spec.name} on shard {shard.name}: {_one_line(exc)}"
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
    """Check name -> failing rows, for every row check in `specs`, from one scan."""
    rows = [s for s in specs if s.kind in ROW_KINDS]
    if not rows:
        return {}
    counts = sql.SQL(", ").join(
        CHECK.failing_count.format(condition=row_condition(s, shard_map, shard)[0]) for s in rows
    )
    try:
        with conn.transaction():  # a savepoint: on an error, the checks run one by one
            found = conn.execute(CHECK.counts.format(counts=counts)).fetchone()
    except psycopg.Error:
        return {}  # each check runs its own query, and an error names its check
    assert found is not None
    return {spec.name: int(n) for spec, n in zip(rows, found, strict=True)}


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
    """The per-shard checks on every shard at once; results in shard-map order."""

    def one(shard: Shard) -> list[CheckResult]:
        mine = [s for s in specs if s.kind not in CROSS_SHARD and s.applies_to(shard.name)]
        return run_on_shard(shard_map, shard, mine, show_samples)

    with ThreadPoolExecutor(max_workers=len(shard_map.shards)) as pool:
        per_shard = list(pool.map(one, shard_map.shards))
    return [r for results in per_shard for r in results]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def flat_sql(text: str) -> str:
    """A statement on one line, for reports: its comments dropped (flattened, a `--` would
    swallow the rest)."""
    lines = (
        line.split("--", 1)[0] if line.lstrip().startswith("--") else line
        for line in text.splitlines()
    )
    return " ".join(" ".join(lines).split())


def run_all(
    shard_map: ShardMap,
    specs: list[CheckSpec],
    only: tuple[str, ...] = (),
    show_samples: bool = False,
) -> list[CheckResult]:
    """Residency and the declared checks (or those named in `only`, residency still included),
    per shard then across shards; failures first, then in declaration order."""
    from pipeline.preflight import refuse_shared_databases

    unknown = sorted(set(only) - {s.name for s in specs} - {RESIDENCY})
    if unknown:
        raise ConfigError(f"--only {unknown[0]}: no such check")
    # Two shards in one database would each fail residency for the other's rows, and the
    # cross-shard checks would find every row twice: the checks cannot run (exit 2).
    refuse_shared_databases(shard_map)
    chosen = with_residency([s for s in specs if not only or s.name in only])
    # The duplicate checks on the same shards share one read of each shard.
    together: dict[tuple[str, ...], list[CheckSpec]] = {}
    for spec in chosen:
        if spec.kind in CROSS_SHARD:
            together.setdefault(spec.shards, []).append(spec)
    across = [*together.values(), *([s] for s in chosen if s.kind == "ledger")]
    # The checks keep the servers busy, not this process: run them all at once.
    with ThreadPoolExecutor(max_workers=1 + len(across)) as pool:
        per_shard = pool.submit(run_per_shard, shard_map, chosen, show_samples)
        cross = [pool.submit(_run_across, shard_map, specs) for specs in across]
        results = per_shard.result() + [r for future in cross for r in future.result()]
    order = {s.name: i for i, s in enumerate(chosen)}
    rank = {"fail": 0, "warn": 1, "pass": 2}
    return sorted(results, key=lambda r: (rank[r.status], order[r.name]))


def _run_across(shard_map: ShardMap, specs: list[CheckSpec]) -> list[CheckResult]:
    # Imported here, in a worker: numpy's import (a tenth of a second) overlaps the per-shard
    # checks the servers already run.
    from pipeline.crosscheck import run_cross_shard

    return run_cross_shard(shard_map, specs)


def exit_code(results: list[CheckResult], warn_error: bool) -> int:
    failed = [r for r in results if r.status == "fail" or (warn_error and r.status == "warn")]
    return 1 if failed else 0
