"""One file's records on their way from its reader to the shards: batch by batch, the rules
judge them (pipeline.validate), the refused ones go to the rejects file in file order, and
the valid ones to the writer of their shard (pipeline.writer). A batch is written once the
next one is read and checked: meanwhile each shard, on its second connection, looks up
which of the batch's ids it holds (the servers idled while the client read).

A shard whose direct COPY meets an id twice raises `Restart` out of here, after the batch
has gone to every shard: pipeline.load reads the file again from its start.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.batches import batches
from pipeline.config import ShardMap
from pipeline.encodable import ShardEncodings
from pipeline.erased import Erased
from pipeline.errors import ShardError
from pipeline.interrupt import Interrupt, Interrupted
from pipeline.load_result import FileResult, Progress
from pipeline.reasons import RejectReason, unquoted_message
from pipeline.refusals import refusals
from pipeline.rejects import Reject, RejectWriter
from pipeline.renumbered import Renumbered, Taken
from pipeline.routing import Router
from pipeline.rules import Rules
from pipeline.shard_rows import Conflict
from pipeline.sources import Source
from pipeline.validate import Validator, given_ids
from pipeline.writer import ShardWriter

PROGRESS_EVERY = 10_000  # records between progress callbacks: cheap enough to not show up


class Restart(Exception):
    """The file must be read again from its start: `shards` take it through staging."""

    def __init__(self, shards: list[str]) -> None:
        super().__init__(", ".join(shards))
        self.shards = shards


@dataclass
class Dispatch:
    """What sending a file's records needs from the run (pipeline.load)."""

    shard_map: ShardMap
    rules: Rules
    rejects: RejectWriter
    interrupt: Interrupt
    progress: Progress | None
    shard_failed: Callable[[FileResult, str, ShardError], None]
    erased: Erased  # the persons erasures keep out (pipeline.erased)
    # The ids of the current file's refused records, for a snapshot (which must not delete them).
    refused_ids: array[int] = field(default_factory=lambda: array("q"))

    def send(
        self,
        source: Source,
        result: FileResult,
        active: dict[str, ShardWriter],
        encodings: Mapping[str, str | None],
        renumbered: Mapping[str, Taken] | None = None,
    ) -> int:
        """Judge every record and send the valid ones to their shard; returns how many were
        rejected on the way without a shard (refused by the reader, for their country or
        their text). A shard's own refusals count on its ShardCounts. `encodings`: each
        shard's database encoding, where known (those not taking the file too: their rows
        are counted as they would have gone). `renumbered`: the ids renumbering moves took
        on each shard taking the file (pipeline.renumbered)."""
        rejected = 0
        names = [shard.name for shard in self.shard_map.shards]
        validator = Validator(self.rules, Router(self.shard_map, self.rules), names)
        narrow = ShardEncodings.of(names, encodings)  # text a shard's encoding lacks
        taken = Renumbered.of(names, renumbered or {})  # ids another resident now holds
        self.refused_ids = array("q")
        snapshot = result.source is not None and result.source.snapshot
        waiting: tuple[pa.Table, list[tuple[str, np.ndarray]]] | None = None
        for batch in batches(source):
            if self.interrupt.reason is not None:
                raise Interrupted(rejected)
            before = result.rows_read
            result.rows_read += len(batch) + len(batch.early)
            if self.progress and before // PROGRESS_EVERY != result.rows_read // PROGRESS_EVERY:
                self.progress(result, result.rows_read, False)
            checked = validator.check(batch)
            self.erased.mark(checked)
            narrow.mark(checked)
            if taken.by_shard and (kept := taken.mark(checked)) and snapshot:
                self.refused_ids.extend(kept)  # the file gives them, under their old ids
            rejects = [self._early_reject(result, *entry) for entry in batch.early]
            rejected += len(batch.early)
            if snapshot and batch.early_ids:  # refused by the reader: keep whom they name
                self.refused_ids.extend(given_ids(batch.early_ids))
            refused = checked.refused()
            if len(refused):
                if snapshot:
                    ids = checked.table.column("id").take(pa.array(refused)).drop_null()
                    # One growing block: a small array kept from every batch pinned the
                    # allocator's heap under each batch's memory (10M rows: 20 MB more).
                    self.refused_ids.extend(ids.to_numpy())
                shard_rejects = refusals(result, checked, refused, names, active, self.rules)
                rejected += sum(1 for r in shard_rejects if r.shard is None)
                rejects.extend(shard_rejects)
                rejects.sort(key=lambda r: r.record or 0)
            sends = []
            for index, name in enumerate(names):
                mask = checked.valid_for(index)
                if mask is None:
                    continue
                result.shards[name].staged += int(mask.sum())
                writer = active.get(name)
                if writer is None:
                    continue  # the shard already holds this file, or has failed: counted
                writer.ask(checked.table, mask)
                sends.append((name, mask))
            # After the shards' counts: if the rejects file fails, the batch's rows are
            # counted pending on their shards (pipeline.load).
            self.rejects.write_all(rejects)
            # A batch is written once the next one is read and checked: meanwhile, each
            # shard looks up which of its rows it holds (ShardWriter.ask), both at once.
            if waiting is not None:
                self._write(result, active, *waiting)
            waiting = (checked.table, sends)
            # Let go of this batch's records before the next is read: the loop's names
            # would keep them (a JSON batch's decoded values and texts) while it is built.
            del batch, checked, rejects
        if waiting is not None:
            self._write(result, active, *waiting)
        return rejected

    def _write(
        self,
        result: FileResult,
        active: dict[str, ShardWriter],
        table: pa.Table,
        sends: list[tuple[str, np.ndarray]],
    ) -> None:
        """Write a batch's rows to each of their shards (`sends`: which rows each takes)."""
        conflicts = []
        for name, mask in sends:
            writer = active.get(name)
            if writer is None:
                continue  # failed since the batch was read: its rows are counted pending
            try:
                writer.write(table, mask)
            except Conflict:
                conflicts.append(name)
            except ShardError as exc:
                self.shard_failed(result, name, exc)
                del active[name]
        if conflicts:
            raise Restart(conflicts)

    def _early_reject(
        self, result: FileResult, record: int, line: int | None, reason: RejectReason,
        message: str, raw: Any,
    ) -> Reject:  # fmt: skip
        """The reject of a record the reader refused; one that bears an erased person's
        name quotes none of its values."""
        if self.erased.bears_erased_name(raw):
            message, raw = unquoted_message(reason, not self.erased.exhausted), None
        return Reject(result.path, record, line, reason, message, raw)

    def refused_id_array(self) -> np.ndarray:
        """The ids of the records the rules refused in the file (int64)."""
        return np.frombuffer(self.refused_ids, dtype=np.int64)
