"""The HTML report: one self-contained file (inline CSS and SVG, no network fetches) with
bar charts of residents per country and per age band, and the report's tables."""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape
from typing import Any

from pipeline.report import Report

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2933;
       margin: 2rem auto; max-width: 64rem; padding: 0 1rem; }
h1 { font-size: 1.6rem; margin-bottom: .2rem; }
.meta { color: #52606d; margin-top: 0; }
.cards { display: flex; gap: 1rem; flex-wrap: wrap; margin: 1.5rem 0; }
.card { background: #f5f7fa; border-radius: 8px; padding: .8rem 1.2rem; min-width: 9rem; }
.card b { display: block; font-size: 1.6rem; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(24rem, 1fr)); gap: 2rem; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2933; }
table { border-collapse: collapse; margin: .5rem 0 1.5rem; }
th, td { padding: .3rem .8rem; border-bottom: 1px solid #e4e7eb; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
"""
_BAR = "#3e7cb1"
CHART_COUNTRIES = 20  # bars in the country chart; the rest are summed as "other"


def _top(bars: list[tuple[str, int]], keep: int) -> list[tuple[str, int]]:
    if len(bars) <= keep:
        return bars
    return [*bars[: keep - 1], ("other", sum(v for _, v in bars[keep - 1 :]))]


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _shares(rows: Any) -> list[tuple[str, int, str]]:
    rows = list(rows)
    total = sum(v for _, v in rows) or 1
    return [(label, value, f"{value / total:.1%}") for label, value in rows]


def render_html(report: Report) -> str:
    average = report.average_age
    cards = [
        ("residents", f"{report.residents:,}"),
        ("shards", str(len(report.shards))),
        ("countries", str(len(report.countries))),
        ("average age", f"{average:.1f}" if average is not None else "unknown"),
    ]
    loads = [load.row() for load in report.loads]
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Residents report</h1>",
        f'<p class="meta">Made {made} from {len(report.shards)} shard(s).</p>',
        *(
            [
                f'<p class="meta"><b>Not included</b> (left out with --allow-partial): '
                f"{escape(report.left_out())}</p>"
            ]
            if report.missing
            else []
        ),
        '<div class="cards">'
        + "".join(f'<div class="card"><b>{escape(v)}</b>{escape(k)}</div>' for k, v in cards)
        + "</div>",
        '<div class="charts">',
        _chart("Residents per country", _top(report.countries.most_common(), CHART_COUNTRIES)),
        _chart("Residents per age band", report.bands()),
        "</div>",
        _table(
            "Residents per shard", ["shard", "residents", "share"], _shares(report.shards.items())
        ),
        _table(
            "Residents per country",
            ["country", "residents", "share"],
            _shares(report.countries.most_common()),
        ),
        _table("Gender", ["gender", "residents", "share"], _shares(report.genders.most_common())),
        _table("Age bands", ["age", "residents", "share"], _shares(report.bands())),
        _table(
            "Latest loads per shard", ["finished", "shard", "file", "loaded", "rejected"], loads
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>Residents report</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _chart(title: str, bars: list[tuple[str, int]]) -> str:
    """A horizontal bar chart as inline SVG, one bar a label, with its value at the end."""
    row, label_width, bar_width = 22, 90, 300
    top = max((v for _, v in bars), default=0) or 1
    height = row * len(bars) + 10
    parts = [
        f"<figure><figcaption><b>{escape(title)}</b></figcaption>",
        f'<svg role="img" aria-label="{escape(title)}" width="{label_width + bar_width + 80}" '
        f'height="{height}" xmlns="http://www.w3.org/2000/svg">',
    ]
    for i, (label, value) in enumerate(bars):
        y = i * row + 5
        width = round(bar_width * value / top)
        parts.append(
            f'<text x="{label_width - 8}" y="{y + 14}" text-anchor="end">'
            f"{escape(str(label))}</text>"
            f'<rect x="{label_width}" y="{y}" width="{width}" height="{row - 6}" fill="{_BAR}">'
            f"<title>{escape(str(label))}: {value}</title></rect>"
            f'<text x="{label_width + width + 6}" y="{y + 14}">{value:,}</text>'
        )
    parts.append("</svg></figure>")
    return "".join(parts)


def _table(title: str, columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    numeric = [
        bool(rows) and all(isinstance(r[i], int) or str(r[i]).endswith("%") for r in rows)
        for i in range(len(columns))
    ]

    def cells(values: list[Any] | tuple[Any, ...], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=n' if num else ''}>{escape(_number(v))}</{tag}>"
            for v, num in zip(values, numeric, strict=True)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows) or (
        f'<tr><td colspan="{len(columns)}">none</td></tr>'
    )
    return f"<h2>{escape(title)}</h2>\n<table><tr>{cells(columns, 'th')}</tr>{body}</table>"
