"""Least privilege, for real: `init --roles` makes the group roles, and login roles that are
their members run the commands (the loader loads; the analyst extracts, reports, checks)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg import conninfo, errors, sql

from pipeline.config import load_shard_map
from pipeline.roles import _create
from pipeline.schema import init_shard
from tests.conftest import ORIGINAL_DATA, RunCli, Server, StoppableServer, shard_map_yaml, write_map


@pytest.fixture
def with_roles(run_cli: RunCli) -> Result:
    result = run_cli("init", "--roles")
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def members(
    with_roles: Result, pg_servers: list[Server], shard_dsns: dict[str, str], tmp_path: Path
) -> Iterator[dict[str, Path]]:
    """A shard map per group role, logging in as a new role that is a member of it."""
    logins = {group: f"t_{group.split('_')[1]}_{uuid.uuid4().hex[:8]}" for group in GROUPS}
    servers = {server.admin_dsn: server for server in pg_servers}.values()
    for server in servers:
        with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
            for group, login in logins.items():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'Zq9Xw7' IN ROLE {}").format(
                        sql.Identifier(login), sql.Identifier(group)
                    )
                )
    maps = {}
    for group, login in logins.items():
        dsns = {
            name: conninfo.make_conninfo(dsn, user=login, password="Zq9Xw7")
            for name, dsn in shard_dsns.items()
        }
        maps[group] = write_map(tmp_path / group, shard_map_yaml(dsns))
    try:
        yield maps
    finally:
        for server in servers:
            with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
                for login in logins.values():
                    conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(login)))


GROUPS = ("pipeline_loader", "pipeline_analyst")


def test_init_roles_makes_two_group_roles_without_login(
    with_roles: Result, connect: Callable[[str], psycopg.Connection[Any]]
) -> None:
    assert with_roles.output.count("roles granted") == 2
    with connect("default") as conn:
        found = conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY(%s) ORDER BY 1",
            [list(GROUPS)],
        ).fetchall()
    assert found == [("pipeline_analyst", False), ("pipeline_loader", False)]


def test_a_role_made_meanwhile_by_another_init_is_no_error(
    with_roles: Result, shard_dsns: dict[str, str], config_file: Path
) -> None:
    # What the second of two inits at once sees: the role it is creating now exists.
    shard = load_shard_map(config_file).shard("default")
    with psycopg.connect(shard_dsns["default"]) as conn:
        assert _create(conn, shard, "pipeline_loader") is False


def test_the_loader_loads_and_the_analyst_reads(
    run_cli: RunCli, members: dict[str, Path], tmp_path: Path
) -> None:
    loader, analyst = members["pipeline_loader"], members["pipeline_analyst"]
    load = run_cli("load", str(ORIGINAL_DATA), config=loader)
    assert load.exit_code == 0, load.output
    extract = run_cli("extract", "--format", "json", config=analyst)
    assert extract.exit_code == 0, extract.output
    assert len(json.loads(extract.stdout)) == 9
    report = run_cli("report", "--format", "json", config=analyst)
    assert report.exit_code == 0, report.output
    check = run_cli("check", config=analyst)
    assert check.exit_code == 0, check.output  # the shipped checks: one warning, no failure
    status = run_cli("status", config=analyst)
    assert status.exit_code == 0, status.output
    assert "5 residents" in status.output and "4 residents" in status.output


def test_a_load_as_the_analyst_fails_in_one_line_before_writing(
    run_cli: RunCli, members: dict[str, Path], connect: Callable[[str], psycopg.Connection[Any]]
) -> None:
    result = run_cli("load", str(ORIGINAL_DATA), config=members["pipeline_analyst"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("Error: shard default: role t_analyst_")
    assert "may not load: it lacks INSERT on residents, UPDATE on residents" in line
    assert "GRANT pipeline_loader TO t_analyst_" in line
    assert "re-running" not in line  # not a transient failure
    for shard in ("default", "db_us"):
        with connect(shard) as conn:
            assert conn.execute("SELECT count(*) FROM load_ledger").fetchone() == (0,)


@pytest.mark.parametrize("group", GROUPS)
def test_init_as_a_group_member_fails_in_one_line_a_shard(
    run_cli: RunCli, members: dict[str, Path], group: str
) -> None:
    """The schema is the owner's to change: a loader's or an analyst's DSN gets a line a
    shard that says so, exit 2 (the configuration, not the shard, is wrong)."""
    result = run_cli("init", config=members[group])
    assert result.exit_code == 2, result.output
    *lines, summary = result.output.splitlines()
    assert summary == "Error: 2 shard(s) not initialised; fix and re-run `pipeline init`"
    for line, shard in zip(lines, ("default", "db_us"), strict=True):
        assert line.startswith(f"Error: shard {shard}: the role t_")
        assert "may not change the schema" in line and "as the database's owner" in line


def test_a_loader_role_that_may_not_read_renumbered_ids_is_refused_before_writing(
    run_cli: RunCli, members: dict[str, Path], connect: Callable[[str], psycopg.Connection[Any]]
) -> None:
    # Every file's start reads them (pipeline.renumbered): a role granted by hand without
    # them must be told before anything is written, not fail each file on each shard.
    with connect("db_us") as conn:
        conn.execute("REVOKE SELECT ON rebalance_renumbered FROM pipeline_loader")
    result = run_cli("load", str(ORIGINAL_DATA), config=members["pipeline_loader"])
    assert result.exit_code == 2, result.output
    assert "may not load: it lacks SELECT on rebalance_renumbered" in result.output
    for shard in ("default", "db_us"):
        with connect(shard) as conn:
            assert conn.execute("SELECT count(*) FROM load_ledger").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "TRUNCATE residents",
        "DROP TABLE residents",
        "ALTER TABLE residents DROP CONSTRAINT residents_residency",
        "DELETE FROM schema_migrations",
    ],
)
def test_the_loader_may_not_drop_alter_or_truncate(
    members: dict[str, Path], statement: str
) -> None:
    dsn = load_shard_map(members["pipeline_loader"]).shard("db_us").dsn
    with psycopg.connect(dsn) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO residents (id, country, name) VALUES (5, 'US', 'Ann')",
        "UPDATE residents SET name = 'x'",
        "DELETE FROM load_ledger",
        "TRUNCATE residents",
    ],
)
def test_the_analyst_only_reads(members: dict[str, Path], statement: str) -> None:
    dsn = load_shard_map(members["pipeline_analyst"]).shard("db_us").dsn
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM residents").fetchone() == (0,)
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(statement)


def test_one_database_twice_is_found_by_a_role_without_privileges(
    run_cli: RunCli, members: dict[str, Path], tmp_path: Path
) -> None:
    dsn = load_shard_map(members["pipeline_analyst"]).shard("default").dsn
    params = conninfo.conninfo_to_dict(dsn)
    same = conninfo.make_conninfo("", **{**params, "application_name": "another_spelling"})
    config = write_map(tmp_path / "twice", shard_map_yaml({"default": dsn, "db_us": same}))
    result = run_cli("status", config=config)
    assert result.exit_code == 2, result.output
    assert "the same database as shard default" in result.output


def test_roles_on_a_fresh_server_race_and_need_createrole(
    fresh_server: StoppableServer, tmp_path: Path, run_cli: RunCli
) -> None:
    """On a server of its own (no roles yet): a role without CREATEROLE is told what to ask
    for; two inits at once on two databases of the server both succeed; after that, the
    owner without CREATEROLE can re-grant."""
    server = fresh_server
    owner = f"t_owner_{uuid.uuid4().hex[:8]}"
    databases = [server.create_database(), server.create_database()]
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOCREATEROLE").format(sql.Identifier(owner)))
        for name in databases:
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(owner)
                )
            )
    as_owner = {
        name: conninfo.make_conninfo(server.dsn_for(db), user=owner)
        for name, db in zip(("default", "db_us"), databases, strict=True)
    }
    owner_map = write_map(tmp_path / "owner", shard_map_yaml(as_owner))
    refused = run_cli("init", "--roles", config=owner_map)
    assert refused.exit_code == 1
    assert (
        "Error: shard default: cannot create role pipeline_loader: this role lacks CREATEROLE"
        in refused.output
    )
    assert "Traceback" not in refused.output

    # Two inits at once: the second's CREATE ROLE waits on the first's uncommitted one, then
    # fails on pg_authid's unique index (not "already exists"): made all the same.
    shard = load_shard_map(owner_map).shard("default")
    with psycopg.connect(server.admin_dsn) as first, psycopg.connect(server.admin_dsn) as second:
        first.execute("CREATE ROLE pipeline_loader NOLOGIN")  # not committed yet
        with ThreadPoolExecutor(max_workers=1) as pool:
            waiting = pool.submit(_create, second, shard, "pipeline_loader")
            _wait_until_blocked(server.admin_dsn, second.info.backend_pid)
            first.commit()
            assert waiting.result() is False

    # Two inits at once, as a superuser, on two databases of one server.
    admin = {
        name: server.dsn_for(db) for name, db in zip(("default", "db_us"), databases, strict=True)
    }
    admin_map = load_shard_map(write_map(tmp_path / "admin", shard_map_yaml(admin)))
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda s: init_shard(admin_map, s, roles=True), admin_map.shards))
    created = sorted(role for result in done for role in result.roles_created or [])
    assert created == ["pipeline_analyst"]  # made once, no error

    regranted = run_cli("init", "--roles", config=owner_map)
    assert regranted.exit_code == 0, regranted.output
    assert regranted.output.count("; roles granted\n") == 2


def _wait_until_blocked(admin_dsn: str, pid: int) -> None:
    # Its own connection, in autocommit: within one transaction pg_stat_activity is a snapshot.
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for _ in range(500):
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid]
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.01)
    raise AssertionError("the second CREATE ROLE never waited")


def test_either_role_runs_status_and_plan_and_an_older_loader_grant_too(
    run_cli: RunCli,
    members: dict[str, Path],
    connect: Callable[[str], psycopg.Connection[Any]],
) -> None:
    # status and plan read the move ledger, which the loader role was not granted before:
    # without the grant (roles made by an older init) they go on without it. A finished
    # move is in both ledgers; with the source's unreadable (granted on one server and not
    # the other), the target's copy alone must not look like a move left half-way.
    move = uuid.uuid4()
    for shard, step in (("db_us", "copied"), ("default", "deleted")):
        with connect(shard) as conn:
            conn.execute(
                "INSERT INTO rebalance_ledger (move_id, step, country, source, target,"
                " rows_moved, rows_hash) VALUES (%s, %s, 'CA', 'default', 'db_us', 1, 'h64:0')",
                [move, step],
            )
    for granted in (True, False):
        if not granted:
            with connect("default") as conn:
                conn.execute("REVOKE SELECT ON rebalance_ledger FROM pipeline_loader")
        for group, config in members.items():
            for command in ("status", "plan"):
                result = run_cli(command, config=config)
                assert result.exit_code == 0, (granted, group, command, result.output)
                assert "permission denied" not in result.output
                assert "unfinished" not in result.output and "copied by" not in result.output
