"""stderr as the command line writes to it: a stream whose failure (a full disk or a closed
pipe under `2>`) cannot change what a command does. The summary, warnings and errors go
there; a load whose summary could not be written lost its `--json` on stdout and exited 1
after it had committed, and an extract or a report that had written its file whole exited 1.
What stderr cannot take is dropped: there is nowhere else to say it."""

from __future__ import annotations

import contextlib
import sys
from typing import Any


class Forgiving:
    """Wraps a stream: writes and flushes that fail are dropped. Its `buffer` (the bytes
    under a text stream, which click writes to when the text's encoding will not do) is
    wrapped alike."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, data: Any) -> int:
        try:
            return int(self._stream.write(data))
        except OSError:
            return len(data)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._stream.flush()

    @property
    def buffer(self) -> Forgiving:
        return Forgiving(self._stream.buffer)  # AttributeError where it has none

    def __getattr__(self, name: str) -> Any:  # encoding, errors, isatty, fileno, ...
        return getattr(self._stream, name)


def forgive_stderr() -> None:
    """Make sys.stderr Forgiving (once)."""
    stderr: Any = sys.stderr
    if stderr is not None and not isinstance(stderr, Forgiving):
        sys.stderr = Forgiving(stderr)
