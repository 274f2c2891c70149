"""A snapshot of a file sorted by id (ShardRows.covered): each probe starts where the one
before ended, so the client knows every row the shard holds in one unbroken range, and only
the ones the file does not give go back (load_missing); the deletion takes those and the
source's rows outside the range (gone_in_range.sql). Files in any other order, or with a
jump past the probe's span (PROBE_RANGE_SPAN), look for every id the file gives
(gone_unlisted.sql): both must leave the same rows. Each case crosses a boundary: the gap
between two batches (BATCH_RECORDS), the missing ids' spool past memory and past a COPY
chunk (SPOOL_IN_MEMORY, SPOOL_CHUNK)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from click.testing import Result

from pipeline.batch import BATCH_RECORDS
from pipeline.held import BinaryIds
from pipeline.shard_rows import PROBE_RANGE_SPAN, SPOOL_CHUNK, SPOOL_IN_MEMORY, ShardRows
from tests.test_load_direct import write
from tests.test_sync import hand_insert, load_json

RunCli = Callable[..., Result]
MISSING_ROW = 2 + 4 + 8  # bytes of one id in load_missing's binary COPY: fields, size, value


def person(i: int, country: str = "DE") -> list[Any]:
    return [i, country, f"Person {i}", "F", 30, f"Street {i}"]


def state(dsns: dict[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every resident's id, country, name and source, by shard."""
    found = {}
    for shard, dsn in dsns.items():
        with psycopg.connect(dsn) as conn:
            found[shard] = conn.execute(
                "SELECT id, country, name, source FROM residents ORDER BY id"
            ).fetchall()
    return found


def reset(dsns: dict[str, str]) -> None:
    for dsn in dsns.values():
        with psycopg.connect(dsn) as conn:
            conn.execute("TRUNCATE residents, load_ledger")


@pytest.fixture
def deletions(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each shard's snapshot deletion: whether it took the covered range."""
    taken: list[bool] = []
    deletion = ShardRows.deletion

    def spied(self: ShardRows) -> Any:
        statement, covered = deletion(self)
        taken.append(covered["low"] is not None)
        return statement, covered

    monkeypatch.setattr(ShardRows, "deletion", spied)
    return taken


def test_a_sorted_snapshot_deletes_by_its_covered_range_what_the_full_search_deletes(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    deletions: list[bool], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # crm's residents over three batches, every seventh in the US; ids a multiple of 97
    # are erp's, inside crm's range; hand-written rows below and above it.
    last = 100 + 2 * BATCH_RECORDS + 300
    crm = [person(i, "US" if i % 7 == 0 else "DE") for i in range(100, last) if i % 97]
    below, above = person(60), person(last + 50, "US")
    snapshot = ["--source", "crm", "--mode", "snapshot", "--max-deletes", "100%"]

    def setup() -> None:
        reset(shard_dsns)
        load_json(run_cli, *snapshot, str(write(tmp_path / "a.csv", [below, *crm, above])))
        erp = [person(i) for i in range(194, last, 97)]
        load_json(run_cli, "--source", "erp", str(write(tmp_path / "e.csv", erp)))
        hand_insert(shard_dsns["default"], 50)
        hand_insert(shard_dsns["db_us"], last + 60, "US")

    # The file: crm without `below` and `above` (outside its range), without the five ids
    # after the first batch's last record (the gap between two batches' probes), one id in
    # a batch's middle, and the last one; one record refused (its resident stays), one
    # resident moved from Germany to the US.
    file = [list(r) for r in crm]
    del file[500], file[-1]
    between = {r[0] for r in file[BATCH_RECORDS : BATCH_RECORDS + 5]}
    del file[BATCH_RECORDS : BATCH_RECORDS + 5]
    assert file[BATCH_RECORDS - 1][0] < min(between) <= max(between) < file[BATCH_RECORDS][0]
    refused = file[700]
    moved = next(r for r in file[900:] if r[1] == "DE")
    refused[4], moved[1] = "old", "US"
    # New residents far past the rest, on both shards: the last batch's probe would span
    # more than PROBE_RANGE_SPAN times its rows from where the one before ended.
    far = [person(i, "US" if i % 2 else "DE") for i in range(20 * last, 20 * last + 10)]
    assert 20 * last - last > PROBE_RANGE_SPAN * BATCH_RECORDS

    # Every id the load lists for the shards (unchanged, missing, kept): the missing list is
    # the deletion's array, and holds crm's ids only, not the erp rows inside its range.
    listed: set[int] = set()
    add = BinaryIds.add

    def listing(self: BinaryIds, *columns: np.ndarray) -> None:
        listed.update(int(i) for i in columns[0])
        add(self, *columns)

    monkeypatch.setattr(BinaryIds, "add", listing)
    results = {}
    for case, records, covered in (
        ("sorted", file, True),
        ("falling", file[::-1], False),
        ("a jump past the probe's span", [*file, *far], False),
    ):
        setup()
        deletions.clear()
        summary = load_json(run_cli, *snapshot, str(write(tmp_path / "b.csv", records)))
        assert deletions == [covered, covered], case
        results[case] = (summary["files"][0]["deleted"], summary["rows_rejected"],
                         state(shard_dsns))  # fmt: skip
        if case == "sorted":
            assert listed and not listed & {*range(194, last, 97), 50, last + 60}

    deleted, rejected, held = results["sorted"]
    assert results["falling"] == results["sorted"]
    far_deleted, far_rejected, far_held = results["a jump past the probe's span"]
    assert (far_deleted, far_rejected) == (deleted, rejected)
    for shard in held:
        assert [r for r in far_held[shard] if r[0] < 20 * last] == held[shard]
    assert sorted(r[0] for rows in far_held.values() for r in rows if r[0] >= 20 * last) == [
        r[0] for r in far
    ]

    # What was deleted, shard by shard: crm's rows the file does not give.
    given = {(r[0], r[1]) for r in file}
    kept = {refused[0]}
    assert rejected == 1
    for shard, dsn_country in (("default", "DE"), ("db_us", "US")):
        ids = {r[0] for r in held[shard]}
        crm_before = {r[0] for r in [below, *crm, above] if (r[1] == "US") == (shard == "db_us")}
        expected_gone = {i for i in crm_before if (i, dsn_country) not in given} - kept
        assert not ids & expected_gone, shard
        assert crm_before - expected_gone <= ids, shard
        assert deleted[shard]["rows"] == len(expected_gone), shard
    assert moved[0] in {r[0] for r in held["db_us"]}
    assert {50, 60} & {r[0] for r in held["default"]} == {50}  # the hand-written row stays
    assert {r[0] for r in held["default"] if r[3] == "erp"} == set(range(194, last, 97))
    assert last + 60 in {r[0] for r in held["db_us"]}


def test_a_covered_snapshots_missing_ids_past_memory_and_a_copy_chunk_all_delete(
    run_cli: RunCli, initialised: None, shard_dsns: dict[str, str], tmp_path: Path,
    deletions: list[bool],
) -> None:  # fmt: skip
    # The file gives every other id: more ids go back than the spool keeps in memory and
    # than one COPY chunk holds, each probe still by range (twice its rows).
    missing = max(SPOOL_IN_MEMORY, SPOOL_CHUNK) // MISSING_ROW + BATCH_RECORDS
    crm = [person(i) for i in range(1, 2 * missing + 1)]
    snapshot = ["--source", "crm", "--mode", "snapshot", "--max-deletes", "100%"]
    load_json(run_cli, *snapshot, str(write(tmp_path / "a.csv", crm)))
    deletions.clear()
    summary = load_json(run_cli, *snapshot, str(write(tmp_path / "b.csv", crm[::2])))
    assert sorted(deletions) == [False, True]  # db_us, given no row, probed nothing
    assert summary["shards"]["default"]["deleted"] == missing
    with psycopg.connect(shard_dsns["default"]) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM residents ORDER BY id")]
    assert ids == list(range(1, 2 * missing + 1, 2))
