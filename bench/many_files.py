"""The many-small-files rows of `make bench`: what a scheduled `make load` meets after a
backlog, FILES files of ROWS rows each in one folder, loaded by one `pipeline load`, then
loaded again (each already in the ledger: skipped), beside psql copying each file into a
plain table in one session (one `\\copy`, one transaction, a file).

Each round makes databases of its own (`bench_many` on both servers). A run of files costs
per file, not per row: a test of the figures, not of COPY (a run that slowed with the
square of its files, found in session 25, took 209 s to skip 1,000 of them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

FILES = 200
ROWS = 10
PSQL_MANY = f"psql, one session: \\copy of each of {FILES} files of {ROWS} rows"
LOAD_MANY = f"pipeline load, {FILES} files of {ROWS} rows, new residents"
LOAD_MANY_AGAIN = f"pipeline load, the same {FILES} files again (each skipped: in the ledger)"
DATABASE = "bench_many"
MAP = "shards:\n  a: {{dsn: '{a}'}}\n  b: {{dsn: '{b}'}}\nroutes:\n  b: [US]\ndefault: a\n"
PLAIN = "CREATE TABLE bench_many_plain (id bigint PRIMARY KEY, country text, name text)"

Run = Callable[..., tuple[float, int]]
Measure = Callable[..., None]


def write_files(folder: Path) -> list[Path]:
    """FILES files of ROWS residents each, half of them US (the second shard's)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for f in range(FILES):
        lines = [
            f"{f * ROWS + r + 1},{'US' if r % 2 else 'FR'},Resident {f}-{r}" for r in range(ROWS)
        ]
        path = folder / f"upload-{f:05d}.csv"
        path.write_text("id,country,name\n" + "\n".join(lines) + "\n")
        files.append(path)
    return files


def measure_many_files(
    run: Run, measure: Measure, cli: list[str], dsns: list[str], psql: str, workdir: Path
) -> None:
    """One round of the three rows (see the module docstring) in the empty databases
    `dsns` (DATABASE on each server); fails unless every row landed."""
    config = workdir / "many.yaml"
    config.write_text(MAP.format(a=dsns[0], b=dsns[1]))
    env = {"PYTHONWARNINGS": "ignore"}
    pipeline = [*cli, "--config", str(config)]
    run([*pipeline, "init"], env)
    folder = workdir / "many"
    files = write_files(folder)
    with psycopg.connect(dsns[0], autocommit=True) as conn:
        conn.execute(PLAIN)
    script = workdir / "many.psql"
    script.write_text("".join(f"\\copy bench_many_plain FROM '{f}' CSV HEADER\n" for f in files))
    measure(PSQL_MANY, [psql, dsns[0], "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script)])
    load = [*pipeline, "load", "-q", "--rejects", str(workdir / "many-rejects"), str(folder)]
    measure(LOAD_MANY, load)
    measure(LOAD_MANY_AGAIN, load)
    counts = []
    tables = ((dsns[0], "bench_many_plain"), (dsns[0], "residents"), (dsns[1], "residents"))
    for dsn, table in tables:
        with psycopg.connect(dsn) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            counts.append(row[0] if row else 0)
    half = FILES * ROWS // 2
    if counts != [FILES * ROWS, half, half]:
        raise RuntimeError(f"psql copied, the shards hold {counts} rows: no figure")
