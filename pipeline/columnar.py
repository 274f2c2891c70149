"""Extract as columns: each shard's COPY CSV parsed into Arrow record batches, written as
Parquet, or gathered into the DataFrame that `to_dataframe` returns.

The shard's name is not sent by the server for these formats: every row of a shard's stream
has it, so it is added here as a column of one repeated value, and the server and the
parser have a column less to do (measured on 1M rows: parsing a seventh less).
pyarrow's C++ reader parses ARROW_BLOCK bytes at a time; the Parquet writer gathers batches
into row groups of ROW_GROUP rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pipeline.columns import RESIDENTS
from pipeline.copyout import Chunk
from pipeline.errors import PipelineError

# Bytes of CSV pyarrow's reader parses at a time, into one record batch (about 13,000 rows).
# 8 MiB parses faster, but a larger block costs memory in every one pyarrow holds.
ARROW_BLOCK = 1 << 20
# Rows of a Parquet row group: 32 of DuckDB's 2,048-row vectors, so that its readers split
# the work evenly (pandas, polars and Spark read any size). Far fewer groups than one a
# parsed block, so dictionaries and compression do better (measured on 1M rows: a file a
# quarter smaller than with a group a block); DuckDB's own 122,880 made the file no smaller
# (0.05%) and cost 20 MB more peak memory.
ROW_GROUP = 65_536
# Dictionaries pay off for the few distinct values of these columns only: tried on names and
# addresses, they are built and then dropped (a third of the writer's time on 1M rows).
DICTIONARY_COLUMNS = ("shard", "country", "gender")
# Min/max of these let readers skip row groups; of names and addresses they would cost more
# than they save.
STATISTICS_COLUMNS = ("shard", "id", "country", "gender", "age", "load_id", "loaded_at")


def arrow_types() -> dict[str, Any]:
    """Each output column's Arrow type: the shard's name, and the columns of residents."""
    import pyarrow as pa

    return {"shard": pa.string(), **{c.name: arrow_type(c.arrow) for c in RESIDENTS}}


def arrow_type(alias: str) -> Any:
    """The Arrow type of a pyarrow alias, or of `timestamp[us, tz=UTC]`, which has none."""
    import pyarrow as pa

    if alias == "timestamp[us, tz=UTC]":
        return pa.timestamp("us", tz="UTC")  # a snapshot's time zone (pipeline.db)
    return pa.type_for_alias(alias)


def arrow_schema(columns: tuple[str, ...]) -> Any:
    import pyarrow as pa

    types = arrow_types()
    return pa.schema([pa.field(c, types[c]) for c in columns])


def record_batches(
    streams: Iterable[tuple[str, Iterable[Chunk]]], columns: tuple[str, ...]
) -> Iterator[Any]:
    """Record batches of `columns` (the first being `shard`) from each shard's COPY CSV of
    the others, shard after shard; the stream of a shard may be cut anywhere."""
    import pyarrow as pa

    schema = arrow_schema(columns)
    for shard, chunks in streams:
        for batch in _parse(chunks, columns[1:]):
            name = _repeated(shard, batch.num_rows)
            yield pa.RecordBatch.from_arrays([name, *batch.columns], schema=schema)


def _repeated(text: str, count: int) -> Any:
    """A string array of `text`, `count` times, built from its buffers: pa.repeat would
    import pandas (0.7 s) and pyarrow.compute (0.25 s) on first use, for a scalar."""
    import numpy as np
    import pyarrow as pa

    value = text.encode()
    offsets = np.arange(0, (count + 1) * len(value), len(value), dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(value * count))


def _parse(chunks: Iterable[Chunk], columns: tuple[str, ...]) -> Iterator[Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    types = arrow_types()
    stream = iter(chunks)
    first = next((chunk for chunk in stream if chunk), None)
    if first is None:
        return  # no rows: pyarrow would call the stream an empty file, an error
    try:
        reader = pacsv.open_csv(
            _BlockReader(itertools.chain([first], stream)),
            read_options=pacsv.ReadOptions(column_names=list(columns), block_size=ARROW_BLOCK),
            # COPY writes NULL as an empty field and an empty string as "": keep them apart.
            convert_options=pacsv.ConvertOptions(
                column_types={c: types[c] for c in columns},
                # Only COPY's NULL (an unquoted empty field) is null: pyarrow's default list
                # would turn an address "N/A" or a name "Null" into NULL.
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
        )
        yield from reader
    except pa.ArrowException as exc:
        raise PipelineError(
            f"cannot convert the rows for Parquet: {' '.join(str(exc).split())}"
        ) from None


def write_parquet(path: Path, batches: Iterable[Any], columns: tuple[str, ...]) -> None:
    """The batches as one Parquet file, in row groups of ROW_GROUP rows (the last smaller);
    a file with the schema and no rows when there are none."""
    import pyarrow.parquet as pq

    schema = arrow_schema(columns)
    with pq.ParquetWriter(
        path,
        schema,
        use_dictionary=[c for c in DICTIONARY_COLUMNS if c in columns],
        write_statistics=[c for c in STATISTICS_COLUMNS if c in columns],
    ) as writer:
        for group in _row_groups(batches, schema):
            writer.write_table(group, row_group_size=ROW_GROUP)


def _row_groups(batches: Iterable[Any], schema: Any) -> Iterator[Any]:
    """The batches gathered into tables of ROW_GROUP rows, and the rest."""
    import pyarrow as pa

    pending: list[Any] = []
    rows = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= ROW_GROUP:
            table = pa.Table.from_batches(pending, schema)
            whole = rows - rows % ROW_GROUP
            yield table.slice(0, whole)
            rest = table.slice(whole)
            pending, rows = rest.to_batches(), rest.num_rows
    if rows:
        yield pa.Table.from_batches(pending, schema)


def to_frame(batches: Iterable[Any], columns: tuple[str, ...]) -> Any:
    """The batches as a pandas DataFrame with nullable dtypes (Int64 id, Int16 age, string)."""
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_batches(list(batches), schema=arrow_schema(columns))
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)


class _BlockReader:
    """A file-like view of an iterator of bytes blocks (about a megabyte each), for
    pyarrow's reader, which asks for ARROW_BLOCK bytes at a time."""

    def __init__(self, blocks: Iterator[Chunk]) -> None:
        self._blocks = blocks
        self._rest = b""
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        parts: list[Chunk] = [self._rest]
        have = len(self._rest)
        for block in self._blocks:
            parts.append(block)
            have += len(block)
            if 0 <= size <= have:
                break
        data = b"".join(parts)
        if 0 <= size < len(data):
            data, self._rest = data[:size], data[size:]
        else:
            self._rest = b""
        return data

    def close(self) -> None:
        self.closed = True
