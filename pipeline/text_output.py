"""The text exports: the shards' COPY streams as CSV, NDJSON or one JSON array.

The server writes the rows (sql/extract/rows.sql, json.sql); these pass its bytes through,
the header or the array's brackets around them, and nothing goes out before the first
block is in hand.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import IO

from pipeline.copyout import Chunk
from pipeline.errors import PipelineError


def write_text(
    fmt: str, stream: IO[bytes], blocks: Iterable[Chunk], columns: tuple[str, ...]
) -> None:
    """`blocks` (one shard's after another's) to `stream` as `fmt`: csv, ndjson or json."""
    # The first block asked for before the header goes out: what stops a read before its
    # first row (a shard down, a move caught half-way) leaves stdout empty, as it says.
    chunks = iter(blocks)
    first = next(chunks, None)
    blocks = chunks if first is None else itertools.chain((first,), chunks)
    if fmt == "csv":
        write_csv(stream, blocks, columns)
    else:
        write_json(stream, blocks, as_array=fmt == "json")


def write_csv(out: IO[bytes], blocks: Iterable[Chunk], columns: tuple[str, ...]) -> None:
    out.write((",".join(columns) + "\n").encode())
    for block in blocks:
        out.write(block)


def write_json(out: IO[bytes], blocks: Iterable[Chunk], as_array: bool) -> None:
    """One JSON object a line (COPY's text format) as NDJSON, or as one JSON array.

    COPY's text format doubles every backslash; JSON text has no other character it escapes
    (the server's JSON never holds a raw newline or tab). A block may end anywhere, even
    between the two backslashes of a pair (a replayed spool is cut by size): only whole
    lines are converted, the rest of a block waits for the next one.
    """
    rest = bytearray()  # a line begun in an earlier block
    first = True
    if as_array:
        out.write(b"[")
    for block in blocks:
        end = block.rfind(b"\n") + 1
        if not end:
            rest += block
            continue
        if rest:
            rest += block[:end]
            lines: Chunk = rest
        else:
            lines = block if end == len(block) else block[:end]
        text = lines.replace(b"\\\\", b"\\")
        rest = bytearray(block[end:])
        if as_array:
            out.write((b"" if first else b",\n") + text[:-1].replace(b"\n", b",\n"))
            first = False
        else:
            out.write(text)
    if rest:
        raise PipelineError("the server's rows ended inside a row: the output is incomplete")
    if as_array:
        out.write(b"]\n")
