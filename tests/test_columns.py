"""pipeline/columns.py declares the columns of residents once: it must be what the
migrations make on a real server, column for column, type and nullability."""

from __future__ import annotations

import psycopg

from pipeline.columns import FIELDS, RESIDENTS
from pipeline.sqlfiles import migrations
from tests.conftest import Server

COLUMNS_MADE = """
SELECT column_name, data_type, is_nullable = 'YES'
FROM information_schema.columns
WHERE table_schema = current_schema() AND table_name = 'residents'
ORDER BY ordinal_position
"""


def test_the_declared_columns_are_those_the_migrations_make(pg_servers: list[Server]) -> None:
    server = pg_servers[0]
    database = server.create_database()
    try:
        with psycopg.connect(server.dsn_for(database)) as conn:
            for migration in migrations():
                conn.execute(migration.text.encode())
            made = conn.execute(COLUMNS_MADE).fetchall()
    finally:
        server.drop_database(database)
    assert len(migrations()) >= 4
    assert made == [(c.name, c.pg_type, c.nullable) for c in RESIDENTS]


def test_a_record_has_the_six_fields_in_order() -> None:
    # The readers, COPY into staging and the rejects file rely on this order.
    assert FIELDS == ("id", "country", "name", "gender", "age", "address")
