"""The data-quality checks: what `config/checks.yaml` declares (`CheckSpec`, parsed and
validated by `load_checks`), what running one found (`CheckResult`), and the exit code the
results make.

Residency always runs, at level error. A check runs per shard (pipeline.check_shard: one
query returning its failing rows, compiled from its spec) or, for what no single database
can answer, across shards (pipeline.crosscheck); pipeline.check_run runs them all at once,
and pipeline.check_output renders the results. Samples are ids (or, for accepted_values,
the offending value), never whole rows, unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.columns import BY_NAME, CHECKABLE
from pipeline.config import ShardMap, read_beside
from pipeline.errors import ConfigError, PipelineError

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
    "erasures": (set(), set()),
}
CROSS_SHARD = {"cross_shard_ids", "cross_shard_people"}
# Not run shard by shard (pipeline.check_shard): erasures needs every shard's log first.
NOT_PER_SHARD = {*CROSS_SHARD, "erasures"}


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

    def rows_expected(self) -> str:
        """A row_count check's range of rows, "20..any"."""
        return f"{self.params.get('min', 0)}..{self.params.get('max', 'any')}"

    def threshold(self) -> str:
        """What passes. Every check counts failing rows (a row count outside its range is
        one: its sample says how many rows), so the threshold is 0 of them; for a row count,
        with the range (a bare "0..5 rows" beside "observed: 1" read as a contradiction)."""
        if self.kind == "row_count":
            return f"0 failing: {self.rows_expected()} rows"
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
        _range(key, kind, params, fail)
        shards = item.get("shards") or []
        if not isinstance(shards, list) or any(s not in shard_names for s in shards):
            raise fail(
                f"{key}.shards",
                "expected a list of shard names: " + ", ".join(shard_names),
            )
        if len(set(shards)) < len(shards):
            raise fail(f"{key}.shards", "a shard is listed twice")
        if kind in CROSS_SHARD and len(shards) == 1:  # a shard beside itself: never fails
            raise fail(f"{key}.shards", f"{kind} compares shards: name two or more, or none")
        specs.append(CheckSpec(name, kind, level, params, tuple(shards)))
    return specs


def _range(key: str, kind: str, params: dict[str, Any], fail: Any) -> None:
    """A row_count's or between's bounds: one at least (without, it cannot fail), in order
    (reversed, it cannot pass), and between's on a column of numbers (the others compare as
    text, which no range of numbers means)."""
    if kind not in ("row_count", "between"):
        return
    low, high = params.get("min"), params.get("max")
    if low is None and high is None:
        raise fail(key, f"{kind} needs 'min', 'max' or both")
    if low is not None and high is not None and low > high:
        raise fail(key, f"min {low} is over max {high}")
    column = str(params.get("column"))
    if kind == "between" and BY_NAME[column].pg_type not in ("bigint", "smallint"):
        raise fail(f"{key}.column", f"{column!r} is not a column of numbers (id, age)")


def _columns_of(params: dict[str, Any]) -> list[str]:
    columns = params.get("columns", [])
    columns = columns if isinstance(columns, list) else [columns]
    return [*columns, *([params["column"]] if "column" in params else [])]


def with_residency(specs: list[CheckSpec]) -> list[CheckSpec]:
    """The declared checks plus residency, which no configuration can switch off."""
    return [CheckSpec(RESIDENCY, RESIDENCY, "error"), *specs]


def flat_sql(text: str) -> str:
    """A statement on one line, for reports: its comments dropped (flattened, a `--` would
    swallow the rest)."""
    lines = (
        line.split("--", 1)[0] if line.lstrip().startswith("--") else line
        for line in text.splitlines()
    )
    return " ".join(" ".join(lines).split())


def exit_code(results: list[CheckResult], warn_error: bool) -> int:
    failed = [r for r in results if r.status == "fail" or (warn_error and r.status == "warn")]
    return 1 if failed else 0
