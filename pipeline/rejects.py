"""The rejects file: every record that was not loaded, with where it was, why, and the raw record.

One NDJSON file per load run (`data/rejects/<time>-<load id>.ndjson`), created on the
first reject only, with mode 0600 because it holds personal data.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, LocalFileError, OptionError
from pipeline.reasons import RejectReason


class RejectsError(LocalFileError):
    """The rejects file cannot be written: the load stops (pipeline.load)."""


@dataclass(frozen=True)
class Reject:
    file: str
    record: int | None  # 1-based record number in the file; None for a whole-file entry
    line: int | None  # the line it starts on, where the format has lines
    reason: RejectReason
    message: str
    raw: Any
    shard: str | None = None

    def to_json(self, load_id: str) -> dict[str, Any]:
        return {
            "load_id": load_id,
            "file": self.file,
            "record": self.record,
            "line": self.line,
            "shard": self.shard,
            "reason": self.reason,
            "message": self.message,
            "raw": self.raw,
        }


class RejectWriter:
    """Appends rejects to the run's file; opens it (0600) at the first one."""

    def __init__(self, directory: Path, load_id: str, started: datetime, enabled: bool = True):
        self.path = directory / f"{started:%Y%m%dT%H%M%S}-{load_id[:8]}.ndjson"
        self.load_id = load_id
        self.enabled = enabled
        self.count = 0
        self._stream: io.FileIO | None = None
        self._encoder = json.JSONEncoder(ensure_ascii=False, default=str)

    def prepare(self) -> None:
        """Make the folder now, so that a bad --rejects fails before any shard is written
        (a dry run, which makes none, fails as the real run would for one that is no folder)."""
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise OptionError(f"--rejects {folder}: not a folder")
        if not self.enabled:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(
                f"--rejects {self.path.parent}: cannot make the folder: {exc}"
            ) from None

    def write(self, reject: Reject) -> None:
        self.write_all([reject])

    def write_all(self, rejects: list[Reject]) -> None:
        """Append `rejects`, in order (one write for a batch's)."""
        if not rejects:
            return
        self.count += len(rejects)
        if not self.enabled:
            return
        encode = self._encoder.encode
        lines = "".join([encode(reject.to_json(self.load_id)) + "\n" for reject in rejects])
        # A lone surrogate in a raw record (JSON's "\ud800", refused for what else it holds)
        # is written as its JSON escape, which reads back as the same text: strict UTF-8
        # failed the load with a traceback.
        data = memoryview(lines.encode("utf-8", "backslashreplace"))
        try:
            if self._stream is None:
                self._stream = self._open()
            while data:  # a write may take part of it (the disk filling up)
                data = data[self._stream.write(data) :]
        except OSError as exc:
            # Without the rejects file nothing may load: the caller rolls its file back and
            # stops (pipeline.load), then `rewind`s what this wrote of it.
            raise RejectsError(f"cannot write the rejects file {self.path}: {exc}") from None

    def mark(self) -> tuple[int, int | None]:
        """Where the file is now, for `rewind`."""
        if self._stream is None:
            return (self.count, None)
        return (self.count, self._stream.tell())

    def rewind(self, mark: tuple[int, int | None]) -> None:
        """Forget what was written after `mark`: the file it came from is read again, or not
        loaded (a write that failed left part of a batch: cut off too)."""
        count, position = mark
        self.count = count
        if self._stream is None:
            return
        try:
            if position is None:  # made after the mark: as if never made
                self._stream.close()
                self._stream = None
                self.path.unlink()
                return
            self._stream.seek(position)
            self._stream.truncate()
        except OSError as exc:
            raise RejectsError(f"cannot write the rejects file {self.path}: {exc}") from None

    def sync(self) -> None:
        """fsync: called before a COMMIT, so that a crash after it cannot lose the rejects of
        rows the ledger says were handled."""
        if self._stream is None:
            return
        try:
            os.fsync(self._stream.fileno())
        except OSError as exc:
            raise RejectsError(f"cannot write the rejects file {self.path}: {exc}") from None

    def _open(self) -> io.FileIO:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # O_EXCL: never append to, or through a link into, a file that is not ours.
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        # Unbuffered (each write is a batch's): a write the disk refused leaves nothing in a
        # buffer that closing the file would try, and fail, to write again.
        return io.FileIO(fd, "w")

    @property
    def written(self) -> Path | None:
        return self.path if self._stream is not None else None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
