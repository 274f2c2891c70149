"""The rebalance row of `make bench`: one country's rows moved between two shards by
`pipeline rebalance`, beside psql moving the same rows with `\\copy` out of one server piped
into `\\copy` into the other (a table shaped like residents), nothing checked or deleted.

Each round makes databases of its own (`bench_move` on both servers), holding one country
(ID) on the first shard, `n` rows of it, then changes the map to route ID to the second.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg

MOVE_COPY = "psql \\copy out of one shard piped into \\copy into the other"
REBALANCE = "pipeline rebalance, one country between two shards"
DATABASE = "bench_move"
FILL = """INSERT INTO residents (id, country, name, gender, age, address)
SELECT i, 'ID', 'Resident ' || i, CASE WHEN i %% 2 = 0 THEN 'Female' ELSE 'Male' END, i %% 90,
       i || ' Jalan Sudirman, Jakarta'
FROM generate_series(1, %s) AS i"""
COLUMNS = "id, country, name, gender, age, address, load_id, loaded_at"
MAP = "shards:\n  a: {{dsn: '{a}'}}\n  b: {{dsn: '{b}'}}\nroutes:\n  b: [{countries}]\ndefault: a\n"

Run = Callable[..., tuple[float, int]]
Measure = Callable[..., None]


def measure_rebalance(
    run: Run, measure: Measure, cli: list[str], dsns: list[str], psql: str, workdir: Path, n: int
) -> None:
    """One round of the two rows (see the module docstring) in the empty databases `dsns`
    (DATABASE on each server); fails unless every row moved."""
    a, b = dsns
    before, after = workdir / "move-before.yaml", workdir / "move-after.yaml"
    before.write_text(MAP.format(a=a, b=b, countries="US"))
    after.write_text(MAP.format(a=a, b=b, countries="US, ID"))
    env = {"PYTHONWARNINGS": "ignore"}
    run([*cli, "--config", str(before), "init"], env)
    with psycopg.connect(a, autocommit=True) as conn:
        conn.execute(FILL, [n])
        conn.execute("VACUUM (ANALYZE) residents")
    with psycopg.connect(b, autocommit=True) as conn:
        conn.execute("CREATE TABLE bench_move_copy (LIKE residents INCLUDING ALL)")
        # b's residency rule, copied with the rest, refuses ID until the map sends it there.
        conn.execute("ALTER TABLE bench_move_copy DROP CONSTRAINT residents_residency")
    out = f"\\copy (SELECT {COLUMNS} FROM residents WHERE country = 'ID') TO STDOUT"
    into = f"\\copy bench_move_copy ({COLUMNS}) FROM STDIN"
    piped = f"{psql} '{a}' -qc \"{out}\" | {psql} '{b}' -q -v ON_ERROR_STOP=1 -c \"{into}\""
    measure(MOVE_COPY, ["bash", "-o", "pipefail", "-c", piped])
    run([*cli, "--config", str(after), "init"], env, ok=(1,))  # a holds ID: refused, as it must
    measure(REBALANCE, [*cli, "--config", str(after), "rebalance"])
    with psycopg.connect(a) as conn_a, psycopg.connect(b) as conn_b:
        left = conn_a.execute("SELECT count(*) FROM residents").fetchone()
        moved = conn_b.execute("SELECT count(*) FROM residents WHERE country = 'ID'").fetchone()
        copied = conn_b.execute("SELECT count(*) FROM bench_move_copy").fetchone()
    if (left, moved, copied) != ((0,), (n,), (n,)):
        raise RuntimeError(f"the move left {left}, moved {moved}, psql copied {copied}: no figure")
