"""A batch of records of one file, as text columns: what every reader hands to the rules
(pipeline.validate) and what they judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.reasons import RejectReason

# Records in a batch at most, from any reader: memory stays bounded by a batch whatever the
# file holds (a million one-character records in a few MB), and progress comes batch by
# batch (pipeline.dispatch.PROGRESS_EVERY). Each batch costs some 9 ms of CPU whatever its
# size (a probe a shard, some 160 compute calls, the hand-offs between threads):
# 15,000 against 10,000, 1M rows, 6 interleaved rounds (and the CSV parsed in one piece,
# pipeline.source_arrow): into empty shards 2.86 -> 2.64 s, --force 2.64 -> 2.27 s, 10%
# changed 3.24 -> 3.02 s, NDJSON 3.53 -> 3.24 s; peak 137 -> 140 MB. 20,000 took the peak
# past 150 MB at 10M for 0.3 s more.
BATCH_RECORDS = 15_000


@dataclass
class Batch:
    """Records of one file in a row: their numbers, lines and six fields as text columns
    (None: not there). `raws(rows)` gives those records as the rejects file shows them."""

    records: pa.Array  # int64
    lines: pa.Array  # int64, null where the format has no lines
    fields: dict[str, pa.Array]  # each of source_file.READ (FIELDS and the op column): string
    raws: Any  # Callable[[list[int]], list[Any]]
    # No field holds a NUL character (the reader made sure): the rules need not look.
    nul_free: bool = False
    # Records the reader itself refused, between these: (record, line, reason, message, raw).
    early: list[tuple[int, int | None, RejectReason, str, Any]] = field(default_factory=list)
    # The id fields those records give (pipeline.source_file.Record.ids), for a snapshot.
    early_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)
