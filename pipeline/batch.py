"""A batch of records of one file, as text columns: what every reader hands to the rules
(pipeline.validate) and what they judge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.reasons import RejectReason

# Records in a batch at most, from any reader: memory stays bounded by a batch whatever the
# file holds (a million one-character records in a few MB), and progress comes batch by
# batch (pipeline.dispatch.PROGRESS_EVERY).
BATCH_RECORDS = 10_000


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

    def __len__(self) -> int:
        return len(self.records)
