"""`pipeline extract` and `to_dataframe`: every shard unioned, in every format, consistently."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pycountry
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pipeline import db, to_dataframe
from pipeline.config import load_shard_map
from pipeline.errors import OptionError, ShardError
from pipeline.extract import Selection, _select
from pipeline.schema import LIST_MAX, ResidencyRule
from tests.conftest import ORIGINAL_DATA, RunCli, StoppableServer, shard_map_yaml, write_map

COLUMNS = ["shard", "id", "country", "name", "gender", "age", "address"]

# The original app's data as the shards hold it after a load, in extract order.
EXPECTED = [
    ("default", 1, "UA", "Olena Kovalenko", "Female", 34, "vul. Khreshchatyk 22, Kyiv"),
    ("default", 2, "DE", "Jonas Becker", "Male", 41, "Lindenstraße 5, Berlin"),
    ("default", 17, "GB", "Amelia Clarke", "Female", 29, "12 King's Road, London"),
    ("default", 22, "FR", "Lucas Moreau", "Male", 57, "8 rue de la Paix, Paris"),
    ("default", 25, "CA", "Chloé Tremblay", "Female", 22, "400 Rue Sainte-Catherine, Montréal"),
    ("db_us", 1, "US", "John Smith", "Male", 45, "350 Fifth Avenue, New York, NY"),
    ("db_us", 2, "US", "Maria Garcia", "Female", 38, "1600 Main St, Houston, TX"),
    ("db_us", 21, "US", "James Johnson", "Male", 63, "742 Evergreen Terrace, Springfield"),
    ("db_us", 23, "US", "Emily Davis", "Female", 17, "55 Lake Shore Dr, Chicago, IL"),
]


def from_csv(text: str) -> list[tuple[Any, ...]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    assert next(reader) == COLUMNS
    return [
        (s, int(i), c, n, g or None, int(a) if a else None, ad or None)
        for s, i, c, n, g, a, ad in reader
    ]


def from_objects(objects: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    assert all(list(o) == COLUMNS for o in objects)
    return [tuple(o.values()) for o in objects]


def test_the_combined_csv_holds_both_databases(run_cli: RunCli, loaded: None) -> None:
    result = run_cli("extract")
    assert result.exit_code == 0
    assert from_csv(result.stdout) == EXPECTED


@pytest.mark.parametrize("fmt", ["csv", "json", "ndjson", "parquet"])
def test_every_format_round_trips(run_cli: RunCli, loaded: None, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"residents.{fmt}"
    result = run_cli("extract", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "9 residents from 2 shard(s)" in result.output
    if fmt == "csv":
        records = from_csv(out.read_text())
    elif fmt == "json":
        records = from_objects(json.loads(out.read_text()))
    elif fmt == "ndjson":
        records = from_objects([json.loads(line) for line in out.read_text().splitlines()])
    else:
        table = pq.read_table(out)
        assert [str(t) for t in table.schema.types] == [
            "string", "int64", "string", "string", "string", "int16", "string"
        ]  # fmt: skip
        records = [tuple(r.values()) for r in table.to_pylist()]
    assert records == EXPECTED


def test_the_dataframe_matches_the_extract(loaded: None, config_file: Path) -> None:
    frame = to_dataframe(config=config_file)
    assert list(frame.columns) == COLUMNS
    assert [tuple(r) for r in frame.itertuples(index=False)] == EXPECTED
    assert str(frame["id"].dtype) == "Int64" and str(frame["age"].dtype) == "Int16"
    us = to_dataframe(countries=["us"], config=config_file)
    assert list(us["shard"].unique()) == ["db_us"] and len(us) == 4
    one = to_dataframe(countries="US", shards="db_us", config=config_file)  # a str is one
    assert one.equals(us)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--country", "US"], [r for r in EXPECTED if r[2] == "US"]),
        (["--country", "DE", "--country", "FR"], [r for r in EXPECTED if r[2] in ("DE", "FR")]),
        (["--shard", "default"], [r for r in EXPECTED if r[0] == "default"]),
        (["--shard", "db_us", "--country", "DE"], []),
    ],
)
def test_filters(run_cli: RunCli, loaded: None, args: list[str], expected: list[Any]) -> None:
    result = run_cli("extract", *args)
    assert result.exit_code == 0
    assert from_csv(result.stdout) == expected


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_country_is_read_wherever_it_still_is_after_the_map_changed(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    # The map now sends US to default, and no rebalance has moved it (the move stops on the
    # ids 1 and 2 both shards hold): db_us's constraint still takes US, and it holds them.
    config = write_map(tmp_path / "moved", shard_map_yaml(shard_dsns, routes="db_us: [CA]"))
    assert run_cli("rebalance", config=config).exit_code == 1
    out = tmp_path / f"us.{fmt}"
    result = run_cli("extract", "--country", "US", "-o", str(out), config=config)
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        got = from_csv(out.read_text())
    else:
        got = [tuple(row.values()) for row in pq.read_table(out).to_pylist()]
    assert got == [r for r in EXPECTED if r[2] == "US"]
    frame = to_dataframe(countries=["US"], config=config)
    assert frame["id"].tolist() == [1, 2, 21, 23]


@pytest.mark.parametrize("statement", ["extract_rows", "extract_json"])
def test_a_shard_whose_constraint_refuses_the_countries_reads_no_row_for_them(
    loaded: None, config_file: Path, statement: str
) -> None:
    # Every shard is asked for the countries (above): one that may not hold them answers
    # from its plan, where a scan of all its rows would find none.
    shard_map = load_shard_map(config_file)
    shard = shard_map.shard("db_us")
    with db.snapshot(shard_map, shard) as conn:
        for countries, excluded in ((("DE", "FR"), True), (("DE", "US"), False)):
            select = _select(shard, Selection(countries=countries), statement, defuse=True)
            plan = "\n".join(row[0] for row in conn.execute(b"EXPLAIN " + select.as_bytes(conn)))
            assert ("One-Time Filter: false" in plan) is excluded, plan
            assert ("Scan on residents" not in plan) is excluded, plan


def test_a_constraint_of_more_than_a_hundred_countries_still_reads_no_row_for_others(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # PostgreSQL reasons with lists of up to LIST_MAX (100) codes only: db_us takes 150
    # countries and default refuses them, each rule written as lists of 75.
    codes = sorted(c.alpha_2 for c in pycountry.countries if c.alpha_2 not in ("FR", "GB"))
    routed = ["US", *codes[:149]]
    assert "US" in routed and len(routed) > LIST_MAX
    config = write_map(
        tmp_path / "wide", shard_map_yaml(shard_dsns, f"db_us: [{', '.join(routed)}]")
    )
    shard_map = load_shard_map(config)

    def plans(shard_name: str) -> dict[tuple[str, ...], str]:
        shard = shard_map.shard(shard_name)
        with db.snapshot(shard_map, shard) as conn:
            found: dict[tuple[str, ...], str] = {}
            for countries in (("FR",), ("US",), ("FR", "GB"), ("US", "FR")):
                select = _select(shard, Selection(countries=countries), "extract_rows", False)
                rows = conn.execute(b"EXPLAIN " + select.as_bytes(conn))
                found[countries] = "\n".join(row[0] for row in rows)
        return found

    # A rule of 150 codes that an earlier version wrote as one list, by hand: init sets it
    # again, in lists.
    assert run_cli("init", config=config).exit_code == 0
    one_list = ResidencyRule(frozenset(routed), frozenset())
    with psycopg.connect(shard_dsns["db_us"], autocommit=True) as conn:
        conn.execute("ALTER TABLE residents DROP CONSTRAINT residents_residency")
        conn.execute(
            sql.SQL(
                "ALTER TABLE residents ADD CONSTRAINT residents_residency CHECK (country IN ({}));"
                " COMMENT ON CONSTRAINT residents_residency ON residents IS {}"
            ).format(sql.SQL(", ").join(map(sql.Literal, routed)), one_list.describe())
        )
    assert "Scan on residents" in plans("db_us")[("FR",)]  # PostgreSQL cannot tell
    assert run_cli("plan", config=config).output.splitlines() == [
        f"constraint db_us  {one_list.describe()}: the same, to be written as lists of at most"
        " 100 codes (`pipeline init`)"
    ]
    again = run_cli("init", config=config)
    assert again.exit_code == 0, again.output
    for shard_name, held, other in (("db_us", "US", "FR"), ("default", "FR", "US")):
        found = plans(shard_name)
        for countries, plan in found.items():
            excluded = held not in countries
            assert ("One-Time Filter: false" in plan) is excluded, (shard_name, countries, plan)
            assert ("Scan on residents" not in plan) is excluded, (shard_name, countries, plan)
        assert found[(other,)] != found[(held,)]
    # Set as lists, the rule is left as it is by the next init.
    last = run_cli("init", config=config).output
    assert "db_us: schema" in last and "residency unchanged: country IN (" in last, last
    assert "residency set to" not in last, last
    assert "nothing to move" in run_cli("plan", config=config).output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "nope"], "no shard named 'nope'"),
        (["--country", "Germany"], "--country 'Germany': not an ISO 3166-1 alpha-2 country"),
        (["--format", "parquet"], "--format parquet needs -o PATH"),
        (["-o", "{out}/r.xlsx"], ".xlsx names no format this command writes"),
        (["-o", "{out}/r.csv.gz"], ".gz names no format this command writes"),
    ],
)
def test_bad_selections_are_usage_errors(
    run_cli: RunCli, offline_map: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    # refused before any shard is asked: no server answers this map
    out = tmp_path / "out"
    result = run_cli("extract", *[a.format(out=out) for a in args], config=offline_map)
    assert result.exit_code == 2
    assert message in result.output
    assert result.output.rstrip().endswith("(see `pipeline extract --help`)"), result.output
    assert result.stdout == ""  # not even the header
    assert not out.exists()


def test_csv_defuses_formulas_unless_raw(
    run_cli: RunCli, initialised: None, connect: Callable[[str], psycopg.Connection[Any]]
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, gender, address) VALUES"
            " (1, 'DE', '=HYPERLINK(\"http://x\")', '+1', '@SUM(A1)'),"
            " (2, 'DE', '-2 apples', E'\\tTab', E'line one\\nline \"two\"'),"
            " (3, 'DE', 'Plain = fine', NULL, ''),"
            # country is char(2): a formula there too, and a short value keeps its padding
            " (4, '=1', 'Odd country', NULL, NULL), (5, 'X', 'Short country', NULL, NULL)"
        )
    safe = from_csv(run_cli("extract").stdout)
    assert [r[3:5] for r in safe] == [
        ('\'=HYPERLINK("http://x")', "'+1"),
        ("'-2 apples", "'\tTab"),
        ("Plain = fine", None),
        ("Odd country", None),
        ("Short country", None),
    ]
    assert safe[0][6] == "'@SUM(A1)"
    assert [r[2] for r in safe] == ["DE", "DE", "DE", "'=1", "X "]
    raw_text = run_cli("extract", "--raw").stdout
    raw = from_csv(raw_text)
    assert [r[3] for r in raw] == [
        '=HYPERLINK("http://x")',
        "-2 apples",
        "Plain = fine",
        "Odd country",
        "Short country",
    ]
    assert [r[2] for r in raw] == ["DE", "DE", "DE", "=1", "X "]
    assert raw[1][6] == 'line one\nline "two"'  # byte for byte, newline and quotes included
    assert ',""\n' in raw_text.replace("\r\n", "\n")  # an empty address stays empty, not NULL
    as_json = json.loads(run_cli("extract", "--format", "json").stdout)
    assert as_json[0]["name"] == '=HYPERLINK("http://x")'  # only CSV is defused
    # The source, a provenance column, too: a row written by hand may hold anything there.
    with connect("default") as conn:
        conn.execute("UPDATE residents SET source = CASE id WHEN 1 THEN '=cmd()' ELSE 'crm' END")
    for args, first in ((), "'=cmd()"), (("--raw",), "=cmd()"):
        text = run_cli("extract", "--with-provenance", *args).stdout
        (header, *rows) = csv.reader(io.StringIO(text, newline=""))
        assert header[-1] == "source"
        assert [r[-1] for r in rows] == [first, "crm", "crm", "crm", "crm"]


def test_a_reader_that_leaves_early_gets_exit_1_and_one_line(
    config_file: Path, initialised: None, connect: Callable[[str], psycopg.Connection[Any]]
) -> None:
    with connect("default") as conn:  # more than a pipe holds: the write must meet the close
        conn.execute(
            "INSERT INTO residents (id, country, name)"
            " SELECT i, 'DE', 'Resident ' || i FROM generate_series(1, 50000) AS i"
        )
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), "extract"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline() == b"shard,id,country,name,gender,age,address\n"
        proc.stdout.close()  # as `pipeline extract | head -1` does
        stderr = proc.stderr.read()
        assert proc.wait(timeout=60) == 1
    assert b"Traceback" not in stderr and b"Exception ignored" not in stderr


def test_provenance_columns(run_cli: RunCli, loaded: None) -> None:
    objects = [
        json.loads(line)
        for line in run_cli(
            "extract", "--format", "ndjson", "--with-provenance"
        ).stdout.splitlines()
    ]
    assert list(objects[0])[-3:] == ["load_id", "loaded_at", "source"]
    assert len({o["load_id"] for o in objects}) == 1


@pytest.mark.slow
def test_an_unreachable_shard_fails_the_extract_unless_partial_is_allowed(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, _ = split_shards
    assert run_cli("init", config=config).exit_code == 0
    assert run_cli("load", str(ORIGINAL_DATA), config=config).exit_code == 0
    out = tmp_path / "exports" / "residents.csv"
    stoppable_server.stop()
    failed = run_cli("extract", "-o", str(out), config=config)
    assert failed.exit_code == 1
    assert "shard db_us: unreachable" in failed.output
    assert not out.exists() and list(out.parent.iterdir()) == []  # no half-written file
    for fmt in ("csv", "ndjson"):  # nor a row to stdout, where the first shard streams
        to_stdout = run_cli("extract", "--format", fmt, config=config)
        assert to_stdout.exit_code == 1 and to_stdout.stdout == "", to_stdout.stdout
        assert "shard db_us: unreachable" in to_stdout.stderr
    partial = run_cli("extract", "-o", str(out), "--allow-partial", config=config)
    assert partial.exit_code == 0, partial.output
    assert "Warning: shard db_us left out (--allow-partial)" in partial.output
    assert from_csv(out.read_text()) == [r for r in EXPECTED if r[0] == "default"]
    with pytest.raises(ShardError, match="shard db_us: unreachable"):
        to_dataframe(config=config)
    with pytest.warns(UserWarning, match="shard db_us left out"):
        frame = to_dataframe(config=config, allow_partial=True)
    assert list(frame.attrs["missing_shards"]) == ["db_us"]
    assert set(frame["shard"]) == {"default"}


def test_parquet_keeps_text_that_looks_like_null(
    run_cli: RunCli,
    initialised: None,
    connect: Callable[[str], psycopg.Connection[Any]],
    tmp_path: Path,
) -> None:
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, gender, address) VALUES"
            " (1, 'DE', 'Null', 'NA', 'N/A'), (2, 'DE', 'nan', '', NULL)"
        )
    out = tmp_path / "r.parquet"
    assert run_cli("extract", "-o", str(out)).exit_code == 0
    rows = pq.read_table(out).to_pylist()
    assert [(r["name"], r["gender"], r["address"]) for r in rows] == [
        ("Null", "NA", "N/A"),
        ("nan", "", None),  # an empty string stays empty; only NULL is null
    ]


def test_output_files_are_ordinary_files_and_bad_paths_are_one_line(
    run_cli: RunCli, loaded: None, tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    assert run_cli("extract", "-o", str(out)).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # personal data (tests/test_output.py)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    result = run_cli("extract", "-o", str(blocked / "r.csv"))
    assert result.exit_code == 2
    assert result.output.startswith("Error: -o ") and len(result.output.strip().splitlines()) == 1


def test_a_copy_stopped_early_or_failing_leaves_the_snapshot_usable(
    loaded: None, config_file: Path, shard_dsns: dict[str, str]
) -> None:
    from psycopg import sql

    from pipeline.config import load_shard_map
    from pipeline.copyout import CopyOut
    from pipeline.db import snapshot

    shard_map = load_shard_map(config_file)
    with snapshot(shard_map, shard_map.shards[0]) as conn:
        # Begun before the block: a CopyOut sends no BEGIN of its own (one that an
        # interrupt cut short made psycopg print a failed rollback to stderr).
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        many = "COPY (SELECT repeat('x', 1000) FROM generate_series(1, 5000)) TO STDOUT"
        chunks = CopyOut(conn, sql.SQL(many)).__iter__()
        assert len(next(chunks)) >= 1 << 20  # a reader that stops after the first megabyte
        chunks.close()
        with psycopg.connect(shard_dsns["default"]) as other:  # committed meanwhile
            other.execute("INSERT INTO residents (id, country, name) VALUES (90, 'CA', 'Late')")
        failing = "COPY (SELECT 1 / (3 - i) FROM generate_series(1, 5) AS i) TO STDOUT"
        with pytest.raises(psycopg.errors.DivisionByZero):
            list(CopyOut(conn, sql.SQL(failing)))
        # The same transaction goes on, in the snapshot its first COPY took: not the late row.
        whole = CopyOut(conn, sql.SQL("COPY (SELECT id FROM residents) TO STDOUT"))
        assert b"".join(whole).count(b"\n") == whole.rows == 5
        assert conn.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
    no_transaction = psycopg.connect(shard_dsns["default"])  # idle, not in autocommit
    with no_transaction, pytest.raises(psycopg.ProgrammingError, match="in a transaction"):
        list(CopyOut(no_transaction, sql.SQL("COPY (SELECT 1) TO STDOUT")))


def test_parquet_refuses_a_shard_whose_dsn_asks_for_text_in_another_encoding(
    run_cli: RunCli, loaded: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Parquet's text is UTF-8: LATIN1 bytes would be taken for it (and a lone "ÿ", the
    # byte FF, for a NULL). CSV writes what the DSN asks for, as before.
    latin1 = make_conninfo(shard_dsns["db_us"], client_encoding="LATIN1")
    config = write_map(tmp_path / "latin1", shard_map_yaml({**shard_dsns, "db_us": latin1}))
    out = tmp_path / "r.parquet"
    result = run_cli("extract", "-o", str(out), config=config)
    assert result.exit_code == 2, result.output
    assert "shard db_us: Parquet and DataFrames need the text as UTF-8" in result.output
    assert not out.exists()
    assert run_cli("extract", "-o", str(tmp_path / "r.csv"), config=config).exit_code == 0


@pytest.mark.parametrize("command", [["extract"], ["extract", "-o", "{out}"], ["report"]])
def test_allow_partial_with_every_shard_left_out_is_a_failure(
    run_cli: RunCli, offline_map: Path, tmp_path: Path, command: list[str]
) -> None:
    """--allow-partial leaves out some shards; with all of them left out nothing was read:
    exit 1, no file, rather than an empty extract or report that says 0 and exits 0."""
    out = tmp_path / "all.csv"
    args = [a.format(out=out) for a in command]
    result = run_cli(*args, "--allow-partial", config=offline_map)
    assert result.exit_code == 1, result.output
    assert result.output.count("Error: shard ") == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_to_dataframe_names_its_own_argument_for_a_country_that_is_none(offline_map: Path) -> None:
    with pytest.raises(OptionError, match=r"^countries 'Atlantis': not an ISO 3166-1"):
        to_dataframe(countries=["DE", "Atlantis"], config=offline_map)
