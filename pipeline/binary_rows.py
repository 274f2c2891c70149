"""Rows in COPY's binary format, built from Arrow columns by numpy and one pyarrow kernel:
how the load's new rows go straight into `residents` (pipeline.shard_rows).

PostgreSQL reads a binary row with each type's receive function, where a CSV row is parsed
and each field converted from text: one shard's 600k rows copied into `residents` took the
server 1.98 s of CPU in binary against 2.35 s in CSV (medians of 12), and building them here
costs what pyarrow's CSV writer did (0.13-0.15 s against 0.13 s).

A row is its field count (int16), then each field: its size in bytes (int32, -1 for NULL)
and, unless NULL, its value (big-endian for numbers, the bytes of text). A stream opens with
HEADER and ends with TRAILER. Each column's pieces (sizes, values) are laid out by numpy and
joined row by row by `binary_join_element_wise`, whose output's data is the rows, in order.
"""

from __future__ import annotations

import struct
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# A stream opens with the signature, no flags and no header extension, and ends with a
# field count of -1.
HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
_NULL = struct.pack(">i", -1)
# The Arrow types taken, and the PostgreSQL types their values are sent as: bigint,
# smallint, and text (text, varchar, char(n)).
_WIDTHS = {pa.int64(): ">i8", pa.int16(): ">i2"}


def fields(*values: uuid.UUID | str | None) -> bytes:
    """Fields of the same value on every row, as `encode`'s `constant`: a uuid, a text, or
    NULL."""
    out = b""
    for value in values:
        if value is None:
            out += _NULL
        else:
            data = value.bytes if isinstance(value, uuid.UUID) else value.encode()
            out += struct.pack(">i", len(data)) + data
    return out


def encode(table: pa.Table, constant: bytes = b"", constant_fields: int = 0) -> memoryview:
    """`table`'s rows in COPY's binary format, each ending with `constant` (`fields`, which
    are `constant_fields` fields more than the table's columns)."""
    rows = table.num_rows
    count = struct.pack(">h", table.num_columns + constant_fields)
    pieces: list[pa.Array | pa.Scalar] = [pa.scalar(count, pa.binary())]
    for column in table.columns:
        # One chunk as it is (a filtered batch's are): combining would copy it.
        array = column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
        if array.type in _WIDTHS:
            pieces.append(_fixed(array, _WIDTHS[array.type]))
        elif pa.types.is_string(array.type):
            pieces += _text(array)
        else:
            raise TypeError(f"no binary COPY form for {array.type}")
    pieces.append(pa.scalar(constant, pa.binary()))
    joined = pc.binary_join_element_wise(*pieces, pa.scalar(b"", pa.binary()))
    offsets = np.frombuffer(joined.buffers()[1], np.int32, rows + 1, 4 * joined.offset)
    return memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]]


def _valid(array: pa.Array) -> np.ndarray:
    if not array.null_count:
        return np.ones(len(array), dtype=bool)
    return np.asarray(array.is_valid().to_numpy(zero_copy_only=False))


def _sizes(sizes: np.ndarray) -> pa.Array:
    """Each row's field size (-1 for NULL), as a binary piece of four bytes a row."""
    data = pa.py_buffer(sizes.astype(">i4"))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(sizes), [None, data]).cast(
        pa.binary()
    )


def _fixed(array: pa.Array, kind: str) -> pa.Array:
    """A number column's fields, size and value in one piece: the value's bytes left out
    where it is NULL."""
    width = np.dtype(kind).itemsize
    valid = _valid(array)
    layout = np.empty(len(array), np.dtype([("size", ">i4"), ("value", kind)]))
    layout["size"] = np.where(valid, width, -1)
    layout["value"] = array.fill_null(0).to_numpy() if array.null_count else array.to_numpy()
    whole = layout.view(np.uint8).reshape(len(array), 4 + width)
    sizes = np.where(valid, 4 + width, 4).astype(np.int32)
    offsets = np.zeros(len(array) + 1, np.int32)
    np.cumsum(sizes, out=offsets[1:])
    if valid.all():
        data = whole.reshape(-1)
    else:
        keep = np.ones(whole.shape, dtype=bool)
        keep[~valid, 4:] = False
        data = whole[keep]
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(array), [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def _text(array: pa.Array) -> list[pa.Array]:
    """A text column's fields as two pieces: the sizes (-1 for NULL), then the values
    (nothing for NULL)."""
    offsets = np.frombuffer(array.buffers()[1], np.int32, len(array) + 1, 4 * array.offset)
    sizes = np.diff(offsets)
    if array.null_count:
        sizes = np.where(_valid(array), sizes, -1)
        array = array.fill_null("")
    return [_sizes(sizes), array.cast(pa.binary())]
