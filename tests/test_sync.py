"""Sources and snapshots (pipeline.sync): every row remembers the source that wrote it last; a
snapshot of a source deletes, shard by shard, that source's rows the file no longer has, in
the file's transaction, within --max-deletes; other sources' rows and hand-written rows are
never touched."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg import sql

from pipeline.batch import BATCH_RECORDS
from pipeline.config import load_rules, load_shard_map
from pipeline.load import load
from pipeline.load_options import LoadOptions
from pipeline.load_result import FileResult
from pipeline.queries import LOAD
from pipeline.shard_rows import KEPT_CHUNK, SPOOL_IN_MEMORY
from pipeline.sync import Source
from tests.conftest import StoppableServer, shard_map_yaml, write_map
from tests.test_load_direct import HEADER, write

RunCli = Callable[..., Result]


def people(ids: range, country: str = "DE") -> list[list[Any]]:
    return [[i, country, f"Person {i}", "F", 30, f"Street {i}"] for i in ids]


def load_json(run_cli: RunCli, *args: str, code: int = 0) -> dict[str, Any]:
    result = run_cli("load", "--json", *args)
    assert result.exit_code == code, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def by_source(dsn: str) -> dict[int, str | None]:
    """id -> source of every resident on a shard."""
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT id, source FROM residents ORDER BY id").fetchall())


def ledger_deletes(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT source, mode, inserted, updated, unchanged, deleted FROM load_ledger"
            " ORDER BY ledger_id"
        ).fetchall()


def hand_insert(dsn: str, id_: int, country: str = "DE") -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name) VALUES (%s, %s, 'By Hand')", [id_, country]
        )


def test_a_snapshot_deletes_the_rows_its_source_no_longer_has_and_nothing_else(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    crm = people(range(1, 21)) + people(range(101, 121), "US")
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    load_json(run_cli, "--source", "erp", str(write(tmp_path / "e.csv", people(range(50, 53)))))
    hand_insert(shard_dsns["default"], 60)
    # The next export lacks ids 5 (default) and 110 (db_us): one row of 20 on each shard.
    later = [r for r in crm if r[0] not in (5, 110)]
    summary = load_json(
        run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "b.csv", later))
    )
    assert summary["shards"]["default"]["deleted"] == 1
    assert summary["shards"]["db_us"]["deleted"] == 1
    assert summary["files"][0]["deleted"] == {
        "default": {"rows": 1, "countries": {"DE": 1}},
        "db_us": {"rows": 1, "countries": {"US": 1}},
    }
    assert (summary["rows_read"], summary["rows_loaded"]) == (38, 38)
    default = by_source(shard_dsns["default"])
    assert 5 not in default and 110 not in by_source(shard_dsns["db_us"])
    assert [default[i] for i in (50, 51, 52, 60)] == ["erp", "erp", "erp", None]
    assert {default[i] for i in range(1, 21) if i != 5} == {"crm"}
    assert ledger_deletes(shard_dsns["default"])[-1] == ("crm", "snapshot", 0, 0, 19, 1)


def test_a_snapshot_sent_again_after_another_is_the_state_again_and_a_rerun_a_no_op(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Day 3's export is day 1's, byte for byte: day 2 dropped id 10 and changed id 1's age.
    day1 = people(range(1, 11))
    day2 = [[1, "DE", "Person 1", "F", 31, "Street 1"], *people(range(2, 10))]
    snapshot = ("--source", "crm", "--mode", "snapshot", "--max-deletes", "50%")
    first, second = write(tmp_path / "d1.csv", day1), write(tmp_path / "d2.csv", day2)
    load_json(run_cli, *snapshot, str(first), str(second))
    third = tmp_path / "d3.csv"
    third.write_bytes(first.read_bytes())
    summary = load_json(run_cli, *snapshot, str(third))
    assert not summary["files"][0]["skipped"]
    counts = summary["shards"]["default"]
    assert (counts["inserted"], counts["updated"]) == (1, 1)  # id 10 back, id 1's age
    assert sorted(by_source(shard_dsns["default"])) == list(range(1, 11))
    # Then each of those is the last of its source in its own run only: re-runs skip them,
    # and a folder of the three, in order, skips all (day 3 is the latest in the ledger).
    for files in ([str(third)], [str(first), str(second), str(third)]):
        again = load_json(run_cli, *snapshot, *files)
        assert all(f["skipped"] for f in again["files"]), again
    # An append of the same bytes as an earlier file is still skipped: exactly once.
    appended = load_json(run_cli, "--source", "erp", str(first))
    load_json(run_cli, "--source", "erp", str(second))
    assert load_json(run_cli, "--source", "erp", str(third))["files"][0]["skipped"]
    assert not appended["files"][0]["skipped"]


def test_a_resident_who_changed_country_moves_between_shards(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    crm = people(range(1, 21))
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    crm[2][1] = "US"  # id 3 moved to the United States
    summary = load_json(
        run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "b.csv", crm))
    )
    assert summary["shards"]["db_us"]["inserted"] == 1
    assert summary["shards"]["default"]["deleted"] == 1
    assert 3 not in by_source(shard_dsns["default"])
    assert by_source(shard_dsns["db_us"]) == {3: "crm"}


def test_a_snapshot_over_max_deletes_changes_nothing_anywhere(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    crm = people(range(1, 21)) + people(range(101, 111), "US")
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    before = {name: by_source(dsn) for name, dsn in shard_dsns.items()}
    # A truncated export: 3 of default's 20 rows missing (15% > 10%), db_us's rows changed.
    truncated = people(range(1, 18)) + [[*r[:5], "Moved"] for r in crm[20:]]
    path = write(tmp_path / "b.csv", truncated)
    result = run_cli("load", "--source", "crm", "--mode", "snapshot", str(path))
    assert result.exit_code == 1
    assert (
        "the snapshot of source crm would delete 3 of the 20 rows it has on shard default, over"
        " the limit of 10% (--max-deletes): the whole file is refused" in result.output
    )
    assert {name: by_source(dsn) for name, dsn in shard_dsns.items()} == before
    with psycopg.connect(shard_dsns["db_us"]) as conn:
        assert conn.execute(
            "SELECT count(*) FROM residents WHERE address = 'Moved'"
        ).fetchone() == (0,)
    assert len(ledger_deletes(shard_dsns["default"])) == 1
    # A dry run says the same, and lists no ids of a deletion that will not happen.
    dry = load_json(run_cli, "--source", "crm", "--mode", "snapshot", "--dry-run", "--json",
                    str(path), code=1)  # fmt: skip
    assert dry["files"][0]["deleted"]["default"] == {"rows": 0, "countries": {}}
    # A count allows it; so does a larger percentage.
    summary = load_json(
        run_cli, "--source", "crm", "--mode", "snapshot", "--max-deletes", "3", str(path)
    )
    assert summary["shards"]["default"]["deleted"] == 3
    assert summary["shards"]["db_us"]["updated"] == 10


def test_max_deletes_counts_the_sources_rows_the_file_changes_too(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    # The rows the file gives unchanged are a lower bound of the source's rows; past the
    # budget on that bound, the source is counted. 2 of 40 deleted (5%) is within 10%, though
    # the file gives none of the other 38 unchanged.
    crm = people(range(1, 41))
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    changed = [[*r[:5], "Moved"] for r in crm[2:]]
    summary = load_json(run_cli, "--source", "crm", "--mode", "snapshot",
                        str(write(tmp_path / "b.csv", changed)))  # fmt: skip
    counts = summary["shards"]["default"]
    assert (counts["deleted"], counts["updated"], counts["unchanged"]) == (2, 38, 0)
    # The same budget on the same source, 5 of its 38 rows gone (13%): refused, with the
    # source's count in the message.
    result = run_cli("load", "--source", "crm", "--mode", "snapshot",
                     str(write(tmp_path / "c.csv", crm[7:])))  # fmt: skip
    assert result.exit_code == 1
    assert "would delete 5 of the 38 rows it has on shard default" in result.output


def test_a_dry_run_lists_what_a_snapshot_would_delete_and_deletes_nothing(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    crm = [*people(range(1, 31)), [31, "FR", "Jeanne", "F", 40, ""]]
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    path = write(tmp_path / "b.csv", [r for r in crm if r[0] not in (7, 31)])
    args = ("--source", "crm", "--mode", "snapshot", "--dry-run", str(path))
    summary = load_json(run_cli, *args)
    assert summary["files"][0]["deleted"]["default"] == {
        "rows": 2,
        "countries": {"DE": 1, "FR": 1},
        "ids": [7, 31],
    }
    assert set(by_source(shard_dsns["default"])) == set(range(1, 32))
    text = run_cli("load", *args).output
    assert "default: 0 inserted, 0 updated, 29 unchanged, 2 deleted (DE 1, FR 1)" in text


@pytest.mark.parametrize("by", ["rules", "reader"])
def test_a_refused_record_does_not_delete_its_resident(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, by: str
) -> None:
    # More than a batch of records, refused ones in the first and the last batch: by the
    # rules (an invalid age), or by the reader (a field too many), whose refusals ride along
    # a batch of their own reader's.
    count = BATCH_RECORDS + 100
    crm = people(range(1, count + 1))
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    for at in (3, count - 3):
        if by == "rules":
            crm[at - 1][4] = "old"  # invalid_age
        else:
            crm[at - 1].append("one too many")
    del crm[9]  # id 10 left
    path = write(tmp_path / "b.csv", crm)
    summary = load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(path))
    assert summary["rows_rejected"] == 2
    assert summary["files"][0]["deleted"]["default"]["rows"] == 1
    held = by_source(shard_dsns["default"])
    assert 10 not in held and {3, count - 3} <= set(held) and len(held) == count - 1


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_a_record_the_reader_refuses_does_not_delete_its_resident(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    # Refused before the rules (malformed, too large), in the Python readers' batches: the
    # id the record shows keeps its resident, as a record the rules refused does.
    crm = people(range(1, 21))
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    del crm[9]  # id 10 left
    path = tmp_path / f"b.{fmt}"
    if fmt == "csv":
        lines = [",".join(HEADER)] + [",".join(map(str, r)) for r in crm]
        lines[3] += ",one field too many"  # id 3
        lines[5] = lines[5].replace("Street 5", "x" * 70_000)  # id 5: a field too long
        lines[7] = lines[7].replace("8,DE", " 8 ,DE") + ",,"  # id 8, padded: two fields too many
        path.write_text("\n".join(lines) + "\n")
    else:
        objects: list[Any] = [dict(zip(HEADER, r, strict=True)) for r in crm]
        objects[2]["address"] = {"street": "Main"}  # id 3: a nested value
        objects[4]["name"] = True  # id 5: no text
        objects[6] = {"ID ": "7", "country": "DE", "name": ["a"]}  # id 7, under another spelling
        objects[7]["id"] = "+8"  # id 8, with its sign (the id rule takes it)
        objects[7]["age"] = [30]
        objects[8] = {"id": "nine", "country": "DE", "name": {}}  # no id the rule takes
        objects[10] = "not an object"  # id 12: nothing shows it
        objects[12]["address"] = "x" * 70_000  # id 14: too large, kept as its text
        objects[13]["country"] = "D" * 120  # id 15: no country is that long
        texts = [json.dumps(o) for o in objects]
        # id 16 twice: 16, then 18 (whose own record is left out): both kept
        texts[14] = '{"id": 16, "country": "DE", "name": "Twice", "id": 18}'
        del texts[16]
        if fmt == "ndjson":
            path.write_text("".join(text + "\n" for text in texts))
        else:
            path.write_text("[" + ", ".join(texts) + "]")
    summary = load_json(
        run_cli, "--source", "crm", "--mode", "snapshot", "--max-rejects", "100%",
        "--max-deletes", "100%", str(path),
    )  # fmt: skip
    held = set(by_source(shard_dsns["default"]))
    if fmt == "csv":
        assert summary["rows_rejected"] == 3
        assert held == set(range(1, 21)) - {10}
    else:  # 9 and 12 show no id the rule takes: they go, as 10 does
        assert summary["rows_rejected"] == 9
        assert held == set(range(1, 21)) - {9, 10, 12}
    deleted = summary["files"][0]["deleted"]["default"]["rows"]
    assert deleted == 20 - len(held)


def test_refused_records_past_a_copy_chunk_all_keep_their_residents(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # More refused records than the writer copies to a shard at once (KEPT_CHUNK).
    count = KEPT_CHUNK + 1_000
    crm = people(range(1, count + 2))
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    for record in crm[: KEPT_CHUNK + 10]:
        record[4] = "old"  # invalid_age
    path = write(tmp_path / "b.csv", crm[:-1])  # the last resident left
    summary = load_json(
        run_cli, "--source", "crm", "--mode", "snapshot", "--max-rejects", "100%", str(path)
    )
    assert summary["rows_rejected"] == KEPT_CHUNK + 10
    assert summary["files"][0]["deleted"]["default"]["rows"] == 1
    assert set(by_source(shard_dsns["default"])) == set(range(1, count + 1))


def test_a_source_claims_the_rows_it_gives_and_an_append_deletes_nothing(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    rows = people(range(1, 11))
    load_json(run_cli, str(write(tmp_path / "a.csv", rows)))  # no source
    assert set(by_source(shard_dsns["default"]).values()) == {None}
    summary = load_json(run_cli, "--source", "crm", str(write(tmp_path / "b.csv", rows[:9])))
    # Same content, but now the source's: updated (their source changed), none deleted.
    assert summary["shards"]["default"]["updated"] == 9
    assert summary["shards"]["default"]["deleted"] == 0
    assert by_source(shard_dsns["default"])[10] is None
    # A load without a source changes no row's source when the content is the same.
    again = load_json(run_cli, "--force", str(tmp_path / "a.csv"))
    assert again["shards"]["default"]["unchanged"] == 10
    assert by_source(shard_dsns["default"])[1] == "crm"


def test_the_shard_map_declares_sources_by_file_name(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    sources = "sources:\n  crm: {pattern: 'crm-*.csv', mode: snapshot}\n  web: {pattern: 'web-*'}\n"
    config = write_map(tmp_path / "config", shard_map_yaml(shard_dsns) + sources)
    assert run_cli("init", config=config).exit_code == 0
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    write(incoming / "crm-1.csv", people(range(1, 21)))
    write(incoming / "web-1.csv", people(range(30, 33)))
    write(incoming / "other.csv", people(range(40, 41)))
    result = run_cli("load", "--json", str(incoming), config=config)
    assert result.exit_code == 0, result.output
    modes = {
        Path(f["path"]).name: (f["source"], f["mode"]) for f in json.loads(result.stdout)["files"]
    }
    assert modes == {
        "crm-1.csv": ("crm", "snapshot"),
        "other.csv": (None, "append"),
        "web-1.csv": ("web", "append"),
    }
    held = by_source(shard_dsns["default"])
    assert (held[1], held[30], held[40]) == ("crm", "web", None)
    (incoming / "crm-1.csv").unlink()
    write(incoming / "crm-2.csv", people(range(1, 20)))  # id 20 gone
    result = run_cli("load", "--json", str(incoming), config=config)
    assert result.exit_code == 0, result.output
    assert 20 not in by_source(shard_dsns["default"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "snapshot"], "--mode needs --source"),
        (["--source", "crm db"], "a source name is letters"),
        (["--source", "crm", "--max-deletes", "x"], "is not a count"),
        (["--max-deletes", "5"], "no file of this run can be one"),
        (["--source", "crm", "--max-deletes", "5%"], "no file of this run can be one"),
        (["--source", "crm", "--mode", "append", "--max-deletes", "5"], "--mode snapshot"),
    ],
)
def test_a_wrong_source_option_is_a_usage_error(
    run_cli: RunCli, offline_map: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    path = write(tmp_path / "a.csv", people(range(1, 2)))
    result = run_cli("load", *args, str(path), config=offline_map)
    assert result.exit_code == 2
    assert message in result.output


def test_max_deletes_is_taken_where_the_shard_map_declares_a_snapshot_source(
    run_cli: RunCli, offline_map: Path, tmp_path: Path
) -> None:
    """Decided by the map, not by today's files: a scheduled load that passes --max-deletes
    runs on a day no file matches the snapshot source (here it gets as far as the offline
    shards: exit 1, not a usage error)."""
    text = offline_map.read_text() + "sources:\n  crm: {pattern: 'crm-*.csv', mode: snapshot}\n"
    config = write_map(tmp_path / "with-sources", text)
    path = write(tmp_path / "other.csv", people(range(1, 2)))
    result = run_cli("load", "--max-deletes", "5", str(path), config=config)
    assert result.exit_code == 1, result.output
    assert "no file of this run can be one" not in result.output


@pytest.mark.slow
def test_a_snapshot_whose_shard_fails_is_completed_by_a_rerun(
    run_cli: RunCli,
    split_shards: tuple[Path, dict[str, str]],
    stoppable_server: StoppableServer,
    tmp_path: Path,
) -> None:
    config, dsns = split_shards
    assert run_cli("init", config=config).exit_code == 0
    crm = people(range(1, 20_001)) + people(range(100_001, 120_001), "US")
    first = write(tmp_path / "a.csv", crm)
    snapshot = ("--source", "crm", "--mode", "snapshot")
    assert run_cli("load", *snapshot, str(first), config=config).exit_code == 0
    # The next export lacks 1,000 rows on each shard; db_us goes down half way through it.
    gone = set(range(1, 1_001)) | set(range(100_001, 101_001))
    path = write(tmp_path / "b.csv", [r for r in crm if r[0] not in gone])
    stopped: list[int] = []

    def stop_db_us(result: FileResult, read: int, done: bool) -> None:
        if read >= 10_000 and not done and not stopped:
            stopped.append(read)
            stoppable_server.stop()
            stoppable_server.start()

    shard_map = load_shard_map(config)
    options = LoadOptions(source=Source("crm", "snapshot"))
    result = load(shard_map, load_rules(shard_map), [path], options, stop_db_us)
    assert stopped and result.exit_code == 1
    assert list(result.files[0].shard_errors) == ["db_us"]
    assert len(by_source(dsns["default"])) == 19_000  # default committed its deletes
    assert len(by_source(dsns["db_us"])) == 20_000  # db_us rolled back
    rerun = run_cli("load", "--json", *snapshot, str(path), config=config)
    assert rerun.exit_code == 0, rerun.output
    shards = json.loads(rerun.stdout)["shards"]
    assert shards["db_us"]["deleted"] == 1_000 and shards["default"]["deleted"] == 0
    assert set(by_source(dsns["db_us"])) == set(range(101_001, 120_001))


def write_ops(path: Path, records: list[list[Any]], op: str = "_op") -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow([*HEADER, op])
        writer.writerows(records)
    return path


def ledger_markers(dsn: str) -> tuple[Any, ...]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT rows_read, rows_loaded, rows_rejected, inserted, updated, unchanged,"
            " deleted, marked_deleted, not_found FROM load_ledger ORDER BY ledger_id DESC LIMIT 1"
        ).fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json"])
def test_delete_markers_delete_their_ids_and_count_what_they_found(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, fmt: str
) -> None:
    load_json(
        run_cli, str(write(tmp_path / "a.csv", people(range(1, 6)) + people(range(11, 14), "US")))
    )
    changes: list[list[Any]] = [
        [2, "DE", "", "", "", "", "delete"],
        [12, "United States", "", "", "", "", " DELETE "],  # any case, trimmed
        [99, "DE", "", "", "", "", "delete"],  # not there: not_found
        [3, "DE", "Person 3", "F", "31", "Street 3", "upsert"],
        [20, "DE", "New", "", "", "", ""],
        ["", "DE", "", "", "", "", "delete"],  # no id: invalid_id
        [4, "DE", "Person 4", "F", "30", "Street 4", "remove"],  # invalid_op
    ]
    if fmt == "csv":
        path = write_ops(tmp_path / "b.csv", changes)
    elif fmt == "json":
        path = tmp_path / "b.json"
        keys = [*HEADER, "_op"]
        path.write_text(json.dumps([dict(zip(keys, r, strict=True)) for r in changes]))
    else:
        path = tmp_path / "b.ndjson"
        keys = [*HEADER, "_op"]
        path.write_text(
            "".join(json.dumps(dict(zip(keys, map(str, r), strict=True))) + "\n" for r in changes)
        )
    summary = load_json(run_cli, "--max-rejects", "2", str(path))
    assert (summary["rows_read"], summary["rows_loaded"], summary["rows_rejected"]) == (7, 5, 2)
    assert summary["shards"]["default"] == {
        "inserted": 1, "updated": 1, "unchanged": 0, "kept": 0, "rejected": 2, "deleted": 1,
        "not_found": 1,
    }  # fmt: skip
    assert summary["shards"]["db_us"]["deleted"] == 1
    assert set(by_source(shard_dsns["default"])) == {1, 3, 4, 5, 20}
    assert set(by_source(shard_dsns["db_us"])) == {11, 13}
    rejects = [json.loads(line) for line in Path(summary["rejects_file"]).read_text().splitlines()]
    assert [(r["record"], r["reason"], r["message"]) for r in rejects] == [
        (6, "invalid_id", "id is missing: a delete marker needs the id of the row to delete"),
        (7, "invalid_op", "_op 'remove' is not upsert, delete or empty (a delete marker)"),
    ]
    assert ledger_markers(shard_dsns["default"]) == (6, 4, 2, 1, 1, 0, 1, 1, 1)


def test_the_last_record_of_an_id_wins_markers_included_across_batches(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    load_json(run_cli, str(write(tmp_path / "a.csv", people(range(1, 4)))))
    # More than a batch of new rows (straight into residents), then markers in the next
    # batch for one of them and for a held id that an upsert then brings back.
    count = BATCH_RECORDS + 10
    records: list[list[Any]] = [[*r, ""] for r in people(range(100, 100 + count))]
    records += [
        [150, "DE", "", "", "", "", "delete"],
        [2, "DE", "", "", "", "", "delete"],
        [2, "DE", "Back Again", "", "", "", ""],
        [3, "DE", "", "", "", "", "delete"],
    ]
    summary = load_json(
        run_cli, "--max-rejects", "100%", str(write_ops(tmp_path / "b.csv", records))
    )
    held = {r[0]: r[2] for r in rows_of(shard_dsns["default"])}
    assert 150 not in held and 3 not in held and held[2] == "Back Again"
    assert len(held) == count - 1 + 2  # the new rows less 150, and 1 and 2
    assert summary["rows_read"] == summary["rows_loaded"] + summary["rows_rejected"]
    rejects = [json.loads(line) for line in Path(summary["rejects_file"]).read_text().splitlines()]
    assert [(r["record"], r["reason"]) for r in rejects] == [
        (51, "duplicate_id"),
        (count + 2, "duplicate_id"),
    ]


def test_markers_spooled_past_memory_all_delete_and_the_others_all_load(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # A marker sends the shard's rows through the spool: over SPOOL_IN_MEMORY of them, so
    # that markers and rows are read back from its temporary file.
    count = SPOOL_IN_MEMORY // 20
    load_json(run_cli, str(write(tmp_path / "a.csv", people(range(1, count + 1)))))
    records: list[list[Any]] = [
        [i, "DE", "", "", "", "", "delete"] if i % 2 else [i, "DE", f"New {i}", "", "", "", ""]
        for i in range(1, count + 1)
    ]
    summary = load_json(run_cli, str(write_ops(tmp_path / "b.csv", records)))
    assert summary["shards"]["default"]["updated"] == count // 2
    assert summary["shards"]["default"]["deleted"] == (count + 1) // 2
    held = {r[0]: r[2] for r in rows_of(shard_dsns["default"])}
    assert held == {i: f"New {i}" for i in range(2, count + 1, 2)}


def test_the_rules_name_the_op_column(
    run_cli: RunCli, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    config = write_map(tmp_path / "config", shard_map_yaml(shard_dsns))
    rules = config.parent / "rules.yaml"
    rules.write_text(rules.read_text().replace("op_column: _op", "op_column: Action"))
    assert run_cli("init", config=config).exit_code == 0
    assert (
        run_cli(
            "load", str(write(tmp_path / "a.csv", people(range(1, 4)))), config=config
        ).exit_code
        == 0
    )
    path = write_ops(tmp_path / "b.csv", [[2, "DE", "", "", "", "", "delete"]], op=" action ")
    result = run_cli("load", "--json", str(path), config=config)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["shards"]["default"]["deleted"] == 1
    assert set(by_source(shard_dsns["default"])) == {1, 3}


def rows_of(dsn: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, country, name FROM residents ORDER BY id").fetchall()


def test_the_summary_says_what_markers_and_a_snapshot_deleted(
    run_cli: RunCli, initialised: None, tmp_path: Path
) -> None:
    crm = [*people(range(1, 21)), *people(range(101, 103), "US")]
    load_json(run_cli, "--source", "crm", "--mode", "snapshot", str(write(tmp_path / "a.csv", crm)))
    changes = [[*r, ""] for r in crm if r[0] not in (20, 101)]  # 20 left: the snapshot's
    changes += [[101, "US", "", "", "", "", "delete"], [7, "DE", "", "", "", "", "delete"]]
    changes += [[555, "US", "", "", "", "", "delete"]]  # not there
    path = write_ops(tmp_path / "b.csv", changes)
    result = run_cli("load", "--source", "crm", "--mode", "snapshot", str(path))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    # id 7 comes twice (its upsert, then its marker): the marker wins, the upsert is refused.
    assert (
        "  default: 0 inserted, 0 updated, 18 unchanged, 1 rejected,"
        " 2 deleted (1 by the snapshot: DE 1)" in lines
    )
    assert "  db_us: 0 inserted, 0 updated, 1 unchanged, 1 deleted, 1 not found" in lines
    assert "shard db_us: 0 inserted, 0 updated, 1 unchanged, 1 deleted, 1 not found" in lines


def test_a_snapshots_deletion_is_planned_with_hash_joins_on_stale_statistics(
    initialised: None, shard_dsns: dict[str, str]
) -> None:
    # Statistics taken before the rows had their source: the planner takes the source for
    # one row. A nested loop would then scan a temporary table (no index) once a row of the
    # source, quadratic in the file (172 s for 600k rows on the bench's shards).
    params = {"source": "crm", "load_id": "00000000-0000-0000-0000-000000000001",
              "kept_load": [], "kept_after": [], "kept_until": [], "with_ids": False,
              "low": 100, "high": 19900}  # fmt: skip
    with psycopg.connect(shard_dsns["default"]) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name) SELECT i, 'DE', 'P' || i"
            " FROM generate_series(1, 20000) AS i"
        )
        conn.commit()
        conn.execute("ANALYZE residents")
        conn.execute("UPDATE residents SET source = 'crm'")
        conn.execute(LOAD.staging)
        conn.execute("INSERT INTO load_seen SELECT i, i FROM generate_series(1, 19000) AS i")
        conn.execute(
            "INSERT INTO load_staging (record, country, id_v, name_v, deleting)"
            " SELECT i, 'DE', i, 'Q', false FROM generate_series(19001, 19900) AS i"
        )
        conn.execute("INSERT INTO load_missing SELECT i FROM generate_series(100, 19900, 7) AS i")
        conn.execute(LOAD.no_nested_loops)
        for gone in (LOAD.gone_unlisted, LOAD.gone_in_range):
            explain = sql.SQL("EXPLAIN ") + LOAD.snapshot_delete.format(gone=gone)
            plan = "\n".join(row[0] for row in conn.execute(explain, params))
            # Nor a subplan over load_missing: rescanned once a row past hash memory.
            assert "Nested Loop" not in plan and "SubPlan" not in plan, plan
        conn.execute(LOAD.nested_loops)
        assert conn.execute("SHOW enable_nestloop").fetchone() == ("on",)
        conn.rollback()
