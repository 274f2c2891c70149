"""An incoming file being read, and what the reader of every format shares: the `Record` it
yields, the `SourceError` it raises, the resident columns a record holds, and `SourceFile`,
the file's settings and what reading it has found so far (its CSV header, the required
columns seen, the unknown ones). The readers are pipeline.source_csv and
pipeline.source_json; pipeline.sources puts them together.
"""

from __future__ import annotations

import codecs
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.bounded import MALFORMED
from pipeline.columns import FIELDS
from pipeline.reasons import RejectReason
from pipeline.rules import DEFAULT_LIMITS, Limits

COLUMNS = FIELDS
# A change file's optional delete-marker column ("upsert", "delete"): its key in a batch,
# whatever the file calls it (the rules' `op_column`, by default this name too).
OP = "_op"
READ = (*FIELDS, OP)  # what a reader takes from each record, in this order
REQUIRED = ("country", "name")
_KNOWN = frozenset(COLUMNS)
_REQUIRED = frozenset(REQUIRED)
UNKNOWN_COLUMNS_KEPT = 50  # names remembered for the warning; keys can vary per record
NAME_SHOWN = 60  # characters of an unknown column's name shown in the warning

INVALID_TEXT = RejectReason.INVALID_TEXT
INVALID_COUNTRY = RejectReason.INVALID_COUNTRY

# Encodings whose strict decoding can yield no surrogate (UTF-8 is checked where JSON
# escapes can make one). Others (unicode_escape, utf-7, ...) are checked block by block.
_NO_SURROGATES = frozenset(
    ("utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "ascii")
)


class SourceError(Exception):
    """The whole file cannot be read: nothing from it may be loaded. Always one line (parsers
    quote the input over several)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class Record(NamedTuple):
    number: int
    line: int | None
    values: tuple[str | None, ...] | None  # in READ order; None when rejected here
    raw: Any
    problem: str | None = None
    reason: RejectReason = MALFORMED  # why it is rejected, when values is None
    # When rejected here: the id fields it gives, as text (the id rule judges them), which a
    # snapshot must not delete: a refused record is no sign that the resident left.
    ids: tuple[str, ...] = ()
    # The characters of the JSON text its raw object (a dict or list) was decoded from; 0 for
    # any other raw. pipeline.batches bounds a batch's raw records by it.
    size: int = 0


@dataclass
class SourceFile:
    """An incoming file: how to read it, and what reading it has found so far."""

    path: Path
    format: str  # csv | json | ndjson
    compressed: bool
    encoding: str = "utf-8"
    sha256: str | None = None  # when set, the bytes read must hash to it (see records)
    limits: Limits = DEFAULT_LIMITS
    arrow: bool = True  # CSV may be read by pipeline.source_arrow
    op_column: str = OP  # the file's name for the delete-marker column (rules: op_column)
    required_seen: set[str] = field(default_factory=set)
    unknown_columns: set[str] = field(default_factory=set)  # at most UNKNOWN_COLUMNS_KEPT + 1
    _header: list[str] | None = field(default=None, repr=False)
    # The JSON and NDJSON records read that are objects: with none, no column is missing
    # from the file (each record is rejected for what it is instead).
    _objects: int = field(default=0, repr=False)

    @property
    def label(self) -> str:
        return self.format + (".gz" if self.compressed else "")

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        """The columns a record's values hold, in order: FIELDS, then the op column."""
        return (*COLUMNS, self.op_column)

    @functools.cached_property
    def _known(self) -> frozenset[str]:
        return frozenset(self.columns)

    @functools.cached_property
    def _surrogates_possible(self) -> bool:
        return codecs.lookup(self.encoding).name not in _NO_SURROGATES

    @functools.cached_property
    def _guarded(self) -> bool:
        """Whether lines can be bounded beneath the decoder (LineGuard): CSV and NDJSON in
        UTF-8 or an encoding of one byte a character, where a line end is a \\n or \\r byte
        and nothing else is."""
        codec = codecs.lookup(self.encoding).name
        one_byte = codec in ("ascii", "latin-1") or codec.startswith(("iso8859", "cp125"))
        return self.format != "json" and (codec == "utf-8" or one_byte)

    def _note_unknown(self, names: Any) -> None:
        """Remember unknown column names for the warning: at most UNKNOWN_COLUMNS_KEPT, each
        shown short and printable; "…" stands for the ones left out."""
        for name in names:
            if len(self.unknown_columns) >= UNKNOWN_COLUMNS_KEPT:
                self.unknown_columns.add("…")
                return
            self.unknown_columns.add(_shown(name))


# Characters an id field may hold at most and still be one (15 digits, a sign, white
# space): longer values are dropped unjudged, so that a batch of refused records does not
# hold on to their megabyte-long id fields.
ID_TEXT_MAX = 64


def id_texts(values: Any) -> tuple[str, ...]:
    """The values that could be an id, as text: JSON's numbers and strings (its true and
    false are ints to Python, and no id), none longer than ID_TEXT_MAX."""
    texts = (str(v) for v in values if isinstance(v, (str, int)) and not isinstance(v, bool))
    return tuple(t for t in texts if len(t) <= ID_TEXT_MAX)


def _shown(name: str) -> str:
    """A column name fit for a one-line message: short, printable."""
    name = name[:NAME_SHOWN] + ("…" if len(name) > NAME_SHOWN else "")
    return name if name.isprintable() else repr(name)[1:-1]
