"""`pipeline load`: its options, the signals that stop a load cleanly, and its summary.

Like every command, a thin layer: the run itself is pipeline.load.
"""

from __future__ import annotations

import io
import json
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipeline.cli_shared import json_option, pyarrow_for_a_load, shard_map_of
from pipeline.config import DEFAULT_REJECTS_DIR

if TYPE_CHECKING:
    from pipeline.config import ShardMap
    from pipeline.load_result import LoadResult
    from pipeline.routing import Budget


def _budget(ctx: click.Context, param: click.Parameter, value: str) -> Budget:
    from pipeline.routing import Budget

    try:
        return Budget.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _encoding(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        # TextIOWrapper refuses what is not a text encoding (base64, zlib, ...) as well.
        io.TextIOWrapper(io.BytesIO(), encoding=value)
    except LookupError:
        raise click.BadParameter(f"{value!r} is not a text encoding") from None
    return value


def _source_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from pipeline.sync import SOURCE_NAME, SOURCE_NAME_RULE

    if value is not None and not SOURCE_NAME.match(value):
        raise click.BadParameter(f"{value!r}: a source name is {SOURCE_NAME_RULE}")
    return value


def _refuse_unused_max_deletes(
    ctx: click.Context, source_name: str | None, mode: str | None, shard_map: ShardMap
) -> None:
    """A --max-deletes given where no file of the run can be a snapshot is a usage error:
    the user meant a snapshot (and its deletions) that this run would not make. Decided by
    the options and the shard map, not by the files found, so that a scheduled load whose
    folder holds no snapshot today still runs."""
    if ctx.get_parameter_source("max_deletes") is click.core.ParameterSource.DEFAULT:
        return
    if source_name is not None:
        possible = mode == "snapshot"
    else:
        possible = any(source.snapshot for source in shard_map.sources)
    if not possible:
        raise click.UsageError(
            "--max-deletes limits what a snapshot deletes, and no file of this run can be one:"
            " give --source NAME --mode snapshot, or declare a source with mode: snapshot in"
            " the shard map"
        )


@contextmanager
def _signals_interrupt(interrupt: Callable[[str], None]) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM stop the load cleanly instead of killing it: it rolls
    back what has not committed and returns, and the summary says what did commit."""

    def handler(signum: int, frame: object) -> None:
        interrupt(f"interrupted by {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals (the CLI run from a thread)
        return
    # pyarrow puts a handler of its own in for the length of a long operation (a block's
    # parse): a signal then was its, and ended the load in its ArrowCancelled, a traceback.
    import pyarrow

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    pyarrow.enable_signal_handlers(False)
    try:
        yield
    finally:
        pyarrow.enable_signal_handlers(True)
        for s, h in previous.items():
            signal.signal(s, h)


@click.command(name="load")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--max-rejects",
    default="10%",
    show_default=True,
    callback=_budget,
    help="Rejects a file may have and still load: a count (25) or a percentage (10%).",
)
@click.option(
    "--rejects",
    "rejects_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_REJECTS_DIR,
    show_default=True,
    help="Folder for the rejects file (NDJSON, mode 0600).",
)
@click.option(
    "--source",
    "source_name",
    callback=_source_name,
    help="The source the files come from (a name such as crm): every row written remembers"
    " it. Default: the shard map's source whose pattern the file name matches, else none.",
)
@click.option(
    "--mode",
    type=click.Choice(["append", "snapshot"]),
    help="With --source: append (the default) inserts and updates; snapshot also deletes the"
    " source's rows that the file does not have, on every shard.",
)
@click.option(
    "--max-deletes",
    default="10%",
    show_default=True,
    callback=_budget,
    help="Rows a snapshot may delete on a shard: a count, or a percentage of the source's"
    " rows there; over it the whole file is refused on every shard.",
)
@click.option("--force", is_flag=True, help="Load files the ledger says are already loaded.")
@click.option("--dry-run", is_flag=True, help="Check and route, report the counts, write nothing.")
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    callback=_encoding,
    help="Text encoding of the files.",
)
@click.option(
    "--connect-timeout",
    type=click.IntRange(min=0),
    help="Seconds to wait to connect to a shard (default: the DSN's connect_timeout, else 10;"
    " 0: no limit).",
)
@click.option(
    "--statement-timeout",
    type=click.FloatRange(min=0),
    help="Seconds a shard may take to answer any one statement (default 900; 0: no limit);"
    " past it the statement is cancelled, and a shard that does not answer is dropped.",
)
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    help="Seconds to wait for a lock another session holds, such as another load of the"
    " shard (default 600; 0: no limit).",
)
@json_option
@click.option(
    "--quiet", "-q", is_flag=True, help="No progress bar, no summary; errors still print."
)
@click.pass_context
def load_command(
    ctx: click.Context,
    paths: tuple[Path, ...],
    max_rejects: Budget,
    rejects_dir: Path,
    source_name: str | None,
    mode: str | None,
    max_deletes: Budget,
    force: bool,
    dry_run: bool,
    encoding: str,
    connect_timeout: int | None,
    statement_timeout: float | None,
    lock_timeout: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Load resident files into the shards, each row into the shard its country routes to.

    PATHS are files or folders (a folder means its .csv, .tsv, .json, .ndjson, .jsonl
    files, each maybe gzipped). Every record is loaded or written to the rejects file
    with a reason; a file over its reject budget loads nothing. A file already in a
    shard's ledger (same sha256) is skipped for that shard, so re-running is safe.

    Exit 0 when every file loaded (rejects within budget), 1 when a file or a shard
    failed (a shard's error says whether re-running completes it; a file over its budget
    needs fixing first), 2 for usage or configuration errors. Ctrl-C or
    SIGTERM stops it: what has not committed rolls back, and the summary says what did.

    Example: pipeline load data/incoming/ --max-rejects 5%
    """
    from pipeline.config import load_rules
    from pipeline.incoming import FileHashes, find_files

    if mode is not None and source_name is None:
        raise click.UsageError("--mode needs --source: a snapshot is the whole truth of a source")
    shard_map = shard_map_of(ctx)
    _refuse_unused_max_deletes(ctx, source_name, mode, shard_map)
    rules = load_rules(shard_map)
    files, passed_over = find_files(paths)
    # Hashed from now on, in a thread, while the readers' libraries are imported below.
    hashes = FileHashes(files)

    from pipeline.interrupt import Interrupt
    from pipeline.load import load
    from pipeline.load_options import LoadOptions
    from pipeline.preflight import before_load
    from pipeline.printable import printable
    from pipeline.shard_link import Timeouts
    from pipeline.summary import ProgressBars
    from pipeline.sync import Source

    source = (
        None
        if source_name is None
        else Source(source_name, "snapshot" if mode == "snapshot" else "append")
    )
    pyarrow_for_a_load()
    before_load(shard_map, dry_run)  # one database twice, a read-only role: exit 2, unwritten
    if passed_over:
        names = printable(", ".join(str(p) for p in passed_over))
        click.echo(f"Warning: passed over files of unsupported type: {names}", err=True)
    given = {"statement": statement_timeout, "lock": lock_timeout}
    timeouts = Timeouts(connect_timeout, **{k: v for k, v in given.items() if v is not None})
    options = LoadOptions(max_rejects, rejects_dir, force, dry_run, encoding, timeouts)
    options.source, options.max_deletes = source, max_deletes
    interrupt = Interrupt()
    # Until the command ends: a signal while the summary prints must not cut it short.
    with _signals_interrupt(interrupt):
        bars = ProgressBars(quiet or as_json)
        result = load(shard_map, rules, files, options, bars, interrupt, hashes)
        _print_load_result(result, paths, files, quiet, as_json)
    ctx.exit(result.exit_code)


def _print_load_result(
    result: LoadResult, paths: tuple[Path, ...], files: list[Path], quiet: bool, as_json: bool
) -> None:
    from pipeline.printable import printable
    from pipeline.summary import error_lines, summary_lines, warning_lines

    for warning in warning_lines(result):
        click.echo(f"Warning: {warning}", err=True)
    if not quiet:
        if not files:
            click.echo(f"no loadable files in {printable(', '.join(map(str, paths)))}", err=True)
        for line in summary_lines(result):
            click.echo(line, err=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    for line in error_lines(result):
        click.echo(f"Error: {line}", err=True)
