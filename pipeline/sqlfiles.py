"""The SQL the code runs, read once from the `sql/` folder.

`sql/migrations/NNNN_name.sql` are the schema's numbered migrations;
`sql/queries/NAME.sql` are the statements the library runs, by name. A query may
hold `{placeholders}` for identifiers or literals, filled with `psycopg.sql`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from psycopg import sql

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@cache
def sql_dir() -> Path:
    """`pipeline/sql` inside an installed wheel, else the checkout's top-level `sql/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise RuntimeError(f"the sql/ folder is missing next to {here}: broken installation")


@cache
def query(name: str) -> sql.SQL:
    """The statement(s) in `sql/queries/<name>.sql`."""
    text = (sql_dir() / "queries" / f"{name}.sql").read_text(encoding="utf-8")
    return sql.SQL(text.strip())  # trusted: a file we ship


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, in version order; refuses gaps and doubles so a typo cannot skip one."""
    found: list[Migration] = []
    for path in sorted((sql_dir() / "migrations").glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise RuntimeError(f"{path}: migration files are named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text("utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..N without gaps, found {versions}")
    return tuple(found)
