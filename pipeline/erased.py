"""Keeping erased persons out of a load: a row that an erasure of the log matches is
refused with reason `erased` (pipeline.erase records the erasures).

The erasure logs of every shard are read once, before the load's first file
(`read_erasures`); every erasure is in every shard's log, so any shard that answers is
enough. When no log holds an erasure there is nothing to do (`Erased()`, whose `mark`
returns at once: the load does no work a row, and needs no key). Otherwise each batch,
once the rules have judged it, goes through `Erased.mark`: the distinct names of its
valid rows are hashed under the erasure key (pipeline.erasure_key) and compared with the
erasures' name hashes; only a row whose name was erased is hashed again at each erasure's
level (name and age, name and address...) and, when one matches, refused. Its cost a
batch is one HMAC a distinct name (about 2 us on the workbench).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import conninfo

from pipeline import db
from pipeline.config import Shard, ShardMap
from pipeline.erase import Entry, read_log
from pipeline.erasure_key import ErasureKey, erasure_key, person_message
from pipeline.errors import ConfigError
from pipeline.reasons import RejectReason
from pipeline.shards import on_every_shard
from pipeline.validate import REASONS, Checked, as_mask

ERASED = REASONS.index(RejectReason.ERASED)  # its code in Checked.reason
# Texts of a record the reader refused that are tried as a name, at most (a JSON object may
# hold thousands): one with more is taken for an erased person's, quoting none of them.
MAX_TEXTS = 256
# Texts of refused records hashed in one run, at most (some 2 s of HMACs): past that, a record
# the reader refuses quotes none of its values, unsearched. A hostile file of malformed
# records, each with MAX_TEXTS texts, would cost a load that many hashes a record.
MAX_TRIED = 1_000_000
_JSON_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')  # a JSON string's content, escapes kept


class Erased:
    """The erasures of the log, ready to mark batch after batch (none: `Erased()`)."""

    def __init__(self, key: ErasureKey | None = None, entries: Iterable[Entry] = ()) -> None:
        self.key = key
        entries = list(entries)
        self.names = {bytes(e.name_hash) for e in entries}
        self.people = {bytes(e.person_hash) for e in entries}
        self.levels = sorted({e.fields for e in entries})
        self.tried = 0  # texts of refused records hashed, up to MAX_TRIED
        self.exhausted = False  # MAX_TRIED reached: refused records are no longer searched

    def mark(self, checked: Checked) -> None:
        """Refuse (reason `erased`) the valid rows of `checked` that an erasure matches, and
        mark its refused rows that bear an erased name (`Checked.unquoted`)."""
        if self.key is None or not self.names:
            return  # no erasure: nothing to do, whatever the batch holds
        names = checked.table["name"].combine_chunks()
        distinct = pc.dictionary_encode(names, null_encoding="encode")
        key = self.key
        hashes = key.name_hashes(distinct.dictionary.to_pylist())
        erased = np.fromiter((h in self.names for h in hashes), dtype=bool, count=len(hashes))
        if not erased.any():
            return
        indices = distinct.indices.to_numpy(zero_copy_only=False)
        named = erased[indices]
        # A record refused for a fault of its own (a gender, an age the rules cannot read;
        # now, or later: a character its shard cannot store, an id twice) may be the erased
        # person's all the same, and its age or address cannot say: the name is enough to
        # keep its values out of the rejects file.
        checked.unquoted.update(np.flatnonzero(named).tolist())
        # And for a row refused later, on its shard (an id the file gives again): staged.
        checked.table = checked.table.append_column("unquoted", pa.array(named))
        # A delete marker is refused for nobody's name: it stores nothing (its text is never
        # written), and a system of record that erased the person too sends one for them.
        marker = as_mask(checked.table["deleting"])
        rows = np.flatnonzero(named & (checked.reason == 0) & ~marker)
        table = checked.table
        for row in rows.tolist():
            name, age, address = (table[c][row].as_py() for c in ("name", "age", "address"))
            for level in self.levels:
                message = person_message(level, name, age, address)
                if key.digest(message) in self.people:
                    checked.reason[row] = ERASED
                    break

    def bears_erased_name(self, raw: Any) -> bool:
        """Whether a record the reader refused (malformed, too large: `raw` as the rejects
        file would quote it) may hold an erased person's name. The reader read no field as
        the name (a CSV row's fields may be shifted, a JSON line may not parse), so each
        text it could be is tried (`_candidates`): at most MAX_TEXTS, a record with more
        is taken as bearing one, and so is every record once MAX_TRIED texts were tried
        (`exhausted`)."""
        if self.key is None or not self.names:
            return False
        texts: list[str | None] = []
        for text in _candidates(raw):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no stored name holds one
                continue
            texts.append(text)
            if len(texts) > MAX_TEXTS:  # too many to try, for a record refused anyway
                return True
        if not texts:  # nothing that could be a name (a line over max_line, kept as null)
            return False
        if self.exhausted:
            return True
        self.tried += len(texts)
        if self.tried > MAX_TRIED:
            self.exhausted = True
            return True
        return any(h in self.names for h in self.key.name_hashes(texts))


def _candidates(raw: Any) -> Iterator[str]:
    """The texts a refused record's name may be: each text it holds, and in each of those
    every JSON string (a line kept as read: no JSON, too large, a column named twice) and
    every piece between commas; two neighbouring pieces or fields joined by a comma too (a
    name such as "Clarke, Amelia", cut by a CSV row's unquoted comma)."""
    if isinstance(raw, str):
        yield raw
        for literal in _JSON_STRING.findall(raw):
            yield _unescaped(literal)
        pieces = raw.split(",")
        if len(pieces) > 1:
            yield from pieces
            yield from (f"{a},{b}" for a, b in itertools.pairwise(pieces))
    elif isinstance(raw, dict):
        for value in raw.values():
            yield from _candidates(value)
    elif isinstance(raw, list):
        for value in raw:
            yield from _candidates(value)
        fields = [value for value in raw if isinstance(value, str)]
        yield from (f"{a},{b}" for a, b in itertools.pairwise(fields))


def _unescaped(literal: str) -> str:
    """A JSON string's content as text (as it was, where its escapes are broken)."""
    try:
        text = json.loads(f'"{literal}"')
    except ValueError:
        return literal
    return text if isinstance(text, str) else literal


def read_erasures(shard_map: ShardMap, connect_timeout: int | None = None) -> Erased:
    """Every shard's erasure log, read at once: `Erased()` when none holds an erasure (the
    load has nothing to keep out, and asks for no key). A shard that cannot be reached is
    left out (the load fails it anyway). With erasures and no key, or erasures made with
    another key, the load cannot keep those persons out: ConfigError (exit 2)."""

    def read(shard: Shard) -> list[Entry]:
        if connect_timeout is not None and shard.embedded_database is None:
            # As the load's own connections wait (pipeline.shard_link), no longer.
            dsn = conninfo.make_conninfo(shard.dsn, connect_timeout=connect_timeout)
            shard = replace(shard, dsn=dsn)
        with db.connect(shard_map, shard, autocommit=True) as conn:
            try:
                return read_log(conn, shard)
            except psycopg.errors.UndefinedTable:
                return []  # a shard behind the schema: the load refuses it (run init)

    entries: dict[tuple[bytes, bytes], Entry] = {}
    for outcome in on_every_shard(shard_map.shards, read):
        if isinstance(outcome.error, ConfigError):
            raise outcome.error
        entries.update((e.key, e) for e in outcome.value or [])
    if not entries:
        return Erased()
    key = erasure_key(shard_map)
    if key is None:
        raise ConfigError(
            f"the erasure log holds {len(entries)} erasure(s) and no erasure key is set:"
            " a load cannot keep erased persons out; set PIPELINE_ERASURE_KEY or"
            " erasure_key_file: in the shard map (see the README, `pipeline erase`)"
        )
    others = sum(1 for e in entries.values() if bytes(e.key_id) != key.key_id)
    if others:
        raise ConfigError(
            f"the erasure log holds {others} erasure(s) made with another erasure key: a"
            " load cannot keep those persons out; set the key they were made with"
        )
    return Erased(key, entries.values())
