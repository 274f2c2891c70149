"""stderr as the command line writes to it: a stream whose failure (a full disk or a closed
pipe under `2>`) cannot change what a command does. The summary, warnings and errors go
there; a load whose summary could not be written lost its `--json` on stdout and exited 1
after it had committed, and an extract or a report that had written its file whole exited 1.
What stderr cannot take is dropped: there is nowhere else to say it."""

from __future__ import annotations

import sys
from typing import Any, TextIO


class ForgivingStderr:
    """Wraps a text stream: writes and flushes that fail are dropped (`failed` is set)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self.failed = True
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self.failed = True

    def __getattr__(self, name: str) -> Any:  # encoding, errors, isatty, fileno, ...
        return getattr(self._stream, name)


def forgive_stderr() -> None:
    """Make sys.stderr a ForgivingStderr (once)."""
    if not isinstance(sys.stderr, ForgivingStderr) and sys.stderr is not None:
        sys.stderr = ForgivingStderr(sys.stderr)
