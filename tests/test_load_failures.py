"""`pipeline load` when things go wrong: a shard dies mid-run, two loads race, a shard is down."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow.csv as pcsv
import pytest

from pipeline.batch import BATCH_RECORDS
from pipeline.config import load_rules, load_shard_map
from pipeline.db import LOCK_LOAD
from pipeline.load import load
from pipeline.load_options import LoadOptions
from pipeline.load_result import FileResult, LoadResult
from pipeline.shard_link import Timeouts
from tests.conftest import (
    RunCli,
    StoppableServer,
    closed_port,
    ledger,
    rows,
    shard_map_yaml,
    write_map,
)


def people(first_id: int, count: int) -> list[dict[str, object]]:
    """Alternately US and German residents with ids first_id, first_id + 1, ..."""
    return [
        {"id": i, "country": "US" if i % 2 else "DE", "name": f"Resident {i}", "age": i % 90}
        for i in range(first_id, first_id + count)
    ]


@pytest.mark.slow
def test_a_shard_stopped_mid_run_is_completed_by_rerunning(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, dsns = split_shards
    assert run_cli("init", config=config).exit_code == 0
    files = []
    for n in range(3):
        path = tmp_path / f"batch{n}.ndjson"
        path.write_text("".join(json.dumps(p) + "\n" for p in people(n * 100 + 1, 100)))
        files.append(path)

    def stop_during_second_file(result: FileResult, read: int, done: bool) -> None:
        # Called when the file's rows are all sent, before its checks and COMMIT: the
        # shard dies with the second file half-way through its transaction.
        if done and result.path == str(files[1]):
            stoppable_server.stop()

    shard_map = load_shard_map(config)
    first = load(shard_map, load_rules(shard_map), files, LoadOptions(), stop_during_second_file)
    assert first.exit_code == 1
    assert [(f.rows_read, f.rows_loaded, f.rows_pending) for f in first.files] == [
        (100, 100, 0),
        (100, 50, 50),
        (100, 50, 50),
    ]
    assert (
        "re-running the same command completes this shard" in first.files[1].shard_errors["db_us"]
    )
    # the third file is held back: it must not land before the second
    assert "failed on " + str(files[1]) in first.files[2].shard_errors["db_us"]
    assert len(rows(dsns["default"])) == 150

    stoppable_server.start()
    second = run_cli("load", *map(str, files), "--json", config=config)
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert [f["skipped"] for f in report["files"]] == [True, False, False]
    assert report["shards"]["db_us"]["inserted"] == 100
    assert report["shards"]["default"]["inserted"] == 0
    assert report["rows_read"] == report["rows_loaded"] == 200
    assert [r[0] for r in rows(dsns["db_us"])] == [i for i in range(1, 301) if i % 2]
    assert [r[0] for r in rows(dsns["default"])] == [i for i in range(1, 301) if not i % 2]
    assert [e[0] for e in ledger(dsns["db_us"])] == list(map(str, files))
    assert [e[0] for e in ledger(dsns["default"])] == list(map(str, files))


@pytest.mark.slow
def test_two_loads_at_once_load_every_row_exactly_once(
    config_file: Path, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "big.ndjson"
    path.write_text("".join(json.dumps(p) + "\n" for p in people(1, 20_000)))
    shard_map = load_shard_map(config_file)
    results: list[LoadResult] = []

    def run() -> None:
        results.append(load(shard_map, load_rules(shard_map), [path], LoadOptions()))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.files[0].skipped for r in results) == [False, True]
    assert all(r.exit_code == 0 for r in results)
    assert len(rows(shard_dsns["db_us"])) == len(rows(shard_dsns["default"])) == 10_000
    assert [len(ledger(d)) for d in shard_dsns.values()] == [1, 1]


def test_an_unreachable_shard_does_not_stop_the_others_and_hides_its_password(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    dsns = dict(shard_dsns)
    dsns["db_us"] = f"postgresql://etl:Sup3rS3cret@127.0.0.1:{closed_port()}/res?connect_timeout=3"
    config = write_map(tmp_path / "down", shard_map_yaml(dsns))
    path = tmp_path / "people.json"
    path.write_text(json.dumps(people(1, 10)))
    result = run_cli("load", str(path), config=config)
    assert result.exit_code == 1
    assert "Sup3rS3cret" not in result.output
    assert "Traceback" not in result.output
    assert "Error: shard db_us: unreachable" in result.output
    assert "Connection refused; Is the server running" in result.output  # libpq's two lines
    assert "re-running the same command completes this shard" in result.output
    assert "10 read = 5 loaded + 0 rejected + 5 pending" in result.output
    assert len(rows(shard_dsns["default"])) == 5


@pytest.mark.parametrize(
    "value",
    ["port=99999", "port=S3cretport", "sslmode=S3cretmode", "target_session_attrs=any-old"],
)
def test_a_dsn_value_libpq_refuses_is_a_configuration_error_in_every_command(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, value: str
) -> None:
    # libpq refuses such a value before it connects: no re-run gets past it, so no command
    # may call the shard unreachable, or promise that re-running completes it.
    dsns = dict(shard_dsns, db_us=f"host=127.0.0.1 {value} password=Zq9Xw7")
    config = write_map(tmp_path / "bad", shard_map_yaml(dsns))
    path = tmp_path / "people.json"
    path.write_text(json.dumps(people(1, 10)))
    for args in (
        ["load", str(path)],
        ["extract", "-o", str(tmp_path / "out.csv")],
        ["extract", "--allow-partial", "-o", str(tmp_path / "out.csv")],
        ["check"],
        ["status"],
        ["init"],
        ["plan"],
        ["report", "-o", str(tmp_path / "report.html")],
    ):
        result = run_cli(*args, config=config)
        assert result.exit_code == 2, (args, result.output)
        assert "shards.db_us.dsn: libpq refuses it" in result.output, args
        assert "unreachable" not in result.output and "completes" not in result.output, args
        assert "Zq9Xw7" not in result.output and "Traceback" not in result.output, args
    assert rows(shard_dsns["default"]) == []  # the load began on default, and rolled back
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "report.html").exists()


def test_only_libpqs_own_refusals_of_a_value_are_taken_for_the_maps() -> None:
    from pipeline.db import _REFUSED_VALUE

    libpq = [
        'connection is bad: invalid port number: "99999"',
        'connection is bad: invalid integer value "S3cretport" for connection option "port"',
        'connection is bad: invalid sslmode value: "S3cretmode"',
        'connection is bad: invalid target_session_attrs value: "zz"',
        "could not match 3 port numbers to 2 hosts",
        'connection is bad: could not parse network address "1.2.3.999": Name or service',
    ]
    servers = [
        'connection failed: FATAL:  database "invalid test value" does not exist',
        "connection failed: FATAL:  invalid authentication method",
        'connection failed: FATAL:  role "invalid port number" does not exist',
        'FATAL:  invalid value for parameter "statement_timeout": "abc"',
    ]
    assert [bool(_REFUSED_VALUE.search(m)) for m in libpq + servers] == [True] * 6 + [False] * 4


def test_a_file_refused_on_a_rerun_says_which_shard_keeps_it_from_the_earlier_run(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Run 1, db_us down: default commits its 5 rows. Run 2 refuses the file over a budget
    # of 0: nothing more is loaded, but default keeps its part, and the summary says so.
    down = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} connect_timeout=3")
    config = write_map(tmp_path / "down", shard_map_yaml(down))
    records = [*people(1, 10), {"id": 99, "country": "US", "name": "Old", "age": "x"}]
    path = tmp_path / "people.json"
    path.write_text(json.dumps(records))
    assert run_cli("load", str(path), config=config).exit_code == 1
    result = run_cli("load", "--json", "--max-rejects", "0", str(path))
    assert result.exit_code == 1
    (file,) = json.loads(result.stdout)["files"]
    assert (file["rows_read"], file["rows_loaded"], file["rows_rejected"]) == (11, 5, 6)
    assert (
        "nothing of it was loaded in this run; shard default loaded it in an earlier run"
        in (file["error"])
    )
    assert len(rows(shard_dsns["default"])) == 5 and rows(shard_dsns["db_us"]) == []
    text = run_cli("load", "--max-rejects", "0", str(path)).output
    assert "NOT LOADED by this run, rejected as a whole: 11 read = 5 loaded + 6 rejected" in text


def test_a_reruns_budget_counts_the_rejects_of_the_shards_that_hold_the_file(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Run 1, db_us down: default commits its part, one of its records refused. Run 2, with a
    # budget of 1: the file holds two refused records (one a shard of each), as a first
    # load of it would count, not only db_us's one.
    down = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} connect_timeout=3")
    config = write_map(tmp_path / "down", shard_map_yaml(down))
    bad = [
        {"id": 98, "country": "DE", "name": "Bad", "age": "x"},
        {"id": 99, "country": "US", "name": "Bad", "age": "x"},
    ]
    path = tmp_path / "people.json"
    path.write_text(json.dumps([*people(1, 10), *bad]))
    assert run_cli("load", "--max-rejects", "100%", str(path), config=config).exit_code == 1
    result = run_cli("load", "--json", "--max-rejects", "1", str(path))
    assert result.exit_code == 1
    (file,) = json.loads(result.stdout)["files"]
    assert file["error"].startswith(f"{path}: 2 of 12 records failed the checks, over the")
    assert "shard default loaded it in an earlier run and keeps its part" in file["error"]
    assert rows(shard_dsns["db_us"]) == []


def test_a_rerun_read_twice_counts_the_holding_shards_rejects_once(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Run 2 meets a US id twice going straight into the empty db_us, and reads the file
    # again through staging (a restart): default's refused record is still one reject.
    down = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} connect_timeout=3")
    config = write_map(tmp_path / "down", shard_map_yaml(down))
    records = [
        *people(1, 10),
        {"id": 98, "country": "DE", "name": "Bad", "age": "x"},
        {"id": 1, "country": "US", "name": "Twice", "age": 30},
    ]
    path = tmp_path / "people.json"
    path.write_text(json.dumps(records))
    assert run_cli("load", "--max-rejects", "100%", str(path), config=config).exit_code == 1
    result = run_cli("load", "--json", "--max-rejects", "2", str(path))
    assert result.exit_code == 0, result.output  # 1 refused + 1 duplicate_id: within 2
    assert sorted(r[0] for r in rows(shard_dsns["db_us"])) == [1, 3, 5, 7, 9]


def test_a_rerun_reports_the_rows_an_earlier_run_rejected(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    down = dict(shard_dsns, db_us=f"host=127.0.0.1 port={closed_port()} connect_timeout=3")
    down_map = write_map(tmp_path / "down", shard_map_yaml(down))
    path = tmp_path / "three.csv"
    path.write_text("id,country,name\n1,DE,Ann\n2,DE,\n3,US,Bob\n")
    first = json.loads(
        run_cli("load", str(path), "--json", "--max-rejects", "1", config=down_map).stdout
    )
    assert (first["rows_loaded"], first["rows_rejected"], first["rows_pending"]) == (1, 1, 1)
    again = run_cli("load", str(path), "--json", "--max-rejects", "1")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    # default already holds the file: its row counts as loaded and its bad row as rejected,
    # as the first run left them; db_us loads its row now
    assert (report["rows_loaded"], report["rows_rejected"], report["rows_pending"]) == (2, 1, 0)
    assert [r[0] for r in rows(shard_dsns["db_us"])] == [3]


def ndjson(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.mark.slow
def test_a_retried_shard_never_loads_an_older_file_over_a_newer_one(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's sequence: `load A B` while db_us restarts during A; `load B`; `load A B`."""
    config, dsns = split_shards
    assert run_cli("init", config=config).exit_code == 0
    a = ndjson(tmp_path / "a.ndjson", people(1, 30_000))
    updates = [dict(p, name=f"Updated {p['id']}") for p in people(1, 1_000)]
    b = ndjson(tmp_path / "b.ndjson", updates)

    restarted: list[int] = []

    def restart_during_a(result: FileResult, read: int, done: bool) -> None:
        # Once, a third of the way through A (progress comes a batch of records at a time)
        if result.path == str(a) and 10_000 <= read < 30_000 and not done and not restarted:
            restarted.append(read)
            stoppable_server.stop()  # a dropped connection, not a refused one:
            stoppable_server.start()  # the server is back for B

    shard_map = load_shard_map(config)
    first = load(shard_map, load_rules(shard_map), [a, b], LoadOptions(), restart_during_a)
    assert first.exit_code == 1
    assert [(f.rows_read, f.rows_loaded, f.rows_pending) for f in first.files] == [
        (30_000, 15_000, 15_000),
        (1_000, 500, 500),
    ]
    # B did not land on db_us before A: nothing of either is there
    assert "earlier in this run" in first.files[1].shard_errors["db_us"]
    assert rows(dsns["db_us"]) == [] and ledger(dsns["db_us"]) == []
    # the load says what failed; psycopg adds nothing ("error ignored terminating ...")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("psycopg")] == []

    later = run_cli("load", str(b), "--json", config=config)  # the user loads B alone
    assert later.exit_code == 0, later.output
    assert json.loads(later.stdout)["shards"]["db_us"]["inserted"] == 500

    expected = {"inserted": 14_500, "updated": 0, "unchanged": 500, "kept": 500, "rejected": 0}
    expected["deleted"] = expected["not_found"] = 0
    dry = run_cli("load", str(a), str(b), "--json", "--dry-run", config=config)
    assert json.loads(dry.stdout)["shards"]["db_us"] == expected  # says so, writes nothing

    again = run_cli("load", str(a), str(b), "--json", config=config)
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert [f["skipped"] for f in report["files"]] == [False, True]
    # A's 15,000 US rows: 14,500 inserted, and B's 500 kept (counted as unchanged)
    assert report["shards"]["db_us"] == expected
    assert report["rows_read"] == report["rows_loaded"] == 30_000  # B is skipped: not read
    assert (
        "  db_us: 14500 inserted, 0 updated, 500 unchanged (500 kept: a later file of this "
        "command already wrote them)"
    ) in again.output
    names = {r[0]: r[2] for r in rows(dsns["db_us"])}
    assert len(names) == 15_000
    assert all(names[i] == f"Updated {i}" for i in range(1, 1_000, 2))
    assert all(names[i] == f"Resident {i}" for i in range(1_001, 30_001, 2))
    assert [e[0] for e in ledger(dsns["db_us"])] == [str(b), str(a)]
    # and a later run in the given order changes nothing
    assert (
        json.loads(run_cli("load", str(a), str(b), "--json", config=config).stdout)["rows_loaded"]
        == 0
    )
    assert {r[0]: r[2] for r in rows(dsns["db_us"])} == names


def test_a_lasting_error_does_not_promise_that_a_rerun_completes(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # A shard that refuses every write for a reason of its own (here a trigger; a missing
    # privilege is refused before the load starts, by pipeline.preflight): re-running
    # would fail the same way, so the message must not promise that it completes.
    with psycopg.connect(shard_dsns["db_us"], autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'writes to residents are frozen here'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER frozen BEFORE INSERT OR UPDATE ON residents"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    path = tmp_path / "people.json"
    path.write_text(json.dumps(people(1, 10)))
    result = run_cli("load", str(path))
    assert result.exit_code == 1
    (line,) = [line for line in result.output.splitlines() if "Error: shard db_us" in line]
    assert "writes to residents are frozen here" in line
    assert "re-running the same command completes" not in line
    assert "fix that, then re-run the same command" in line
    assert "10 read = 5 loaded + 0 rejected + 5 pending" in result.output


def test_the_ledger_and_rows_say_when_they_were_written(
    config_file: Path, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "people.ndjson"
    path.write_text("".join(json.dumps(p) + "\n" for p in people(1, 10)))

    def pause_before_commit(result: FileResult, read: int, done: bool) -> None:
        if done:
            time.sleep(1.5)  # the file's transactions are open: the ledger's time moves on

    shard_map = load_shard_map(config_file)
    assert (
        load(shard_map, load_rules(shard_map), [path], progress=pause_before_commit).exit_code == 0
    )
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        row = conn.execute(
            "SELECT l.started_at, l.finished_at, min(r.loaded_at), max(r.loaded_at)"
            " FROM load_ledger AS l, residents AS r GROUP BY l.started_at, l.finished_at"
        ).fetchone()
    assert row is not None
    started, finished, first_row, last_row = row
    # one time for the file's rows: when its transaction began, before they were sent
    assert first_row == last_row
    assert (finished - first_row).total_seconds() >= 1.5
    assert started < first_row <= finished


@contextlib.contextmanager
def loading(config: Path, path: Path, *options: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    """`pipeline load PATH` in a process of its own, killed and reaped however the test ends
    (a process left running would fail a later test with a ResourceWarning)."""
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config), "load", str(path)]
    with subprocess.Popen(
        [*command, *options], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            yield process
        finally:
            process.kill()


def _wait_for_statement(
    dsn: str, pattern: str, process: subprocess.Popen[str], on_a_lock: bool = False
) -> None:
    """Until the load runs a statement like `pattern` on this shard's database (and, if
    `on_a_lock`, waits in it for a lock another transaction holds)."""
    deadline = time.monotonic() + 60
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline and process.poll() is None:
            found = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'resident-pipeline' AND state = 'active'"
                " AND query LIKE %s AND (NOT %s OR wait_event_type = 'Lock')",
                [pattern, on_a_lock],
            ).fetchone()
            if found and found[0]:
                return
            time.sleep(0.005)
    raise AssertionError(f"the load never ran {pattern!r} ({process.poll()=})")


# Where the signal lands: waiting for another load's lock, streaming rows, writing them.
# The writing waits in sql/load/update.sql, the statement that updates the row held.
PHASES = {
    "lock": "%pg_advisory_xact_lock%",
    "copy": "%COPY residents%",
    "upsert": "%UPDATE residents AS r%",  # held on the row another transaction locks
}
# Enough rows that streaming lasts well beyond the 5 ms between two looks at the shard; the
# lock and the upsert wait for rows or locks another transaction holds.
ROWS_FOR = {"lock": 10_000, "copy": 100_000, "upsert": 10_000}
HELD = (1, "US", "Held", None, None, None)  # on db_us, locked while the upsert runs


def test_a_row_inserted_by_hand_while_the_load_writes_is_updated_not_duplicated(
    config_file: Path, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The hand-made row is not committed when the load looks for the ids it holds, so the
    # load's COPY of that id straight into residents waits for it, and fails once it is
    # committed: the writer reads the file again and takes that shard's rows through
    # staging, whose update writes it.
    path = ndjson(tmp_path / "people.ndjson", people(1, 1_000))
    with psycopg.connect(shard_dsns["db_us"]) as hand:
        hand.execute("INSERT INTO residents (id, country, name) VALUES (1, 'US', 'By hand')")
        with loading(config_file, path, "--json", cwd=tmp_path) as process:
            _wait_for_statement(shard_dsns["db_us"], "%COPY residents%", process, True)
            hand.commit()
            out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    summary = json.loads(out)["shards"]
    assert (summary["db_us"]["inserted"], summary["db_us"]["updated"]) == (499, 1)
    assert (summary["default"]["inserted"], summary["default"]["updated"]) == (500, 0)
    us = rows(shard_dsns["db_us"])
    assert len(us) == 500 and len({r[0] for r in us}) == 500
    assert us[0] == (1, "US", "Resident 1", None, 1, None)  # the file's, not the hand's


def signal_by_every_helper_thread(pid: int, signum: signal.Signals) -> None:
    """The signal sent by the id of each of `pid`'s threads but its main one: the kernel
    hands it to that thread unless it blocks it. The handler runs in the main thread only;
    a load stops at the first signal, and the others change nothing."""
    helpers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert helpers, "the load has no thread but its main one"
    for tid in helpers:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.kill(tid, signum)


@pytest.mark.slow
@pytest.mark.parametrize("to", ["process", "threads"])
@pytest.mark.parametrize("phase", list(PHASES))
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_load_and_it_says_what_committed(
    run_cli: RunCli,
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    phase: str,
    signum: signal.Signals,
    to: str,
) -> None:
    count = ROWS_FOR[phase]
    path = ndjson(tmp_path / "big.ndjson", people(1, count))
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(psycopg.connect(shard_dsns["db_us"]))
        if phase == "lock":  # another load holds db_us
            holder.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_LOAD])
        if phase == "upsert":  # someone edits a row the file updates: the upsert waits for it
            holder.execute("INSERT INTO residents (id, country, name) VALUES (1, 'US', 'Held')")
            holder.commit()
            holder.execute("SELECT * FROM residents WHERE id = 1 FOR UPDATE")
        process = stack.enter_context(loading(config_file, path, "--json", cwd=tmp_path))
        _wait_for_statement(shard_dsns["db_us"], PHASES[phase], process)
        if to == "process":
            process.send_signal(signum)
        else:
            signal_by_every_helper_thread(process.pid, signum)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err and "Aborted" not in err
    assert "\ntotal: " in err  # the summary
    assert f"Error: interrupted by {signum.name}: the shards keep only what they committed" in err
    report = json.loads(out)
    assert report["interrupted"] == f"interrupted by {signum.name}"
    (file,) = report["files"]
    assert file["rows_read"] == file["rows_loaded"] + file["rows_rejected"] + file["rows_pending"]
    assert "db_us" in file["shard_errors"]  # it cannot have committed
    if phase != "upsert":  # nor can default yet
        assert file["rows_loaded"] == 0
    for name, dsn in shard_dsns.items():
        loaded = [r for r in rows(dsn) if r != HELD]
        if name in file["shard_errors"]:  # rolled back: nothing of the file is there
            assert (len(loaded), len(ledger(dsn))) == (0, 0)
        else:  # committed: the whole of its part, and its ledger row
            assert report["shards"][name]["inserted"] == len(loaded) == count // 2
            assert len(ledger(dsn)) == 1
    again = run_cli("load", str(path))
    assert again.exit_code == 0, again.output
    assert [len(rows(dsn)) for dsn in shard_dsns.values()] == [count // 2] * 2
    assert [len(ledger(dsn)) for dsn in shard_dsns.values()] == [1, 1]


@pytest.mark.slow
def test_a_signal_after_one_shard_committed_reports_that_shard_loaded(
    run_cli: RunCli,
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    path = ndjson(tmp_path / "big.ndjson", people(1, 100_000))
    with psycopg.connect(shard_dsns["db_us"]) as holder:
        # db_us's upsert waits for a row another transaction holds, while default commits
        holder.execute("INSERT INTO residents (id, country, name) VALUES (1, 'US', 'Held')")
        holder.commit()
        holder.execute("SELECT * FROM residents WHERE id = 1 FOR UPDATE")
        with loading(config_file, path, cwd=tmp_path) as process:
            deadline = time.monotonic() + 60
            while not ledger(shard_dsns["default"]) and time.monotonic() < deadline:
                time.sleep(0.05)
            _wait_for_statement(shard_dsns["db_us"], PHASES["upsert"], process)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
    assert process.returncode == 1, err
    assert "Traceback" not in err
    assert "100000 read = 50000 loaded + 0 rejected + 50000 pending" in err
    assert "  default: 50000 inserted, 0 updated, 0 unchanged" in err
    assert "  db_us: NOT COMMITTED (interrupted), 50000 rows pending" in err
    assert "Error: shard db_us: interrupted by SIGINT before it committed this file" in err
    assert len(rows(shard_dsns["default"])) == 50_000 and len(ledger(shard_dsns["default"])) == 1
    assert rows(shard_dsns["db_us"]) == [(1, "US", "Held", None, None, None)]
    assert ledger(shard_dsns["db_us"]) == []
    again = run_cli("load", str(path), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["shards"]["db_us"]["inserted"] == 49_999
    assert len(rows(shard_dsns["db_us"])) == 50_000


def test_a_load_waits_for_another_loads_lock_no_longer_than_the_lock_timeout(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    path = ndjson(tmp_path / "people.ndjson", people(1, 10))
    with psycopg.connect(shard_dsns["db_us"]) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", [LOCK_LOAD])  # another load
        started = time.monotonic()
        result = run_cli("load", str(path), "--lock-timeout", "1")
        waited = time.monotonic() - started
    assert result.exit_code == 1
    assert waited < 30  # not forever: about a second
    assert (
        "Error: shard db_us: canceling statement due to lock timeout; re-running the same "
        "command completes this shard"
    ) in result.output
    assert "10 read = 5 loaded + 0 rejected + 5 pending" in result.output
    assert run_cli("load", str(path)).exit_code == 0
    assert len(rows(shard_dsns["db_us"])) == 5


@contextlib.contextmanager
def frozen(server: StoppableServer) -> Iterator[None]:
    """SIGSTOP the server's postmaster and every process of it (backends included), as a
    host that stops answering; SIGCONT them afterwards."""
    postmaster = int((Path(server.handle.pgdata) / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # the parent pid is the 2nd field after the ")" that ends the command name
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    pids = [postmaster, *children]
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):  # a backend that ended meanwhile
                os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in reversed(pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.slow
def test_a_shard_that_stops_answering_fails_at_the_timeouts_and_a_rerun_completes(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, dsns = split_shards
    assert run_cli("init", config=config).exit_code == 0
    path = ndjson(tmp_path / "people.ndjson", people(1, 3 * BATCH_RECORDS))
    half = 3 * BATCH_RECORDS // 2  # the people of each shard
    with contextlib.ExitStack() as stack:

        def freeze_during_the_file(result: FileResult, read: int, done: bool) -> None:
            if read == BATCH_RECORDS and not done:  # the first batch read, none of it sent yet
                stack.enter_context(frozen(stoppable_server))

        shard_map = load_shard_map(config)
        options = LoadOptions(timeouts=Timeouts(connect=2, statement=1, lock=1))
        started = time.monotonic()
        first = load(shard_map, load_rules(shard_map), [path], options, freeze_during_the_file)
        assert time.monotonic() - started < 60  # not forever: about 1 + 1 + 1 s
        assert first.exit_code == 1
        reason = first.files[0].shard_errors["db_us"]
        assert reason.startswith("no answer within 1 s (--statement-timeout; raise it")
        assert reason.endswith("re-running the same command completes this shard")
        assert (first.files[0].rows_loaded, first.files[0].rows_pending) == (half, half)
        assert len(rows(dsns["default"])) == half  # the other shard did not wait for it

        # still frozen: connecting gives up too
        again = run_cli("load", str(path), "--connect-timeout", "2", config=config)
        assert again.exit_code == 1
        assert "Error: shard db_us: unreachable: " in again.output
        assert "re-running the same command completes this shard" in again.output
    done = run_cli("load", str(path), config=config)  # the server answers again
    assert done.exit_code == 0, done.output
    assert len(rows(dsns["db_us"])) == half and len(ledger(dsns["db_us"])) == 1


@pytest.mark.slow
def test_a_signal_stops_the_load_promptly_even_when_a_shard_stopped_answering(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, dsns = split_shards
    assert run_cli("init", config=config).exit_code == 0
    path = ndjson(tmp_path / "big.ndjson", people(1, 100_000))
    with loading(config, path, cwd=tmp_path) as process:
        _wait_for_statement(dsns["db_us"], PHASES["copy"], process)
        with frozen(stoppable_server):  # the default time-outs: 900 s for a statement
            started = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=120)
            took = time.monotonic() - started
    assert process.returncode == 1, err
    assert took < 60  # the cancel is not answered: in about 5 s the connection is dropped
    assert "Traceback" not in err
    assert "  db_us: NOT COMMITTED (interrupted)" in err
    assert "Error: interrupted by SIGINT: the shards keep only what they committed" in err
    assert ledger(dsns["db_us"]) == [] and rows(dsns["db_us"]) == []
    assert ledger(dsns["default"]) == [] and rows(dsns["default"]) == []
    again = run_cli("load", str(path), config=config)
    assert again.exit_code == 0, again.output
    assert len(rows(dsns["db_us"])) == len(rows(dsns["default"])) == 50_000


def test_a_signal_while_pyarrow_parses_a_block_stops_the_load_cleanly(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # pyarrow puts a handler of its own in for the length of a parse: a Ctrl-C that came
    # then was pyarrow's, which raised ArrowCancelled through the load (a traceback, no
    # summary). Here the signal comes while pyarrow reads the block it parses.
    real = pcsv.read_csv

    class Signalling(io.BytesIO):
        def read(self, size: int | None = -1, /) -> bytes:
            os.kill(os.getpid(), signal.SIGINT)
            return super().read(size)

    def read_csv(source: io.BytesIO, **options: object) -> object:
        return real(Signalling(source.getvalue()), **options)

    monkeypatch.setattr(pcsv, "read_csv", read_csv)  # as pipeline.source_arrow calls it
    path = tmp_path / "people.csv"
    path.write_text("id,country,name\n" + "".join(f"{i},DE,P{i}\n" for i in range(1, 101)))
    result = run_cli("load", str(path))
    assert result.exit_code == 1, result.output
    assert "Error: interrupted by SIGINT" in result.output, result.output
    assert "NOT COMMITTED (interrupted)" in result.output
    assert rows(shard_dsns["default"]) == []
