"""Extract as columns: each shard's rows packed into columns by the server, unpacked into
Arrow record batches, written as Parquet, or gathered into the DataFrame that
`to_dataframe` returns.

The server sends a COPY row (binary format) for every CHUNK_ROWS residents, holding each
column's values packed into one value (sql/extract/columns.sql and packed_*.sql say how);
here a few numpy calls a column turn that into an Arrow array, with no parsing of fields.
Measured on 600k rows: 0.2 s of client CPU, against 0.6 s to read the same rows as CSV
(COPY's rows one by one in Python, then pyarrow's CSV parser), for 0.05 s more of server
CPU. The shard's name is not sent: every row of a shard's stream has it, so it is added
here as a column of one repeated value. The Parquet writer gathers batches into row groups
of ROW_GROUP rows.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from psycopg import sql

from pipeline.columns import BY_NAME, RESIDENTS
from pipeline.copyout import Chunk
from pipeline.errors import PipelineError
from pipeline.queries import EXTRACT

# Residents the server packs into one COPY row: about 1.4 MB of it for the bench's rows.
# The server builds a chunk in memory, and the client holds one or two as they arrive.
CHUNK_ROWS = 16_384
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

# How the server packs each kind of column (sql/extract/packed_*.sql).
FIXED_SEND = {"bigint": "int8send", "timestamp with time zone": "timestamptz_send"}
NULL_SMALLINT = 65_536  # no smallint is this
NULL_TEXT = 0xFF  # a NULL text value is this one byte, which UTF-8 never holds
# PostgreSQL counts timestamps in microseconds from 2000-01-01, Arrow from 1970-01-01.
POSTGRES_EPOCH_US = 946_684_800_000_000
# Binary COPY: the signature that opens the stream, a tuple's field count at its end.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
END = -1

_arrow_loading: threading.Thread | None = None


def preload_arrow(*, pandas: bool = False) -> None:
    """Import numpy and pyarrow (and pandas) in a thread while the servers start on the
    rows: 0.2 s of imports (0.6 s with pandas) that would otherwise come before the first
    query. `record_batches` keeps reading meanwhile; `_arrow` waits for the thread."""
    global _arrow_loading
    if _arrow_loading is None:
        _arrow_loading = threading.Thread(target=_import_arrow, args=(pandas,), daemon=True)
        _arrow_loading.start()


def _import_arrow(pandas: bool) -> None:
    import numpy  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    if pandas:
        import pandas as _  # noqa: F401


def _arrow_loaded() -> bool:
    return _arrow_loading is None or not _arrow_loading.is_alive()


def _arrow() -> None:
    """Numpy and pyarrow imported: by the thread preload_arrow started, if it did."""
    if _arrow_loading is not None:
        _arrow_loading.join()


def packed_columns(names: Iterable[str]) -> sql.Composable:
    """The select list of sql/extract/columns.sql that packs `names`, in that order."""
    return sql.SQL(", ").join(_packed(BY_NAME[name].pg_type, name) for name in names)


def _packed(pg_type: str, name: str) -> sql.Composable:
    column = sql.Identifier(name)
    if pg_type == "smallint":
        return EXTRACT.packed_smallint.format(column=column)
    if pg_type in FIXED_SEND:
        if BY_NAME[name].nullable:  # NULLs would leave holes string_agg does not show
            raise ValueError(f"{name}: a nullable {pg_type} column cannot be packed")
        return EXTRACT.packed_fixed.format(send=sql.SQL(FIXED_SEND[pg_type]), column=column)
    if pg_type == "character":
        value = sql.SQL("bpcharsend({})").format(column)
    else:  # text, and the text form of the others (uuid)
        value = sql.SQL("textsend({}::text)").format(column)
    return EXTRACT.packed_text.format(value=value, column=column)


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
        _check_order(shard, fields[1 + columns[1:].index("id")], last_ids)
        return _unpack(shard, fields, schema)

    for shard, chunks in streams:
        for fields in _tuples(chunks):
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

    if len(fields) != len(schema):  # the count, then a field a column but the shard's name
        raise PipelineError(f"shard {shard}: the server sent {len(fields)} fields a chunk")
    (rows,) = struct.unpack(">q", fields[0])
    arrays = [_repeated(shard, rows)]
    for field, value in zip(list(schema)[1:], fields[1:], strict=True):
        array = _column(value, field.type)
        if len(array) != rows:
            raise PipelineError(
                f"shard {shard}: {field.name} has {len(array)} values for {rows} rows"
            )
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _column(value: memoryview, kind: Any) -> Any:
    """A packed column (sql/extract/packed_*.sql) as an Arrow array of type `kind`."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_string(kind):
        return _texts(value)
    # Arrays are made from their buffers: pa.array() would import pandas (0.45 s) to ask
    # whether a numpy array is a pandas one.
    if pa.types.is_int16(kind):
        wide = np.frombuffer(value, ">i4")
        nulls = wide == NULL_SMALLINT
        return _from_buffers(kind, wide.astype(np.int16), nulls)
    values = np.frombuffer(value, ">i8").astype(np.int64)
    if pa.types.is_int64(kind):
        return _from_buffers(kind, values)
    # A timestamp: infinity, or a time past what Arrow's count from 1970 holds, has no
    # place in the file (the CSV path's parser refused them too).
    if len(values) and (
        values.min() == np.iinfo(np.int64).min
        or values.max() > np.iinfo(np.int64).max - POSTGRES_EPOCH_US
    ):
        raise PipelineError("cannot convert the rows for Parquet: a timestamp is infinite")
    return _from_buffers(kind, values + POSTGRES_EPOCH_US)


def _from_buffers(kind: Any, values: Any, nulls: Any = None) -> Any:
    """An Arrow array of `kind` holding a numpy array's values, NULL where `nulls` is set."""
    import numpy as np
    import pyarrow as pa

    null_count = 0 if nulls is None else int(np.count_nonzero(nulls))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if null_count else None
    return pa.Array.from_buffers(
        kind, len(values), [validity, pa.py_buffer(values)], null_count=null_count
    )


def _texts(value: memoryview) -> Any:
    """A packed text column (each value after a zero byte but the first, NULL as the byte
    FF) as an Arrow string array: the zero bytes taken out, where they were are the offsets.
    A NULL keeps its byte FF in the data, which Arrow allows in a null slot."""
    import numpy as np
    import pyarrow as pa

    data = np.frombuffer(value, np.uint8)
    separators = data == 0
    ends = np.flatnonzero(separators)  # the end of every value but the last
    count = len(ends) + 1
    offsets = np.empty(count + 1, np.int32)  # a packed chunk is far below 2 GiB
    offsets[0] = 0
    offsets[1:count] = ends - np.arange(count - 1)  # each one less a separator before it
    offsets[count] = len(data) - (count - 1)
    joined = data[~separators]
    nulls = np.diff(offsets) == 1
    if nulls.any():
        nulls &= joined[np.minimum(offsets[:-1], max(len(joined) - 1, 0))] == NULL_TEXT
    null_count = int(np.count_nonzero(nulls))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if null_count else None
    array = pa.StringArray.from_buffers(
        count, pa.py_buffer(offsets), pa.py_buffer(joined), validity, null_count
    )
    try:
        array.validate(full=True)  # UTF-8: a SQL_ASCII database may send anything
    except pa.ArrowInvalid as exc:
        raise PipelineError(f"cannot convert the rows for Parquet: {exc}") from None
    return array


def _check_order(shard: str, packed_ids: memoryview, last_ids: dict[str, int]) -> None:
    """Check that a chunk's ids ascend from the shard's last one (`last_ids`, updated): the
    query does not sort its chunks (sql/extract/columns.sql), so it is checked here."""
    import numpy as np

    ids = np.frombuffer(packed_ids, ">i8")
    if not len(ids):
        return
    last = last_ids.get(shard)
    if (last is not None and ids[0] <= last) or np.any(ids[1:] <= ids[:-1]):
        raise PipelineError(f"shard {shard}: the server sent rows out of id order")
    last_ids[shard] = int(ids[-1])


def _tuples(chunks: Iterable[Chunk]) -> Iterator[list[memoryview]]:
    """The tuples of a binary COPY stream cut anywhere, each as views of its fields' bytes
    (a chunk is never changed once handed on: pipeline.copyout). Only a tuple cut in two
    is copied. The stream is read to its end, past the trailer: the shard counts as read
    then."""
    rest = b""  # the start of a tuple that the chunk before ended inside
    header = ended = False
    for chunk in chunks:
        if ended:
            if chunk:
                raise PipelineError("the server sent rows after the end of its COPY")
            continue
        data = rest + chunk if rest else chunk
        start = 0
        if not header:
            if len(data) < len(SIGNATURE) + 8:
                rest = bytes(data)
                continue
            if not data.startswith(SIGNATURE):
                raise PipelineError("the server's rows are not a binary COPY stream")
            (extension,) = struct.unpack_from(">i", data, len(SIGNATURE) + 4)
            start = len(SIGNATURE) + 8 + extension
            header = True
        view = memoryview(data)
        while not ended and (found := _tuple(view, start)) is not None:
            fields, start = found
            if fields is None:
                ended = True
            else:
                yield fields
        rest = view[start:].tobytes()
    if not ended and (rest or header):  # nothing at all: a shard left out (allow_partial)
        raise PipelineError("the server's rows ended inside a row: the output is incomplete")


def _tuple(view: memoryview, start: int) -> tuple[list[memoryview] | None, int] | None:
    """The tuple at `start` and where the next begins; (None, end) for the stream's end;
    None when `view` does not hold all of it."""
    if len(view) < start + 2:
        return None
    (count,) = struct.unpack_from(">h", view, start)
    if count == END:
        return None, start + 2
    position = start + 2
    fields = []
    for _ in range(count):
        if len(view) < position + 4:
            return None
        (size,) = struct.unpack_from(">i", view, position)
        position += 4
        if size < 0:
            raise PipelineError("the server sent a NULL chunk column")
        fields.append(view[position : position + size])
        position += size
    if len(view) < position:
        return None
    return fields, position


def _repeated(text: str, count: int) -> Any:
    """A string array of `text`, `count` times, built from its buffers: pa.repeat would
    import pandas (0.7 s) and pyarrow.compute (0.25 s) on first use, for a scalar."""
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
    with pq.ParquetWriter(
        path,
        schema,
        use_dictionary=[c for c in DICTIONARY_COLUMNS if c in columns],
        write_statistics=[c for c in STATISTICS_COLUMNS if c in columns],
    ) as writer:
        for group in _row_groups(batches, schema):
            writer.write_table(group, row_group_size=ROW_GROUP)
            rows += group.num_rows
    return rows


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
    _arrow()
    import pandas as pd
    import pyarrow as pa

    table = pa.Table.from_batches(list(batches), schema=arrow_schema(columns))
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.string(): pd.StringDtype(),
    }
    return table.to_pandas(types_mapper=mapping.get)
