"""A read of several shards that catches a rebalance move between its two commits (the
copy committed on the target, the delete on the source not): the moved rows would be read
on both shards. `pipeline extract` stops before any row goes out (pipeline.moves_seen)."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.conftest import RunCli
from tests.test_rebalance import (  # noqa: F401  # fixtures, used by name
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
