"""The tools analysts would pick instead of `pipeline extract`, run as processes of their own.

    python bench/peers.py duckdb-parquet|duckdb-csv ROWS OUT DSN...
    python bench/peers.py connectorx ROWS - URI...         (postgresql:// URIs: see run.py)
    python bench/peers.py dataframe ROWS - CONFIG        (this project's to_dataframe)

DuckDB attaches every shard with its postgres extension (loaded from the file the
`duckdb-ext-postgres` wheel ships: no network at run time) and writes the union with one
`COPY (... UNION ALL ... ORDER BY shard, id) TO`; connectorx reads each shard into a
DataFrame and pandas concatenates them. Each writes or builds the same columns in the same
order as the step it is compared with (shards in map order, each by id), and refuses to
finish unless it holds every row: a peer that read part of the data would make a
fine-looking figure. The DuckDB and connectorx modes run in bench/run.py's peers
environment (PEERS below), installed on first use.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

SHARDS = ("default", "db_us")
# Pinned together: an extension loads only into the DuckDB it was built for.
PEERS = ["duckdb==1.4.4", "duckdb-ext-postgres==1.4.4.20260205", "connectorx>=0.4", "pandas>=2"]
COLUMNS = "id, country, name, gender, age, address"


def duckdb_copy(fmt: str, rows: int, out: str, dsns: list[str]) -> None:
    import duckdb
    import duckdb_ext  # type: ignore[import-not-found]  # the extension wheel's package

    # duckdb_ext is a namespace package (no __init__): its folder is in __path__.
    pattern = os.path.join(*duckdb_ext.__path__, "extensions", "*", "*",
                           "postgres_scanner.duckdb_extension")  # fmt: skip
    (extension,) = glob.glob(pattern)
    db = duckdb.connect(config={"allow_unsigned_extensions": True})
    db.execute(f"LOAD '{extension}'")
    parts = []
    for i, (shard, dsn) in enumerate(zip(SHARDS, dsns, strict=True)):
        db.execute(f"ATTACH '{dsn}' AS s{i} (TYPE postgres, READ_ONLY)")
        parts.append(f"SELECT {i} AS o, '{shard}' AS shard, {COLUMNS} FROM s{i}.public.residents")
    union = " UNION ALL ".join(parts)
    options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER"
    db.execute(
        f"COPY (SELECT shard, {COLUMNS} FROM ({union}) ORDER BY o, id) TO '{out}' ({options})"
    )
    reader = "read_parquet" if fmt == "parquet" else "read_csv"
    row = db.execute(f"SELECT count(*) FROM {reader}('{out}')").fetchone()
    if not row or row[0] != rows:
        sys.exit(f"duckdb wrote {row[0] if row else 0} rows, not {rows}")


def connectorx_frame(rows: int, uris: list[str]) -> None:
    import connectorx as cx
    import pandas as pd

    frames = [
        cx.read_sql(uri, f"SELECT '{shard}' AS shard, {COLUMNS} FROM residents ORDER BY id")
        for shard, uri in zip(SHARDS, uris, strict=True)
    ]
    frame = pd.concat(frames, ignore_index=True)
    if len(frame) != rows:
        sys.exit(f"connectorx read {len(frame)} rows, not {rows}")


def our_frame(rows: int, config: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from pipeline import to_dataframe

    frame = to_dataframe(config=config)
    if len(frame) != rows:
        sys.exit(f"to_dataframe read {len(frame)} rows, not {rows}")


if __name__ == "__main__":
    kind, count, target, *rest = sys.argv[1:]
    if kind.startswith("duckdb-"):
        duckdb_copy(kind.removeprefix("duckdb-"), int(count), target, rest)
    elif kind == "connectorx":
        connectorx_frame(int(count), rest)
    else:
        our_frame(int(count), rest[0])
