"""`pipeline check`: every kind passes on clean data and fails on data made to break it."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import PROJECT, Connect, RunCli, closed_port, shard_map_yaml, write_map


def results(run_cli: RunCli, *args: str, config: Path | None = None) -> list[dict[str, Any]]:
    out = run_cli("check", "--format", "json", *args, config=config)
    assert out.exit_code in (0, 1), out.output
    data: list[dict[str, Any]] = json.loads(out.stdout)
    return data


def same_person(run_cli: RunCli) -> dict[str, Any]:
    """The result of same_person_in_several_shards, run alone."""
    found = results(run_cli, "--only", "same_person_in_several_shards")
    (check,) = [r for r in found if r["name"] == "same_person_in_several_shards"]
    return check


def status_of(found: list[dict[str, Any]], name: str) -> dict[str, str]:
    return {r["shard"]: r["status"] for r in found if r["name"] == name}


def test_the_original_data_passes_with_a_warning_naming_the_id_collisions(
    run_cli: RunCli, loaded: None
) -> None:
    result = run_cli("check")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith("WARN  warn   ids_in_several_shards  [*]  2 failing")
    assert "default:1 = db_us:1; default:2 = db_us:2" in first
    assert result.stdout.strip().endswith("19 checks: 0 failed, 1 warnings")
    assert run_cli("check", "--warn-error").exit_code == 1


def test_residency_always_runs_and_fails_on_a_misplaced_row(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute("ALTER TABLE residents DROP CONSTRAINT residents_residency")
        conn.execute("INSERT INTO residents (id, country, name) VALUES (77, 'US', 'Misplaced')")
    result = run_cli("check", "--only", "schema")
    assert result.exit_code == 1
    assert "FAIL  error  residency  [default]  1 failing (id=77 country=US)" in result.stdout
    assert {r.split()[2] for r in result.stdout.splitlines()[:-1]} == {"residency", "schema"}


def test_residency_fails_on_a_country_written_in_lower_case(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    # The default shard's constraint (NOT IN (US)) takes `us`, written by hand: a US
    # resident on the wrong shard all the same.
    with connect("default") as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (78, 'us', 'Lower')")
    result = run_cli("check", "--only", "schema")
    assert result.exit_code == 1
    assert "FAIL  error  residency  [default]  1 failing (id=78 country=us)" in result.stdout


BROKEN: list[tuple[str, str, str, str]] = [
    # (check, its yaml, SQL that breaks it on shard default, the failing sample)
    (
        "gender_values",
        "kind: accepted_values\n    column: gender\n    values: [Male, Female]",
        "INSERT INTO residents (id, country, name, gender) VALUES (90, 'DE', 'X', 'Fimale')",
        "id=90 gender=Fimale",
    ),
    (
        "complete",
        "kind: not_null\n    columns: [gender, age]",
        "INSERT INTO residents (id, country, name, age) VALUES (91, 'DE', 'No Gender', 3)",
        "id=91",
    ),
    (
        "plausible_age",
        "kind: between\n    column: age\n    min: 0\n    max: 120",
        "INSERT INTO residents (id, country, name, age) VALUES (92, 'DE', 'Old', 130)",
        "id=92",
    ),
    (
        "one_person_once",
        "kind: unique\n    columns: [name, age, address]",
        "INSERT INTO residents (id, country, name, age, address) VALUES"
        " (93, 'DE', 'Twin', 5, 'x'), (94, 'FR', 'Twin', 5, 'x')",
        "2 rows, ids 93,94",
    ),
    (
        "at_most_five",
        "kind: row_count\n    min: 1\n    max: 5",
        "INSERT INTO residents (id, country, name) VALUES (95, 'DE', 'Sixth')",
        "6 rows (expected 1..5)",
    ),
    (
        "addresses",
        "kind: custom_sql\n    sql: SELECT id FROM residents WHERE address IS NULL",
        "INSERT INTO residents (id, country, name) VALUES (96, 'DE', 'Homeless')",
        "id=96",
    ),
    (
        "schema",
        "kind: schema",
        "ALTER TABLE residents DROP COLUMN address CASCADE",  # person_key is made of it
        "column address text missing",
    ),
]


@pytest.mark.parametrize(("name", "spec", "breaking", "sample"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_kind_passes_clean_and_fails_broken(
    run_cli: RunCli,
    loaded: None,
    connect: Connect,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    name: str,
    spec: str,
    breaking: str,
    sample: str,
) -> None:
    config = write_map(tmp_path / "cfg", shard_map_yaml(shard_dsns))
    (config.parent / "checks.yaml").write_text(
        f"checks:\n  - name: {name}\n    level: error\n    {spec}\n"
    )
    clean = run_cli("check", config=config)
    assert clean.exit_code == 0, clean.output
    with connect("default") as conn:
        conn.execute(breaking)
    broken = run_cli("check", "--format", "json", config=config)
    assert broken.exit_code == 1, broken.output
    (failed,) = [r for r in json.loads(broken.stdout) if r["status"] == "fail"]
    assert (failed["name"], failed["shard"]) == (name, "default")
    assert sample in failed["samples"]
    # observed counts failing rows, and the threshold says how many pass: 0 (a row count's
    # range beside it)
    expected = "0 failing: 1..5 rows" if name == "at_most_five" else "0 failing"
    assert (failed["observed"] > 0, failed["threshold"]) == (True, expected)


def test_the_same_person_on_two_shards_is_a_warning(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    for shard, country in (("default", "DE"), ("db_us", "US")):
        with connect(shard) as conn:
            conn.execute(
                "INSERT INTO residents (id, country, name, age, address)"
                " VALUES (500, %s, 'Ada Lovelace', 36, '12 St James''s Square')",
                [country],
            )
    found = results(run_cli)
    (people,) = [r for r in found if r["name"] == "same_person_in_several_shards"]
    assert people["status"] == "warn" and people["samples"] == ["default:500 = db_us:500"]


def test_load_reconciliation_fails_when_the_ledger_no_longer_matches(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("db_us") as conn:
        conn.execute("UPDATE load_ledger SET inserted = inserted - 1, unchanged = unchanged + 1")
    assert status_of(results(run_cli), "load_reconciliation") == {
        "default": "pass",
        "db_us": "fail",
        "*": "pass",
    }
    # Its failures are loads, not rows: --show-samples adds no rows (it gave nulls).
    shown = results(run_cli, "--show-samples", "--only", "load_reconciliation")
    (failed,) = [r for r in shown if r["status"] == "fail"]
    assert failed["samples"][0].startswith("load ") and failed["rows"] == []


def test_load_reconciliation_accepts_hand_edits_and_erasures(
    run_cli: RunCli, loaded: None, connect: Connect, tmp_path: Path
) -> None:
    with connect("default") as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (300, 'DE', 'By Hand')")
        conn.execute("DELETE FROM residents WHERE id = 17")  # an erasure request
    update = tmp_path / "update.json"
    update.write_text(json.dumps([{"id": 300, "country": "DE", "name": "By Hand", "age": 40}]))
    assert run_cli("load", str(update)).exit_code == 0  # the load takes the hand-made row over
    assert set(status_of(results(run_cli), "load_reconciliation").values()) == {"pass"}


def test_shard_ledgers_must_agree_on_the_files_they_hold(
    run_cli: RunCli, loaded: None, connect: Connect, tmp_path: Path
) -> None:
    later = tmp_path / "later.json"
    later.write_text(json.dumps([{"id": 400, "country": "DE", "name": "Later"}]))
    assert run_cli("load", str(later)).exit_code == 0
    with connect("db_us") as conn:  # as if db_us had been down for the second file
        conn.execute("DELETE FROM load_ledger WHERE source_file = %s", [str(later)])
    found = results(run_cli)
    (agreement,) = [r for r in found if r["name"] == "load_reconciliation" and r["shard"] == "*"]
    assert agreement["status"] == "fail"
    assert agreement["samples"] == [f"{later} not on db_us"]


def test_a_shard_added_later_is_not_expected_to_hold_earlier_files(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("db_us") as conn:  # db_us as a new, empty shard
        conn.execute("DELETE FROM load_ledger")
        conn.execute("UPDATE residents SET load_id = NULL")
    (agreement,) = [
        r for r in results(run_cli) if r["name"] == "load_reconciliation" and r["shard"] == "*"
    ]
    assert agreement["status"] == "pass"


def test_the_checks_could_not_run_exit_2(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    config = write_map(tmp_path / "cfg", shard_map_yaml(shard_dsns))
    (config.parent / "checks.yaml").write_text(
        "checks:\n  - name: broken\n    kind: custom_sql\n    sql: SELECT nope FROM nowhere\n"
    )
    sql_error = run_cli("check", config=config)
    assert sql_error.exit_code == 2
    assert "check broken on shard default" in sql_error.output


def test_a_custom_check_whose_sql_fails_is_told_where_in_its_own_sql(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    config = write_map(tmp_path / "cfg", shard_map_yaml(shard_dsns))
    for query, message in (
        # Not the wrapper's `syntax error at or near ")"`, `LINE 4: ) AS r`.
        (
            "SELECT id FROM residents WHERE",
            "syntax error at end of input (character 31 of its sql)",
        ),
        ("SELECT nope FROM residents", 'column "nope" does not exist (character 8 of its sql)'),
        # Planned fine, failing on its rows: the server's message as it came.
        ("SELECT id FROM residents WHERE age / (age - age) > 1", "division by zero"),
    ):
        (config.parent / "checks.yaml").write_text(
            f"checks:\n  - name: broken\n    kind: custom_sql\n    sql: {query}\n"
        )
        result = run_cli("check", config=config)
        assert result.exit_code == 2
        assert f"check broken on shard default: {message}" in result.output
        assert "AS r" not in result.output


def test_a_bad_checks_file_or_selection_exits_2_before_any_shard_is_asked(
    run_cli: RunCli, offline_map: Path
) -> None:
    for body, message in (
        ("kind: magic", "'magic' is not a check kind"),
        ("kind: [x]", "is not a check kind"),
        ("kind: not_null\n    columns: gender", "expected a list of columns"),
        ("kind: accepted_values\n    column: gender\n    values: []", "a non-empty list"),
        ("kind: between\n    column: age\n    min: abc", "x).min: expected a number"),
        ("kind: row_count\n    max: true", "x).max: expected a number"),
        # checks that could never fail, or never pass
        ("kind: row_count", "row_count needs 'min', 'max' or both"),
        ("kind: row_count\n    min: 10\n    max: 2", "min 10 is over max 2"),
        ("kind: between\n    column: age\n    min: 5\n    max: 2", "min 5 is over max 2"),
        ("kind: between\n    column: name\n    min: 1", "'name' is not a column of numbers"),
        ("kind: cross_shard_ids\n    shards: [db_us]", "cross_shard_ids compares shards"),
        ("kind: cross_shard_people\n    shards: [db_us, db_us]", "a shard is listed twice"),
    ):
        (offline_map.parent / "checks.yaml").write_text(f"checks:\n  - name: x\n    {body}\n")
        bad_config = run_cli("check", config=offline_map)
        assert bad_config.exit_code == 2 and message in bad_config.output, body
    (offline_map.parent / "checks.yaml").write_text(
        (PROJECT / "config" / "checks.yaml").read_text()
    )
    only = run_cli("check", "--only", "nope", config=offline_map)
    assert only.exit_code == 2, only.output
    assert (
        "--only nope: no such check (the checks: residency, schema, has_residents," in only.output
    )
    assert only.output.rstrip().endswith("(see `pipeline check --help`)")


def test_junit_is_valid_xml_with_the_right_counts(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute("ALTER TABLE residents DROP CONSTRAINT residents_residency")
        conn.execute("INSERT INTO residents (id, country, name) VALUES (77, 'US', 'Misplaced')")
    result = run_cli("check", "--format", "junit")
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout).find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert suite.get("tests") == str(len(cases)) == "19"
    failures = [c for c in cases if c.find("failure") is not None]
    assert suite.get("failures") == str(len(failures)) == "1"
    assert (failures[0].get("name"), failures[0].get("classname")) == ("residency", "shard.default")
    warned = ET.fromstring(run_cli("check", "--format", "junit", "--warn-error").stdout)
    # + the id collisions, + complete_records (the misplaced row has no gender or age)
    assert warned.find("testsuite").get("failures") == "3"  # type: ignore[union-attr]


def test_the_output_format_follows_the_extension(
    run_cli: RunCli, loaded: None, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run_cli("check", "-o", str(out / "checks.xml")).exit_code == 0
    assert ET.parse(out / "checks.xml").getroot().find("testsuite") is not None
    assert run_cli("check", "-o", str(out / "checks.json")).exit_code == 0
    assert (out / "checks.json").read_text() == run_cli("check", "--format", "json").stdout
    result = run_cli("check", "-o", str(out / "checks.log"))
    assert result.exit_code == 2 and ".log names no format" in result.output


def test_json_matches_text(run_cli: RunCli, loaded: None) -> None:
    text = run_cli("check").stdout.splitlines()[:-1]
    found = results(run_cli)
    assert len(text) == len(found) == 19
    for line, record in zip(text, found, strict=True):
        status, level, name, shard = line.split()[:4]
        assert (status.lower(), level, name, shard) == (
            record["status"], record["level"], record["name"], f"[{record['shard']}]"
        )  # fmt: skip
    assert all("--" not in r["sql"] and r["sql"].startswith(("SELECT", "COPY")) for r in found)


def test_github_annotations_and_step_summary(
    run_cli: RunCli, loaded: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run_cli("check", "--format", "github")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "::warning title=check ids_in_several_shards on *::2 failing"
        " (default:1 = db_us:1; default:2 = db_us:2)"
    ]
    table = summary.read_text()
    assert (
        table.startswith("## pipeline check")
        and "| warn | ids_in_several_shards | * | 2 |" in table
    )


def test_values_a_shard_holds_are_printable_in_text_and_the_step_summary(
    run_cli: RunCli, loaded: None, connect: Connect, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    with connect("default") as conn:  # a gender written by hand, as the samples show it
        conn.execute(
            "INSERT INTO residents (id, country, name, gender)"
            " VALUES (9, 'DE', 'X', E'X\\n::set-output name=a::b\\x1b[31m<script>|')"
        )
    text = run_cli("check").stdout
    line = next(x for x in text.splitlines() if x.split()[2] == "gender_values")
    assert "X\\n::set-output name=a::b\\x1b[31m<script>|" in line
    assert "\x1b" not in text and "\n::set-output" not in text
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    run_cli("check", "--format", "github")
    row = next(x for x in summary.read_text().splitlines() if "gender_values" in x)
    assert row.endswith("X\\n::set-output name=a::b\\x1b[31m&lt;script&gt;\\| |"), row


def test_custom_sql_may_end_in_a_comment_and_junit_stays_valid_xml(
    run_cli: RunCli, loaded: None, connect: Connect, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    config = write_map(tmp_path / "cfg", shard_map_yaml(shard_dsns))
    (config.parent / "checks.yaml").write_text(
        "checks:\n"
        "  - name: odd_genders\n    kind: accepted_values\n    column: gender\n"
        "    values: [Male, Female]\n"
        "  - name: commented\n    kind: custom_sql\n"
        "    sql: 'SELECT id FROM residents WHERE age > 200 -- none, the schema says so'\n"
    )
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, gender) VALUES (9, 'DE', 'X', E'a\\x01b')"
        )
    result = run_cli("check", "--format", "junit", config=config)
    assert result.exit_code == 1
    suite = ET.fromstring(result.stdout).find("testsuite")  # parses: no raw control character
    assert suite is not None and suite.get("failures") == "1"


def test_samples_never_hold_whole_rows_unless_asked(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age) VALUES (92, 'DE', 'Secret Name', 130)"
        )
    plain = run_cli("check", "--format", "json").stdout
    assert "Secret Name" not in plain
    shown = results(run_cli, "--show-samples")
    (age,) = [r for r in shown if r["name"] == "plausible_age" and r["status"] != "pass"]
    assert age["rows"][0]["name"] == "Secret Name"


def test_ids_in_several_shards_are_all_counted_and_the_smallest_sampled(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    # 300 more shared ids spread over many hash buckets, beside the original data's 1 and 2.
    for shard, country in (("default", "DE"), ("db_us", "US")):
        with connect(shard) as conn:
            conn.execute(
                "INSERT INTO residents (id, country, name)"
                " SELECT i, %s, 'R' || i FROM generate_series(1000, 1299) AS i",
                [country],
            )
    found = results(run_cli, "--only", "ids_in_several_shards")
    (ids,) = [r for r in found if r["name"] == "ids_in_several_shards"]
    assert ids["observed"] == 302
    assert ids["samples"][:3] == [
        "default:1 = db_us:1",
        "default:2 = db_us:2",
        "default:1000 = db_us:1000",
    ]
    assert len(ids["samples"]) == 20


def add_twins(connect: Connect) -> None:
    """300 people on both shards under the same ids (1000-1299), beside the original data's
    ids 1 and 2: 302 ids and 300 persons in several shards."""
    for shard, country in (("default", "DE"), ("db_us", "US")):
        with connect(shard) as conn:
            conn.execute(
                "INSERT INTO residents (id, country, name, age, address)"
                " SELECT i, %s, 'Twin ' || i, 40, i || ' Main St'"
                " FROM generate_series(1000, 1299) AS i",
                [country],
            )


@pytest.mark.parametrize("path", ["partitions in files", "PostgreSQL 13's grouping"])
def test_cross_shard_checks_find_the_same_keys_however_they_are_read(
    run_cli: RunCli, loaded: None, connect: Connect, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    from pipeline import crosscheck

    add_twins(connect)
    expected = results(run_cli)
    if path == "partitions in files":  # a partition a few dozen keys: 16 of them, spilled
        monkeypatch.setattr(crosscheck, "KEYS_A_PARTITION", 64)
        monkeypatch.setattr(crosscheck, "SPILL_ROWS", 100)
    else:  # the chunks of a server without TID range scans
        monkeypatch.setattr(crosscheck, "TID_RANGES_SINCE", 10**9)
        monkeypatch.setattr(crosscheck, "CHUNK_ROWS", 50)
    found = results(run_cli)
    cross = [r for r in found if r["shard"] == "*"]
    assert {r["name"]: r["observed"] for r in cross} == {
        "ids_in_several_shards": 302,
        "same_person_in_several_shards": 300,
        "load_reconciliation": 0,
    }
    assert [{**r, "sql": ""} for r in found] == [{**r, "sql": ""} for r in expected]


def test_the_cross_shard_checks_sql_pasted_on_each_shard_shows_the_failures(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    # The `sql` of a cross-shard result is what each shard gives, as a person would ask
    # for it: its first column's values on more than one shard are the failures.
    add_twins(connect)
    found = {r["name"]: r for r in results(run_cli) if r["shard"] == "*"}
    for name in ("ids_in_several_shards", "same_person_in_several_shards"):
        check = found[name]
        given = {}
        for shard in ("default", "db_us"):
            with connect(shard) as conn:
                given[shard] = conn.execute(check["sql"]).fetchall()
        shared = {row[0] for row in given["default"]} & {row[0] for row in given["db_us"]}
        assert len(shared) == check["observed"] > 0, name
        ids = {f"{s}:{row[-1]}" for s, rows in given.items() for row in rows if row[0] in shared}
        assert {i for sample in check["samples"] for i in sample.split(" = ")} <= ids


def test_the_person_key_follows_every_write_and_cannot_be_written(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " VALUES (700, 'DE', 'Grace Hopper', 85, '1 Navy Yard')"
        )
    with connect("db_us") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " VALUES (701, 'US', 'Grace Hoper', 85, '1 NAVY YARD')"
        )
        with pytest.raises(psycopg.errors.GeneratedAlways):
            conn.execute("UPDATE residents SET person_key = 0 WHERE id = 701")

    assert same_person(run_cli)["observed"] == 0
    with connect("db_us") as conn:  # a hand edit: the key follows, the check sees it
        conn.execute("UPDATE residents SET name = 'GRACE HOPPER' WHERE id = 701")
    assert same_person(run_cli)["samples"] == ["default:700 = db_us:701"]


def test_the_person_key_lowers_a_to_z_only(run_cli: RunCli, loaded: None, connect: Connect) -> None:
    # Under the C collation on every shard, whatever the servers' own: ASCII capitals match
    # their small letters, other letters only themselves (Ñ is not ñ).
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " VALUES (710, 'DE', 'ZOË ÜNAL', 30, '2 MAIN ST'), (711, 'DE', 'ANNA Ñ', 30, 'x')"
        )
    with connect("db_us") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address)"
            " VALUES (712, 'US', 'zoË Ünal', 30, '2 main st'), (713, 'US', 'anna ñ', 30, 'x')"
        )
    assert same_person(run_cli)["samples"] == ["default:710 = db_us:712"]


def test_the_same_person_check_refuses_a_shard_whose_keys_are_another_versions(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    # A shard whose migrations are behind keeps person keys of another formula: compared,
    # they would match nobody's and the check would pass having compared nothing.
    with connect("db_us") as conn:
        conn.execute(
            "DELETE FROM schema_migrations"
            " WHERE version = (SELECT max(version) FROM schema_migrations)"
        )
    out = run_cli("check", "--only", "same_person_in_several_shards")
    assert out.exit_code == 2, out.output
    assert "shard db_us is at schema version" in out.output
    assert "run `pipeline init`" in out.output
    ids = run_cli("check", "--only", "ids_in_several_shards")  # the ids still compare
    assert ids.exit_code in (0, 1), ids.output


def test_samples_and_rows_describe_the_same_failing_rows(
    run_cli: RunCli, loaded: None, connect: Connect
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age)"
            " SELECT i, 'DE', 'R' || i, 130 FROM generate_series(2000, 2099) AS i"
        )
    found = results(run_cli, "--only", "plausible_age", "--show-samples")
    (ages,) = [r for r in found if r["name"] == "plausible_age" and r["shard"] == "default"]
    assert ages["observed"] == 100 and len(ages["samples"]) == len(ages["rows"]) == 20
    assert ages["samples"] == [f"id={row['id']}" for row in ages["rows"]]


def test_shared_keys_count_each_key_once_and_sample_the_smallest_ids() -> None:
    import numpy as np

    from pipeline.config import Shard
    from pipeline.crosscheck import _shared_keys

    shards = [Shard(name, f"embedded:{name}", frozenset(), False) for name in ("a", "b", "c")]
    keys = np.arange(100, 130, dtype=np.int64)  # 30 keys on a and b, ids counting down
    parts = [
        (0, keys, 1000 - keys),
        (1, keys, 2000 - keys),
        (2, np.array([100, 500, 500], dtype=np.int64), np.array([7, 8, 9], dtype=np.int64)),
    ]
    count, groups = _shared_keys(parts, shards)
    assert count == 30  # key 100 on three shards counts once; 500, twice on c only, not at all
    assert [smallest for smallest, _ in groups][:3] == [7, 871, 872]
    assert groups[0][1] == "a:900 = b:1900 = c:7" and len(groups) == 20


@pytest.fixture
def down_map(shard_dsns: dict[str, str], tmp_path: Path) -> Path:
    """The test map with db_us on a port where no server listens."""
    dsns = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} password=Zq9Xw7")
    return write_map(tmp_path / "down", shard_map_yaml(dsns))


@pytest.mark.parametrize("broken", ["unreachable shard", "bad shard map"])
def test_checks_that_cannot_run_still_write_a_failing_report(
    run_cli: RunCli,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    broken: str,
) -> None:
    if broken == "bad shard map":  # no database needed
        config = tmp_path / "bad.yaml"
        config.write_text("shards: {}\n")
    else:  # default initialised and answering, db_us not
        request.getfixturevalue("initialised")
        config = request.getfixturevalue("down_map")
    junit = run_cli("check", "--format", "junit", "-o", str(tmp_path / "r.xml"), config=config)
    assert junit.exit_code == 2
    assert junit.output.startswith("Error: ") and len(junit.output.splitlines()) == 1
    suite = ET.parse(tmp_path / "r.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("errors") == "1" and suite.get("tests") == "1"
    error = suite.find("testcase/error")
    assert error is not None
    assert error.get("message", "").startswith("the checks could not run: ")
    assert ("db_us" if broken == "unreachable shard" else "shards:") in error.get("message", "")

    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    github = run_cli("check", "--format", "github", config=config)
    assert github.exit_code == 2
    assert github.stdout.startswith("::error title=pipeline check::the checks could not run: ")
    assert "could not run" in summary.read_text()

    as_json = run_cli("check", "-o", str(tmp_path / "r.json"), config=config)
    assert as_json.exit_code == 2
    (record,) = json.loads((tmp_path / "r.json").read_text())
    assert record["status"] == "error" and record["error"].startswith("the checks could not run")
    for result in (junit, github, as_json):
        assert "Zq9Xw7" not in result.output
    assert "Zq9Xw7" not in (tmp_path / "r.xml").read_text() + (tmp_path / "r.json").read_text()


def test_the_per_shard_checks_run_on_every_shard_at_once(
    initialised: None, config_file: Path
) -> None:
    from pipeline.check_shard import run_per_shard
    from pipeline.checks import CheckSpec, with_residency
    from pipeline.config import load_shard_map

    # A check that takes `pause` seconds on each shard: one shard after the other, the two
    # would take twice that.
    pause = 1.5
    sleep = f"SELECT 1 AS id FROM pg_sleep({pause})"
    slow = CheckSpec("slow", "custom_sql", "warn", {"sql": sleep})
    began = time.monotonic()
    found = run_per_shard(load_shard_map(config_file), with_residency([slow]))
    took = time.monotonic() - began
    assert [(r.name, r.shard, r.failing) for r in found] == [
        ("residency", "default", 0),
        ("slow", "default", 1),
        ("residency", "db_us", 0),
        ("slow", "db_us", 1),
    ]
    assert took < 2 * pause
