"""Extract as columns: each shard's packed chunks (pipeline.packed) as Arrow record batches,
written as Parquet, or gathered into the DataFrame that `to_dataframe` returns.

The shard's name is not sent by the server: every row of a shard's stream has it, so it is
added here as a column of one repeated value. The Parquet writer gathers batches into row
groups of ROW_GROUP rows. numpy and pyarrow are imported in a thread while the servers
start on the rows (preload_arrow).
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pipeline import packed, threads
from pipeline.columns import RESIDENTS
from pipeline.copyout import Chunk
from pipeline.errors import PipelineError

# Rows of a Parquet row group: 32 of DuckDB's 2,048-row vectors, so that its readers split
# the work evenly (pandas, polars and Spark read any size). Far fewer groups than one a
# parsed block, so dictionaries and compression do better (measured on 1M rows: a file a
# quarter smaller than with a group a block); DuckDB's own 122,880 made the file no smaller
# (0.05%) and cost 20 MB more peak memory.
ROW_GROUP = 65_536
# A group is cut at this many bytes of values too, so that memory holds a few of them
# whatever the rows hold: 65,536 rows of two 64 KB texts would be 8 GB. The bench's rows
# (some 100 bytes) never come near it.
ROW_GROUP_BYTES = 128 << 20
# Dictionaries pay off for the few distinct values of these columns only: tried on names and
# addresses, they are built and then dropped (a third of the writer's time on 1M rows).
DICTIONARY_COLUMNS = ("shard", "country", "gender")
# Min/max of these let readers skip row groups; of names and addresses they would cost more
# than they save.
STATISTICS_COLUMNS = ("shard", "id", "country", "gender", "age", "load_id", "loaded_at")
# Ids ascend within a shard: written as their differences (DELTA_BINARY_PACKED, which every
# Parquet reader of the last years reads) they take a few bits each, not eight bytes. On
# the bench's 1M rows: a file of 19.4 MB, not 22.9, in the same time.
DELTA_COLUMNS = ("id",)

_arrow_loading: threading.Thread | None = None
_arrow_lock = threading.Lock()  # every shard's reader may ask for the imports


def preload_arrow(*, pandas: bool = False) -> None:
    """Import numpy and pyarrow (and pandas) in a thread while the servers start on the
    rows: 0.25 s of imports (0.65 s with pandas) that would otherwise come before the first
    query. `record_batches` keeps reading meanwhile; `_arrow` waits for the thread.

    Called once a shard's query is out (shard_streams' `on_sent`), not before: an import of
    a C extension holds Python's global lock throughout, and the readers, left waiting for
    it, sent their queries 0.1 s later (measured on two shards)."""
    global _arrow_loading
    with _arrow_lock:
        if _arrow_loading is None:
            # Not a daemon (said outright: a thread takes its starter's flag, and a
            # read-ahead's reader is one): an extract that fails at once still waits for it,
            # rather than end the interpreter in the middle of an import.
            _arrow_loading = threads.start(_import_arrow, pandas, name="imports", daemon=False)


def _import_arrow(pandas: bool) -> None:
    import numpy  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    packed.split_kernel()  # pipeline.packed cuts text with it

    if pandas:
        import pandas as _  # noqa: F401


def _arrow_loaded() -> bool:
    return _arrow_loading is None or not _arrow_loading.is_alive()


def _arrow() -> None:
    """Numpy and pyarrow imported: by the thread preload_arrow started, if it did."""
    if _arrow_loading is not None:
        _arrow_loading.join()


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
    """Record batches of `columns` (the first being `shard`) from each shard's packed COPY
    stream of the others (sql/extract/columns.sql), shard after shard, a batch a chunk;
    the stream of a shard may be cut anywhere. Chunks that come while numpy and pyarrow
    are still being imported (preload_arrow) are held, not left in the server's socket."""
    schema = None
    held: list[tuple[str, list[memoryview]]] = []
    last_ids: dict[str, int] = {}

    def unpacked(shard: str, fields: list[memoryview]) -> Any:
        packed.check_order(shard, fields[1 + columns[1:].index("id")], last_ids)
        return _unpack(shard, fields, schema)

    for shard, chunks in streams:
        for fields in packed.tuples(chunks):
            if schema is None:
                held.append((shard, fields))
                if not _arrow_loaded():
                    continue
                schema = arrow_schema(columns)
                for item in held:
                    yield unpacked(*item)
                held = []
            else:
                yield unpacked(shard, fields)
    if held:
        _arrow()
        schema = arrow_schema(columns)
        for item in held:
            yield unpacked(*item)


def _unpack(shard: str, fields: list[memoryview], schema: Any) -> Any:
    """One packed chunk as a record batch of `schema`: the shard's name, then the columns."""
    import pyarrow as pa

    if not fields or len(fields[0]) != 8:
        raise PipelineError(f"shard {shard}: the server sent a chunk without its count")
    (rows,) = struct.unpack(">q", fields[0])
    try:
        columns = packed.unpack_all(fields[1:], schema.names[1:], schema.types[1:], rows)
    except PipelineError as exc:
        raise PipelineError(f"shard {shard}: {exc}") from None
    return pa.RecordBatch.from_arrays([_repeated(shard, rows), *columns], schema=schema)


def _repeated(text: str, count: int) -> Any:
    """A string array of `text`, `count` times, built from its buffers: pa.repeat would
    import pandas (0.7 s) on first use, for a scalar."""
    import numpy as np
    import pyarrow as pa

    value = text.encode()
    offsets = np.arange(0, (count + 1) * len(value), len(value), dtype=np.int32)
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(value * count))


def write_parquet(path: Path, batches: Iterable[Any], columns: tuple[str, ...]) -> int:
    """The batches as one Parquet file, in row groups of ROW_GROUP rows (the last smaller);
    a file with the schema and no rows when there are none. Returns the rows written.
    The first batch is asked for before the writer is made: the servers start first."""
    batches = iter(batches)
    first = next(batches, None)
    _arrow()
    import pyarrow.parquet as pq

    schema = arrow_schema(columns)
    if first is not None:
        batches = itertools.chain([first], batches)
    rows = 0
    writer = pq.ParquetWriter(
        path,
        schema,
        use_dictionary=[c for c in DICTIONARY_COLUMNS if c in columns],
        write_statistics=[c for c in STATISTICS_COLUMNS if c in columns],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in DELTA_COLUMNS if c in columns},
    )
    # A row group is encoded in a thread of its own while the next is unpacked (both let go
    # of Python's lock): once the first shard is done, the later ones are unpacked and
    # encoded on two cores, not one. One group at a time: memory stays at two groups.
    encoder = threads.pool(1, "parquet")
    encoding: Future[None] | None = None
    try:
        encoder.submit(int).result()  # its thread started and known before any group
        for group in _row_groups(batches, schema):
            if encoding is not None:
                encoding.result()
            encoding = encoder.submit(writer.write_table, group, row_group_size=ROW_GROUP)
            rows += group.num_rows
        if encoding is not None:
            encoding.result()
    except BaseException:
        # The writer closes only once no group is being encoded into it; what the close
        # of an unfinished file says (a row group half written) is not the error: the
        # one on its way is (an interrupt: exit 1, not a write error's 2).
        try:
            if encoding is not None:
                threads.settle([encoding])
        finally:
            with contextlib.suppress(Exception):
                writer.close()
        raise
    finally:
        encoder.shutdown(wait=False)
    writer.close()
    return rows


def _row_groups(batches: Iterable[Any], schema: Any) -> Iterator[Any]:
    """The batches gathered into tables of ROW_GROUP rows, and the rest; sooner, and
    smaller, where the batches gathered hold ROW_GROUP_BYTES."""
    import pyarrow as pa

    pending: list[Any] = []
    rows = size = 0
    for batch in batches:
        pending.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if size >= ROW_GROUP_BYTES:
            yield pa.Table.from_batches(pending, schema)
            pending, rows, size = [], 0, 0
        elif rows >= ROW_GROUP:
            table = pa.Table.from_batches(pending, schema)
            whole = rows - rows % ROW_GROUP
            yield table.slice(0, whole)
            rest = table.slice(whole)
            pending, rows, size = rest.to_batches(), rest.num_rows, rest.nbytes
    if rows:
        yield pa.Table.from_batches(pending, schema)


def to_frame(batches: Iterable[Any], columns: tuple[str, ...]) -> Any:
    """The batches as a pandas DataFrame with nullable dtypes (Int64 id, Int16 age, string)."""
    # The batches first: the shards' queries go out, then pandas loads (preload_arrow) while
    # the rows come; imported before, it held the first query back by its 0.4 s.
    gathered = list(batches)
    _arrow()
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_batches(gathered, schema=arrow_schema(columns))
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)
