"""A source's records as batches of columns (pipeline.batch.Batch), the form the rules
and the writers take: from Python's readers (JSON, NDJSON, CSV the fast reader does not
take) record by record, or from pipeline.source_arrow block by block.

A batch holds at most BATCH_RECORDS records, about BATCH_CHARS characters of fields and
raw records of about RAW_BYTES, so its memory stays bounded whatever the records hold (each
is bounded by the rules' limits).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from pipeline.batch import BATCH_RECORDS, Batch
from pipeline.source_file import id_texts
from pipeline.sources import READ, Record, Source

BATCH_CHARS = 8 << 20
# About how much memory the raw records a batch keeps (for the rejects file) may take: a
# record's raw is all it holds, the six fields and every other (a CSV row of thousands of
# columns, a JSON object with a list of 50,000 strings: 15,000 of those held 3 GB). A load
# takes some three times as much at its peak (the batch read, the one written, their
# rejects): the hostile corpus's three such cases 22-30 MB over a one-row load here, 46-50
# with 16 MB (one over its 50 in a fresh virtualenv), 150 with 64. Valid records of the six
# fields and a few more (a CSV row, a JSON text: pipeline.source_json keeps a valid record's
# text) stay BATCH_RECORDS a batch.
RAW_BYTES = 8 << 20
# Bytes a character of JSON text may take decoded, at most: `[{}]` repeated, a 64-byte dict
# and an 8-byte pointer (and the list's spare room) for every three or four characters,
# 32.0 measured. A record's fields, keys and punctuation (some JSON_RECORD characters) are
# counted as text.
JSON_BYTES_A_CHAR = 32
JSON_RECORD = 96
# Bytes a Python object takes besides its characters, about: a str of a few ASCII
# characters is 49-60, and a list's pointer to it 8.
OBJECT_BYTES = 64


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
    chars = raw_bytes = 0
    for record in source.records():
        values = record.values
        if values is None:
            problem = record.problem or "malformed record"
            raw = source.raw_of(record)
            early.append((record.number, record.line, record.reason, problem, raw))
            early_ids.extend(id_texts(record.ids))
            chars += 64
            # Its id fields and message too (a shifted row's are up to 33 of its fields).
            raw_bytes += _raw_bytes(record.size, raw, 0) + len(problem)
            raw_bytes += OBJECT_BYTES * (len(record.ids) + 4)
        else:
            kept.append(record)
            rows.append(values)
            texts = sum(map(len, filter(None, values)))  # in C: this loop runs per record
            chars += texts
            raw_bytes += _raw_bytes(record.size, record.raw, texts)
        if (
            len(kept) + len(early) >= BATCH_RECORDS
            or chars >= BATCH_CHARS
            or raw_bytes >= RAW_BYTES
        ):
            yield _batch(source, kept, rows, early, early_ids)
            kept, rows, early, early_ids, chars, raw_bytes = [], [], [], [], 0, 0
    if kept or early:
        yield _batch(source, kept, rows, early, early_ids)


def _raw_bytes(size: int, raw: Any, texts: int) -> int:
    """About how much memory a record's raw takes: a decoded JSON text of `size` characters,
    those past its fields' `texts` and JSON_RECORD at JSON_BYTES_A_CHAR each; a CSV row (a
    list of its fields) or a text, its characters and an object's bytes each."""
    if size:
        return texts + OBJECT_BYTES * 16 + max(0, size - texts - JSON_RECORD) * JSON_BYTES_A_CHAR
    if isinstance(raw, list):
        return sum(map(len, raw)) + OBJECT_BYTES * (len(raw) + 1)
    if isinstance(raw, str):
        return len(raw) + OBJECT_BYTES
    return OBJECT_BYTES


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
