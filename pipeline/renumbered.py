"""Keeping a load from writing over a resident under an id that `pipeline rebalance
--on-id-conflict renumber` took away from another one.

Such a move found an id of a moving resident (Karl, DE, id 4 on `default`) held on the
target by another (Linda, US, id 4 on `db_us`): it gave Karl a new id there and recorded
the old one (rebalance_renumbered). The source that calls Karl 4 still does: its next
record of id 4 and country DE, now routed to `db_us`, would update Linda with Karl's data
(or a delete marker delete her). Such a record is refused instead (reason `renumbered_id`,
counted on its shard), its message naming the new id; Linda's own records (id 4, US) load as
before. Were Linda of Karl's country, a record of (4, DE) could mean either: it is refused
too, its message saying how to tell (a load naming another source than Karl's is taken for
Linda's). Each shard's renumbered ids are read with its file's other state at the start of
each file (sql/load/renumbered.sql): none, and nothing is done a batch.

A limit: a later move of Karl's country away from `db_us` takes his line with it, and the
new shard does not get it (the protection ends there; pipeline.move).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.reasons import RejectReason
from pipeline.validate import REASONS, Checked, as_mask

RENUMBERED = REASONS.index(RejectReason.RENUMBERED_ID)  # its code in Checked.reason

# (old id, country) -> (new id, whether the resident who holds the old id there now is of
# that country too), of one shard
Taken = Mapping[tuple[int, str], tuple[int, bool]]


class Renumbered:
    """The ids renumbering moves took on each shard, by the shard's index in the map: the
    shard's name, its taken ids, and their old ids as an array (for pyarrow's is_in)."""

    def __init__(self, by_shard: Mapping[int, tuple[str, Taken, pa.Array]]) -> None:
        self.by_shard = dict(by_shard)

    @classmethod
    def of(cls, names: list[str], taken: Mapping[str, Taken]) -> Renumbered:
        """From each shard's renumbered ids, by name (a shard not taking the file: none)."""
        return cls(
            {
                i: (
                    name,
                    taken[name],
                    pa.array(sorted({old for old, _ in taken[name]}), pa.int64()),
                )
                for i, name in enumerate(names)
                if taken.get(name)
            }
        )

    def mark(self, checked: Checked) -> list[int]:
        """Refuse (reason `renumbered_id`) the valid rows of `checked`, delete markers too,
        that give a shard an id and country a renumbering move took there; returns the new
        ids of those residents (a snapshot must not delete them: the file gives them)."""
        kept: list[int] = []
        for index, (shard, taken, old) in self.by_shard.items():
            mine = (checked.reason == 0) & (checked.shard == index)
            if not mine.any():
                continue
            ids = checked.table["id"]
            rows = np.flatnonzero(mine & as_mask(pc.fill_null(pc.is_in(ids, value_set=old), False)))
            if not len(rows):
                continue
            chosen = pa.array(rows, pa.int64())
            given = ids.take(chosen).to_pylist()
            countries = checked.table["country"].take(chosen).to_pylist()
            for row, id_, country in zip(rows.tolist(), given, countries, strict=True):
                found = taken.get((id_, country))
                if found is None:
                    continue  # the id's own resident (another country): loads as before
                checked.reason[row] = RENUMBERED
                checked.shard_messages[row] = _message(id_, country, shard, *found)
                kept.append(found[0])
        return kept


def _message(id_: int, country: str, shard: str, new: int, alike: bool) -> str:
    """What the rejects file says: give the new id, or, where the resident who holds the
    old id is of the same country (the record may mean either), how to say which."""
    moved = f"`pipeline rebalance` moved {'a' if alike else 'that'} {country} resident to shard"
    if not alike:
        return (
            f"id {id_} of a {country} resident: {moved} {shard} as id {new}, since id {id_} is"
            f" another resident's there; give the id {new}"
        )
    return (
        f"id {id_} of a {country} resident is two residents' on shard {shard}: {moved} {shard}"
        f" as id {new}, since another {country} resident held id {id_} there. For the moved"
        f" one, give the id {new}; for the other, load under a source other than the moved"
        " one's (--source), or delete the line from rebalance_renumbered"
    )
