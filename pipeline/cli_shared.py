"""What every command of `pipeline` shares: how an error leaves (one line on stderr and an
exit code: `fail`, and `PipelineGroup`, which turns the library's exceptions and click's
own into that), the -o and --json options, the format an -o file's extension names, and
the shard map, parsed on first use (so that --help works without one).
"""

from __future__ import annotations

import gc
import importlib.abc
import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pipeline.config import ShardMap, load_shard_map
from pipeline.errors import (
    EXIT_DATA,
    EXIT_USAGE,
    OUT_OF_MEMORY,
    OptionError,
    PipelineError,
    StdoutFailed,
    exhausted,
)

# What click (8.2 and later) raises for a group given no command: its message is the whole
# help, which the one-line usage error below would run together.
_NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())

F = TypeVar("F", bound=Callable[..., Any])


def fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    """Print `Error: <message>` on stderr and exit with `code`: how every error leaves."""
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


def described(exc: PipelineError, command: str) -> str:
    """The error's message; for an option's, with where to find `--help`, as click says
    its own usage errors."""
    return f"{exc} (see `{command} --help`)" if isinstance(exc, OptionError) else str(exc)


class PipelineGroup(click.Group):
    """Turns the library's errors into one line and their exit code: never a traceback."""

    def main(  # type: ignore[override]  # one signature for both of click's overloads
        self,
        args: Any = None,
        prog_name: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, standalone_mode=False, **extra)
        _whole_writes_to_stdout()
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as exc:
            if isinstance(exc, _NO_COMMAND):
                exc.show()  # the help as --help shows it, on stderr; exit 2
                sys.exit(exc.exit_code)
            # click would print the usage, a hint and the error over four lines.
            where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
            click.echo(f"Error: {' '.join(exc.format_message().split())}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort as exc:
            # Ctrl-C or SIGTERM: every `with` and `finally` on the way out has run (partial
            # output files removed, COPYs cancelled, transactions rolled back).
            # One line, as every error is (click's own says "Aborted!").
            if isinstance(exc.__cause__, Terminated):
                click.echo("Error: terminated (SIGTERM)", err=True)
            else:
                click.echo("Error: interrupted (SIGINT)", err=True)
            sys.exit(EXIT_DATA)
        except BrokenPipeError:
            # `pipeline extract | head`: the reader has what it wanted. Keep Python's exit
            # handler from complaining about the closed stdout.
            _stdout_to_nowhere()
            sys.exit(EXIT_DATA)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            if isinstance(exc, StdoutFailed):
                _stdout_failed()
            command = " ".join(filter(None, (ctx.command_path, ctx.invoked_subcommand)))
            fail(ctx, described(exc, command), exc.exit_code)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            # A file we were told to write and cannot (a full disk, a folder without rights).
            where = f": {exc.filename}" if exc.filename else ""
            if not exc.filename and _stdout_failed():  # as pipeline.output.stdout_errors says
                message = f"stdout: cannot write: {exc.strerror}; the output is incomplete"
                fail(ctx, message, EXIT_USAGE)
            fail(ctx, f"{exc.strerror or exc}{where}", EXIT_USAGE)
        except Exception as exc:
            if not exhausted(exc):
                raise
            # The command could not run; its outputs are left as any failure leaves them.
            fail(ctx, OUT_OF_MEMORY, EXIT_USAGE)


def _stdout_failed() -> bool:
    """Whether stdout cannot take what its buffer holds (a full disk under a redirect): then
    that goes nowhere, where it would fail again as Python exits (exit 120)."""
    try:
        sys.stdout.flush()
    except OSError:
        _stdout_to_nowhere()
        return True
    return False


def _stdout_to_nowhere() -> None:
    nowhere = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nowhere, sys.stdout.fileno())
    os.close(nowhere)


def _whole_writes_to_stdout() -> None:
    """Under PYTHONUNBUFFERED (or -u) stdout's text goes straight to the raw file, whose
    write may write part of what it is given (a full disk under a redirect) and say so only
    in its count, which the text layer drops: `load --json > result.json` would come out
    cut short, exit 0. A buffer between them writes each line whole or raises. Line by
    line, as the unbuffered stream would show it."""
    stdout = sys.stdout
    if isinstance(stdout, io.TextIOWrapper) and isinstance(stdout.buffer, io.RawIOBase):
        buffered = io.BufferedWriter(stdout.buffer)
        sys.stdout = io.TextIOWrapper(
            buffered, encoding=stdout.encoding, errors=stdout.errors, line_buffering=True
        )


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C: so that it unwinds the same way
    (Python's default for SIGTERM is to die on the spot, leaving partial files behind)."""


def output_option(func: F) -> F:
    """-o PATH; `-o -` is stdout, as leaving it out is (a file named - is `-o ./-`)."""
    # Read as text: a Path would make ./- into - before the callback sees it.
    path = click.Path(dir_okay=False, allow_dash=True)
    return click.option(
        "-o",
        "--output",
        type=path,
        callback=lambda _ctx, _param, value: _output_path(value),
        help="File to write (default, or -: stdout).",
    )(func)


def _output_path(value: str | None) -> Path | None:
    if value is None or value == "-":
        return None  # stdout
    path = Path(value)
    # ./- is a file named -, which a Path shows as - (stdout's name): shown in full.
    return path.absolute() if path == Path("-") else path


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def format_for(output: Path | None, formats: dict[str, str], default: str) -> str:
    """The format -o's extension names: `default` without one; an unknown one is a usage
    error, not a file in a format its name does not say."""
    if output is None or not output.suffix:
        return default
    fmt = formats.get(output.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(formats))
        raise click.UsageError(
            f"-o {output}: {output.suffix} names no format this command writes ({known});"
            " name one with --format"
        )
    return fmt


def shard_map_of(ctx: click.Context) -> ShardMap:
    """The shard map, parsed on first use so that --help works without one."""
    obj = ctx.ensure_object(dict)
    if "shard_map" not in obj:
        obj["shard_map"] = load_shard_map(obj["config_path"])
    shard_map: ShardMap = obj["shard_map"]
    return shard_map


# Set by cli.main: this process runs one command and ends (not a library call, not a test).
STANDALONE = False


def pyarrow_for_a_load() -> None:
    """Set pyarrow up for a load, in this process only (`main` sets STANDALONE; in a
    library call or a test the caller's process is left as it is):
    - pandas, which pyarrow imports the first time it converts any Python value (a
      scalar, a list), to see whether it is a pandas object: 0.4 s of CPU and 49 MB
      (measured) in a load, which converts values batch after batch but never uses
      pandas; no command of the CLI does (`to_dataframe` is the library's). pyarrow tries
      the import once and remembers the answer: it is asked while `import pandas` fails,
      then the import is allowed again.
    - The garbage collector: the JSON readers make several Python objects a record, and the
      default threshold (700) ran a collection every few records, each walking the young
      objects of a whole batch. A 1M-record NDJSON load took 17.7 s of wall time with it,
      15.9-16.1 s with 10,000 (measured on a busy machine; its batching alone 9.2-12.5 s
      against 8.3 s). The load makes no reference cycles to speak of."""
    if not STANDALONE:
        return
    import pyarrow as pa

    gc.set_threshold(10_000, 10, 10)

    if "pandas" in sys.modules:
        return
    refuse = _RefusePandas()
    sys.meta_path.insert(0, refuse)  # `import pandas` raises ImportError
    try:
        pa.scalar(0)  # pyarrow's pandas check, made now
    finally:
        sys.meta_path.remove(refuse)


class _RefusePandas(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas":
            raise ImportError("pandas is not used by this command")
