"""`pipeline report`: figures computed on each shard in SQL, merged, and rendered.

Nothing but aggregates leaves a shard (sql/queries/report_figures.sql: one scan with
GROUPING SETS). Figures merge by addition; the average age is the total of ages over
the number of known ages, never an average of the shards' averages. Each shard is read
in one REPEATABLE READ, READ ONLY transaction, like an extract.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.config import ShardMap
from pipeline.copyout import snapshot
from pipeline.sqlfiles import query

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
        """As the reports' "Latest loads" tables show it."""
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
        }


def build_report(shard_map: ShardMap) -> Report:
    """Ask every shard for its figures and merge them; a shard that fails raises ShardError."""
    report = Report()
    loads: list[Load] = []
    for shard in shard_map.shards:
        with snapshot(shard_map, shard) as conn:
            for row in conn.execute(query("report_figures")):
                _add(report, shard.name, row)
            for row in conn.execute(query("report_loads"), [LATEST_LOADS]):
                loads.append(Load(shard.name, *row))
    report.loads = sorted(loads, key=lambda load: load.finished_at, reverse=True)[:LATEST_LOADS]
    return report


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
        report.genders[gender or UNKNOWN] += int(residents)
    elif grouping == _BAND:
        report.age_bands[band or UNKNOWN] += int(residents)


def render_text(report: Report, markdown: bool = False) -> str:
    """Aligned tables for a terminal, or Markdown tables for a wiki."""
    average = report.average_age
    sections: list[tuple[str, list[str], list[tuple[Any, ...]]]] = [
        ("Residents per shard", ["shard", "residents"], list(report.shards.items())),
        ("Residents per country", ["country", "residents"], report.countries.most_common()),
        ("Gender", ["gender", "residents"], report.genders.most_common()),
        ("Age bands", ["age", "residents"], report.bands()),
        (
            "Latest loads",
            ["finished", "shard", "file", "loaded", "rejected"],
            [load.row() for load in report.loads],
        ),
    ]
    head = f"{report.residents} residents on {len(report.shards)} shard(s); average age " + (
        f"{average:.1f}" if average is not None else "unknown"
    )
    parts = [f"# Residents report\n\n{head}" if markdown else head]
    for title, columns, rows in sections:
        table = _markdown_table(columns, rows) if markdown else _text_table(columns, rows)
        parts.append(f"## {title}\n\n{table}" if markdown else f"{title}\n{table}")
    return "\n\n".join(parts) + "\n"


def _text_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [columns] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(isinstance(row[i], int) for row in rows) and rows for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def _markdown_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


# -o's extension -> format
FORMATS = {".txt": "text", ".md": "markdown", ".json": "json", ".html": "html", ".htm": "html"}


def render(report: Report, fmt: str) -> str:
    """The report as text, markdown, json or html (a self-contained page)."""
    if fmt == "html":
        from pipeline.report_html import render_html  # it imports this module

        return render_html(report)
    if fmt == "json":
        return render_json(report)
    return render_text(report, markdown=fmt == "markdown")
