"""The `pipeline` command's entry point (and `python -m pipeline`'s): the command line is
pipeline.cli, whose imports (click, psycopg, PyYAML: 0.15 s) come first here, where a
Ctrl-C among them ends in the one line every interrupt ends in, not in a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from pipeline import cli
    except KeyboardInterrupt:
        # pipeline.cli_shared's message and exit code for an interrupt (EXIT_DATA), which
        # cannot be imported here: its imports are the ones that were interrupted.
        sys.stderr.write("Error: interrupted (SIGINT)\n")
        sys.exit(1)
    cli.main()
