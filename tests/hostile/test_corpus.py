"""Every case of the hostile corpus (cases.py), loaded by a real `pipeline load` process.

The load runs as a process of its own; its peak memory (ru_maxrss) and CPU time (user +
system) are read from the kernel's accounting of it (os.wait4, in a small launcher: see
LAUNCHER), so the bounds hold whatever else the machine is doing. Peak memory is bounded
over that of a load of one good row, measured the same way (`baseline_rss_mb`): how much of
the libraries' files the kernel maps is not the input's doing, and moves by 30 MB between
virtualenvs. A generous wall-clock limit only keeps a hang from stalling the suite: a case
that hits it fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.conftest import PROJECT, SHARDS, Server, shard_map_yaml, write_map
from tests.hostile.cases import CASES, GOOD_CSV, HEADER, Case, write

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


# Linux counts the memory of the process that execs a program in that program's peak RSS
# (the high-water mark of the memory the exec replaced): a load forked by pytest itself
# would be charged pytest's few hundred MB. A small launcher (a fresh interpreter, ~10 MB)
# forks the load and reads its usage from os.wait4.
LAUNCHER = """
import json, os, sys
report, *command = sys.argv[1:]
pid = os.fork()
if pid == 0:
    os.execv(command[0], command)
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as out:
    json.dump({"code": os.waitstatus_to_exitcode(status), "rss_kb": usage.ru_maxrss,
               "cpu": usage.ru_utime + usage.ru_stime}, out)
"""


def run_measured(args: list[str], cwd: Path) -> tuple[int, str, float, float]:
    """(exit code, stderr, peak RSS in MB, CPU seconds) of a process running `args`."""
    err_path, report = cwd / "stderr.txt", cwd / "usage.json"
    with open(err_path, "wb") as err, open(os.devnull, "wb") as out:
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(report), *args],
            cwd=cwd,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a hang is killed with its whole group
        )
    try:
        launcher.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)
        launcher.wait()
        pytest.fail(f"the load was still running after {HANG} s: a hang")
    usage = json.loads(report.read_text())
    stderr = err_path.read_text(errors="replace")
    return usage["code"], stderr, usage["rss_kb"] / 1024, usage["cpu"]


def load(case: Case, config: Path, folder: Path) -> Outcome:
    if case.limits:  # the shipped rules, with this case's limits
        rules = yaml.safe_load((PROJECT / "config" / "rules.yaml").read_text())
        rules.update(yaml.safe_load(case.limits))
        config = write_map(folder / "config", config.read_text())
        (config.parent / "rules.yaml").write_text(yaml.safe_dump(rules))
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


@pytest.fixture(scope="module")
def baseline_rss_mb(
    corpus_config: Path, corpus_shards: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> float:
    """The peak memory of a load of one good row, in this environment (the same launcher)."""
    empty(corpus_shards)
    good = Case("one-good-row", write("good.csv", HEADER + GOOD_CSV), 0, names=("Good Row",))
    outcome = load(good, corpus_config, tmp_path_factory.mktemp("baseline"))
    assert outcome.exit_code == 0, outcome.stderr
    return outcome.max_rss_mb


@pytest.mark.parametrize("case", params())
def test_hostile_input(
    case: Case,
    corpus_config: Path,
    corpus_shards: dict[str, str],
    baseline_rss_mb: float,
    tmp_path: Path,
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
    extra = outcome.max_rss_mb - baseline_rss_mb
    assert extra <= case.max_extra_mb, (
        f"peak memory {outcome.max_rss_mb:.0f} MB, {extra:.0f} MB over a one-row load's"
    )
    assert outcome.cpu_s <= case.max_cpu_s, f"CPU time {outcome.cpu_s:.1f} s"


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII", "EUC_JP"])
def test_the_trim_rule_works_in_a_database_of_another_encoding(
    pg_servers: list[Server], tmp_path: Path, encoding: str
) -> None:
    """Fields are trimmed the same way whatever the database's encoding: the no-break space
    too, in LATIN1 and SQL_ASCII (where the shard once trimmed bytes), and a load into
    EUC_JP works at all."""
    server = pg_servers[0]
    made = [f"t_{encoding.lower()}_{i}_{os.getpid()}" for i in range(2)]
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        for name in made:
            conn.execute(
                psycopg.sql.SQL(
                    "CREATE DATABASE {} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
                ).format(psycopg.sql.Identifier(name), psycopg.sql.Literal(encoding))
            )
    try:
        dsns = {shard: server.dsn_for(db) for shard, db in zip(SHARDS, made, strict=True)}
        config = write_map(tmp_path / "config", shard_map_yaml(dsns))
        path = tmp_path / "names.csv"
        text = "id,country,name\n1,DE,\u00a0Ren\u00e0 \n2,DE,Ana\u00a0\n3,DE, \t\n"
        if encoding == "EUC_JP":
            text = "id,country,name\n1,DE, Ren \n2,DE,Ana\t\n3,DE, \t\n"
        path.write_text(text)
        base = [*pipeline(), "--config", str(config)]
        init = subprocess.run([*base, "init"], capture_output=True, text=True, check=False)
        assert init.returncode == 0, init.stderr
        args = [*base, "load", str(path), "--max-rejects", "100%", "--rejects", str(tmp_path)]
        loaded = subprocess.run(args, capture_output=True, text=True, check=False)
        assert loaded.returncode == 0, loaded.stderr
        with psycopg.connect(dsns["default"]) as conn:
            stored = [r[0] for r in conn.execute("SELECT name FROM residents ORDER BY id")]
        # psycopg gives SQL_ASCII text as bytes: what the load sent, UTF-8.
        found = [v.decode() if isinstance(v, bytes) else v for v in stored]
        # Trimmed before it is sent (pipeline/validate.py), whatever the database's encoding.
        if encoding == "EUC_JP":
            assert found == ["Ren", "Ana"]
        else:
            assert found == ["Ren\u00e0", "Ana"]
    finally:
        for name in made:
            server.drop_database(name)
