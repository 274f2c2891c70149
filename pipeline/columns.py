"""The columns of `residents`, declared once: what the migrations make (tests/test_columns.py
compares this with a real server's information_schema), what the readers take from each
record, what the rejects file, the checks, the extract writers and the schema check name.

`pg_type` is information_schema's spelling (`data_type`), `arrow` a pyarrow type alias
(pyarrow has none for a timestamp with a time zone: `timestamp[us, tz=UTC]` is read by
`pipeline.columnar`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# field: a record's field, read from incoming files; provenance: which load wrote the row,
# when, and for which source; derived: computed by PostgreSQL from the fields, never written.
Role = Literal["field", "provenance", "derived"]


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str
    arrow: str
    nullable: bool
    role: Role


RESIDENTS = (
    Column("id", "bigint", "int64", nullable=False, role="field"),
    Column("country", "character", "string", nullable=False, role="field"),
    Column("name", "text", "string", nullable=False, role="field"),
    Column("gender", "text", "string", nullable=True, role="field"),
    Column("age", "smallint", "int16", nullable=True, role="field"),
    Column("address", "text", "string", nullable=True, role="field"),
    Column("load_id", "uuid", "string", nullable=True, role="provenance"),
    Column("loaded_at", "timestamp with time zone", "timestamp[us, tz=UTC]", False, "provenance"),
    # The source that wrote the row last (`load --source`); NULL: a load without one, or a
    # hand edit.
    Column("source", "text", "string", nullable=True, role="provenance"),
    # Last: the column order of a table the migrations grew (0009 added it again).
    Column("person_key", "bigint", "int64", nullable=True, role="derived"),
)
BY_NAME = {c.name: c for c in RESIDENTS}

# A record's fields, in the order the readers give them, COPY stages them and the rejects
# file and extract write them.
FIELDS = tuple(c.name for c in RESIDENTS if c.role == "field")
PROVENANCE = tuple(c.name for c in RESIDENTS if c.role == "provenance")
# The fields held as text (country as char(2)): the ones a spreadsheet could take for a formula.
TEXT_FIELDS = tuple(n for n in FIELDS if BY_NAME[n].pg_type in ("text", "character"))
# What a check of checks.yaml may name: the person key is a hash, no one's data.
CHECKABLE = FIELDS + PROVENANCE
