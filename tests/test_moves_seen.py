"""A read of several shards that catches a rebalance move between its two commits (the
copy committed on the target, the delete on the source not): the moved rows would be read
on both shards. `pipeline extract` stops before any row goes out (pipeline.moves_seen)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from pipeline.config import load_shard_map
from pipeline.extract import ExtractResult, Selection, shard_streams
from pipeline.moves_seen import WAIT_STEP
from tests.conftest import Connect, RunCli, closed_port, shard_map_yaml, write_map
from tests.test_rebalance import (  # noqa: F401  # fixtures, used by name
    NEW_MAP,
    _init_new_map,
    _killed_between_copy_and_delete,
    id_map,
    indonesians_on_default,
)

FORMATS = ["csv", "ndjson", "json", "parquet"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_an_extract_of_a_move_between_its_commits_stops_and_one_after_it_holds_each_row_once(
    run_cli: RunCli,
    indonesians_on_default: None,  # noqa: F811
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
    fmt: str,
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _killed_between_copy_and_delete(config, dsns, tmp_path)  # 3 Indonesians on both shards

    out = tmp_path / "exports" / f"all.{fmt}"
    stopped = run_cli("extract", "-o", str(out), config=config)
    assert stopped.exit_code == 1, stopped.output
    assert "shard default still holds the 3 row(s) of ID that a rebalance has copied to db_id" in (
        stopped.output
    )
    assert "run `pipeline rebalance`, which finishes the move; nothing was written" in (
        stopped.output
    )
    assert not out.exists()
    if fmt != "parquet":  # to stdout, not one byte either: not the header, not a [
        to_stdout = run_cli("extract", "--format", fmt, config=config)
        assert to_stdout.exit_code == 1 and to_stdout.stdout == "", to_stdout.stdout
    # --allow-partial leaves no shard out for it: neither one alone would make it right.
    partial = run_cli("extract", "--allow-partial", "-o", str(out), config=config)
    assert partial.exit_code == 1 and not out.exists()
    # What the move does not touch reads as before: another country, or one shard alone.
    for selection in (["--country", "US"], ["--shard", "db_id"], ["--shard", "default"]):
        result = run_cli("extract", *selection, "-o", str(tmp_path / f"part.{fmt}"), config=config)
        assert result.exit_code == 0, (selection, result.output)

    finished = run_cli("rebalance", config=config)
    assert finished.exit_code == 0, finished.output
    done = run_cli("extract", "-o", str(out), config=config)
    assert done.exit_code == 0, done.output
    assert "12 residents from 3 shard(s)" in done.output  # 9 of the original data, 3 moved
    if fmt == "parquet":
        table = pq.read_table(out)
        assert table.num_rows == 12
        ids = list(zip(table["shard"].to_pylist(), table["id"].to_pylist(), strict=True))
        assert len(set(ids)) == 12


def test_an_extract_whose_snapshots_straddle_both_commits_of_a_move_stops(
    run_cli: RunCli,
    indonesians_on_default: None,  # noqa: F811
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    # The source's snapshot after both commits, the target's before them: the moved rows on
    # neither. Made by hand: the source's ledger says a move deleted rows that the target's
    # does not say it copied.
    config, dsns = id_map
    _init_new_map(run_cli, config)
    with psycopg.connect(dsns["default"]) as conn:
        conn.execute(
            "INSERT INTO rebalance_ledger (move_id, step, country, source, target, rows_moved,"
            " rows_hash) VALUES (%s, 'deleted', 'ID', 'default', 'db_id', 3, 'h64:0')",
            [uuid.uuid4()],
        )
    result = run_cli("extract", "-o", str(tmp_path / "all.csv"), config=config)
    assert result.exit_code == 1, result.output
    assert "the 3 row(s) of ID from shard default to db_id while this read began" in (result.output)
    assert not (tmp_path / "all.csv").exists()


def test_report_status_and_plan_name_a_move_between_its_commits_and_count_its_rows_once(
    run_cli: RunCli,
    indonesians_on_default: None,  # noqa: F811
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _killed_between_copy_and_delete(config, dsns, tmp_path)  # 3 Indonesians on both shards

    report = tmp_path / "report.json"
    for options in ([], ["--allow-partial"]):  # no shard left out would make it right
        stopped = run_cli("report", *options, "--format", "json", "-o", str(report), config=config)
        assert stopped.exit_code == 1, stopped.output
        assert "shard default still holds the 3 row(s) of ID" in stopped.output
        assert not report.exists()

    status = run_cli("status", config=config)
    assert status.exit_code == 1, status.output
    lines = status.output.splitlines()
    assert len(lines) == 4  # one a shard, and the move under its source's
    assert lines[0].startswith("default  ") and "8 residents" in lines[0]
    assert lines[1].startswith("  unfinished move ")
    assert lines[1].endswith(
        ": the 3 row(s) of ID copied to db_id and not deleted here, counted on both; if no"
        " rebalance is running, run `pipeline rebalance` to finish it"
    )
    assert "3 residents" in lines[3]  # db_id
    as_json = json.loads(run_cli("status", "--json", config=config).output)
    moved = as_json[0]["unfinished_moves"]
    assert [(m["country"], m["to"], m["rows"]) for m in moved] == [("ID", "db_id", 3)]
    assert [s["unfinished_moves"] for s in as_json[1:]] == [[], []]

    plan = run_cli("plan", config=config)
    assert plan.exit_code == 0, plan.output
    assert plan.output.splitlines()[0] == (
        f"move ID  default -> db_id  3 rows  (copied by move {moved[0]['move_id'][:8]}, not yet"
        " deleted from default: the rows are on both shards)"
    )
    planned = json.loads(run_cli("plan", "--json", config=config).output)["moves"]
    assert planned == [
        {"country": "ID", "from": "default", "to": "db_id", "rows": 3,
         "unfinished_move": moved[0]["move_id"]}
    ]  # fmt: skip

    finished = run_cli("rebalance", config=config)
    assert finished.exit_code == 0, finished.output
    after = run_cli("status", config=config)
    assert after.exit_code == 0 and "unfinished" not in after.output, after.output
    assert run_cli("plan", config=config).output.startswith("nothing to move")
    done = run_cli("report", "--format", "json", "-o", str(report), config=config)
    assert done.exit_code == 0, done.output
    figures = json.loads(report.read_text())
    assert figures["residents"] == 12 and figures["countries"]["ID"] == 3


def test_a_move_between_two_later_shards_is_caught_when_the_first_shard_is_left_out(
    run_cli: RunCli,
    initialised: None,
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    # Every shard verifies the ledgers, not the first alone: with the first one unreachable
    # (--allow-partial leaves it out), a move between the other two is still seen.
    config, dsns = id_map
    result = run_cli("init", config=config)
    assert result.exit_code == 0, result.output
    with psycopg.connect(dsns["db_id"]) as conn:  # db_id's copy committed, db_us's delete not
        conn.execute(
            "INSERT INTO rebalance_ledger (move_id, step, country, source, target, rows_moved,"
            " rows_hash) VALUES (%s, 'copied', 'US', 'db_us', 'db_id', 4, 'h64:0')",
            [uuid.uuid4()],
        )
    unreachable = f"host=127.0.0.1 port={closed_port()} user=etl connect_timeout=3"
    partial = write_map(
        tmp_path / "partial", shard_map_yaml({**dsns, "default": unreachable}, routes=NEW_MAP)
    )
    for command in (["extract", "-o", str(tmp_path / "all.csv")], ["report"]):
        stopped = run_cli(*command, "--allow-partial", config=partial)
        assert stopped.exit_code == 1, (command, stopped.output)
        assert "shard db_us still holds the 4 row(s) of US that a rebalance has copied" in (
            stopped.output
        )
    assert not (tmp_path / "all.csv").exists()


def test_a_read_stopped_before_its_first_shard_began_leaves_no_shard_waiting(
    loaded: None, connect: Connect, config_file: Path
) -> None:
    # Each shard waits for the others' move ledgers before its first row; the first shard's
    # is read only as its rows are asked for. A consumer that stops before that (an error or
    # a signal between two steps) must not leave the others waiting, transaction open.
    streams = shard_streams(
        load_shard_map(config_file), Selection(), "extract_rows", ExtractResult()
    )
    first, _chunks = next(streams)  # the later shards' read-aheads have started
    assert first == "default"
    time.sleep(0.3)  # they are waiting now
    started = time.monotonic()
    streams.close()
    assert time.monotonic() - started < WAIT_STEP * 5
    deadline = time.monotonic() + 5
    while any(t.name.startswith("read-ahead") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a read-ahead thread is still waiting"
        time.sleep(0.05)
    with connect("db_us") as conn:
        sessions = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert sessions == (0,)


def _step(dsn: str, move_id: uuid.UUID, step: str, hours_ago: int) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO rebalance_ledger (move_id, step, country, source, target, rows_moved,"
            " rows_hash, at) VALUES (%s, %s, 'ID', 'default', 'db_id', 3, 'h64:0',"
            " now() - make_interval(hours => %s))",
            [move_id, step, hours_ago],
        )


def _read_whole(run_cli: RunCli, config: Path, tmp_path: Path) -> None:
    """status, report and extract of every shard: each exits 0, naming no move half-way."""
    for command in (
        ["status"],
        ["report", "-o", str(tmp_path / "report.json")],
        ["extract", "-o", str(tmp_path / "all.csv")],
    ):
        result = run_cli(*command, config=config)
        assert result.exit_code == 0, (command, result.output)
        assert "unfinished" not in result.output and "still holds" not in result.output


def test_a_copy_that_a_later_rebalance_copied_again_is_not_left_half_way(
    run_cli: RunCli,
    initialised: None,
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    # A move left copied and not deleted whose source rows changed since (an erasure, a
    # load) is done again by the next rebalance under a new move: the earlier copy never
    # gets its delete, and must not stand as a move left half-way for ever.
    config, dsns = id_map
    assert run_cli("init", config=config).exit_code == 0
    first, again = uuid.uuid4(), uuid.uuid4()
    _step(dsns["db_id"], first, "copied", hours_ago=2)
    status = run_cli("status", config=config)
    assert status.exit_code == 1 and "unfinished move" in status.output  # as it stands

    _step(dsns["db_id"], again, "copied", hours_ago=1)  # the rebalance that did it again
    _step(dsns["default"], again, "deleted", hours_ago=1)
    _read_whole(run_cli, config, tmp_path)


def test_a_copy_the_map_turned_back_from_is_neither_half_way_nor_finished_later(
    run_cli: RunCli,
    indonesians_on_default: None,  # noqa: F811
    id_map: tuple[Path, dict[str, str]],  # noqa: F811
    tmp_path: Path,
) -> None:
    # A move of ID to db_id killed between its commits (the rows on both shards); the map is
    # turned back (ID on default) and rebalanced: db_id's copy moves back onto default,
    # which holds the same rows, and leaves db_id. That first copy never gets its delete:
    # it stood as a move left half-way for ever (extract and report refused), and when the
    # map turned to db_id again, rebalance "finished" it by deleting default's rows, the
    # only ones left.
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _killed_between_copy_and_delete(config, dsns, tmp_path)
    back = write_map(tmp_path / "back", shard_map_yaml(dsns, routes="db_us: [US]"))
    moved_back = run_cli("rebalance", config=back)
    assert moved_back.exit_code == 0, moved_back.output
    assert moved_back.output.startswith("moved ID  db_id -> default  3 rows")
    _read_whole(run_cli, back, tmp_path)

    again = run_cli("rebalance", config=config)  # the map turned to db_id once more
    assert again.exit_code == 0, again.output
    assert again.output.startswith("moved ID  default -> db_id  3 rows (3 copied"), again.output
    indonesians = "SELECT count(*) FROM residents WHERE country = 'ID'"
    with psycopg.connect(dsns["db_id"]) as on_db_id, psycopg.connect(dsns["default"]) as on_default:
        assert on_db_id.execute(indonesians).fetchone() == (3,)
        assert on_default.execute(indonesians).fetchone() == (0,)
