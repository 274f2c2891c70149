"""The `pipeline` command's entry point (and `python -m pipeline`'s): the command line is
pipeline.cli, whose imports (click, psycopg, PyYAML: 0.15 s) come first here, where a
Ctrl-C among them ends in the one line every interrupt ends in, not in a traceback."""

from __future__ import annotations

import signal
import sys
from typing import Any


class _Terminated(KeyboardInterrupt):
    """SIGTERM's, as pipeline.cli_shared.Terminated: no `except Exception` of an import
    takes it."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated()


def main() -> None:
    # SIGTERM's default ends the process without a word: until pipeline.cli.main puts its
    # own handler in, it is said as an interrupt is.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        from pipeline import cli
    except KeyboardInterrupt as exc:
        # pipeline.cli_shared's messages and exit code for an interrupt (EXIT_DATA), which
        # cannot be imported here: its imports are the ones that were interrupted.
        said = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted (SIGINT)"
        sys.stderr.write(f"Error: {said}\n")
        sys.exit(1)
    cli.main()
