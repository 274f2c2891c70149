"""The benchmark's baselines, each run as its own process so its time and memory are its own.

python bench/baselines.py pandas|insert|pgloader DSN FILE
"""

from __future__ import annotations

import csv
import subprocess
import sys

import psycopg
from psycopg import conninfo


def pandas_to_sql(dsn: str, path: str) -> None:
    """pandas.DataFrame.to_sql with its default method, through SQLAlchemy and psycopg."""
    import pandas as pd
    import sqlalchemy

    params = conninfo.conninfo_to_dict(dsn)
    url = sqlalchemy.URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if params.get("port") else None,
        database=params.get("dbname"),
    )
    # Text as text (keep "NA" and empty fields as they are), the id as the integer it is.
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).astype({"id": "int64"})
    engine = sqlalchemy.create_engine(url)
    frame.to_sql("bench_pandas", engine, if_exists="append", index=False)
    engine.dispose()


def insert_per_row(dsn: str, path: str) -> None:
    """One INSERT and one commit per row, as the original Django app saved each resident."""
    with psycopg.connect(dsn, autocommit=True) as conn, open(path, newline="") as stream:
        reader = csv.reader(stream)
        next(reader)
        for row in reader:
            conn.execute(
                "INSERT INTO bench_insert (id, country, name, gender, age, address)"
                " VALUES (%s, %s, %s, %s, %s, %s)",
                row,
            )


def pgloader(dsn: str, path: str) -> None:
    params = conninfo.conninfo_to_dict(dsn)
    host = str(params.get("host", "localhost"))
    where = f"unix:{host}" if host.startswith("/") else host  # pgloader's spelling of a socket
    target = (
        f"postgresql://{params.get('user', 'postgres')}@{where}:{params.get('port', 5432)}"
        f"/{params.get('dbname')}?tablename=bench_pgloader"
    )
    subprocess.run(
        ["pgloader", "--type", "csv", "--field", "id,country,name,gender,age,address",
         "--with", "skip header = 1", "--with", "fields optionally enclosed by '\"'",
         "--with", "fields terminated by ','", path, target],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


TABLES = {"pandas": "bench_pandas", "insert": "bench_insert", "pgloader": "bench_pgloader"}


def loaded_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


if __name__ == "__main__":
    kind, dsn, path = sys.argv[1:4]
    {"pandas": pandas_to_sql, "insert": insert_per_row, "pgloader": pgloader}[kind](dsn, path)
    # A baseline that loaded nothing would make a fine-looking figure: refuse it.
    if loaded_rows(dsn, TABLES[kind]) == 0:
        sys.exit(f"{kind} loaded no rows")
