"""The rejects file's entries for the rows of a batch that the rules refused, and their
count on each shard (pipeline.load's stream, batch by batch); and for the rows a shard
refused when the file ended (`shard_refusals`)."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.load_result import FileResult
from pipeline.reasons import RejectReason, unquoted_message
from pipeline.rejects import Reject
from pipeline.routing import describe_reject
from pipeline.rules import Rules
from pipeline.source_file import OP
from pipeline.validate import NUL_MESSAGE, REASONS, Checked

_QUOTED = ("id", "age", "gender", OP)  # the fields describe_reject quotes
REFUSED_CHUNK = 2_000  # entries written at a time, as the shard's cursor reads them


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
    written: list[tuple[int, RejectReason, str | None]] = []
    codes, shards = checked.reason[rows].tolist(), checked.shard[rows].tolist()
    for row, code, shard in zip(rows.tolist(), codes, shards, strict=True):
        reason = REASONS[code]
        assert reason is not None
        own = row in checked.shard_messages  # refused for what its shard cannot store
        if row in checked.country_messages or (reason == RejectReason.INVALID_TEXT and not own):
            written.append((row, reason, None))
            continue
        name = names[shard]
        counts = result.shards[name]
        counts.staged += 1
        if name in active:
            counts.rejected += 1
            written.append((row, reason, name))
        else:
            result.refused_elsewhere += 1
    chosen = [row for row, _, _ in written]
    raws = batch.raws(chosen)
    # What the entries quote, as Python values for the chosen rows at once (a scalar a
    # field a reject cost some 10 us a reject).
    taken = pa.array(chosen, pa.int64())
    numbers = batch.records.take(taken).to_pylist()
    lines = batch.lines.take(taken).to_pylist()
    quoted = {f: batch.fields[f].take(taken).to_pylist() for f in _QUOTED}
    rejects = []
    for i, ((row, reason, name), raw) in enumerate(zip(written, raws, strict=True)):
        if name is None:
            message = checked.country_messages.get(row, NUL_MESSAGE)
        else:
            text = {f: values[i] for f, values in quoted.items()}
            message = checked.shard_messages.get(row) or describe_reject(reason, text, rules, name)
        if row in checked.unquoted and reason != RejectReason.ERASED:
            # Maybe the erased person's: no value of theirs is quoted, the reason is.
            message = unquoted_message(reason)
        if reason == RejectReason.ERASED or row in checked.unquoted:
            raw = None  # their data is copied nowhere again: the record's number finds it
        rejects.append(Reject(result.path, numbers[i], lines[i], reason, message, raw, name))
    return rejects


def shard_refusals(
    path: str, shard: str, refused: Iterable[Any], rules: Rules
) -> Iterator[list[Reject]]:
    """The rejects file's entries for the rows `shard` refused as the file ended
    (pipeline.writer.SqlReject: an id the file gives twice), in lists of at most
    REFUSED_CHUNK: one write each, and no more of them in memory."""
    chunk: list[Reject] = []
    for r in refused:
        message = describe_reject(r.reason, r.raw, rules, shard)
        raw: dict[str, Any] | None = r.raw
        if r.unquoted:  # maybe the erased person's
            message, raw = unquoted_message(r.reason), None
        chunk.append(Reject(path, r.record, r.line, r.reason, message, raw, shard))
        if len(chunk) == REFUSED_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
