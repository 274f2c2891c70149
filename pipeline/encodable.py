"""Rows whose text a shard's database cannot hold. A database whose encoding is not UTF-8
(LATIN1, WIN1252...) refuses a whole COPY at the first character that encoding lacks
(`character with byte sequence 0xe6 0x9d 0x8e in encoding "UTF8" has no equivalent in
encoding "LATIN1"`): one such name used to fail the file on that shard. Once the rules have
routed a batch, `ShardEncodings.mark` refuses each such row alone (reason `invalid_text`,
counted on its shard, the character and the encoding in its message), and the others load.

Only rows bound for such a shard are looked at, and of their text only the values that are
not ASCII (every encoding a PostgreSQL server may use holds ASCII): shards in UTF8 or
SQL_ASCII, which store any text, cost nothing. The encodings checked are the one-byte ones
whose Python codec takes exactly the characters PostgreSQL converts (CODECS: compared code
point by code point with `convert_to` on PostgreSQL 15). For the others (EUC_JP, EUC_KR,
EUC_CN, EUC_JIS_2004, MULE_INTERNAL...), where Python's codecs and the server's tables
differ by hundreds or thousands of characters, the server judges, as before: a character
it lacks fails the file on that shard, its rows pending.

What else of a row reaches a shard as text is made storable there (`storable`): the
fields as read, kept in the staging table only for the rejects file's entry should a later
row of the same id supersede the row, and the file's name in the load ledger.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.reasons import RejectReason
from pipeline.validate import REASONS, Checked, as_mask

INVALID_TEXT = REASONS.index(RejectReason.INVALID_TEXT)  # its code in Checked.reason
# The text a row brings from its file and a shard stores (a country is an ISO code: ASCII).
TEXT_COLUMNS = ("name", "gender", "address")
# PostgreSQL server encodings -> the Python codec that encodes exactly what the server
# converts from UTF-8.
_LATIN = (1, 2, 3, 4, 9, 10, 13, 14, 15, 16)  # the ISO 8859 part of LATIN1 ... LATIN10
CODECS = {
    **{f"LATIN{n}": f"iso8859-{part}" for n, part in enumerate(_LATIN, 1)},
    **{f"ISO_8859_{n}": f"iso8859-{n}" for n in (5, 6, 7, 8)},
    **{f"WIN{n}": f"cp{n}" for n in (866, 874, *range(1250, 1259))},
    "KOI8R": "koi8-r",
    "KOI8U": "koi8-u",
}


def python_codec(encoding: str | None) -> str | None:
    """The Python codec of a PostgreSQL server encoding that cannot hold every character
    and whose codec agrees with the server (None: any other, which the server judges)."""
    return None if encoding is None else CODECS.get(encoding.upper())


def storable(values: pa.ChunkedArray | pa.Array, codec: str) -> pa.Array:
    """`values` with each character `codec` lacks written as a backslash escape (`\\u674e`),
    for text kept only to be shown back (the fields as read)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    foreign = np.flatnonzero(as_mask(pc.invert(pc.string_is_ascii(values))))
    if not len(foreign):
        return values
    texts = values.to_pylist()
    for i in foreign.tolist():
        texts[i] = storable_text(texts[i], codec)
    return pa.array(texts, values.type)


def storable_text(text: str, codec: str | None) -> str:
    """`text` with each character `codec` lacks written as a backslash escape (no codec:
    as it is)."""
    return text if codec is None else text.encode(codec, "backslashreplace").decode(codec)


class ShardEncodings:
    """The shards whose database encoding lacks characters, by their index in the map:
    (shard name, encoding, Python codec)."""

    def __init__(self, narrow: Mapping[int, tuple[str, str, str]]) -> None:
        self.narrow = dict(narrow)

    @classmethod
    def of(cls, names: list[str], encodings: Mapping[str, str | None]) -> ShardEncodings:
        """From each shard's `server_encoding` (None: not known, not connected)."""
        narrow = {}
        for index, name in enumerate(names):
            encoding = encodings.get(name)
            codec = python_codec(encoding)
            if codec is not None:
                narrow[index] = (name, str(encoding), codec)
        return cls(narrow)

    def mark(self, checked: Checked) -> None:
        """Refuse (reason `invalid_text`) the valid rows of `checked` whose text their
        shard's encoding cannot hold. A delete marker needs only its id: not looked at."""
        if not self.narrow:
            return
        deleting = as_mask(checked.table["deleting"])
        for index, (shard, encoding, codec) in self.narrow.items():
            rows = np.flatnonzero((checked.reason == 0) & (checked.shard == index) & ~deleting)
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
                    checked.shard_messages[row] = (
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
