"""The benchmark runs (on 2,000 rows, one round) so that it cannot rot; it asserts no timings."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import many_files, moves
from bench.run import (
    CHECK_FLOOR,
    DIRECT,
    DIRECT_FULL,
    FLOOR,
    LOAD_APPEND_99,
    LOAD_EMPTY,
    LOAD_OTHERS,
    LOAD_SNAPSHOT,
    LOADS,
    PERSON_HASH,
)
from tests.conftest import PROJECT, Connect


@pytest.mark.slow
def test_the_benchmark_runs_and_reports_every_step(tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    subprocess.run(
        [sys.executable, str(PROJECT / "bench" / "run.py"), "--rows", "2000", "--rounds", "1",
         "--output", str(output), "--data", str(tmp_path / "data"), "--no-dbt"],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    report, targets = output.read_text().split("## Targets")
    table = [line for line in report.splitlines() if line.startswith("| ")][1:]
    measured = {row.split(" | ")[0].lstrip("| "): row for row in table}
    for step in (
        "psql \\copy into one plain table",
        "pipeline load, empty shards",
        "pipeline load --force, all unchanged",
        "pipeline extract, CSV",
        "pipeline check, default checks",
    ):
        cells = [c.strip() for c in measured[step].split("|")]
        assert cells[2] == "2,000" and float(cells[3]) > 0, measured[step]
    assert "x" in measured["pipeline load, empty shards"].split("|")[-2]  # a ratio was computed
    # The peak RSS and, in brackets, the sampled peak of the anonymous memory within it.
    peak = [c.strip() for c in measured[LOAD_EMPTY].split("|")][6]
    both = re.fullmatch(r"(\d+) \((\d+)\)", peak)
    assert both is not None, peak
    rss, anon = map(int, both.groups())
    assert 0 < anon < rss, peak
    target = rf"\| {LOADS}: peak memory \| <= 150 MB \| \d+ MB \(anonymous \d+ MB\) \|"
    assert re.search(target, targets), targets
    for name in (FLOOR, DIRECT, DIRECT_FULL):
        floor = [c.strip() for c in measured[name].split("|")]
        assert 0 < int(floor[2].replace(",", "")) <= 2000 and float(floor[3]) > 0, floor
    others = [c.strip() for c in measured[LOAD_OTHERS].split("|")]
    assert others[2] == "2,000" and float(others[3]) > 0, others
    assert f"| {LOAD_EMPTY} (vs {DIRECT}) | >= 0.85x |" in targets
    assert measured[CHECK_FLOOR].rstrip(" |").endswith("x time"), measured[CHECK_FLOOR]
    assert "| pipeline check, default checks | <= 1.5x time |" in targets
    assert "--no-dbt: skipped" in measured["dbt test, the same checks, both shards at once"]
    per_shard = [
        c.strip() for c in measured["pipeline check, the checks dbt can express"].split("|")
    ]
    assert float(per_shard[3]) > 0, per_shard
    rebalance = [c.strip() for c in measured[moves.REBALANCE].split("|")]
    assert rebalance[2] == "2,000" and rebalance[-2].endswith("x"), rebalance
    assert f"| {moves.REBALANCE} | >= 0.5x |" in targets
    for name in (many_files.LOAD_MANY, many_files.LOAD_MANY_AGAIN):
        many = [c.strip() for c in measured[name].split("|")]
        assert many[2] == "2,000" and many[-2].endswith("x"), many
    snapshot = [c.strip() for c in measured[LOAD_SNAPSHOT].split("|")]
    assert snapshot[2] == "1,980" and float(snapshot[3]) > 0, snapshot  # 2,000 less 1%
    assert f"| {LOAD_SNAPSHOT} (vs {LOAD_APPEND_99}) | <= 1.2x time |" in targets


def test_the_check_floor_hashes_persons_as_the_stored_key_does(
    loaded: None, connect: Connect
) -> None:
    # The check's floor prices hashing every person at check time: with the key's formula,
    # NULL ages and addresses and capitals beyond A-Z included.
    with connect("default") as conn:
        conn.execute(
            "INSERT INTO residents (id, country, name, age, address) VALUES"
            " (900, 'DE', 'ZOË Ünal', NULL, NULL), (901, 'DE', 'Ann', 0, ''),"
            " (902, 'FR', 'ÉMILE Dubois', 150, 'ÅSGATAN 1, \"B\"')"
        )
    for shard in ("default", "db_us"):
        with connect(shard) as conn:
            rows = conn.execute(
                f"SELECT count(*), count(*) FILTER (WHERE person_key <> {PERSON_HASH})"
                " FROM residents"
            ).fetchone()
            assert rows is not None and rows[0] > 0 and rows[1] == 0, (shard, rows)
