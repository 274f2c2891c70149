"""What a load makes once a run, not once a file: the working tables (pipeline.staging), empty
as every file begins (after a commit, which empties them, after a dry run's rollback,
staging_empty.sql, with no duplicate of an earlier file carried over), and each shard's
probe and encoder threads (pipeline.writer)."""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

from pipeline.config import load_rules, load_shard_map
from pipeline.load import load
from pipeline.load_options import LoadOptions
from pipeline.load_result import FileResult
from pipeline.routing import Budget
from tests.conftest import Connect, rows

# The loader's own temporary table, seen from another session while the load runs.
STAGING = (
    "SELECT c.oid, pg_relation_size(c.oid) FROM pg_class AS c"
    " WHERE c.relname = 'load_staging' AND c.relpersistence = 't'"
)


def _write(path: Path, records: list[list[Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "country", "name", "gender", "age", "address"])
        writer.writerows(records)
    return path


def _people(ids: range, name: str) -> list[list[Any]]:
    return [[i, "US" if i % 2 else "DE", f"{name} {i}", "F", 30, "x"] for i in ids]


def test_each_file_of_a_dry_run_begins_with_the_staging_tables_made_and_empty(
    config_file: Path,
    initialised: None,
    connect: Connect,
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    shard_map = load_shard_map(config_file)
    rules = load_rules(shard_map)
    base = _write(tmp_path / "base.csv", _people(range(1, 201), "Base"))
    assert load(shard_map, rules, [base]).exit_code == 0
    # Every row of each file is held with other content: all of them go through staging.
    files = [_write(tmp_path / f"f{n}.csv", _people(range(1, 201), f"F{n}")) for n in range(3)]
    seen: dict[str, list[tuple[int, int]]] = {"default": [], "db_us": []}

    def look(result: FileResult, read: int, done: bool) -> None:
        # Read, not yet checked: this file has put nothing in the tables yet.
        if done:
            for shard, found in seen.items():
                with connect(shard) as conn:
                    found.extend(conn.execute(STAGING).fetchall())

    dry = LoadOptions(dry_run=True, rejects_dir=tmp_path / "rejects")
    result = load(shard_map, rules, files, dry, progress=look)
    assert result.exit_code == 0
    assert [f.shards["default"].updated for f in result.files] == [100, 100, 100]
    for found in seen.values():
        # One table for the run, made as the shard connected, empty as each file began (the
        # dry run rolled the file before back, with 100 rows in it).
        assert len(found) == 3 and len({oid for oid, _ in found}) == 1, found
        assert [size for _, size in found] == [0, 0, 0]
    assert {r[2].split()[0] for r in rows(shard_dsns["default"])} == {"Base"}


def test_a_files_duplicates_are_not_carried_to_the_next_file(
    config_file: Path, initialised: None, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    shard_map = load_shard_map(config_file)
    rules = load_rules(shard_map)
    first_file = _write(tmp_path / "a.csv", _people(range(1, 9), "A"))
    assert load(shard_map, rules, [first_file]).exit_code == 0
    twice = _people(range(1, 9), "B") + _people(range(2, 5, 2), "C")  # 2 and 4 again: DE
    files = [
        _write(tmp_path / "b.csv", twice),
        _write(tmp_path / "c.csv", _people(range(1, 9), "D")),
    ]
    options = LoadOptions(max_rejects=Budget(50, True), rejects_dir=tmp_path / "rejects")
    result = load(shard_map, rules, files, options)
    first, second = (f.shards["default"] for f in result.files)
    assert (first.updated, first.rejected) == (4, 2)
    assert (second.updated, second.rejected, second.unchanged) == (4, 0, 0)
    held = {r[0]: r[2] for r in rows(shard_dsns["default"])}
    assert held == {2: "D 2", 4: "D 4", 6: "D 6", 8: "D 8"}


def test_each_shards_threads_are_started_once_a_run(
    config_file: Path, initialised: None, tmp_path: Path
) -> None:
    shard_map = load_shard_map(config_file)
    files = [
        _write(tmp_path / f"f{n}.csv", _people(range(n * 10 + 1, n * 10 + 11), "N"))
        for n in range(3)
    ]
    # The threads themselves, held: a thread started after another ended may reuse its id.
    found: list[set[threading.Thread]] = []

    def look(result: FileResult, read: int, done: bool) -> None:
        if done:  # the file's rows sent: each shard has probed and copied (both of them)
            named = ("probe", "direct-copy")
            found.append({t for t in threading.enumerate() if t.name.startswith(named)})

    options = LoadOptions(rejects_dir=tmp_path / "rejects")
    assert load(shard_map, load_rules(shard_map), files, options, progress=look).exit_code == 0
    assert len(found) == 3 and len(found[0]) == 4 and found[0] == found[1] == found[2], found
