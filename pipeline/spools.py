"""The temporary spools a command keeps in $TMPDIR past what it holds in memory (Python's
tempfile: a load's changed rows and ids, an extract's later shards, the check's keys), and
what one says when the disk refuses it: the folder and the reason, where the OSError said
only "No space left on device", or named a temporary file that is gone."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import LocalFileError


class SpoolError(LocalFileError):
    """A temporary spool cannot be written or read."""


@contextmanager
def spool_errors(folder: str | None = None) -> Iterator[None]:
    """Raise a spool's OSError in the block as a SpoolError that names its folder (None:
    $TMPDIR's)."""
    try:
        yield
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        where = f"{tempfile.gettempdir()} ($TMPDIR)" if folder is None else folder
        raise SpoolError(f"cannot write a temporary file in {where}: {reason}") from None
