"""What the commands print, from results built by hand, without a database: the load's summary
(`pipeline.summary`), the report's text, Markdown and JSON (`pipeline.report_output`) and the
check's five formats (`pipeline.check_output`). The commands' own tests run each through the
CLI once; the cases are here, line by line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from pipeline import check_output, report_output
from pipeline.checks import CheckResult
from pipeline.load_result import FileResult, LoadResult, ShardCounts
from pipeline.printable import printable
from pipeline.report import Load, Report
from pipeline.summary import error_lines, summary_lines, warning_lines

# -- the load's summary ---------------------------------------------------------------------


def file_result(path: str, **counts: int) -> FileResult:
    return FileResult(path, "csv", **counts)  # type: ignore[arg-type]


def test_the_summary_shows_each_file_each_shard_and_totals_that_add_up() -> None:
    loaded = file_result("a.csv", rows_read=6, rows_loaded=4, rows_rejected=2)
    loaded.shards = {
        "default": ShardCounts(staged=3, rejected=1, inserted=1, updated=1, unchanged=0),
        "db_us": ShardCounts(staged=2, inserted=0, updated=0, unchanged=2, kept=2),
    }
    skipped = file_result("b.csv", skipped=True)
    refused = file_result("c\x1b[31m.csv", rows_read=3, rows_rejected=3)
    refused.error = "c.csv: over its budget"
    result = LoadResult("L1", False, [loaded, skipped, refused], ["default", "db_us"], None)
    assert summary_lines(result) == [
        "a.csv (csv): 6 read = 4 loaded + 2 rejected",
        "  default: 1 inserted, 1 updated, 0 unchanged, 1 rejected",
        "  db_us: 0 inserted, 0 updated, 2 unchanged (2 kept: a later file of this command"
        " already wrote them)",
        "b.csv (csv): skipped, every shard already holds it",
        "c\\x1b[31m.csv (csv): NOT LOADED, rejected as a whole: 3 read = 0 loaded + 3 rejected",
        "total: 9 read = 4 loaded + 5 rejected",
        "shard default: 1 inserted, 1 updated, 0 unchanged",
        "shard db_us: 0 inserted, 0 updated, 2 unchanged (2 kept)",
    ]


def test_the_summary_of_a_failed_or_interrupted_shard_counts_its_rows_pending() -> None:
    failed = file_result("a.csv", rows_read=5, rows_loaded=3, rows_pending=2)
    failed.shards = {
        "default": ShardCounts(staged=3, inserted=3),
        "db_us": ShardCounts(staged=2),
    }
    failed.shard_errors = {"db_us": "unreachable"}
    earlier = file_result("b.csv", rows_read=4, rows_loaded=3, rows_rejected=1, rows_pending=0)
    earlier.shards = {"default": ShardCounts(staged=4, rejected=1, already_loaded=True)}
    result = LoadResult(
        "L2", True, [failed, earlier], ["default", "db_us"], Path("rejects/x.ndjson"),
        not_started=["c.csv", "d.csv"],
    )  # fmt: skip
    assert summary_lines(result) == [
        "a.csv (csv): 5 read = 3 loaded + 0 rejected + 2 pending",
        "  default: 3 inserted, 0 updated, 0 unchanged",
        "  db_us: FAILED, 2 rows pending",
        "b.csv (csv): 4 read = 3 loaded + 1 rejected",
        "  default: already loaded by an earlier run (4 rows, 1 of them rejected then)",
        "total: 9 read = 6 loaded + 1 rejected + 2 pending (dry run: nothing written)",
        "shard default: 3 inserted, 0 updated, 0 unchanged",
        "shard db_us: 0 inserted, 0 updated, 0 unchanged",
        "rejects: rejects/x.ndjson",
        "not started: c.csv, d.csv",
    ]
    failed.interrupted = True
    assert summary_lines(result)[2] == "  db_us: NOT COMMITTED (interrupted), 2 rows pending"


def test_errors_name_each_shard_once_and_say_what_to_do() -> None:
    first = file_result("a.csv")
    first.shard_errors = {"db_us": "unreachable: connection refused"}
    second = file_result("b.csv")
    second.error = "b.csv: not valid utf-8"
    second.shard_errors = {"db_us": "skipped: an earlier file failed", "default": "time-out"}
    second.warnings = ["b.csv: ignored unknown column(s): shoe\nsize"]
    result = LoadResult("L3", False, [first, second], ["default", "db_us"], None)
    assert error_lines(result) == [
        "b.csv: not valid utf-8",
        "shard db_us: unreachable: connection refused",  # the first; later ones follow from it
        "shard default: time-out",
    ]
    assert warning_lines(result) == ["b.csv: ignored unknown column(s): shoe\\nsize"]
    result.interrupted = "interrupted by SIGINT"
    assert error_lines(result)[-1] == (
        "interrupted by SIGINT: the shards keep only what they committed (the summary says"
        " what); re-running the same command completes the load"
    )


def test_printable_spells_control_characters_and_keeps_letters() -> None:
    assert printable("ok é € \u202e\x07\n\x1b[0m") == "ok é € \\u202e\\x07\\n\\x1b[0m"


# -- the report ---------------------------------------------------------------------------


def a_report() -> Report:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    return Report(
        residents=5,
        shards={"default": 3, "db_us": 2},
        countries=Counter({"DE": 2, "US": 2, "F|R": 1}),
        genders=Counter({"Female": 3, "unknown": 2}),
        age_bands=Counter({"18-34": 2, "75+": 1, "unknown": 2}),
        age_sum=30 + 20 + 80,
        age_count=3,
        loads=[Load("db_us", "in/a.csv", at, 2, 1, 2, 0, 0)],
    )


def test_the_report_as_text_is_aligned_tables() -> None:
    assert report_output.render(a_report(), "text") == (
        "5 residents on 2 shard(s); average age 43.3\n"
        "\n"
        "Residents per shard\n"
        "shard    residents\n"
        "-------  ---------\n"
        "default          3\n"
        "db_us            2\n"
        "\n"
        "Residents per country\n"
        "country  residents\n"
        "-------  ---------\n"
        "DE               2\n"
        "US               2\n"
        "F|R              1\n"
        "\n"
        "Gender\n"
        "gender   residents\n"
        "-------  ---------\n"
        "Female           3\n"
        "unknown          2\n"
        "\n"
        "Age bands\n"
        "age      residents\n"
        "-------  ---------\n"
        "0-17             0\n"
        "18-34            2\n"
        "35-54            0\n"
        "55-74            0\n"
        "75+              1\n"
        "unknown          2\n"
        "\n"
        "Latest loads per shard\n"
        "finished          shard  file      loaded  rejected\n"
        "----------------  -----  --------  ------  --------\n"
        "2026-01-02 03:04  db_us  in/a.csv       2         1\n"
    )


def test_the_report_as_markdown_escapes_the_cell_separator_and_says_what_is_left_out() -> None:
    report = a_report()
    report.missing = {"db_eu": "unreachable"}
    markdown = report_output.render(report, "markdown")
    assert markdown.startswith(
        "# Residents report\n\n5 residents on 2 shard(s); average age 43.3\n"
        "NOT INCLUDED (left out with --allow-partial): shard db_eu (unreachable)\n\n"
        "## Residents per shard\n\n| shard | residents |\n|---|---|\n| default | 3 |\n"
    )
    assert "| F\\|R | 1 |\n" in markdown
    assert markdown.endswith(
        "## Latest loads per shard\n\n| finished | shard | file | loaded | rejected |\n"
        "|---|---|---|---|---|\n| 2026-01-02 03:04 | db_us | in/a.csv | 2 | 1 |\n"
    )


def test_the_report_as_json_holds_every_figure() -> None:
    report = a_report()
    report.missing = {"db_eu": "unreachable"}
    assert json.loads(report_output.render(report, "json")) == {
        "residents": 5,
        "shards": {"default": 3, "db_us": 2},
        "countries": {"DE": 2, "US": 2, "F|R": 1},
        "genders": {"Female": 3, "unknown": 2},
        "age_bands": {"0-17": 0, "18-34": 2, "35-54": 0, "55-74": 0, "75+": 1, "unknown": 2},
        "average_age": 43.33,
        "latest_loads": [
            {
                "shard": "db_us",
                "source_file": "in/a.csv",
                "finished_at": "2026-01-02T03:04:05+00:00",
                "rows_loaded": 2,
                "rows_rejected": 1,
                "inserted": 2,
                "updated": 0,
                "unchanged": 0,
            }
        ],
        "missing_shards": {"db_eu": "unreachable"},
    }


def test_a_report_of_no_residents_says_the_average_is_unknown() -> None:
    empty = Report()
    assert report_output.render(empty, "text").startswith(
        "0 residents on 0 shard(s); average age unknown\n"
    )
    assert json.loads(report_output.render(empty, "json"))["average_age"] is None


# -- the check ----------------------------------------------------------------------------


def check_results() -> list[CheckResult]:
    samples = ["default:1 = db_us:1", "default:2 = db_us:2"]
    return [
        CheckResult("residency", "residency", "error", "default", 1, "0", "SELECT 1", ["id=77"]),
        CheckResult("ids_in_several_shards", "cross", "warn", "*", 3, "0", "SELECT 2", samples,
                    [{"id": 1}]),
        CheckResult("names", "not_null", "error", "db_us", 0, "0", "SELECT 3", []),
        CheckResult("odd", "custom_sql", "warn", "db_us", 1, "0", "SELECT 4", ["a:b,c\n%\x01"]),
    ]  # fmt: skip


def test_check_junit_parses_whatever_characters_a_sample_holds() -> None:
    """Every character XML 1.0 cannot hold (C0 controls, U+FFFE, U+FFFF) as U+FFFD."""
    odd = "".join(map(chr, range(0x20))) + "\ufffe\uffff\U0010ffff"
    result = CheckResult("odd", "custom_sql", "error", "db_us", 1, "0", "SELECT 1", [odd])
    suite = ET.fromstring(check_output.render([result], "junit", False, False))
    failure = suite.find("testsuite/testcase/failure")
    assert failure is not None
    message = failure.get("message") or ""
    assert "\ufffd\ufffd\U0010ffff)" in message and "\uffff" not in message


def test_check_text_is_one_line_per_check_and_a_count() -> None:
    assert check_output.render(check_results(), "text", False, False) == (
        "FAIL  error  residency  [default]  1 failing (id=77)\n"
        "WARN  warn   ids_in_several_shards  [*]  3 failing"
        " (default:1 = db_us:1; default:2 = db_us:2 ...)\n"
        "PASS  error  names  [db_us]  ok\n"
        "WARN  warn   odd  [db_us]  1 failing (a:b,c\\n%\\x01)\n"  # one line, printable
        "4 checks: 1 failed, 2 warnings\n"
    )


def test_check_json_holds_each_result_and_rows_only_when_asked() -> None:
    plain = json.loads(check_output.render(check_results(), "json", False, False))
    assert plain[1] == {
        "name": "ids_in_several_shards",
        "kind": "cross",
        "shard": "*",
        "level": "warn",
        "status": "warn",
        "observed": 3,
        "threshold": "0",
        "sql": "SELECT 2",
        "samples": ["default:1 = db_us:1", "default:2 = db_us:2"],
    }
    assert [r["status"] for r in plain] == ["fail", "warn", "pass", "warn"]
    shown = json.loads(check_output.render(check_results(), "json", False, True))
    assert [r["rows"] for r in shown] == [[], [{"id": 1}], [], []]


def test_check_junit_counts_failures_and_warnings_only_with_warn_error() -> None:
    for warn_error, failures in ((False, ["residency"]), (True, ["residency",
                                 "ids_in_several_shards", "odd"])):  # fmt: skip
        xml = check_output.render(check_results(), "junit", warn_error, False)
        suite = ET.fromstring(xml).find("testsuite")  # a control character would not parse
        assert suite is not None
        cases = suite.findall("testcase")
        assert [(c.get("classname"), c.get("name")) for c in cases] == [
            ("shard.default", "residency"),
            ("shard.*", "ids_in_several_shards"),
            ("shard.db_us", "names"),
            ("shard.db_us", "odd"),
        ]
        assert (suite.get("tests"), suite.get("failures")) == ("4", str(len(failures)))
        assert [c.get("name") for c in cases if c.find("failure") is not None] == failures
        odd = cases[3].find("failure" if warn_error else "system-out")
        assert odd is not None
        shown = odd.get("message") if warn_error else odd.text
        assert shown is not None and shown.endswith("1 failing, expected 0 (a:b,c\n%\ufffd)")


def test_a_check_name_with_a_control_character_still_gives_valid_junit() -> None:
    odd = CheckResult("odd\x01", "custom_sql", "warn", "db_us", 1, "0", "SELECT 4", [])
    (case,) = ET.fromstring(check_output.render([odd], "junit", False, False)).iter("testcase")
    assert case.get("name") == "odd\ufffd"


def test_check_github_annotates_what_failed_and_appends_a_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    out = check_output.render(check_results(), "github", False, False, summary)
    assert out.splitlines() == [
        "::error title=check residency on default::1 failing (id=77)",
        "::warning title=check ids_in_several_shards on *::3 failing"
        " (default:1 = db_us:1; default:2 = db_us:2 ...)",
        "::warning title=check odd on db_us::1 failing (a:b,c%0A%25\x01)",
    ]
    table = summary.read_text()
    assert table.startswith("earlier step\n## pipeline check")
    assert "| fail | residency | default | 1 |" in table
    assert "| warn | ids_in_several_shards | * | 3 |" in table
    assert "| pass | names | db_us | 0 |  |" in table


def test_checks_that_could_not_run_are_one_failing_entry_in_every_format(tmp_path: Path) -> None:
    why = "the checks could not run: shard db_us: unreachable"
    assert check_output.render_error("shard db_us: unreachable", "text") == f"ERROR  {why}\n"
    assert json.loads(check_output.render_error("shard db_us: unreachable", "json")) == [
        {"name": "pipeline check", "kind": "error", "shard": "*", "level": "error",
         "status": "error", "error": why},
    ]  # fmt: skip
    suite = ET.fromstring(check_output.render_error("x\x01", "junit")).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "1")
    error = suite.find("testcase/error")
    assert error is not None and error.get("message") == "the checks could not run: x\ufffd"
    summary = tmp_path / "summary.md"
    github = check_output.render_error("a: b,\nc", "github", summary)
    assert github == "::error title=pipeline check::the checks could not run: a: b,%0Ac\n"
    assert summary.read_text() == "## pipeline check\n\nthe checks could not run: a: b,\nc\n\n"
