"""The rejects file's entries for the rows of a batch that the rules refused, and their
count on each shard (pipeline.load's stream, batch by batch)."""

from __future__ import annotations

from collections.abc import Container

import numpy as np

from pipeline.load_result import FileResult
from pipeline.reasons import RejectReason
from pipeline.rejects import Reject
from pipeline.routing import describe_reject
from pipeline.rules import Rules
from pipeline.source_file import OP
from pipeline.validate import NUL_MESSAGE, REASONS, Checked


def refusals(
    result: FileResult,
    checked: Checked,
    rows: np.ndarray,
    names: list[str],
    active: Container[str],
    rules: Rules,
) -> list[Reject]:
    """The rejects file's entries for the rows the rules refused. A row refused for its
    country or its text has no shard; the others count on their shard's ShardCounts, and
    those of a shard not taking this file are counted only, as its other rows are."""
    batch = checked.batch
    numbers = batch.records.to_numpy(zero_copy_only=False)
    lines = batch.lines.to_pylist()
    written: list[tuple[int, RejectReason, str | None]] = []
    for row in rows.tolist():
        reason = REASONS[checked.reason[row]]
        assert reason is not None
        if row in checked.country_messages or reason == RejectReason.INVALID_TEXT:
            written.append((row, reason, None))
            continue
        name = names[checked.shard[row]]
        counts = result.shards[name]
        counts.staged += 1
        if name in active:
            counts.rejected += 1
            written.append((row, reason, name))
    raws = batch.raws([row for row, _, _ in written])
    rejects = []
    for (row, reason, name), raw in zip(written, raws, strict=True):
        if name is None:
            message = checked.country_messages.get(row, NUL_MESSAGE)
        else:
            text = {f: batch.fields[f][row].as_py() for f in ("id", "age", "gender", OP)}
            message = describe_reject(reason, text, rules, name)
        rejects.append(
            Reject(result.path, int(numbers[row]), lines[row], reason, message, raw, name)
        )
    return rejects
