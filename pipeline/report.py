"""`pipeline report`: figures computed on each shard in SQL, merged, and rendered.

Nothing but aggregates leaves a shard (sql/report/figures.sql: one scan with
GROUPING SETS). Figures merge by addition; the average age is the total of ages over
the number of known ages, never an average of the shards' averages. Each shard is read
in one REPEATABLE READ, READ ONLY transaction, like an extract, and as an extract does,
the report refuses to count a rebalance move's rows twice (pipeline.moves_seen).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.config import Shard, ShardMap
from pipeline.moves_seen import MoveHalfDone, MovesSeen
from pipeline.preflight import refuse_shared_databases
from pipeline.queries import REPORT
from pipeline.shards import on_every_shard

AGE_BANDS = ("0-17", "18-34", "35-54", "55-74", "75+")
UNKNOWN = "unknown"
LATEST_LOADS = 10
_COUNTRY, _GENDER, _BAND, _TOTAL = 3, 5, 6, 7  # GROUPING(country, gender, band) of each set


@dataclass(frozen=True)
class Load:
    shard: str
    source_file: str
    finished_at: datetime
    rows_loaded: int
    rows_rejected: int
    inserted: int
    updated: int
    unchanged: int

    def row(self) -> tuple[str, str, str, int, int]:
        """As the reports' "Latest loads per shard" tables show it."""
        when = f"{self.finished_at:%Y-%m-%d %H:%M}"
        return (when, self.shard, self.source_file, self.rows_loaded, self.rows_rejected)


@dataclass
class Report:
    residents: int = 0
    shards: dict[str, int] = field(default_factory=dict)  # in shard-map order
    countries: Counter[str] = field(default_factory=Counter)
    genders: Counter[str] = field(default_factory=Counter)
    age_bands: Counter[str] = field(default_factory=Counter)
    age_sum: int = 0
    age_count: int = 0
    loads: list[Load] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # shard -> why (allow_partial)

    def left_out(self) -> str:
        """The shards left out (allow_partial), and why, in one line."""
        return "; ".join(f"shard {name} ({why})" for name, why in self.missing.items())

    @property
    def average_age(self) -> float | None:
        return self.age_sum / self.age_count if self.age_count else None

    def bands(self) -> list[tuple[str, int]]:
        """Every band in order (empty ones too), then the residents of unknown age."""
        ordered = [(b, self.age_bands[b]) for b in AGE_BANDS]
        return ordered + ([(UNKNOWN, self.age_bands[UNKNOWN])] if self.age_bands[UNKNOWN] else [])

    def to_json(self) -> dict[str, Any]:
        average = self.average_age
        return {
            "residents": self.residents,
            "shards": self.shards,
            "countries": dict(self.countries.most_common()),
            "genders": dict(self.genders.most_common()),
            "age_bands": dict(self.bands()),
            "average_age": round(average, 2) if average is not None else None,
            "latest_loads": [
                {**load.__dict__, "finished_at": load.finished_at.isoformat()}
                for load in self.loads
            ],
            "missing_shards": self.missing,
        }


def build_report(shard_map: ShardMap, allow_partial: bool = False) -> Report:
    """Ask every shard for its figures at once and merge them. A shard that fails raises its
    ShardError, unless `allow_partial`: then it is left out and named in `report.missing`.
    Two shards that are one database would count its residents twice: ConfigError; so
    would rows a rebalance has copied and not deleted: MoveHalfDone, even with
    `allow_partial`."""
    refuse_shared_databases(shard_map)
    moves = MovesSeen(shard_map, shard_map.shards)

    def figures(shard: Shard) -> tuple[list[Any], list[Load]]:
        with moves.snapshot(shard) as conn:
            rows = conn.execute(REPORT.figures).fetchall()
            loads = [Load(shard.name, *r) for r in conn.execute(REPORT.loads, [LATEST_LOADS])]
        return rows, loads

    report = Report()
    loads: list[Load] = []
    for outcome in on_every_shard(shard_map.shards, figures):
        if (
            outcome.error is not None
            and allow_partial
            and not isinstance(outcome.error, MoveHalfDone)
        ):
            report.missing[outcome.shard.name] = getattr(
                outcome.error, "reason", str(outcome.error)
            )
            if len(report.missing) == len(shard_map.shards):
                raise outcome.error  # every shard left out: no report, whatever allow_partial
            continue
        rows, shard_loads = outcome.unwrap()
        for row in rows:
            _add(report, outcome.shard.name, row)
        loads += shard_loads
    report.loads = sorted(loads, key=lambda load: load.finished_at, reverse=True)[:LATEST_LOADS]
    return report


def _gender_label(gender: str | None) -> str:
    """How the report names a stored gender: NULL as "unknown"; a value written by hand
    that would read as another ("" or "unknown" itself) in quotes, so that each value
    keeps a count of its own and the counts add up to the residents."""
    if gender is None:
        return UNKNOWN
    return f'"{gender}"' if gender in ("", UNKNOWN) else gender


def _add(report: Report, shard: str, row: tuple[Any, ...]) -> None:
    grouping, country, gender, band, residents, age_sum, age_count = row
    if grouping == _TOTAL:
        report.shards[shard] = int(residents)
        report.residents += int(residents)
        report.age_sum += int(age_sum)
        report.age_count += int(age_count)
    elif grouping == _COUNTRY:
        report.countries[country] += int(residents)
    elif grouping == _GENDER:
        report.genders[_gender_label(gender)] += int(residents)
    elif grouping == _BAND:
        report.age_bands[band or UNKNOWN] += int(residents)
