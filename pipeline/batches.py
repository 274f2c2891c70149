"""A source's records as batches of columns (pipeline.batch.Batch), the form the rules
and the writers take: from Python's readers (JSON, NDJSON, CSV the fast reader does not
take) record by record, or from pipeline.source_arrow block by block.

A batch holds at most BATCH_RECORDS records and about BATCH_CHARS characters of fields, so
its memory stays bounded whatever the records hold (each is bounded by the rules' limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pipeline.batch import BATCH_RECORDS, Batch
from pipeline.source_file import id_texts
from pipeline.sources import READ, Record, Source

BATCH_CHARS = 8 << 20


def batches(source: Source) -> Iterator[Batch]:
    """The source's records, BATCH_RECORDS (or BATCH_CHARS) at a time, in file order; the
    records its reader refused ride along in `Batch.early`."""
    if source.bulk:
        yield from source.bulk_batches()
        return
    kept: list[Record] = []
    rows: list[tuple[str | None, ...]] = []
    early: list[tuple[Any, ...]] = []
    early_ids: list[str] = []
    chars = 0
    for record in source.records():
        values = record.values
        if values is None:
            problem = record.problem or "malformed record"
            raw = source.raw_of(record)
            early.append((record.number, record.line, record.reason, problem, raw))
            early_ids.extend(id_texts(record.ids))
            chars += 64
        else:
            kept.append(record)
            rows.append(values)
            chars += sum(map(len, filter(None, values)))  # in C: this loop runs per record
        if len(kept) + len(early) >= BATCH_RECORDS or chars >= BATCH_CHARS:
            yield _batch(source, kept, rows, early, early_ids)
            kept, rows, early, early_ids, chars = [], [], [], [], 0
    if kept or early:
        yield _batch(source, kept, rows, early, early_ids)


def _batch(
    source: Source,
    records: list[Record],
    rows: list[tuple[str | None, ...]],
    early: list[tuple[Any, ...]],
    early_ids: list[str],
) -> Batch:
    def raws(chosen: list[int]) -> list[Any]:
        return [source.raw_of(records[i]) for i in chosen]

    columns = list(zip(*rows, strict=True)) if rows else [()] * len(READ)
    return Batch(
        records=pa.array([r.number for r in records], pa.int64()),
        lines=pa.array([r.line for r in records], pa.int64()),
        fields={name: pa.array(c, pa.string()) for name, c in zip(READ, columns, strict=True)},
        raws=raws,
        early=early,
        early_ids=early_ids,
    )
