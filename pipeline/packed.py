"""Packed columns: how the server packs a chunk of residents into one COPY row, and how the
client unpacks it into Arrow arrays (for pipeline.columnar).

sql/extract/columns.sql sends, in COPY's binary format, a row for every CHUNK_ROWS
residents in id order: their count, then each column's values packed into one bytea
(sql/extract/packed_*.sql): fixed-width columns as their binary forms one after the other,
a text column as its values' sizes and then its values, joined (the sizes summed are
Arrow's offsets, the values its data as they came), a char(n) or uuid column as its text
between zero bytes (numpy, or pyarrow's compute for the wider, find them). A few numpy
calls a column make an Arrow array of that, where the client once parsed every field of
every row from CSV (measured on 600k rows: 0.2 s of client CPU against 0.6 s, for 0.05 s
more of server CPU).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from pipeline.columns import BY_NAME
from pipeline.copyout import Chunk
from pipeline.errors import PipelineError
from pipeline.queries import EXTRACT

# Residents the server packs into one COPY row: about 1.4 MB of it for the bench's rows.
# The server builds a chunk in memory, and the client holds one or two as they arrive.
CHUNK_ROWS = 16_384
# How the server packs each kind of column (sql/extract/packed_*.sql).
FIXED_SEND = {"bigint": "int8send", "timestamp with time zone": "timestamptz_send"}
NULL_SMALLINT = 65_536  # no smallint is this
NULL_TEXT = 0xFF  # a NULL text value is this one byte, which UTF-8 never holds
# Bytes a value (the chunk's bytes, separators included, over its rows) past which a text
# column is cut by pyarrow's compute rather than numpy: its kernel costs more for each value
# and less for each byte (measured on 16,384 values: two-byte ones 15% slower, five to
# twenty-five bytes 2x faster).
SPLIT_WIDTH = 4
# PostgreSQL counts timestamps in microseconds from 2000-01-01, Arrow from 1970-01-01.
POSTGRES_EPOCH_US = 946_684_800_000_000
# Binary COPY: the signature that opens the stream, a tuple's field count at its end.
SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
END = -1
# A chunk the server cannot build (see resumable) is asked for again in chunks of this many
# times fewer rows.
SHRINK = 16
# Server encodings whose text reaches the client as stored: the client's encoding is UTF8
# (pipeline.db). Their text's octet_length is its size as sent; on other servers the packed
# sizes are taken of the text converted (twice the server's time). A SQL_ASCII server sends
# its bytes unconverted but checks them, and checked joined, two values each holding half
# of a character would pass: convert_to checks each value.
SENT_AS_STORED = ("UTF8",)


def packed_columns(names: Iterable[str], server_encoding: str) -> sql.Composable:
    """The select list of sql/extract/columns.sql that packs `names`, in that order, for a
    server of `server_encoding` (its `server_encoding` setting)."""
    return sql.SQL(", ").join(_packed(name, server_encoding) for name in names)


def sized(name: str) -> bool:
    """Whether a column is packed with its values' sizes (extract/packed_sized.sql), in two
    fields: a text column. The others that are text to Arrow (char(n), uuid) come between
    zero bytes, in one."""
    return BY_NAME[name].pg_type == "text"


def _packed(name: str, server_encoding: str) -> sql.Composable:
    column = sql.Identifier(name)
    pg_type = BY_NAME[name].pg_type
    if pg_type == "smallint":
        return EXTRACT.packed_smallint.format(column=column)
    if pg_type in FIXED_SEND:
        if BY_NAME[name].nullable:  # NULLs would leave holes string_agg does not show
            raise ValueError(f"{name}: a nullable {pg_type} column cannot be packed")
        return EXTRACT.packed_fixed.format(send=sql.SQL(FIXED_SEND[pg_type]), column=column)
    if sized(name):
        size = sql.SQL("octet_length({})").format(column)
        if server_encoding.upper() not in SENT_AS_STORED:
            size = sql.SQL("octet_length(convert_to({}, 'UTF8'))").format(column)
        sizes = sql.Identifier(f"{name}_sizes")
        return EXTRACT.packed_sized.format(size=size, sizes=sizes, column=column)
    if pg_type == "character":
        value = sql.SQL("bpcharsend({})").format(column)
    else:  # the text form of the others (uuid)
        value = sql.SQL("textsend({}::text)").format(column)
    return EXTRACT.packed_text.format(value=value, column=column)


def unpack_all(
    fields: Sequence[memoryview], names: Sequence[str], kinds: Sequence[Any], rows: int
) -> list[Any]:
    """The columns `names` of a packed row (its fields after the count: one a column, two a
    text column's, its sizes then its values) as Arrow arrays of `kinds`, `rows` values each."""
    if rows < 0:
        raise PipelineError(f"the server sent a chunk of {rows} rows")
    wanted = len(names) + sum(map(sized, names))
    if len(fields) != wanted:
        raise PipelineError(f"the server sent {len(fields)} fields a chunk, not {wanted}")
    values = iter(fields)
    arrays = []
    for name, kind in zip(names, kinds, strict=True):
        if sized(name):
            array = _sized_texts(next(values), next(values), rows)
        else:
            array = unpack(next(values), kind, rows)
        if len(array) != rows:
            raise PipelineError(f"{name} has {len(array)} values for {rows} rows")
        arrays.append(array)
    return arrays


def unpack(value: memoryview, kind: Any, rows: int) -> Any:
    """A column packed in one field (sql/extract/packed_fixed.sql, packed_smallint.sql,
    packed_text.sql), `rows` values, as an Arrow array of type `kind`."""
    import numpy as np
    import pyarrow as pa

    if pa.types.is_string(kind):
        return _texts(value, rows)
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
        raise PipelineError("cannot convert the rows: a timestamp is infinite")
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


def _texts(value: memoryview, rows: int) -> Any:
    """A packed text column (each value after a zero byte but the first, NULL as the byte
    FF) as an Arrow string array: the values without the zero bytes, and where they were are
    the offsets. A NULL keeps its byte FF in the data, which Arrow allows in a null slot.

    The values are not checked for UTF-8 here: the connection's client_encoding is UTF8
    (pipeline.db; extract and the load refuse another), and the server converts every text
    it sends to it, or, from a SQL_ASCII database, checks it and fails the query (tested).
    A UTF8 database sends what it stores unchecked, and it checks all text that comes in;
    only bytes that bypassed that (a C extension, a database's encoding changed in the
    catalog) could reach the output as they are. Checking cost a quarter of this function's
    time."""
    import numpy as np
    import pyarrow as pa

    if len(value) > SPLIT_WIDTH * rows:
        parts = _split(value)
        count = len(parts)
        _, offsets_buffer, data_buffer = parts.buffers()
        offsets = np.frombuffer(offsets_buffer, np.int32, count + 1)
        joined = np.frombuffer(data_buffer or b"", np.uint8, offsets[-1])
    else:
        data = np.frombuffer(value, np.uint8)
        separators = data == 0
        ends = np.flatnonzero(separators)  # the end of every value but the last
        count = len(ends) + 1
        offsets = np.empty(count + 1, np.int32)  # a packed chunk is far below 2 GiB
        offsets[0] = 0
        offsets[1:count] = ends - np.arange(count - 1)  # each one less a separator before it
        offsets[count] = len(data) - (count - 1)
        joined = data[~separators]
        offsets_buffer, data_buffer = pa.py_buffer(offsets), pa.py_buffer(joined)
    nulls = np.diff(offsets) == 1
    if nulls.any():
        nulls &= joined[np.minimum(offsets[:-1], max(len(joined) - 1, 0))] == NULL_TEXT
    return _strings(count, offsets_buffer, data_buffer, nulls)


def _sized_texts(packed_sizes: memoryview, data: memoryview, rows: int) -> Any:
    """A text column packed with its sizes (each value's, -1 for NULL; and the values
    joined) as an Arrow string array: the sizes summed are the offsets, and the values'
    bytes are the data as they came, not copied. Not checked for UTF-8, as in _texts."""
    import numpy as np
    import pyarrow as pa

    if len(packed_sizes) != 4 * rows:
        raise PipelineError("cannot convert the rows: a text column's sizes are not whole")
    sizes = np.frombuffer(packed_sizes, ">i4")
    if rows and sizes.min() < -1:
        raise PipelineError("cannot convert the rows: a text column's sizes are not whole")
    nulls = sizes < 0
    offsets = np.zeros(rows + 1, np.int64)
    np.cumsum(np.where(nulls, 0, sizes), out=offsets[1:])
    if offsets[-1] != len(data):
        raise PipelineError(
            f"cannot convert the rows: a text column's sizes add up to {offsets[-1]} bytes"
            f" where it holds {len(data)}"
        )
    # int32: a packed value is below 1 GB (PostgreSQL's limit on a bytea).
    offsets_buffer = pa.py_buffer(offsets.astype(np.int32))
    return _strings(rows, offsets_buffer, pa.py_buffer(data), nulls)


def _strings(count: int, offsets: Any, data: Any, nulls: Any) -> Any:
    """A string array of `count` values from its offsets' and data's buffers, NULL where
    `nulls` is set, its offsets checked against the data."""
    import numpy as np
    import pyarrow as pa

    null_count = int(np.count_nonzero(nulls))
    validity = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if null_count else None
    array = pa.StringArray.from_buffers(count, offsets, data, validity, null_count)
    try:
        array.validate()  # offsets and lengths, not the values: cheap
    except pa.ArrowInvalid as exc:
        raise PipelineError(f"cannot convert the rows: {exc}") from None
    return array


def _split(value: memoryview) -> Any:
    """The values of a packed text column as a binary array, cut at the zero bytes by
    pyarrow's compute (its kernel copies each value once; numpy's mask and compaction pass
    over every byte three times)."""
    import numpy as np
    import pyarrow as pa

    options, call_function = split_kernel()
    ends = pa.py_buffer(np.array([0, len(value)], np.int32))
    whole = pa.Array.from_buffers(pa.binary(), 1, [None, ends, pa.py_buffer(value)])
    values = call_function("split_pattern", [whole], options(b"\x00")).values
    # The kernel's own new array: from the start of its buffers, which _texts reads as such.
    return values if values.offset == 0 else pa.concat_arrays([values])


def split_kernel() -> tuple[Any, Any]:
    """pyarrow's SplitPatternOptions and call_function, from the module pyarrow.compute
    takes them from: importing pyarrow.compute itself makes a Python function of each of its
    kernels, 0.05 s of CPU, a twentieth of a 1M-row extract. From pyarrow.compute should a
    later pyarrow move them."""
    try:
        from pyarrow._compute import SplitPatternOptions, call_function
    except ImportError:
        from pyarrow.compute import SplitPatternOptions, call_function
    return SplitPatternOptions, call_function


def check_order(shard: str, packed_ids: memoryview, last_ids: dict[str, int]) -> None:
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


def resumable(copy: Callable[[int | None, int], Iterable[Chunk]], id_field: int) -> Iterator[Chunk]:
    """A shard's packed COPY stream, whole even where CHUNK_ROWS residents outgrow what the
    server can build in one value or one COPY row (1 GB: 16,384 names of 64 KB do).
    `copy(after, rows)` streams the residents after id `after` (None: from the first),
    `rows` a chunk, in chunks of bytes that end at row ends (as CopyOut's do; `id_field`:
    the tuple's field of packed ids). The server refuses a chunk too large
    (program_limit_exceeded) and CopyOut rolls back to its savepoint, in the same snapshot:
    the stream goes on after the last chunk already handed on, SHRINK times fewer rows a
    chunk, down to one. The resumed COPY's header is left out: the stream reads as one."""
    after: int | None = None
    rows = CHUNK_ROWS
    began = False  # the stream's header is handed on
    while True:
        first = True  # the first chunk of this COPY, which opens with a header
        try:
            for chunk in copy(after, rows):
                header = _header_size(chunk) if first else 0
                view = memoryview(chunk)
                start = header
                while start < len(view):
                    found = _tuple(view, start)
                    if found is None:  # not cut at a row's end: nothing to resume after
                        raise PipelineError("a packed chunk did not end at a row's end")
                    fields, start = found
                    if fields and len(fields[id_field]) >= 8:
                        after = int.from_bytes(fields[id_field][-8:], "big", signed=True)
                skip = header if began else 0  # a resumed COPY's header
                first, began = False, True
                if len(chunk) > skip:
                    yield chunk[skip:] if skip else chunk
            return
        except psycopg.errors.ProgramLimitExceeded:
            if rows == 1:
                raise
            rows = max(1, rows // SHRINK)


def _header_size(chunk: Chunk) -> int:
    """The size of the header that opens a binary COPY stream, which `chunk` begins with."""
    if bytes(chunk[: len(SIGNATURE)]) != SIGNATURE or len(chunk) < len(SIGNATURE) + 8:
        raise PipelineError("the server's rows are not a binary COPY stream")
    (extension,) = struct.unpack_from(">i", chunk, len(SIGNATURE) + 4)
    return len(SIGNATURE) + 8 + int(extension)


def tuples(chunks: Iterable[Chunk]) -> Iterator[list[memoryview]]:
    """The tuples of a binary COPY stream cut anywhere, each as views of its fields' bytes
    (a chunk is never changed once handed on: pipeline.copyout). Only a tuple cut in two
    is copied, and only once its pieces hold what its headers say it needs: a tuple of 64
    MB replayed from a spool in pieces of a MiB was copied again with each piece. The
    stream is read to its end, past the trailer: the shard counts as read then."""
    rest = b""  # the start of a tuple that the chunk before ended inside
    later: list[Chunk] = []  # the chunks after `rest`, not joined to it yet
    held = needed = 0  # the bytes of rest and later; how many the tuple needs (at least)
    header = ended = False
    for chunk in chunks:
        if ended:
            if chunk:
                raise PipelineError("the server sent rows after the end of its COPY")
            continue
        if rest and held + len(chunk) < needed:
            later.append(chunk)
            held += len(chunk)
            continue
        data = b"".join([rest, *later, chunk]) if rest else chunk
        later = []
        start = 0
        if not header:
            if len(data) < len(SIGNATURE) + 8:
                rest, held, needed = bytes(data), len(data), 0
                continue
            start = _header_size(data)
            header = True
        view = memoryview(data)
        while not ended and (found := _tuple(view, start)) is not None:
            fields, start = found
            if fields is None:
                ended = True
            else:
                yield fields
        rest = view[start:].tobytes()
        held, needed = len(rest), (_needed(view, start) if rest else 0)
    if not ended and (rest or header):  # nothing at all: a shard left out (allow_partial)
        raise PipelineError("the server's rows ended inside a row: the output is incomplete")


def _needed(view: memoryview, start: int) -> int:
    """The bytes from `start` that the tuple there needs, as far as the part of it that
    `view` holds tells: its fields' sizes, as far as their headers are in it."""
    if len(view) < start + 2:
        return 2
    (count,) = struct.unpack_from(">h", view, start)
    position = start + 2
    for _ in range(max(count, 0)):
        if len(view) < position + 4:
            return position + 4 - start
        (size,) = struct.unpack_from(">i", view, position)
        position += 4 + max(size, 0)
        if len(view) < position:
            break
    return position - start


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
