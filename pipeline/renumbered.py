"""Keeping a load from writing over a resident under an id that `pipeline rebalance
--on-id-conflict renumber` took away from another one.

Such a move found an id of a moving resident (Karl, DE, id 4 on `default`) held on the
target by another (Linda, US, id 4 on `db_us`): it gave Karl a new id there and recorded
the old one (rebalance_renumbered). The source that calls Karl 4 still does: its next
record of id 4 and country DE, now routed to `db_us`, would update Linda with Karl's data
(or a delete marker delete her). Such a record is refused instead (reason `renumbered_id`,
counted on its shard), its message naming the new id; Linda's own records (id 4, US) load as
before. Each shard's renumbered ids are read with its file's other state at the start of
each file (sql/load/renumbered.sql): none, and nothing is done a batch.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.reasons import RejectReason
from pipeline.validate import REASONS, Checked, as_mask

RENUMBERED = REASONS.index(RejectReason.RENUMBERED_ID)  # its code in Checked.reason

# (old id, country) -> new id, of one shard
Taken = Mapping[tuple[int, str], int]


class Renumbered:
    """The ids a renumbering move took on each shard, by the shard's index in the map."""

    def __init__(self, by_shard: Mapping[int, tuple[str, Taken]]) -> None:
        self.by_shard = dict(by_shard)

    @classmethod
    def of(cls, names: list[str], taken: Mapping[str, Taken]) -> Renumbered:
        """From each shard's renumbered ids, by name (a shard not taking the file: none)."""
        return cls({i: (name, taken[name]) for i, name in enumerate(names) if taken.get(name)})

    def mark(self, checked: Checked) -> list[int]:
        """Refuse (reason `renumbered_id`) the valid rows of `checked`, delete markers too,
        that give a shard an id and country a renumbering move took there; returns the new
        ids of those residents (a snapshot must not delete them: the file gives them)."""
        kept: list[int] = []
        for index, (shard, taken) in self.by_shard.items():
            mine = (checked.reason == 0) & (checked.shard == index)
            if not mine.any():
                continue
            old = pa.array(sorted({old for old, _ in taken}), pa.int64())
            ids = checked.table["id"]
            rows = np.flatnonzero(mine & as_mask(pc.fill_null(pc.is_in(ids, value_set=old), False)))
            if not len(rows):
                continue
            chosen = pa.array(rows, pa.int64())
            found = zip(
                ids.take(chosen).to_pylist(),
                checked.table["country"].take(chosen).to_pylist(),
                strict=True,
            )
            for row, (given, country) in zip(rows.tolist(), found, strict=True):
                new = taken.get((given, country))
                if new is None:
                    continue  # the id's own resident (another country): loads as before
                checked.reason[row] = RENUMBERED
                checked.shard_messages[row] = (
                    f"id {given} of a {country} resident: `pipeline rebalance` moved that"
                    f" resident to shard {shard} as id {new}, since id {given} is another"
                    f" resident's there; give the id {new}"
                )
                kept.append(new)
        return kept
