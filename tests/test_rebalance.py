"""`pipeline plan` and `pipeline rebalance`: a shard for Indonesia joins the map, residents move."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pipeline.batch import BATCH_RECORDS
from pipeline.schema import NOT_INITS, latest_version
from tests.conftest import ORIGINAL_DATA, RunCli, Server, rows, shard_map_yaml, write_map
from tests.test_check import results, status_of
from tests.test_docs import readme_examples
from tests.test_load import read_rejects
from tests.test_load_failures import _wait_for_statement, loading, ndjson

INDONESIANS: list[dict[str, object]] = [
    {"id": 101, "country": "ID", "name": "Siti Rahayu", "gender": "Female", "age": 31},
    {"id": 102, "country": "ID", "name": "Budi Santoso", "gender": "Male", "age": 45},
    {"id": 103, "country": "ID", "name": "Dewi Lestari", "gender": "Female", "age": 27},
]
NEW_MAP = "db_us: [US]\n  db_id: [ID]"
# The README's examples of plan and rebalance: this scenario's (tests/test_docs.py runs the rest).
README_SHOWS = dict(readme_examples())


@pytest.fixture
def id_map(
    pg_servers: list[Server], shard_dsns: dict[str, str], tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """The test map with a third shard, db_id, for Indonesia (a database on the second
    server): the map after the change, and every shard's DSN."""
    name = pg_servers[1].create_database()
    dsns = {**shard_dsns, "db_id": pg_servers[1].dsn_for(name)}
    try:
        yield write_map(tmp_path / "new", shard_map_yaml(dsns, routes=NEW_MAP)), dsns
    finally:
        pg_servers[1].drop_database(name)


@pytest.fixture
def indonesians_on_default(run_cli: RunCli, loaded: None, tmp_path: Path) -> None:
    """The original data, plus three Indonesians loaded while the map sent them to default."""
    result = run_cli("load", str(ndjson(tmp_path / "id.ndjson", INDONESIANS)))
    assert result.exit_code == 0, result.output


def _init_new_map(run_cli: RunCli, config: Path) -> None:
    """`pipeline init` on the new map: db_id is initialised; default refuses its new rule."""
    result = run_cli("init", config=config)
    assert result.exit_code == 1
    assert "default: 3 existing row(s) would break the new residency rule" in result.output


def test_a_row_of_a_load_no_ledger_knows_stays_unaccounted_for_where_it_moves(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    ghost = "00000000-0000-0000-0000-000000000001"
    with psycopg.connect(dsns["default"]) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, load_id) VALUES (104, 'ID', 'Ghost', %s)",
            [ghost],
        )
    assert status_of(results(run_cli), "load_reconciliation")["default"] == "fail"
    _init_new_map_with(run_cli, config, rows=4)
    assert run_cli("rebalance", config=config).exit_code == 0
    found = results(run_cli, config=config)
    # The three Indonesians' load moved with them, accounted for; the ghost's is not.
    assert status_of(found, "load_reconciliation") == {
        "default": "pass", "db_us": "pass", "db_id": "fail", "*": "pass",
    }  # fmt: skip
    (failing,) = [r for r in found if r["name"] == "load_reconciliation" and r["shard"] == "db_id"]
    assert failing["samples"] == [f"load {ghost} holds 1 rows but the ledger says it wrote 0"]


def _init_new_map_with(run_cli: RunCli, config: Path, rows: int) -> None:
    result = run_cli("init", config=config)
    assert result.exit_code == 1
    assert f"default: {rows} existing row(s) would break the new residency rule" in result.output


def _count(dsn: str, query: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


def test_a_constraint_made_by_hand_is_named_as_such_not_as_none(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str]
) -> None:
    # The same name, no rule in its comment: plan and load say what is there, init
    # replaces it.
    with psycopg.connect(shard_dsns["db_us"], autocommit=True) as conn:
        conn.execute("ALTER TABLE residents DROP CONSTRAINT residents_residency")
        conn.execute("ALTER TABLE residents ADD CONSTRAINT residents_residency CHECK (true)")
    hand = f"constraint db_us  {NOT_INITS} -> country IN (US)"
    assert run_cli("plan").output.splitlines() == [hand]
    (as_json,) = json.loads(run_cli("plan", "--json").output)["constraints"]
    assert as_json == {
        "shard": "db_us", "from": None, "to": "country IN (US)",
        "made_by_hand": True, "as_lists": False,
    }  # fmt: skip
    load = run_cli("load", str(ORIGINAL_DATA))
    assert load.exit_code == 1
    assert f"residency rule is '{NOT_INITS}' but the shard map asks for" in load.output
    assert run_cli("init").exit_code == 0
    assert run_cli("plan").output.splitlines() == [
        "nothing to move; every shard's residency constraint is the map's"
    ]


def test_plan_lists_the_moves_and_constraint_changes_and_changes_nothing(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    result = run_cli("plan", config=config)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "move ID  default -> db_id  3 rows",
        "constraint default  country NOT IN (US) -> country NOT IN (ID, US)",
    ]
    assert result.output.splitlines() == README_SHOWS["pipeline plan"]
    as_json = json.loads(run_cli("plan", "--json", config=config).output)
    assert as_json == {
        "moves": [
            {"country": "ID", "from": "default", "to": "db_id", "rows": 3, "unfinished_move": None}
        ],
        "constraints": [
            {
                "shard": "default",
                "from": "country NOT IN (US)",
                "to": "country NOT IN (ID, US)",
                "made_by_hand": False,
                "as_lists": False,
            }
        ],
        "stranded": [],
    }
    assert len(rows(dsns["default"])) == 8 and rows(dsns["db_id"]) == []


def test_rebalance_moves_the_indonesians_and_check_passes(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    before = rows(dsns["default"])
    dry = run_cli("rebalance", "--dry-run", config=config)
    assert dry.exit_code == 0 and dry.output.startswith("would move ID  default -> db_id  3 rows")
    as_json = json.loads(run_cli("rebalance", "--dry-run", "--json", config=config).output)
    assert as_json["plan"]["moves"] == [
        {"country": "ID", "from": "default", "to": "db_id", "rows": 3, "unfinished_move": None}
    ]
    assert as_json["moves"] == [] and as_json["residents_after"] == as_json["residents_before"]
    assert rows(dsns["default"]) == before

    result = run_cli("rebalance", config=config)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "moved ID  default -> db_id  3 rows (3 copied, 0 already there, 0 renumbered)",
        "constraint default: country NOT IN (ID, US)",
        "residents  default 8 -> 5, db_us 4 -> 4, db_id 0 -> 3",
    ]
    assert result.output.splitlines() == README_SHOWS["pipeline rebalance"]
    assert [r for r in before if r[1] == "ID"] == rows(dsns["db_id"])
    assert [r for r in before if r[1] != "ID"] == rows(dsns["default"])
    assert run_cli("check", config=config).exit_code == 0
    assert run_cli("plan", config=config).output == (
        "nothing to move; every shard's residency constraint is the map's\n"
    )
    assert "unchanged" in run_cli("init", config=config).output
    # Done is done: a second run moves nothing.
    again = run_cli("rebalance", config=config)
    assert again.output == "residents  default 5 -> 5, db_us 4 -> 4, db_id 3 -> 3\n"
    assert json.loads(run_cli("rebalance", "--json", config=config).output) == {
        "plan": {"moves": [], "constraints": [], "stranded": []},
        "moves": [],
        "stranded": [],
        "constraints": [],
        "errors": [],
        "residents_before": {"default": 5, "db_us": 4, "db_id": 3},
        "residents_after": {"default": 5, "db_us": 4, "db_id": 3},
    }


def test_five_rows_leave_default_when_db_id_becomes_the_default(
    run_cli: RunCli, loaded: None, id_map: tuple[Path, dict[str, str]], shard_dsns: dict[str, str]
) -> None:
    config, dsns = id_map
    with psycopg.connect(dsns["default"]) as conn:  # a row's source moves with it
        conn.execute("UPDATE residents SET source = 'crm' WHERE id = 17")
    text = shard_map_yaml(dsns, routes=NEW_MAP, default="db_id")
    config.write_text(text)
    assert run_cli("init", config=config).exit_code == 1  # default holds 5 rows it now refuses
    plan = run_cli("plan", config=config).output.splitlines()
    assert plan == [
        *(f"move {c}  default -> db_id  1 rows" for c in ("CA", "DE", "FR", "GB", "UA")),
        "constraint default  country NOT IN (US) -> country IN ()",
    ]  # init gave db_id its rule already: it holds nothing that breaks it
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "residents  default 5 -> 0, db_us 4 -> 4, db_id 0 -> 5"
    assert [r[0] for r in rows(dsns["db_id"])] == [1, 2, 17, 22, 25]
    with psycopg.connect(dsns["db_id"]) as conn:
        assert conn.execute("SELECT id FROM residents WHERE source = 'crm'").fetchall() == [(17,)]
    assert run_cli("check", config=config).exit_code == 0
    status = run_cli("status", config=config).output
    schema = f"schema {latest_version()}/{latest_version()}"
    assert f"{schema}  0 residents" in status and f"{schema}  5 residents" in status


def test_an_interrupted_rebalance_has_said_the_moves_it_did(
    run_cli: RunCli,
    loaded: None,
    id_map: tuple[Path, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ctrl-C during the third of five moves: the two done are said (each as it ended), and
    # how the rest is finished; the re-run moves the other three.
    from pipeline import rebalance as rebalance_module

    config, dsns = id_map
    config.write_text(shard_map_yaml(dsns, routes=NEW_MAP, default="db_id"))
    assert run_cli("init", config=config).exit_code == 1
    move, calls = rebalance_module._move, []

    def third_interrupted(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt
        move(*args)

    monkeypatch.setattr(rebalance_module, "_move", third_interrupted)
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    lines = result.output.splitlines()
    moves = [line.split("  ")[0] for line in lines if line.startswith("moved ")]
    assert moves == ["moved CA", "moved DE"], lines
    assert "rebalance stopped: the moves said above are done" in result.output
    assert lines[-1] == "Error: interrupted (SIGINT)"
    assert sorted(r[1] for r in rows(dsns["db_id"])) == ["CA", "DE"]
    monkeypatch.setattr(rebalance_module, "_move", move)
    again = run_cli("rebalance", config=config)
    assert again.exit_code == 0, again.output
    moves = [line.split("  ")[0] for line in again.output.splitlines() if line.startswith("moved ")]
    assert moves == ["moved FR", "moved GB", "moved UA"]


def _collide(dsn: str) -> None:
    """Another person on db_id under id 102, the id of an Indonesian on default."""
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (102, 'ID', 'Other')")


def test_a_collision_stops_the_move_before_anything_is_deleted(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _collide(dsns["db_id"])
    before = rows(dsns["default"]), rows(dsns["db_id"])
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    assert (
        "Error: ID  default -> db_id: 1 row(s) have an id that db_id holds"
        " for a different row (102); nothing of ID was moved" in result.output
    )
    assert (rows(dsns["default"]), rows(dsns["db_id"])) == before
    assert run_cli("plan", config=config).output.startswith("move ID  default -> db_id  3 rows")


def test_renumber_gives_colliding_rows_new_ids_and_records_the_old_ones(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _collide(dsns["db_id"])
    result = run_cli("rebalance", "--on-id-conflict", "renumber", config=config)
    assert result.exit_code == 0, result.output
    assert "3 rows (3 copied, 0 already there, 1 renumbered)" in result.output
    moved = {r[0]: r[2] for r in rows(dsns["db_id"])}
    assert moved == {
        101: "Siti Rahayu",
        102: "Other",
        103: "Dewi Lestari",
        10**15: "Budi Santoso",
    }
    with psycopg.connect(dsns["db_id"]) as conn:
        renumbered = conn.execute("SELECT id, old_shard, old_id FROM rebalance_renumbered")
        assert renumbered.fetchall() == [(10**15, "default", 102)]
    assert [r[1] for r in rows(dsns["default"])].count("ID") == 0
    assert run_cli("check", config=config).exit_code == 0


# Budi's record as his source still gives it once a renumbering moved him (_renumber_budi).
BUDI = {"id": 102, "country": "ID", "name": "Budi Santoso", "gender": "Male", "age": 46}


def _renumber_budi(run_cli: RunCli, config: Path, dsns: dict[str, str]) -> None:
    """Budi (ID, 102 on default) moved to db_id as 10^15: Other holds 102 there."""
    _init_new_map(run_cli, config)
    _collide(dsns["db_id"])
    assert run_cli("rebalance", "--on-id-conflict", "renumber", config=config).exit_code == 0


def test_a_load_never_writes_over_another_resident_under_an_id_a_renumbering_took(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    # Budi (ID, 102 on default) moved to db_id as 10^15: 102 is Other's there. The file
    # that calls Budi 102 must not update Other with his data, nor a marker delete Other.
    config, dsns = id_map
    _renumber_budi(run_cli, config, dsns)
    marker = {"id": 102, "country": "ID", "name": "Budi Santoso", "_op": "delete"}
    for n, record in enumerate([BUDI, marker]):
        path = ndjson(tmp_path / f"budi{n}.ndjson", [record])
        result = run_cli("load", "--max-rejects", "100%", str(path), config=config)
        assert result.exit_code == 0, result.output
        assert "1 read = 0 loaded + 1 rejected" in result.output
    found = read_rejects(tmp_path / "data" / "rejects")
    assert [(r["reason"], r["shard"]) for r in found] == [("renumbered_id", "db_id")] * 2
    # Other is Indonesian too: the record may mean either, and the message says so.
    message = found[0]["message"]
    assert "id 102 of a ID resident is two residents' on shard db_id" in message
    assert f"For the moved one, give the id {10**15}; for the other, load under a source" in (
        message
    )
    held = {r[0]: (r[2], r[4]) for r in rows(dsns["db_id"])}
    assert (held[102], held[10**15]) == (("Other", None), ("Budi Santoso", 45))
    # A load of another source than Budi's means its own resident 102: it loads.
    with psycopg.connect(dsns["db_id"]) as conn:
        conn.execute("UPDATE residents SET source = 'crm' WHERE id = %s", [10**15])
    other = ndjson(tmp_path / "other.ndjson", [{"id": 102, "country": "ID", "name": "Other Two"}])
    assert run_cli("load", "--source", "hr", str(other), config=config).exit_code == 0
    # A snapshot of Budi's source that gives him as 102 keeps him: refused, not deleted.
    again = ndjson(tmp_path / "again.ndjson", [BUDI])
    snap = run_cli("load", "--source", "crm", "--mode", "snapshot", "--max-rejects", "100%",
                   str(again), config=config)  # fmt: skip
    assert snap.exit_code == 0, snap.output
    held = {r[0]: (r[2], r[4]) for r in rows(dsns["db_id"])}
    assert (held[102], held[10**15]) == (("Other Two", None), ("Budi Santoso", 45))


@pytest.mark.parametrize("place", ["first", "last of a batch", "first of the next", "end"])
def test_a_renumbered_id_is_refused_wherever_it_comes_in_the_batches(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
    place: str,
) -> None:
    # Each batch is marked on its own: Budi's old id at either side of a batch boundary,
    # among new Indonesians who load (NDJSON, read in bulk: batches of BATCH_RECORDS).
    config, dsns = id_map
    _renumber_budi(run_cli, config, dsns)
    others = [
        {"id": 200_000 + i, "country": "ID", "name": f"New {i}"} for i in range(BATCH_RECORDS + 10)
    ]
    at = {"first": 0, "last of a batch": BATCH_RECORDS - 1, "first of the next": BATCH_RECORDS,
          "end": len(others)}[place]  # fmt: skip
    path = ndjson(tmp_path / "budi.ndjson", [*others[:at], BUDI, *others[at:]])
    result = run_cli("load", str(path), config=config)
    assert result.exit_code == 0, result.output
    assert f"{len(others) + 1} read = {len(others)} loaded + 1 rejected" in result.output
    found = read_rejects(tmp_path / "data" / "rejects")
    assert [(r["record"], r["reason"]) for r in found] == [(at + 1, "renumbered_id")]
    held = {r[0]: r[2] for r in rows(dsns["db_id"])}
    assert (held[102], held[10**15]) == ("Other", "Budi Santoso")


def test_a_renumbered_ids_message_names_the_new_id_where_the_record_means_one_resident() -> None:
    from pipeline.renumbered import _message

    plain = _message(4, "DE", "db_us", 10**15, False)
    assert plain == (
        "id 4 of a DE resident: `pipeline rebalance` moved that DE resident to shard db_us as"
        f" id {10**15}, since id 4 is another resident's there; give the id {10**15}"
    )


def _rebalancing(config: Path, cwd: Path, *options: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config), "rebalance"]
    command += options
    return subprocess.Popen(
        command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _hold_a_row(dsn: str) -> psycopg.Connection[Any]:
    """A transaction holding an Indonesian's row on default: the rebalance's delete waits."""
    conn = psycopg.connect(dsn)
    conn.execute("SELECT FROM residents WHERE id = 101 FOR UPDATE")
    return conn


def _killed_between_copy_and_delete(
    config: Path, dsns: dict[str, str], cwd: Path, *options: str
) -> None:
    """A rebalance killed once its copy committed on db_id, its delete on default not."""
    held = _hold_the_ledger(dsns["default"])
    with _rebalancing(config, cwd, *options) as process:
        try:
            _wait_for_statement(dsns["default"], "%INSERT INTO rebalance_ledger%", process, True)
        finally:
            process.kill()
            process.communicate()
    held.close()


def _hold_the_ledger(dsn: str) -> psycopg.Connection[Any]:
    """A transaction that keeps anyone from writing default's move ledger: the rebalance
    waits there, its copy committed on db_id, its delete on default not."""
    conn = psycopg.connect(dsn)
    conn.execute("LOCK TABLE rebalance_ledger IN SHARE MODE")
    return conn


@pytest.mark.parametrize("collision", [False, True], ids=["as-is", "renumbered"])
def test_a_rebalance_killed_between_copy_and_delete_is_finished_by_a_rerun(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
    collision: bool,
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    options = ["--on-id-conflict", "renumber"] if collision else []
    if collision:
        _collide(dsns["db_id"])
    _killed_between_copy_and_delete(config, dsns, tmp_path, *options)
    copied = rows(dsns["db_id"])
    assert len(copied) == 3 + collision
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3
    assert run_cli("plan", config=config).output.startswith("move ID  default -> db_id  3 rows")

    result = run_cli("rebalance", *options, config=config)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        "moved ID  default -> db_id  3 rows (copied by an earlier run)"
    )
    assert rows(dsns["db_id"]) == copied  # Budi renumbered once, by the first run
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 0
    assert run_cli("check", config=config).exit_code == 0


def test_a_row_changed_after_a_killed_copy_is_not_deleted_but_reported(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _killed_between_copy_and_delete(config, dsns, tmp_path)
    with psycopg.connect(dsns["default"]) as conn:  # an edit on the source, after the copy
        conn.execute("UPDATE residents SET age = 32 WHERE id = 101")
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    assert "1 row(s) have an id that db_id holds for a different row (101)" in result.output
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3
    assert _count(dsns["default"], "SELECT age FROM residents WHERE id = 101") == 32


def test_a_row_edited_by_hand_while_it_moves_stops_the_move_and_a_rerun_carries_the_edit(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    # The source's second session hashes and deletes the rows in the copy's snapshot: an
    # edit committed after it was taken fails that delete (REPEATABLE READ), where a delete
    # that saw the edit would drop it for the copy's older row.
    config, dsns = id_map
    _init_new_map(run_cli, config)
    edit = psycopg.connect(dsns["default"])
    edit.execute("UPDATE residents SET name = 'Siti Edited' WHERE id = 101")
    with _rebalancing(config, tmp_path) as process:
        try:
            _wait_for_statement(dsns["default"], "%DELETE FROM residents%", process, True)
            edit.commit()
            assert process.wait(60) == 1
        finally:
            edit.close()
            process.kill()
            out, err = process.communicate()
    assert "ID  default -> db_id: shard default: could not serialize access" in out + err
    assert rows(dsns["db_id"]) == []
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 0, result.output
    assert {r[0]: r[2] for r in rows(dsns["db_id"])}[101] == "Siti Edited"
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 0


def test_a_load_of_the_moving_country_waits_for_the_move(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    newer = [{**INDONESIANS[0], "age": 32}, {"id": 104, "country": "ID", "name": "Agus Wijaya"}]
    path = ndjson(tmp_path / "newer.ndjson", newer)
    held = _hold_a_row(dsns["default"])
    with _rebalancing(config, tmp_path) as process:
        try:
            _wait_for_statement(dsns["default"], "%DELETE FROM residents%", process, True)
            with loading(config, path, "--json", cwd=tmp_path) as load:
                # The load waits for the lock the move holds (default's: it locks the shards
                # in the map's order).
                _wait_for_statement(dsns["default"], "%pg_advisory_xact_lock%", load, True)
                held.close()
                assert process.wait(60) == 0
                out, err = load.communicate(timeout=60)
        finally:
            process.kill()
            process.communicate()
    # The rows went to db_id after the move: 101 updated over the moved row, 104 new.
    summary = json.loads(out)
    assert (summary["rows_loaded"], summary["rows_pending"]) == (2, 0)
    assert summary["shards"]["db_id"] == {
        "inserted": 1,
        "updated": 1,
        "unchanged": 0,
        "kept": 0,
        "rejected": 0,
        "deleted": 0,
        "not_found": 0,
    }
    # The load reads each shard's residency rule once it holds the shard's lock: the rule
    # the move left, the map's.
    assert load.returncode == 0, err
    assert summary["files"][0]["shard_errors"] == {}
    by_id = {r[0]: (r[2], r[4]) for r in rows(dsns["db_id"])}
    assert by_id == {
        101: ("Siti Rahayu", 32),  # the load's newer row, written after the move
        102: ("Budi Santoso", 45),
        103: ("Dewi Lestari", 27),
        104: ("Agus Wijaya", None),
    }
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 0
    checked = run_cli("check", config=config)
    assert checked.exit_code == 0, checked.output


def _refuse(dsn: str, event: str) -> None:
    """A trigger on residents that fails every `event` (INSERT, DELETE) on this shard."""
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'refused by hand'; END $$"
        )
        conn.execute(f"CREATE TRIGGER refuse BEFORE {event} ON residents EXECUTE FUNCTION refuse()")


def _allow(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute("DROP TRIGGER refuse ON residents")


def test_a_failing_target_is_named_and_nothing_leaves_the_source(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _refuse(dsns["db_id"], "INSERT")
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    assert "Error: ID  default -> db_id: shard db_id: refused by hand" in result.output
    assert rows(dsns["db_id"]) == []
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3


def test_a_target_failing_mid_copy_stops_the_source_side_waiting_on_a_lock(
    run_cli: RunCli,
    indonesians_on_default: None,
    id_map: tuple[Path, dict[str, str]],
    tmp_path: Path,
) -> None:
    # The source's second session deletes while the copy runs; here that delete waits for a
    # row held by hand, and the target's copy stalls until it is cancelled. The move must
    # stop that delete and say what failed, not wait for the row.
    config, dsns = id_map
    _init_new_map(run_cli, config)
    with psycopg.connect(dsns["db_id"]) as conn:
        conn.execute(
            "CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN PERFORM pg_sleep(60); RETURN NEW; END $$"
        )
        conn.execute("CREATE TRIGGER stall BEFORE INSERT ON residents EXECUTE FUNCTION stall()")
    held = _hold_a_row(dsns["default"])
    with _rebalancing(config, tmp_path) as process:
        try:
            _wait_for_statement(dsns["default"], "%DELETE FROM residents%", process, True)
            _wait_for_statement(dsns["db_id"], "COPY residents%", process)
            with psycopg.connect(dsns["db_id"], autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'resident-pipeline' AND query LIKE 'COPY%'"
                )
            assert process.wait(30) == 1  # with the row still held
        finally:
            process.kill()
            out, err = process.communicate()
            held.close()
    assert "ID  default -> db_id: shard db_id: canceling statement" in out + err
    assert rows(dsns["db_id"]) == []
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3


def test_a_failing_source_is_named_and_nothing_is_copied(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    _refuse(dsns["default"], "DELETE")
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    assert "Error: ID  default -> db_id: shard default: refused by hand" in result.output
    assert rows(dsns["db_id"]) == []  # the target commits only once the source has deleted
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3
    # The map's rule cannot hold on default yet: its constraint still accepts ID.
    assert run_cli("plan", config=config).output.splitlines() == [
        "move ID  default -> db_id  3 rows",
        "constraint default  country NOT IN (US) -> country NOT IN (ID, US)",
    ]
    _allow(dsns["default"])
    assert run_cli("rebalance", config=config).exit_code == 0
    assert len(rows(dsns["db_id"])) == 3


def test_only_the_countries_asked_for_move_and_the_others_stay_accepted(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    config.write_text(shard_map_yaml(dsns, routes="db_us: [US, CA]\n  db_id: [ID]"))
    assert run_cli("init", config=config).exit_code == 1
    result = run_cli("rebalance", "--country", "id", config=config)
    assert result.exit_code == 0, result.output
    assert "constraint default: country NOT IN (ID, US)" in result.output  # still takes CA
    assert run_cli("plan", config=config).output.splitlines() == [
        "move CA  default -> db_us  1 rows",
        "constraint default  country NOT IN (ID, US) -> country NOT IN (CA, ID, US)",
    ]
    assert run_cli("rebalance", config=config).exit_code == 0
    assert [r[1] for r in rows(dsns["db_us"])] == ["US", "US", "US", "US", "CA"]
    assert run_cli("check", config=config).exit_code == 0


def test_rows_routed_to_no_shard_stay_and_fail_the_rebalance(
    run_cli: RunCli, loaded: None, config_file: Path, shard_dsns: dict[str, str]
) -> None:
    # Residents of the default shard's countries have nowhere to go once the map rejects them.
    config_file.write_text(shard_map_yaml(shard_dsns, routes="db_us: [US, CA]", default="reject"))
    plan = json.loads(run_cli("plan", "--json").output)
    assert plan["moves"] == [
        {"country": "CA", "from": "default", "to": "db_us", "rows": 1, "unfinished_move": None}
    ]
    assert [s["country"] for s in plan["stranded"]] == ["DE", "FR", "GB", "UA"]
    result = run_cli("rebalance")
    assert result.exit_code == 1
    assert "Error: 1 row(s) of DE on default are routed to no shard (default: reject)" in (
        result.output
    )
    assert [r[0] for r in rows(shard_dsns["default"])] == [1, 2, 17, 22]  # CA's 25 moved
    assert "constraint default: country IN (DE, FR, GB, UA)" in result.output


def test_moved_generated_ids_are_never_handed_out_again_on_the_target(
    run_cli: RunCli, initialised: None, id_map: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    config, dsns = id_map
    # On default: an Indonesian without an id (default gives it 10^15) and one with id 102,
    # which db_id holds for someone else: renumbered there, it must not get 10^15 too.
    people: list[dict[str, object]] = [{"country": "ID", "name": "Tanpa Nomor"}, INDONESIANS[1]]
    assert run_cli("load", str(ndjson(tmp_path / "a.ndjson", people))).exit_code == 0
    _init_new_map_holding(run_cli, config, 2)
    _collide(dsns["db_id"])
    result = run_cli("rebalance", "--on-id-conflict", "renumber", config=config)
    assert result.exit_code == 0, result.output
    later: list[dict[str, object]] = [{"country": "ID", "name": "Orang Baru"}]
    assert run_cli("load", str(ndjson(tmp_path / "b.ndjson", later)), config=config).exit_code == 0
    assert [(r[0], r[2]) for r in rows(dsns["db_id"])] == [
        (102, "Other"),
        (10**15, "Tanpa Nomor"),
        (10**15 + 1, "Budi Santoso"),
        (10**15 + 2, "Orang Baru"),
    ]


def _init_new_map_holding(run_cli: RunCli, config: Path, n: int) -> None:
    result = run_cli("init", config=config)
    assert result.exit_code == 1
    assert f"default: {n} existing row(s) would break" in result.output


def test_an_id_taken_by_another_country_is_a_collision_too(
    run_cli: RunCli, loaded: None, config_file: Path, shard_dsns: dict[str, str]
) -> None:
    # db_us holds no Canadian, so the move tries to COPY straight into residents; the id
    # that a US resident holds there fails it, and the staging way names the collision.
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (25, 'US', 'Not Chloé')")
    config_file.write_text(shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    result = run_cli("rebalance")
    assert result.exit_code == 1
    assert "1 row(s) have an id that db_us holds for a different row (25)" in result.output
    assert [r[0] for r in rows(shard_dsns["default"])] == [1, 2, 17, 22, 25]
    renumbered = run_cli("rebalance", "--on-id-conflict", "renumber")
    assert renumbered.exit_code == 0, renumbered.output
    assert [(r[0], r[1]) for r in rows(shard_dsns["db_us"])][-2:] == [(25, "US"), (10**15, "CA")]


def test_rows_the_target_holds_otherwise_than_sent_fail_the_verification(
    run_cli: RunCli, indonesians_on_default: None, id_map: tuple[Path, dict[str, str]]
) -> None:
    config, dsns = id_map
    _init_new_map(run_cli, config)
    with psycopg.connect(dsns["db_id"]) as conn:  # a target that changes what it is given
        conn.execute(
            "CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN NEW.name := upper(NEW.name); RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER shout BEFORE INSERT ON residents FOR EACH ROW EXECUTE FUNCTION shout()"
        )
    result = run_cli("rebalance", config=config)
    assert result.exit_code == 1
    assert (
        "Error: ID  default -> db_id: db_id holds 3 row(s) after the copy where default had 3"
        " (deleting 3), or other content; nothing was changed"
    ) in result.output
    assert rows(dsns["db_id"]) == []
    assert _count(dsns["default"], "SELECT count(*) FROM residents WHERE country = 'ID'") == 3


@pytest.mark.slow
def test_a_taken_id_found_mid_stream_falls_back_to_staging(
    run_cli: RunCli, initialised: None, config_file: Path, shard_dsns: dict[str, str]
) -> None:
    # The target refuses the straight COPY (its error reaches the client when the COPY
    # ends, after the source's has), and the staging way reads the same snapshot again. A
    # source COPY stopped before its end rolls back to its own savepoint and leaves that
    # snapshot usable: test_copyout's autocommit-block test.
    with psycopg.connect(shard_dsns["default"]) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name)"
            " SELECT i, 'CA', 'Resident ' || i FROM generate_series(1, 200000) AS i"
        )
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        conn.execute("INSERT INTO residents (id, country, name) VALUES (7, 'US', 'Taken')")
    config_file.write_text(shard_map_yaml(shard_dsns, routes="db_us: [US, CA]"))
    result = run_cli("rebalance")
    assert result.exit_code == 1
    assert "1 row(s) have an id that db_us holds for a different row (7)" in result.output
    renumbered = run_cli("rebalance", "--on-id-conflict", "renumber")
    assert renumbered.exit_code == 0, renumbered.output
    assert "200000 rows (200000 copied, 0 already there, 1 renumbered)" in renumbered.output
    assert _count(shard_dsns["db_us"], "SELECT count(*) FROM residents") == 200_001
    assert _count(shard_dsns["default"], "SELECT count(*) FROM residents") == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_rebalance_whose_log_cannot_be_written_stops_and_says_what_is_left(
    run_cli: RunCli,
    indonesians_on_default: None,
    pg_servers: list[Server],
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    # Two moves (GB and ID to db_id); stdout, a full disk, fails at the first's line. It said
    # "the output is incomplete", as if only the log were lost, where the moves stopped.
    name = pg_servers[1].create_database()
    try:
        dsns = {**shard_dsns, "db_id": pg_servers[1].dsn_for(name)}
        routes = "db_us: [US]\n  db_id: [GB, ID]"
        config = write_map(tmp_path / "two", shard_map_yaml(dsns, routes=routes))
        assert run_cli("init", config=config).exit_code == 1  # default keeps its rule for now
        command = [sys.executable, "-m", "pipeline.cli", "--config", str(config), "rebalance"]
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300
            )
        assert done.returncode == 2
        (said,) = done.stderr.splitlines()
        assert said.startswith("Error: stdout: cannot write: No space left on device;")
        assert said.endswith(
            ": re-running `pipeline rebalance` moves the rest (`pipeline plan` shows what is left)"
        )
        first = said.split("rebalance stopped after ")[1][:2]
        left = run_cli("plan", config=config).output.splitlines()
        assert [line.split()[:2] for line in left if line.startswith("move ")] == [
            ["move", {"GB": "ID", "ID": "GB"}[first]]
        ]
        again = run_cli("rebalance", config=config)
        assert again.exit_code == 0, again.output
        assert {r[1] for r in rows(dsns["db_id"])} == {"GB", "ID"}
        assert run_cli("plan", config=config).output == (
            "nothing to move; every shard's residency constraint is the map's\n"
        )
    finally:
        pg_servers[1].drop_database(name)
