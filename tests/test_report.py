"""`pipeline report`: figures from SQL aggregates that agree with the extract, in four formats."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from pipeline import to_dataframe
from tests.conftest import ORIGINAL_DATA, Connect, RunCli, StoppableServer


@pytest.fixture
def loaded_twice(run_cli: RunCli, loaded: None, tmp_path: Path) -> None:
    """The original data, then a second file of three more residents (12 in all)."""
    extra = tmp_path / "more.ndjson"
    records = [
        {"id": 100, "country": "DE", "name": "No Age"},
        {"id": 101, "country": "US", "name": "Old", "gender": "F", "age": 80},
        {"id": 102, "country": "JP", "name": "Young", "gender": "Other", "age": 0},
    ]
    extra.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = run_cli("load", str(extra))
    assert result.exit_code == 0, result.output


def band(age: int | None) -> str:
    if age is None:
        return "unknown"
    for upper, name in ((18, "0-17"), (35, "18-34"), (55, "35-54"), (75, "55-74")):
        if age < upper:
            return name
    return "75+"


def test_report_figures_equal_the_same_figures_from_the_extract(
    run_cli: RunCli, loaded_twice: None, config_file: Path
) -> None:
    report = json.loads(run_cli("report", "--format", "json").stdout)
    frame = to_dataframe(config=config_file)
    assert report["residents"] == len(frame) == 12
    assert report["shards"] == frame["shard"].value_counts().to_dict()
    assert report["countries"] == frame["country"].value_counts().to_dict()
    assert report["genders"] == frame["gender"].fillna("unknown").value_counts().to_dict()
    bands = Counter(band(None if pd.isna(age) else int(age)) for age in frame["age"])
    assert {k: v for k, v in report["age_bands"].items() if v} == dict(bands)
    # merged from sums and counts (the mean of the two shards' means would differ)
    assert report["average_age"] == round(float(frame["age"].mean()), 2)
    assert list(report["age_bands"])[:5] == ["0-17", "18-34", "35-54", "55-74", "75+"]
    assert report["missing_shards"] == {}


def test_the_latest_loads_come_newest_first_across_the_shards(
    run_cli: RunCli, loaded_twice: None, connect: Connect
) -> None:
    # Finishing times set by hand, in an order that is neither the shards' nor the loads':
    # only a merge of both shards' ledgers by time gives it.
    when = {
        ("default", ORIGINAL_DATA.name): datetime(2026, 1, 4, tzinfo=timezone.utc),
        ("db_us", "more.ndjson"): datetime(2026, 1, 3, tzinfo=timezone.utc),
        ("db_us", ORIGINAL_DATA.name): datetime(2026, 1, 2, tzinfo=timezone.utc),
        ("default", "more.ndjson"): datetime(2026, 1, 1, tzinfo=timezone.utc),
    }
    for (shard, name), at in when.items():
        with connect(shard) as conn:
            changed = conn.execute(
                "UPDATE load_ledger SET finished_at = %s WHERE source_file LIKE %s",
                [at, f"%/{name}"],
            ).rowcount
            assert changed == 1
    loads = json.loads(run_cli("report", "--format", "json").stdout)["latest_loads"]
    assert [(x["shard"], Path(x["source_file"]).name, x["finished_at"]) for x in loads] == [
        (shard, name, at.isoformat()) for (shard, name), at in when.items()
    ]
    # and each with its own counts: the original data's 5 and 4, the second file's 2 and 1
    assert [(x["rows_loaded"], x["inserted"]) for x in loads] == [(5, 5), (1, 1), (4, 4), (2, 2)]


def test_text_and_markdown(run_cli: RunCli, loaded_twice: None) -> None:
    text = run_cli("report").stdout
    assert text.startswith("12 residents on 2 shard(s); average age ")
    assert "Residents per country" in text and "\nUS     " in text
    markdown = run_cli("report", "--format", "markdown").stdout
    assert markdown.startswith("# Residents report")
    assert "| US | 5 |" in markdown and "| unknown | 1 |" in markdown


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        for name, value in attrs:
            if name in ("src", "href") and value and "//" in value:
                self.external.append(value)


def test_the_html_report_is_self_contained_with_charts(
    run_cli: RunCli, loaded_twice: None, tmp_path: Path
) -> None:
    out = tmp_path / "exports" / "report.html"
    result = run_cli("report", "-o", str(out))
    assert result.exit_code == 0, result.output
    page = _Html()
    page.feed(out.read_text())
    assert page.tags["svg"] == 2  # residents per country, per age band
    assert page.tags["rect"] == 7 + 6  # 7 countries; 5 bands and "unknown"
    assert page.tags["table"] == 5
    assert page.external == []  # nothing fetched from the network
    assert page.tags["script"] == 0


def test_the_format_follows_the_extension_and_an_unknown_one_is_a_usage_error(
    run_cli: RunCli, loaded_twice: None, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli("report", "-o", str(out / "r.json")).exit_code == 0
    assert json.loads((out / "r.json").read_text())["residents"] == 12
    assert run_cli("report", "-o", str(out / "r.txt")).exit_code == 0
    assert (out / "r.txt").read_text() == run_cli("report").stdout
    result = run_cli("report", "-o", str(out / "r.xlsx"))
    assert result.exit_code == 2
    assert ".xlsx names no format this command writes" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["r.json", "r.txt"]


def test_values_from_the_data_are_escaped_in_html(
    run_cli: RunCli, initialised: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (country, name, gender)"
            " VALUES ('DE', 'x', '<script>alert(1)</script>')"
        )
    html = run_cli("report", "--format", "html").stdout
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_gender_null_empty_or_written_unknown_by_hand_keeps_a_count_of_its_own(
    run_cli: RunCli, initialised: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (country, name, gender) VALUES ('DE', 'a', NULL),"
            " ('DE', 'b', NULL), ('DE', 'c', ''), ('DE', 'd', 'unknown'), ('DE', 'e', 'Male')"
        )
    report = json.loads(run_cli("report", "--format", "json").stdout)
    assert report["genders"] == {"unknown": 2, '""': 1, '"unknown"': 1, "Male": 1}
    assert sum(report["genders"].values()) == report["residents"] == 5


def test_file_names_and_values_are_printable_in_text_and_markdown_tables(
    run_cli: RunCli, initialised: None, connect: Connect, tmp_path: Path
) -> None:
    # A file named with an escape sequence, a newline and HTML; a gender written by hand.
    path = tmp_path / "esc\x1b[31mred\n<img src=x onerror=alert(1)>|.csv"
    path.write_text("id,country,name\n1,DE,Ann\n")
    assert run_cli("load", str(path)).exit_code == 0
    with connect("default") as conn:
        conn.execute("INSERT INTO residents (country, name, gender) VALUES ('DE', 'x', 'a\nb')")
    text = run_cli("report").stdout
    assert "esc\\x1b[31mred\\n<img" in text and "a\\nb" in text
    assert "\x1b" not in text and "red\n" not in text
    markdown = run_cli("report", "--format", "markdown").stdout
    assert "esc\\x1b[31mred\\n&lt;img src=x onerror=alert(1)&gt;\\|.csv" in markdown
    assert "<img" not in markdown and "\x1b" not in markdown
    status = run_cli("status").stdout
    assert "esc\\x1b[31mred\\n<img" in status and "\x1b" not in status


@pytest.mark.slow
def test_an_unreachable_shard_fails_the_report_unless_partial_is_allowed(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, _ = split_shards
    assert run_cli("init", config=config).exit_code == 0
    assert run_cli("load", str(ORIGINAL_DATA), config=config).exit_code == 0
    stoppable_server.stop()
    out = tmp_path / "report.json"
    failed = run_cli("report", "-o", str(out), config=config)
    assert failed.exit_code == 1
    assert "shard db_us: unreachable" in failed.output and not out.exists()
    partial = run_cli("report", "-o", str(out), "--allow-partial", config=config)
    assert partial.exit_code == 0, partial.output
    assert "Warning: shard db_us left out (--allow-partial): unreachable" in partial.output
    report = json.loads(out.read_text())
    assert report["residents"] == 5 and list(report["shards"]) == ["default"]
    assert list(report["missing_shards"]) == ["db_us"]
    for fmt in ("text", "markdown", "html"):
        shown = run_cli("report", "--format", fmt, "--allow-partial", config=config).stdout
        assert "left out with --allow-partial" in shown and "shard db_us (unreachable" in shown
