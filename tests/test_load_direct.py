"""The write path (pipeline.shard_rows): new ids straight into residents, the rest through
staging, and the file read again when the direct COPY meets an id twice. Each test crosses
one of its boundaries: the spool past SPOOL_IN_MEMORY, the probe by range and by ids
(PROBE_RANGE_SPAN), a conflict after rejects were written, the bulk reader giving up half
way (the rejects file rewound, never doubled)."""

from __future__ import annotations

import csv
import json
import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import Result
from psycopg import sql

from pipeline.batch import BATCH_RECORDS
from pipeline.errors import PipelineError
from pipeline.held import packed_held, read_held
from pipeline.queries import LOAD
from pipeline.shard_rows import PROBE_PACK, PROBE_RANGE_SPAN, SPOOL_IN_MEMORY, ShardRows
from pipeline.source_arrow import BLOCK_BYTES
from tests.conftest import rows

RunCli = Callable[..., Result]
HEADER = ["id", "country", "name", "gender", "age", "address"]


def write(path: Path, records: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(records)
    return path


def load(run_cli: RunCli, path: Path, *args: str) -> dict[str, Any]:
    result = run_cli("load", str(path), "--json", "--max-rejects", "100%", *args)
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


def rejects(summary: dict[str, Any]) -> list[dict[str, Any]]:
    path = summary["rejects_file"]
    if path is None:
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def test_rows_the_shard_holds_are_spooled_past_memory_and_written_exactly(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Each spooled row is some 40 bytes, an unchanged one's id and record number 30:
    # both spools pass SPOOL_IN_MEMORY and go on in a temporary file.
    count = SPOOL_IN_MEMORY // 10
    first: list[list[Any]] = [[i, "US", f"N{i}", "F", i % 90, "x"] for i in range(1, count + 1)]
    assert load(run_cli, write(tmp_path / "a.csv", first))["shards"]["db_us"]["inserted"] == count
    # Every row changed: all of them through staging.
    second = [[*r[:5], f"y{r[0]}"] for r in first]
    summary = load(run_cli, write(tmp_path / "b.csv", second))["shards"]["db_us"]
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (0, count, 0)
    # Every row unchanged, but a tenth: only the ids of the others are sent. In falling
    # order, so that the shard needs them (duplicates.sql: see the next test).
    third = [r if int(r[0]) % 10 else [*r[:5], "z"] for r in second]
    summary = load(run_cli, write(tmp_path / "c.csv", third[::-1]))["shards"]["db_us"]
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (
        0, count // 10, count - count // 10)  # fmt: skip
    assert rows(shard_dsns["db_us"]) == [(r[0], "US", r[2], "Female", r[4], r[5]) for r in third]


def spy_on_finish(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether the end of a file sent the unchanged rows' ids (ShardRows.finish's `seen`),
    for each shard that had some; the real method runs."""
    calls: list[bool] = []
    finish = ShardRows.finish

    def spied(self: ShardRows, seen: bool = True) -> None:
        if self.seen:
            calls.append(seen)
        finish(self, seen)

    monkeypatch.setattr(ShardRows, "finish", spied)
    return calls


def test_ids_in_rising_order_are_not_searched_for_one_given_twice(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # A file sorted by id, over three batches: the unchanged rows' ids stay on the client
    # (only a snapshot needs them), and every count and row is what the full search gives.
    count = 2 * BATCH_RECORDS + 1
    first: list[list[Any]] = [[i, "DE", f"N{i}", "F", 30, "x"] for i in range(1, count + 1)]
    load(run_cli, write(tmp_path / "a.csv", first))
    sent = spy_on_finish(monkeypatch)
    changed = [[*r[:5], "y"] if r[0] % 10 == 0 else r for r in first]
    changed.insert(5, ["", "DE", "No id", "M", 40, "z"])  # a new id from the shard
    summary = load(run_cli, write(tmp_path / "b.csv", changed))["shards"]["default"]
    assert sent == [False]
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (
        1, count // 10, count - count // 10)  # fmt: skip
    held = rows(shard_dsns["default"])
    assert [r[5] for r in held[:count]] == [r[5] for r in changed if r[0] != ""]
    assert held[count][2] == "No id"
    # A snapshot deletes what the file does not give: its probes covered one range, so
    # it sends the ids it lacks, not those it gives (tests/test_snapshot_range.py).
    load(run_cli, write(tmp_path / "c.csv", changed), "--source", "s")
    sent.clear()
    summary = load(run_cli, write(tmp_path / "d.csv", changed[:-1]), "--source", "s",
                   "--mode", "snapshot")["shards"]["default"]  # fmt: skip
    assert sent == [False]
    # The last id is gone, and so is the resident without an id of c.csv: this file's is new.
    assert (summary["unchanged"], summary["inserted"], summary["deleted"]) == (count - 1, 1, 2)


def test_an_id_again_at_a_batch_start_is_found_given_twice(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Rising within each batch, but the second batch starts with the first one's last id:
    # unchanged, then changed. The search runs, and the last one wins.
    first = [[i, "DE", f"N{i}", "F", 30, "x"] for i in range(1, BATCH_RECORDS + 2)]
    load(run_cli, write(tmp_path / "a.csv", first))
    sent = spy_on_finish(monkeypatch)
    again = [*first[:BATCH_RECORDS], [BATCH_RECORDS, "DE", "Changed", "M", 31, "y"], first[-1]]
    summary = load(run_cli, write(tmp_path / "b.csv", again))
    assert sent == [True]
    assert [(r["record"], r["reason"]) for r in rejects(summary)] == [
        (BATCH_RECORDS, "duplicate_id")
    ]
    counts = summary["shards"]["default"]
    assert (counts["updated"], counts["unchanged"]) == (1, BATCH_RECORDS)
    assert rows(shard_dsns["default"])[BATCH_RECORDS - 1][2:] == ("Changed", "Male", 31, "y")


def test_ids_in_falling_order_are_searched_and_none_found_twice(
    run_cli: RunCli, initialised: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [[i, "DE", f"N{i}", "F", 30, "x"] for i in range(1, 101)]
    load(run_cli, write(tmp_path / "a.csv", records))
    sent = spy_on_finish(monkeypatch)
    summary = load(run_cli, write(tmp_path / "b.csv", records[::-1]))
    assert sent == [True]
    assert (summary["shards"]["default"]["unchanged"], rejects(summary)) == (100, [])


def test_the_rows_a_probe_finds_are_read_whole_across_its_packs(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # The shard holds every id, the file every fourth: a batch's range probe answers with
    # four times its rows, addresses of several lines, some over PROBE_PACK bytes (each
    # in a pack of its own), some packed together.
    address = "Line one,\nline " + "two " * (PROBE_PACK // 4)
    count = 3_000
    first: list[list[Any]] = [[i, "DE", f"N{i}", "", "", f"{address[: 40 + i % 3 * PROBE_PACK]}{i}"]
                              for i in range(1, count + 1)]  # fmt: skip
    load(run_cli, write(tmp_path / "a.csv", first))
    summary = load(run_cli, write(tmp_path / "b.csv", first[::4]))["shards"]["default"]
    assert (summary["inserted"], summary["updated"], summary["unchanged"]) == (
        0, 0, len(first[::4]))  # fmt: skip
    changed = [[*r[:5], r[5] + "!"] if r[0] % 3 == 0 else r for r in first[::4]]
    summary = load(run_cli, write(tmp_path / "c.csv", changed))["shards"]["default"]
    assert summary["updated"] == sum(1 for r in first[::4] if r[0] % 3 == 0)
    expected = {r[0]: r[5] for r in first} | {r[0]: r[5] for r in changed}
    assert {r[0]: r[5] for r in rows(shard_dsns["default"])} == expected


def _probe(dsn: str, where: str) -> list[dict[str, Any]]:
    query = LOAD.probe.format(
        where=sql.SQL(where), packed=packed_held("UTF8"), pack_bytes=sql.Literal(64)
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        packs = conn.cursor(binary=True).execute(query).fetchall()
    table = read_held(packs)
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def test_a_probe_answer_keeps_nulls_apart_from_text_that_reads_like_one(
    initialised: None, shard_dsns: dict[str, str]
) -> None:
    # Rows of at most 64 bytes of text packed together, the longer one alone.
    with psycopg.connect(shard_dsns["db_us"], autocommit=True) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, gender, age, address, source) VALUES"
            " (5, 'US', 'NA', NULL, 30, 'N/A', NULL), (6, 'US', '', 'Other', NULL, 'NULL', 'NA'),"
            " (7, 'US', 'Zoë', 'Male', 0, '', ''), (8, 'US', E'a\\nb', NULL, 150, NULL, 'x'),"
            " (9, 'US', repeat('n', 500), NULL, NULL, NULL, NULL)"
        )
    held = _probe(shard_dsns["db_us"], "id BETWEEN 5 AND 9")
    assert held == [
        {"id": 5, "country": "US", "name": "NA", "gender": None, "age": 30, "address": "N/A",
         "source": None},
        {"id": 6, "country": "US", "name": "", "gender": "Other", "age": None, "address": "NULL",
         "source": "NA"},
        {"id": 7, "country": "US", "name": "Zoë", "gender": "Male", "age": 0, "address": "",
         "source": ""},
        {"id": 8, "country": "US", "name": "a\nb", "gender": None, "age": 150, "address": None,
         "source": "x"},
        {"id": 9, "country": "US", "name": "n" * 500, "gender": None, "age": None,
         "address": None, "source": None},
    ]  # fmt: skip
    assert _probe(shard_dsns["db_us"], "id = ANY('{6,9,10}'::bigint[])") == [held[1], held[4]]
    with psycopg.connect(shard_dsns["db_us"], autocommit=True) as conn:
        packs = (
            conn.cursor(binary=True)
            .execute(
                LOAD.probe.format(
                    where=sql.SQL("id > 100"),
                    packed=packed_held("UTF8"),
                    pack_bytes=sql.Literal(64),
                )
            )
            .fetchall()
        )
    assert packs == []  # no row held: no pack at all


def test_an_address_n_a_on_the_shard_is_updated_to_none(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    load(run_cli, write(tmp_path / "a.csv", [[5, "US", "Ann", "F", 30, "N/A"]]))
    summary = load(run_cli, write(tmp_path / "b.csv", [[5, "US", "Ann", "F", 30, ""]]))
    assert summary["shards"]["db_us"]["updated"] == 1
    assert rows(shard_dsns["db_us"]) == [(5, "US", "Ann", "Female", 30, None)]


def test_a_field_empty_in_the_file_and_on_the_shard_is_unchanged_and_one_empty_on_one_side_is_not(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Nulls in gender, age and address, each column alone and all at once: a null is the
    # same as a null only (held.unchanged's null-aware comparison).
    first = [
        [1, "US", "Ann", "F", 30, "1 Main St"],
        [2, "US", "Bob", "", "", ""],
        [3, "US", "Cy", "M", "", "3 Elm St"],
        [4, "US", "Di", "", 41, "4 Oak St"],
        [5, "US", "Ed", "M", 52, ""],
    ]
    load(run_cli, write(tmp_path / "a.csv", first))
    again = load(run_cli, write(tmp_path / "b.csv", first), "--force")
    counts = again["shards"]["db_us"]
    assert (counts["inserted"], counts["updated"], counts["unchanged"]) == (0, 0, 5)
    # Each field from a value to empty and from empty to a value; Bob's stay empty.
    swapped = [
        [1, "US", "Ann", "", "", ""],
        [2, "US", "Bob", "", "", ""],
        [3, "US", "Cy", "M", 33, "3 Elm St"],
        [4, "US", "Di", "F", 41, "4 Oak St"],
        [5, "US", "Ed", "M", 52, "5 Pine St"],
    ]
    changed = load(run_cli, write(tmp_path / "c.csv", swapped))["shards"]["db_us"]
    assert (changed["inserted"], changed["updated"], changed["unchanged"]) == (0, 4, 1)
    assert rows(shard_dsns["db_us"]) == [
        (1, "US", "Ann", None, None, None),
        (2, "US", "Bob", None, None, None),
        (3, "US", "Cy", "Male", 33, "3 Elm St"),
        (4, "US", "Di", "Female", 41, "4 Oak St"),
        (5, "US", "Ed", "Male", 52, "5 Pine St"),
    ]
    # Ann's fields back, one at a time: each change alone is seen.
    for gender, age, address in (("F", "", ""), ("F", 30, ""), ("F", 30, "1 Main St")):
        ann = [[1, "US", "Ann", gender, age, address]]
        counts = load(run_cli, write(tmp_path / "d.csv", ann))["shards"]["db_us"]
        assert (counts["updated"], counts["unchanged"]) == (1, 0)
    assert rows(shard_dsns["db_us"])[0] == (1, "US", "Ann", "Female", 30, "1 Main St")


def test_ids_are_probed_by_range_and_one_by_one_and_both_find_what_the_shard_holds(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    dense = [[i, "DE", f"Dense {i}", "", "", ""] for i in range(1, 2_001)]
    step = 10 * PROBE_RANGE_SPAN  # the ids are sparser than the range probe takes
    sparse = [[10**6 + i * step, "DE", f"Sparse {i}", "", "", ""] for i in range(1, 2_001)]
    load(run_cli, write(tmp_path / "a.csv", dense[::2] + sparse[::2]))
    summary = load(run_cli, write(tmp_path / "b.csv", dense + sparse))["shards"]["default"]
    assert (summary["inserted"], summary["unchanged"]) == (2_000, 2_000)
    held = {r[0]: r[2] for r in rows(shard_dsns["default"])}
    assert held == {r[0]: r[2] for r in dense + sparse}


def test_an_id_twice_in_different_batches_is_loaded_once_the_last_wins(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Far enough apart to be in different blocks of the bulk reader: the direct COPY meets
    # the id again and the shard takes the file through staging instead. The invalid ages
    # are written to the rejects file before that: it must hold each of them once.
    count = 2 * BATCH_RECORDS
    records = [[i, "US", f"Name {i}", "F", "n/a" if i % 1000 == 0 else 30, "x" * 100]
               for i in range(1, count + 1)]  # fmt: skip
    records.append([7, "US", "Seven again", "M", 31, "y"])
    path = write(tmp_path / "a.csv", records)
    assert path.stat().st_size > 2 * BLOCK_BYTES
    summary = load(run_cli, path)
    found = rejects(summary)
    assert [(r["record"], r["reason"]) for r in found] == [
        *[(i, "invalid_age") for i in range(1000, count + 1, 1000)],
        (7, "duplicate_id"),
    ]
    assert summary["shards"]["db_us"]["inserted"] == count - count // 1000
    assert (7, "US", "Seven again", "Male", 31, "y") in rows(shard_dsns["db_us"])


def test_a_later_record_the_rules_refuse_supersedes_no_earlier_one(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # As the README says: of an id's records the rules accept, the last is loaded; one they
    # refuse is rejected for its own reason and takes no part (the earlier one loads).
    records = [
        [200, "DE", "Karl Valid", "M", 30, "x"],
        [200, "DE", "Karl Typo", "M", 999, "y"],
        [300, "DE", "Ida Old", "F", 40, "x"],
        [300, "DE", "Ida New", "F", 41, "x"],
    ]
    summary = load(run_cli, write(tmp_path / "a.csv", records))
    assert [(r["record"], r["reason"]) for r in rejects(summary)] == [
        (2, "invalid_age"),
        (3, "duplicate_id"),
    ]
    assert [r[2] for r in rows(shard_dsns["default"])] == ["Karl Valid", "Ida New"]


def test_a_file_the_bulk_reader_gives_up_on_half_way_is_read_again_rejects_once(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    count = 3 * BATCH_RECORDS
    records = [[i, "DE", f"Name {i}", "F", "n/a" if i % 5000 == 0 else 30, "x"]
               for i in range(1, count + 1)]  # fmt: skip
    path = write(tmp_path / "a.csv", records)
    with path.open("a", encoding="utf-8") as out:
        out.write(f'{count + 1},DE,Ann "Nan" Lee,F,30,x\n')  # a quote inside a field: Python's
    summary = load(run_cli, path)
    found = rejects(summary)
    assert [(r["record"], r["line"]) for r in found] == [
        (i, i + 1) for i in range(5000, count + 1, 5000)
    ]
    assert summary["rows_loaded"] == count + 1 - len(found)
    assert rows(shard_dsns["default"])[-1][2] == 'Ann "Nan" Lee'


def test_an_unchanged_row_not_sent_is_still_seen_as_an_id_given_twice(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    # Rows the shard holds unchanged are not sent, only their ids: an id given twice must
    # still be found, whichever of the two is unchanged, and the last must win.
    load(run_cli, write(tmp_path / "a.csv", [[5, "DE", "Ann", "F", 30, "x"],
                                             [6, "DE", "Bob", "M", 40, "y"]]))  # fmt: skip
    again = [
        [5, "DE", "Ann", "F", 30, "x"],  # unchanged, then changed: the file goes again
        [6, "DE", "Bob", "M", 41, "y"],  # changed, then unchanged: the shard keeps its row
        [5, "DE", "Ann", "F", 31, "x"],
        [6, "DE", "Bob", "M", 40, "y"],
    ]
    summary = load(run_cli, write(tmp_path / "b.csv", again))
    assert [(r["record"], r["reason"], r["raw"]["age"]) for r in rejects(summary)] == [
        (1, "duplicate_id", "30"),
        (2, "duplicate_id", "41"),
    ]
    counts = summary["shards"]["default"]
    assert (counts["updated"], counts["unchanged"], counts["rejected"]) == (1, 1, 2)
    assert [(r[0], r[4]) for r in rows(shard_dsns["default"])] == [(5, 31), (6, 40)]


def test_a_files_rows_are_written_through_the_primary_key_not_a_hash_of_the_shard(
    initialised: None, shard_dsns: dict[str, str]
) -> None:
    # The staging table has no statistics: on its size alone PostgreSQL hashed the whole of
    # residents to update a tenth of it (sql/load/joins_by_id.sql). Every statement that
    # writes a file's rows, or counts them for --dry-run, finds each staged row by id.
    params = {"source": "crm", "load_id": "00000000-0000-0000-0000-000000000001",
              "kept_load": [], "kept_after": [], "kept_until": [], "updated": -1}  # fmt: skip
    # A connection's own setting (as a role's or a database's would be) is kept after.
    with psycopg.connect(shard_dsns["default"], options="-c enable_mergejoin=off") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name) SELECT i, 'DE', 'P' || i"
            " FROM generate_series(1, 50000) AS i"
        )
        conn.commit()
        conn.execute("ANALYZE residents")
        conn.execute(LOAD.staging)
        conn.execute(
            "INSERT INTO load_staging (record, country, id_v, name_v, deleting)"
            " SELECT i, 'DE', i, 'Q', i % 20 = 1 FROM generate_series(1, 50000, 10) AS i"
        )
        conn.execute(LOAD.joins_by_id)
        for statement in (LOAD.kept, LOAD.delete_marked, LOAD.preview, LOAD.update, LOAD.insert):
            plan = "\n".join(
                row[0] for row in conn.execute(sql.SQL("EXPLAIN ") + statement, params)
            )
            assert "residents_pkey" in plan, plan
            assert not re.search(r"(Hash|Merge) (\w+ )*Join", plan), plan
        conn.execute(LOAD.joins_any)
        shown = [
            conn.execute(f"SHOW {name}").fetchone()
            for name in ("enable_hashjoin", "enable_mergejoin")
        ]
        assert shown == [("on",), ("off",)]
        conn.rollback()


NO_ID = "INSERT INTO load_staging (record, country, name_v, deleting) VALUES (0, 'DE', 'N', false)"


@pytest.mark.parametrize(
    ("by_hand", "staged", "added"),
    [
        ("SELECT", "SELECT", 0),  # each staged row found its own: nothing added or probed
        ("DELETE FROM residents WHERE id = 11", "SELECT", 1),  # deleted after the probe
        ("SELECT", NO_ID, 1),  # a row without an id: the next one is given
    ],
    ids=["all-updated", "deleted-by-hand", "without-an-id"],
)
def test_insert_adds_what_update_did_not_find_and_probes_nothing_when_it_found_all(
    initialised: None, shard_dsns: dict[str, str], by_hand: str, staged: str, added: int
) -> None:
    # insert.sql compares the rows update.sql rewrote with the valid staged rows: when they
    # are as many, the server skips the insert's probes of every staged row (a one-time
    # filter, never executed below it); a row deleted by hand after the probe, or one
    # without an id, makes them differ, and it is added.
    params: dict[str, Any] = {"source": None, "load_id": "00000000-0000-0000-0000-000000000001",
                              "kept_load": [], "kept_after": [], "kept_until": []}  # fmt: skip
    with psycopg.connect(shard_dsns["default"]) as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name) SELECT i, 'DE', 'P' || i"
            " FROM generate_series(1, 1000) AS i"
        )
        conn.execute(LOAD.staging)
        conn.execute(
            "INSERT INTO load_staging (record, country, id_v, name_v, deleting)"
            " SELECT i, 'DE', i, 'Q' || i, false FROM generate_series(1, 1000, 10) AS i"
        )
        conn.execute(staged)
        conn.execute(by_hand)
        updated = conn.execute(LOAD.update, params).rowcount
        explain = sql.SQL("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ") + LOAD.insert
        plan = "\n".join(r[0] for r in conn.execute(explain, {**params, "updated": updated}))
        assert "One-Time Filter" in plan, plan
        assert ("(never executed)" in plan) == (added == 0), plan
        names = conn.execute("SELECT name FROM residents WHERE name NOT LIKE 'P%'").fetchall()
        assert len(names) == updated + added == 100 + (staged == NO_ID)
        conn.rollback()


def test_a_probe_answer_that_is_not_whole_is_an_error_not_a_traceback() -> None:
    # One held row as sql/load/probe.sql packs it (a text column in two fields: its sizes,
    # its values), then answers a broken or hostile server could give.
    texts = [(struct.pack(">i", 3), b"Ann"), (struct.pack(">i", -1), b"")]  # name; a NULL
    row = [
        struct.pack(">q", 7), b"US", *texts[0], *texts[1], struct.pack(">i", 30), *texts[1],
        *texts[1],
    ]  # fmt: skip
    assert read_held([(1, *row)]).to_pylist() == [
        {"id": 7, "country": "US", "name": "Ann", "gender": None, "age": 30, "address": None,
         "source": None}
    ]  # fmt: skip
    for count, fields, reason in [
        (-1, row, "a chunk of -1 rows"),
        (2, row, "id has 1 values for 2 rows"),
        (1, row[:-1], "10 fields a chunk, not 11"),
        (1, [*row[:2], struct.pack(">i", 4), *row[3:]], "sizes add up to 4 bytes where it holds 3"),
    ]:
        with pytest.raises(
            PipelineError, match=f"the shard's answer to a probe is not whole: .*{reason}"
        ):
            read_held([(count, *fields)])
