"""Every case of the hostile corpus (cases.py), loaded by a real `pipeline load` process.

The load runs as a child process; its peak memory (ru_maxrss) and CPU time (user + system)
are read from the kernel's accounting of that child (os.wait4), so the bounds hold whatever
else the machine is doing. A generous wall-clock limit only keeps a hang from stalling the
suite: a case that hits it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cases import CASES, Case
from conftest import PROJECT, SHARDS, Server, shard_map_yaml, write_map

HANG = 300  # seconds of wall clock after which a load counts as hung
STDERR_LINE_MAX = 2000  # characters: messages are one line each, and short


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    stderr: str
    max_rss_mb: float
    cpu_s: float
    rejects: list[dict[str, Any]]


@pytest.fixture(scope="module")
def corpus_shards(pg_servers: list[Server]) -> Iterator[dict[str, str]]:
    """Two initialised shards shared by the cases of this module (emptied before each)."""
    created = [(server, server.create_database()) for server in pg_servers]
    dsns = {name: server.dsn_for(db) for name, (server, db) in zip(SHARDS, created, strict=True)}
    try:
        yield dsns
    finally:
        for server, db in created:
            server.drop_database(db)


@pytest.fixture(scope="module")
def corpus_config(corpus_shards: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = write_map(tmp_path_factory.mktemp("corpus") / "config", shard_map_yaml(corpus_shards))
    result = subprocess.run(
        [*pipeline(), "--config", str(config), "init"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return config


def pipeline() -> list[str]:
    return [sys.executable, "-c", "from pipeline.cli import main; main()"]


def empty(dsns: dict[str, str]) -> None:
    for dsn in dsns.values():
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("TRUNCATE residents, load_ledger")


def names(dsns: dict[str, str]) -> list[str]:
    found: list[str] = []
    for dsn in dsns.values():
        with psycopg.connect(dsn) as conn:
            found += [r[0] for r in conn.execute("SELECT name FROM residents")]
    return sorted(found)


def run_measured(args: list[str], cwd: Path) -> tuple[int, str, float, float]:
    """(exit code, stderr, peak RSS in MB, CPU seconds) of a child process."""
    err_path = cwd / "stderr.txt"
    with open(err_path, "wb") as err, open(os.devnull, "wb") as out:
        child = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + HANG
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(child.pid, signal.SIGKILL)
            os.wait4(child.pid, 0)
            child.returncode = -9
            pytest.fail(f"the load was still running after {HANG} s: a hang")
        time.sleep(0.02)
    child.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(errors="replace")
    return child.returncode, stderr, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def load(case: Case, config: Path, folder: Path) -> Outcome:
    if case.limits:
        rules = config.parent / "rules.yaml"
        shipped = (PROJECT / "config" / "rules.yaml").read_text()
        config = write_map(folder / "config", config.read_text())
        rules = config.parent / "rules.yaml"
        rules.write_text(shipped + case.limits)
    inputs = folder / "inputs"
    inputs.mkdir()
    paths = case.make(inputs)
    rejects_dir = folder / "rejects"
    args = [*pipeline(), "--config", str(config), "load", *map(str, paths)]
    args += ["--rejects", str(rejects_dir), "--quiet", *case.args]
    code, stderr, rss, cpu = run_measured(args, folder)
    rejects = [
        json.loads(line)
        for f in sorted(rejects_dir.glob("*.ndjson"))
        for line in f.read_text(encoding="utf-8").split("\n")
        if line
    ]
    return Outcome(code, stderr, rss, cpu, rejects)


def params() -> list[Any]:
    marks = {True: [pytest.mark.slow], False: []}
    return [pytest.param(c, id=c.name, marks=marks[c.slow]) for c in CASES]


def test_the_corpus_has_at_least_60_cases_with_distinct_names() -> None:
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", params())
def test_hostile_input(
    case: Case, corpus_config: Path, corpus_shards: dict[str, str], tmp_path: Path
) -> None:
    for needed in case.needs:
        if not Path(needed).exists():
            pytest.skip(f"{needed} is not on this machine")
    empty(corpus_shards)
    outcome = load(case, corpus_config, tmp_path)
    assert outcome.exit_code == case.exit_code, outcome.stderr
    assert "Traceback" not in outcome.stderr, outcome.stderr
    messages = [outcome.stderr, *(r["message"] for r in outcome.rejects)]
    assert any(case.message in m for m in messages), messages
    for line in outcome.stderr.splitlines():
        assert len(line) <= STDERR_LINE_MAX, line[:300]
    if outcome.exit_code:
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("Error: ")]
        assert errors, outcome.stderr
    assert tuple(r["reason"] for r in outcome.rejects) == case.rejects, outcome.rejects
    for reject in outcome.rejects:
        assert len(json.dumps(reject)) < 20_000  # a reject's raw record is bounded
    assert tuple(names(corpus_shards)) == case.names
    assert outcome.max_rss_mb <= case.max_rss_mb, f"peak memory {outcome.max_rss_mb:.0f} MB"
    assert outcome.cpu_s <= case.max_cpu_s, f"CPU time {outcome.cpu_s:.1f} s"
