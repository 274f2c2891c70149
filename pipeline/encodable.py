"""Rows whose text a shard's database cannot hold. A database whose encoding is not UTF-8
(LATIN1, WIN1252...) refuses a whole COPY at the first character that encoding lacks
(`character with byte sequence 0xe6 0x9d 0x8e in encoding "UTF8" has no equivalent in
encoding "LATIN1"`): one such name used to fail the file on that shard. Once the rules have
routed a batch, `ShardEncodings.mark` refuses each such row alone (reason `invalid_text`,
the character and the encoding in its message), and the others load.

Only the rows bound for such a shard are looked at, and of their text only the values that
are not ASCII (every encoding a PostgreSQL server may use holds ASCII): shards in UTF8 or
SQL_ASCII, which store any text, cost nothing. The codec is psycopg's for the PostgreSQL
encoding; an encoding it knows no codec for (MULE_INTERNAL, EUC_TW) is left to the server,
whose refusal fails the file on that shard as before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.reasons import RejectReason
from pipeline.validate import REASONS, Checked, as_mask

INVALID_TEXT = REASONS.index(RejectReason.INVALID_TEXT)  # its code in Checked.reason
# The columns of text a row brings from its file (a country is an ISO code: ASCII).
TEXT_COLUMNS = ("name", "gender", "address")
# Encodings that take any text the load sends: nothing to look at.
ANY_TEXT = ("UTF8", "SQL_ASCII")


def python_codec(encoding: str | None) -> str | None:
    """The Python codec of a PostgreSQL server encoding, for one that cannot hold every
    character (None: UTF8, SQL_ASCII, or one without a codec, which the server judges)."""
    if encoding is None or encoding.upper() in ANY_TEXT:
        return None
    try:
        # psycopg's table of PostgreSQL encodings (it decodes a client encoding by it). Not
        # part of its documented API: should it go, the server judges, as it did before.
        from psycopg._encodings import pg2pyenc

        return pg2pyenc(encoding.encode())
    except Exception:
        return None


class ShardEncodings:
    """The shards of a file whose database encoding lacks characters, by their index in the
    map: (shard name, encoding, Python codec)."""

    def __init__(self, narrow: Mapping[int, tuple[str, str, str]]) -> None:
        self.narrow = dict(narrow)

    @classmethod
    def of(cls, names: list[str], encodings: Mapping[str, str | None]) -> ShardEncodings:
        """From each shard's `server_encoding` (the shards that take the file)."""
        narrow = {}
        for index, name in enumerate(names):
            encoding = encodings.get(name)
            codec = python_codec(encoding)
            if encoding is not None and codec is not None:
                narrow[index] = (name, encoding, codec)
        return cls(narrow)

    def mark(self, checked: Checked) -> None:
        """Refuse (reason `invalid_text`) the valid rows of `checked` whose text their
        shard's encoding cannot hold."""
        for index, (shard, encoding, codec) in self.narrow.items():
            rows = np.flatnonzero((checked.reason == 0) & (checked.shard == index))
            if not len(rows):
                continue
            taken = pa.array(rows, pa.int64())
            for column in TEXT_COLUMNS:
                values = checked.table[column].take(taken)
                foreign = np.flatnonzero(as_mask(pc.invert(pc.string_is_ascii(values))))
                if not len(foreign):
                    continue
                texts = values.take(pa.array(foreign, pa.int64())).to_pylist()
                for position, text in zip(foreign.tolist(), texts, strict=True):
                    row = int(rows[position])
                    lacking = _lacking(text, codec)
                    if lacking is None or checked.reason[row] != 0:
                        continue  # held; or refused already, for another column
                    checked.reason[row] = INVALID_TEXT
                    checked.country_messages[row] = (
                        f"{column} {text!r} holds {lacking!r}, which shard {shard}'s database"
                        f" cannot store (its encoding is {encoding})"
                    )


def _lacking(text: str, codec: str) -> str | None:
    """The first character of `text` that `codec` cannot encode; None when it can all."""
    try:
        text.encode(codec)
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None
