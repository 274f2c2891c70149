"""Reading incoming files: CSV, JSON arrays and NDJSON, optionally gzipped, streamed.

A source yields `Record`s: the record's number in the file (1-based), the line it
starts on (CSV and NDJSON), its six known fields as text (or None), and the raw
record for a rejects file. Nothing here holds more than one record in memory, and what
one record may hold is bounded (`pipeline.rules.Limits`): memory stays bounded and time
linear in the file, whatever it holds.

File-level problems (no header, a required column missing, undecodable bytes,
broken JSON, a quote left open to the end of a CSV file, not a regular file) raise
`SourceError`; a single bad record is yielded with `problem` set and the `reason` it is
rejected for: `malformed_record` (not a record, nested too deeply), `too_large` (a line,
record or field over its limit), `invalid_text` (text that is not valid Unicode: a lone
surrogate) or `invalid_country` (longer than any country). An empty file (nothing but
white space, or `[]`) holds no records, whatever its format.

Numbers in JSON are taken as written, as CSV's text is: the rules judge `1e3` or `22.0`
the same way in every format.

The readers of each format are pipeline.source_csv and pipeline.source_json, over
pipeline.source_file (what they share); beneath them, pipeline.bounded reads bounded lines
and pipeline.json_array the elements of a JSON array.
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pipeline.batch import Batch
from pipeline.bounded import BLOCK, BrokenInput, LineGuard, cut
from pipeline.incoming import FORMATS, SUPPORTED, not_regular, regular_file_error, source_format
from pipeline.json_array import DECODER
from pipeline.regular_file import NotRegular, open_regular
from pipeline.rules import DEFAULT_LIMITS, Limits
from pipeline.source_arrow import arrow_batches
from pipeline.source_arrow_json import ndjson_batches
from pipeline.source_csv import CsvRecords
from pipeline.source_file import (
    COLUMNS,
    OP,
    READ,
    REQUIRED,
    UNKNOWN_COLUMNS_KEPT,
    Record,
    SourceError,
)
from pipeline.source_json import JsonRecords
from pipeline.undecodable import undecodable_at

__all__ = [
    "COLUMNS",
    "FORMATS",
    "OP",
    "READ",
    "REQUIRED",
    "SUPPORTED",
    "UNKNOWN_COLUMNS_KEPT",
    "Record",
    "Source",
    "SourceError",
    "open_source",
    "regular_file_error",
    "source_format",
]


class Source(CsvRecords, JsonRecords):
    """An incoming file read as records, whatever its format (csv, json or ndjson)."""

    def records(self) -> Iterator[Record]:
        """Every record of the file, in order; raises SourceError for file-level problems."""
        self._objects = 0  # a file read again (a restart) counts anew
        try:
            with _open_regular(self.path) as raw:
                hashing = _HashingReader(raw)
                with self._text(hashing) as stream:
                    if self.format == "csv":
                        yield from self._csv(stream)
                    elif self.format == "ndjson":
                        yield from self._ndjson(stream)
                    else:
                        yield from self._json(stream)
                    while stream.read(BLOCK):  # the rest (none, or white space): all hashed
                        pass
        except BrokenInput as exc:
            raise SourceError(str(exc)) from None
        except UnicodeDecodeError as exc:
            where = undecodable_at(self.path, self.compressed, self.encoding)
            at = f" at line {where[0]}, byte {where[1]}" if where else ""
            raise SourceError(
                f"not valid {self.encoding}{at} ({exc.reason}); "
                "use --encoding for files in another encoding"
            ) from None
        except UnicodeError as exc:  # codecs such as utf-16 (no BOM) or punycode
            raise SourceError(
                f"cannot be read as {self.encoding} ({cut(str(exc))}); "
                "use --encoding for files in another encoding"
            ) from None
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise SourceError(f"cannot read: {exc}") from None
        if self.sha256 is not None and hashing.hexdigest() != self.sha256:
            # The ledger records the hash taken before reading; it must describe these bytes.
            raise SourceError("the file changed while it was being loaded")
        missing = [c for c in REQUIRED if c not in self.required_seen]
        if missing and self.format != "csv" and self._objects:  # no object: nothing is missing
            raise SourceError(f"required column {missing[0]!r} is in no record")

    @property
    def bulk(self) -> bool:
        """Whether pyarrow may read this file (pipeline.source_arrow for CSV,
        pipeline.source_arrow_json for NDJSON; each falls back by NotSimple)."""
        utf8 = codecs.lookup(self.encoding).name == "utf-8"
        return self.format in ("csv", "ndjson") and self.arrow and utf8

    def bulk_batches(self) -> Iterator[Batch]:
        """The file's records read by pyarrow; NotSimple when the Python reader must take it."""
        with _open_regular(self.path) as raw:
            hashing = _HashingReader(raw)
            binary: IO[bytes] = io.BufferedReader(hashing, buffer_size=1 << 20)
            if self.compressed:
                binary = gzip.GzipFile(fileobj=binary, mode="rb")  # type: ignore[assignment]
            if self.format == "csv":
                yield from arrow_batches(self, binary)
            else:
                yield from ndjson_batches(self, binary)
        if self.sha256 is not None and hashing.hexdigest() != self.sha256:
            raise SourceError("the file changed while it was being loaded")

    def _text(self, raw: io.RawIOBase) -> io.TextIOWrapper:
        binary: IO[bytes] = io.BufferedReader(raw, buffer_size=1 << 20)
        if self.compressed:
            binary = gzip.GzipFile(fileobj=binary, mode="rb")  # type: ignore[assignment]
        codec = codecs.lookup(self.encoding).name
        if self._guarded:
            binary = LineGuard(binary, 4 * self.limits.max_line + 4, utf8=codec == "utf-8")  # type: ignore[assignment]
        # utf-8-sig reads files with and without a byte-order mark alike.
        encoding = "utf-8-sig" if codec == "utf-8" else self.encoding
        return io.TextIOWrapper(binary, encoding=encoding, errors="strict", newline="")

    def raw_of(self, record: Record) -> Any:
        """The raw record for a rejects file: a CSV row as {column: value}, JSON as it was
        (a record read whole keeps its text, decoded again here: see source_json)."""
        row = record.raw
        if record.values is not None:
            if self._header is not None and isinstance(row, list):
                return dict(zip(self._header, row, strict=False))
            if isinstance(row, str):
                return DECODER.decode(row)
        return row


def open_source(
    path: Path,
    encoding: str = "utf-8",
    limits: Limits = DEFAULT_LIMITS,
    arrow: bool = True,
    op_column: str = OP,
) -> Source:
    """A Source for `path`, by its extension (.csv .json .ndjson .jsonl, each maybe .gz);
    `arrow` False keeps CSV and NDJSON from the bulk readers; `op_column` names the delete
    markers."""
    kind = source_format(path)
    if kind is None:
        raise SourceError(f"unsupported file type (expected {SUPPORTED})")
    compressed = path.suffix.lower() == ".gz"
    return Source(path, kind, compressed, encoding, limits=limits, arrow=arrow, op_column=op_column)


def _open_regular(path: Path) -> IO[bytes]:
    """The file opened for reading, if it is a regular file (pipeline.regular_file: a file
    swapped for a FIFO after it was listed cannot block)."""
    try:
        return open_regular(path)[0]
    except NotRegular as exc:
        raise SourceError(not_regular(exc.kind)) from None


class _HashingReader(io.RawIOBase):
    """Passes a file's bytes through, hashing them on the way (cost: one update per block)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._digest.update(memoryview(buffer)[:n])
        return int(n or 0)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
