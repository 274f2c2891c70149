"""What `pipeline report` prints: the merged figures as aligned text, Markdown, JSON or HTML
(`pipeline.report_html`). The figures themselves come from `pipeline.report`."""

from __future__ import annotations

import json
from typing import Any

from pipeline.printable import markdown_cell, printable
from pipeline.report import Report


def render_text(report: Report, markdown: bool = False) -> str:
    """Aligned tables for a terminal, or Markdown tables for a wiki."""
    average = report.average_age
    sections: list[tuple[str, list[str], list[tuple[Any, ...]]]] = [
        ("Residents per shard", ["shard", "residents"], list(report.shards.items())),
        ("Residents per country", ["country", "residents"], report.countries.most_common()),
        ("Gender", ["gender", "residents"], report.genders.most_common()),
        ("Age bands", ["age", "residents"], report.bands()),
        (
            "Latest loads per shard",
            ["finished", "shard", "file", "loaded", "rejected"],
            [load.row() for load in report.loads],
        ),
    ]
    head = f"{report.residents} residents on {len(report.shards)} shard(s); average age " + (
        f"{average:.1f}" if average is not None else "unknown"
    )
    if report.missing:  # a report of some shards must say so wherever it is read
        head += "\nNOT INCLUDED (left out with --allow-partial): " + report.left_out()
    parts = [f"# Residents report\n\n{head}" if markdown else head]
    for title, columns, rows in sections:
        table = _markdown_table(columns, rows) if markdown else _text_table(columns, rows)
        parts.append(f"## {title}\n\n{table}" if markdown else f"{title}\n{table}")
    return "\n\n".join(parts) + "\n"


def _text_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    # File names, and values a shard holds (a row written by hand: any gender), printable.
    cells = [columns] + [[printable(str(v)) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    numeric = [all(isinstance(row[i], int) for row in rows) and rows for i in range(len(columns))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def _markdown_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(markdown_cell(str(v)) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n"


# -o's extension -> format
FORMATS = {".txt": "text", ".md": "markdown", ".json": "json", ".html": "html", ".htm": "html"}


def render(report: Report, fmt: str) -> str:
    """The report as text, markdown, json or html (a self-contained page)."""
    if fmt == "html":
        from pipeline.report_html import render_html  # only the html format needs it

        return render_html(report)
    if fmt == "json":
        return render_json(report)
    return render_text(report, markdown=fmt == "markdown")
