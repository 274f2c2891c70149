"""`pipeline init`: migrations on every shard and residency enforced by PostgreSQL itself."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pycountry
import pytest
from click.testing import Result
from psycopg import conninfo

from pipeline.queries import SCHEMA
from pipeline.schema import LIST_MAX, ResidencyRule, latest_version
from pipeline.sqlfiles import migrations
from tests.conftest import Connect, Server, rows, shard_map_yaml, write_map

LATEST = latest_version()  # the schema version `pipeline init` brings shards to

INSERT = (
    "INSERT INTO residents (id, country, name, gender, age, address)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)


def versions(conn: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]


def test_init_brings_every_shard_to_the_latest_version(
    run_cli: Callable[..., Result], connect: Connect
) -> None:
    result = run_cli("init")
    assert result.exit_code == 0, result.output
    assert f"default: schema 0 -> {LATEST}; residency set to country NOT IN (US)" in result.output
    assert f"db_us: schema 0 -> {LATEST}; residency set to country IN (US)" in result.output
    latest = [m.version for m in migrations()]
    for shard in ("default", "db_us"):
        with connect(shard) as conn:
            assert versions(conn) == latest


def test_init_twice_is_a_no_op(run_cli: Callable[..., Result], initialised: None) -> None:
    result = run_cli("init")
    assert result.exit_code == 0
    assert (
        f"default: schema {LATEST} (up to date); residency unchanged: country NOT IN (US)"
        in result.output
    )


def test_a_shard_behind_is_brought_up_to_date(
    run_cli: Callable[..., Result], connect: Connect
) -> None:
    first = migrations()[0]
    with connect("db_us") as conn:
        conn.execute(SCHEMA.migrations_table)
        conn.execute(first.text.encode())
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (1, %s)", [first.name])
        conn.execute(INSERT, [7, "US", "Kept Through Upgrade", "Male", 40, "1 Main St"])
    result = run_cli("init")
    assert result.exit_code == 0, result.output
    assert f"db_us: schema 1 -> {LATEST}" in result.output
    with connect("db_us") as conn:
        assert versions(conn) == list(range(1, LATEST + 1))
        assert conn.execute("SELECT name FROM residents WHERE id = 7").fetchone() == (
            "Kept Through Upgrade",
        )
        # The rewrite gave the kept row the person key a row written now gets.
        conn.execute(INSERT, [8, "US", "KEPT through upgrade", "Male", 40, "1 MAIN ST"])
        keys = conn.execute("SELECT DISTINCT person_key FROM residents WHERE id IN (7, 8)")
        assert len(keys.fetchall()) == 1


@pytest.mark.parametrize(
    ("shard", "country"),
    [("default", "US"), ("db_us", "DE")],
    ids=["US-into-default", "DE-into-db_us"],
)
def test_a_row_inserted_by_hand_into_the_wrong_region_is_refused(
    initialised: None, connect: Connect, shard: str, country: str
) -> None:
    with (
        connect(shard) as conn,
        pytest.raises(psycopg.errors.CheckViolation, match="residents_residency"),
    ):
        conn.execute(INSERT, [1, country, "Someone", "Male", 30, "Somewhere 1"])


def test_rows_in_the_right_region_are_accepted(
    initialised: None, connect: Connect, shard_dsns: dict[str, str]
) -> None:
    with connect("default") as conn:
        conn.execute(INSERT, [1, "DE", "Hans", "Male", 30, "Hauptstr. 1"])
    with connect("db_us") as conn:
        conn.execute(INSERT, [1000, "US", "John Doe", "Male", 30, "5th Ave"])
        # id is an identity from 10^15, above any id a file may bring: a row without one
        # gets the first, the next the one after
        new = "INSERT INTO residents (country, name) VALUES ('US', %s) RETURNING id"
        assert conn.execute(new, ["No Id"]).fetchone() == (10**15,)
        assert conn.execute(new, ["No Id Either"]).fetchone() == (10**15 + 1,)
    assert rows(shard_dsns["default"]) == [(1, "DE", "Hans", "Male", 30, "Hauptstr. 1")]
    assert rows(shard_dsns["db_us"]) == [
        (1000, "US", "John Doe", "Male", 30, "5th Ave"),
        (10**15, "US", "No Id", None, None, None),
        (10**15 + 1, "US", "No Id Either", None, None, None),
    ]


@pytest.mark.parametrize("age", [-1, 151])
def test_age_outside_0_to_150_is_refused(initialised: None, connect: Connect, age: int) -> None:
    with (
        connect("default") as conn,
        pytest.raises(psycopg.errors.CheckViolation, match="residents_age_range"),
    ):
        conn.execute(INSERT, [1, "DE", "Hans", "Male", age, None])


def test_a_changed_map_moves_the_constraint(
    run_cli: Callable[..., Result],
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    connect: Connect,
) -> None:
    wider = tmp_path / "wider.yaml"
    wider.write_text(shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    result = run_cli("init", config=wider)
    assert result.exit_code == 0, result.output
    assert (
        f"default: schema {LATEST} (up to date); residency set to country NOT IN (CA, US)"
        in result.output
    )
    with connect("db_us") as conn:
        conn.execute(INSERT, [1, "CA", "Jeanne", "Female", 30, "Rue 1"])
    with connect("default") as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(INSERT, [1, "CA", "Jeanne", "Female", 30, "Rue 1"])


def test_init_stops_when_existing_rows_would_break_the_new_rule(
    run_cli: Callable[..., Result],
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    connect: Connect,
) -> None:
    with connect("default") as conn:
        conn.cursor().executemany(
            INSERT, [[i, "CA", f"Canadian {i}", None, 30, None] for i in range(1, 4)]
        )
        conn.execute(INSERT, [9, "DE", "Hans", "Male", 30, None])
    wider = tmp_path / "wider.yaml"
    wider.write_text(shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    result = run_cli("init", config=wider)
    assert result.exit_code == 1
    assert (
        "shard default: 3 existing row(s) would break the new residency rule"
        " country NOT IN (CA, US): CA (3)" in result.output
    )
    assert "Traceback" not in result.output
    # the old rule is still in force on default, and db_us did take its new one
    with connect("default") as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(INSERT, [10, "US", "John", None, 1, None])
        conn.execute(INSERT, [11, "CA", "Still Allowed Here", None, 1, None])
    with connect("db_us") as conn:
        conn.execute(INSERT, [1, "CA", "Jeanne", "Female", 30, "Rue 1"])


def test_default_reject_makes_every_shard_an_allow_list(
    run_cli: Callable[..., Result], shard_dsns: dict[str, str], tmp_path: Path, connect: Connect
) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        shard_map_yaml(shard_dsns, routes="{default: [DE, FR], db_us: [US]}", default="reject")
    )
    result = run_cli("init", config=strict)
    assert result.exit_code == 0, result.output
    assert f"default: schema 0 -> {LATEST}; residency set to country IN (DE, FR)" in result.output
    with connect("default") as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(INSERT, [1, "JP", "Taro", None, 30, None])


def _other_spelling(dsn: str) -> str:
    """The same database as `dsn`, written as a URI instead of key/value pairs."""
    params = conninfo.conninfo_to_dict(dsn)
    database = params.pop("dbname")
    return f"postgresql:///{database}?{urlencode(params)}"


@pytest.fixture
def one_database_twice(shard_dsns: dict[str, str], tmp_path: Path) -> Path:
    """A map whose two shards are one database under two DSN spellings."""
    same = {"default": shard_dsns["default"], "db_us": _other_spelling(shard_dsns["default"])}
    return write_map(tmp_path / "twice", shard_map_yaml(same))


@pytest.mark.parametrize("command", [["init"], ["load", "people.csv"], ["check"], ["status"]])
def test_one_database_under_two_spellings_is_refused_before_anything_changes(
    run_cli: Callable[..., Result],
    one_database_twice: Path,
    connect: Connect,
    tmp_path: Path,
    command: list[str],
) -> None:
    (tmp_path / "people.csv").write_text("id,country,name\n1,US,Ann\n2,DE,Bo\n")
    if command[0] != "init":
        assert run_cli("init").exit_code == 0  # the real two shards, for load to have a schema
    with connect("default") as conn:
        before = conn.execute(SCHEMA.residency_rule).fetchone() if command[0] != "init" else None
    result = run_cli(*command, config=one_database_twice)
    assert result.exit_code == 2, result.output
    assert "db_us" in result.output and "the same database as shard default" in result.output
    assert "Traceback" not in result.output
    with connect("default") as conn:
        if command[0] == "init":
            assert conn.execute(SCHEMA.table_exists, ["residents"]).fetchone() == (False,)
        else:
            assert conn.execute(SCHEMA.residency_rule).fetchone() == before
            assert conn.execute("SELECT count(*) FROM residents").fetchone() == (0,)


def test_status_json_names_the_shard_that_is_another_spelling(
    run_cli: Callable[..., Result], one_database_twice: Path
) -> None:
    result = run_cli("status", "--json", config=one_database_twice)
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert [d["same_database_as"] for d in data] == [None, "default"]


def test_two_databases_on_one_server_are_not_one(
    pg_servers: list[Server], tmp_path: Path, run_cli: Callable[..., Result]
) -> None:
    server = pg_servers[0]
    names = [server.create_database(), server.create_database()]
    try:
        dsns = {"default": server.dsn_for(names[0]), "db_us": server.dsn_for(names[1])}
        result = run_cli("init", config=write_map(tmp_path / "one", shard_map_yaml(dsns)))
        assert result.exit_code == 0, result.output
    finally:
        for name in names:
            server.drop_database(name)


def test_inits_at_once_apply_each_migration_once(config_file: Path, connect: Connect) -> None:
    # Each migration runs in its own transaction under the init lock, and is looked up again
    # under it: three inits racing on fresh shards all succeed and record each version once
    # (a second application would fail on the tables it creates, or on the version's key).
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), "init"]
    procs = [subprocess.Popen(command, stderr=subprocess.PIPE) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    latest = [m.version for m in migrations()]
    for shard in ("default", "db_us"):
        with connect(shard) as conn:
            assert versions(conn) == latest


def test_the_commands_that_read_say_how_to_initialise_a_shard_never_initialised(
    run_cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The shards exist and answer, but `pipeline init` never ran on them.
    monkeypatch.setenv("PIPELINE_ERASURE_KEY", "k" * 40)
    expected = {
        ("extract", "-o", str(tmp_path / "x.csv")): 1,
        ("extract", "-o", str(tmp_path / "x.parquet")): 1,
        ("report", "-o", str(tmp_path / "r.html")): 1,
        ("check",): 2,  # the checks could not run
        ("erase", "db_us:1", "--yes"): 1,
    }
    for command, code in expected.items():
        result = run_cli(*command)
        assert result.exit_code == code, (command, result.output)
        assert 'relation "' in result.output and "does not exist" in result.output
        assert "`pipeline status` shows its version; `pipeline init` brings it up to date" in (
            result.output
        ), command
        assert "ERROR:" not in result.output and "Traceback" not in result.output


def test_a_database_holding_another_apps_residents_table_is_named_and_a_schema_of_its_own_works(
    run_cli: Callable[..., Result],
    connect: Connect,
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    with connect("default") as conn:  # someone else's table of the same name
        conn.execute("CREATE TABLE residents (pk serial PRIMARY KEY, full_name text)")
        conn.execute("INSERT INTO residents (full_name) VALUES ('Theirs')")
    result = run_cli("init")
    assert result.exit_code == 1, result.output
    assert (
        'shard default: "residents" already exists in the schema where init makes its tables,'
        " and this pipeline did not make it: nothing was changed; point the shard at an empty"
        " database, or at a schema of its own (CREATE SCHEMA, then `options=-csearch_path=NAME`"
        " in its DSN)"
    ) in result.output
    source = tmp_path / "one.csv"
    source.write_text("id,country,name\n1,FR,Ann\n2,US,Bob\n")
    load = run_cli("load", str(source))
    assert load.exit_code == 1, load.output
    assert f"shard default: schema version 0, expected {LATEST}: run `pipeline init`" in load.output

    with connect("default") as conn:
        conn.execute("CREATE SCHEMA pipeline")
    own = {**shard_dsns, "default": f"{shard_dsns['default']} options=-csearch_path=pipeline"}
    config = write_map(tmp_path / "own", shard_map_yaml(own))
    for command in (("init",), ("load", str(source))):
        done = run_cli(*command, config=config)
        assert done.exit_code == 0, done.output
    with connect("default") as conn:
        assert conn.execute("SELECT full_name FROM public.residents").fetchall() == [("Theirs",)]
        assert conn.execute("SELECT id, name FROM pipeline.residents").fetchall() == [(1, "Ann")]


@pytest.mark.parametrize(
    ("theirs", "named"),
    [
        ("CREATE TABLE load_ledger (id serial PRIMARY KEY)", '"load_ledger" already exists'),
        ("CREATE TABLE erasure_log (x int); CREATE INDEX residents_load_id_idx ON erasure_log (x)",
         '"erasure_log", "residents_load_id_idx" already exist'),
        # golang-migrate's version table, at a version this pipeline would take for its own
        ("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean);"
         " INSERT INTO schema_migrations VALUES (20240101120000, false);"
         " CREATE TABLE residents (id serial PRIMARY KEY, country text)",
         'a table "schema_migrations" (another tool\'s migrations?)'),
        # the index behind migration 6's UNIQUE constraint; a type (a table's row type)
        ("CREATE TABLE theirs (x int); CREATE INDEX rebalance_renumbered_old ON theirs (x)",
         '"rebalance_renumbered_old" already exists'),
        ("CREATE TYPE erasure_log AS (x int)", '"erasure_log" already exists'),
    ],
    ids=["a-later-migrations-table", "a-table-and-an-index", "another-tools-versions",
         "a-constraints-index", "a-type"],
)  # fmt: skip
def test_init_refuses_another_apps_tables_before_changing_anything(
    run_cli: Callable[..., Result], connect: Connect, theirs: str, named: str
) -> None:
    with connect("default") as conn:
        conn.execute(theirs)
        before = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone()
    for attempt in (1, 2):  # the second run says the same: nothing was half made
        result = run_cli("init")
        assert result.exit_code == 1, result.output
        assert f"shard default: {named} in the schema where init makes its tables" in (
            result.output
        ), attempt
        assert "nothing was changed" in result.output
    with connect("default") as conn:
        after = conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public'"
        ).fetchone()
        constraints = conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conname LIKE 'residents_residency%'"
        ).fetchone()
    assert after == before and constraints == (0,)


@pytest.mark.parametrize("count", [1, 2, 99, 100, 101, 199, 200, 201, 249])
def test_a_rule_is_written_as_lists_of_at_most_list_max_codes(count: int) -> None:
    # On each side of LIST_MAX and its double: as few lists as allowed, none holding one code
    # when there are several (PostgreSQL writes a list of one as `=`, which residency_rule.sql
    # would not count), every code once, for an allow-list and a refuse-list alike.
    codes = sorted(c.alpha_2 for c in pycountry.countries)[:count]
    for rule in (
        ResidencyRule(frozenset(codes), frozenset()),
        ResidencyRule(None, frozenset(codes)),
    ):
        text = rule.condition().as_string()
        lists = re.findall(r"IN \(([^)]*)\)", text)
        assert len(lists) == rule.lists() == -(-count // LIST_MAX)
        sizes = [len(found.split(", ")) for found in lists]
        assert max(sizes) <= LIST_MAX and (len(sizes) == 1 or min(sizes) > 1)
        written = [code.strip("'") for found in lists for code in found.split(", ")]
        assert written == codes
        assert (" OR " if rule.allowed is not None else " AND ") in text or len(lists) == 1
