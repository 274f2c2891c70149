"""The SQL the code runs, read from the `sql/` folder: what a catalogue entry is, and the
migrations.

`sql/migrations/NNNN_name.sql` are the schema's numbered migrations; every other folder of
`sql/` holds the statements of one part of the code (`sql/load/` those of the load's
writer, `sql/check/` those of the checks...), declared in `pipeline.queries` and read
when it is imported, so that a missing or misspelt file fails at once, not on the one path
that runs it (as pgloader loads its queries at start-up).

An entry is one of two kinds, and says which:
- a `Statement` runs as it is, with its values as parameters (`%s`, `%(name)s`);
- a `Template` has `{placeholders}` for identifiers, literals or SQL built by the code,
  filled with `psycopg.sql` by `.format()`, which refuses a placeholder missing or unknown.
  Literal braces are doubled.
A file's leading comment lines are its documentation, for people: they are not sent, so
that an expression can be placed anywhere in a statement, mid-line included.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

from psycopg import sql

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# What a placeholder looks like: a Statement holding one was meant to be a Template.
_PLACEHOLDER = re.compile(r"(?<!\{)\{[A-Za-z_]\w*\}(?!\})")


class CatalogueError(RuntimeError):
    """A catalogue entry that does not match its file: a broken installation or a bug."""


@cache
def sql_dir() -> Path:
    """`pipeline/sql` inside an installed wheel, else the checkout's top-level `sql/`."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise RuntimeError(f"the sql/ folder is missing next to {here}: broken installation")


def _read(name: str) -> str:
    """The text of `sql/<name>.sql` without its leading comment lines."""
    path = sql_dir() / f"{name}.sql"
    try:
        lines = path.read_text(encoding="utf-8").strip().splitlines()
    except OSError as exc:
        raise CatalogueError(
            f"{path}: {exc.strerror}: broken installation or misspelt name"
        ) from None
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    if not lines:
        raise CatalogueError(f"{path}: holds no SQL")
    return "\n".join(lines)


class Statement(sql.SQL):
    """A catalogue file that runs as it is: `conn.execute(LOAD.upsert, params)`."""

    def __init__(self, name: str) -> None:
        text = _read(name)
        found = _PLACEHOLDER.search(text)
        if found:
            raise CatalogueError(f"sql/{name}.sql: {found.group()} in a Statement: a Template?")
        super().__init__(text)  # trusted: a file we ship
        self.name = name

    def format(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"sql/{self.name}.sql is a Statement: it has no placeholders to fill")

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"


@dataclass(frozen=True, init=False)
class Template:
    """A catalogue file with `{placeholders}`, declared: `.format(**values)` fills every one
    of them with composed SQL, and refuses a value missing or one it has no place for."""

    name: str
    placeholders: frozenset[str]
    text: str

    def __init__(self, name: str, *placeholders: str) -> None:
        text = _read(name)
        declared, found = frozenset(placeholders), placeholders_of(text, name)
        if declared != found:
            raise CatalogueError(
                f"sql/{name}.sql holds {sorted(found)}, declared {sorted(declared)}"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "placeholders", declared)
        object.__setattr__(self, "text", text)

    def format(self, **values: sql.Composable) -> sql.Composed:
        missing = sorted(self.placeholders - values.keys())
        unknown = sorted(values.keys() - self.placeholders)
        if missing or unknown:
            raise TypeError(f"sql/{self.name}.sql: missing {missing}, unknown {unknown}")
        return sql.SQL(self.text).format(**values)  # trusted: a file we ship


def placeholders_of(text: str, name: str = "") -> frozenset[str]:
    """The `{names}` of a template's text; positional `{}` and `{0}` are refused (a file's
    placeholders say what goes where)."""
    names = set()
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError as exc:  # a single { or }: literal braces are doubled
        raise CatalogueError(f"sql/{name}.sql: {exc}") from None
    for _text, field, spec, conversion in fields:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise CatalogueError(f"sql/{name}.sql: {{{field}}} is not a named placeholder")
        names.add(field)
    return frozenset(names)


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
