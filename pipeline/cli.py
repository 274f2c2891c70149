"""The `pipeline` command: a thin click layer over the library.

It parses options, calls the library, prints, and maps the project's exceptions to
one-line messages and exit codes: 0 ok, 1 a data or shard problem, 2 a usage or
configuration error. No business logic lives here.
"""

from __future__ import annotations

import gc
import io
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

# Only what every command needs is imported here; each command imports its own library
# modules when it runs, so that `pipeline extract` does not pay for loading the checks,
# the load path or the report (about 45 ms of a 1M-row extract's 0.7 s).
from pipeline.config import DEFAULT_CONFIG_PATH, DEFAULT_REJECTS_DIR, ShardMap, load_shard_map
from pipeline.errors import EXIT_DATA, EXIT_USAGE, PipelineError

if TYPE_CHECKING:
    from pipeline.load_result import LoadResult
    from pipeline.routing import Budget

F = TypeVar("F", bound=Callable[..., Any])


def fail(ctx: click.Context, message: str, code: int) -> NoReturn:
    """Print `Error: <message>` on stderr and exit with `code`: how every error leaves."""
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


class _PipelineGroup(click.Group):
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
        try:
            code = super().main(args, prog_name, standalone_mode=False, **extra)
        except click.UsageError as exc:
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
            if isinstance(exc.__cause__, Terminated):
                click.echo("Error: terminated (SIGTERM)", err=True)
            else:
                click.echo("Aborted!", err=True)
            sys.exit(EXIT_DATA)
        except BrokenPipeError:
            # `pipeline extract | head`: the reader has what it wanted. Keep Python's exit
            # handler from complaining about the closed stdout.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(EXIT_DATA)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            fail(ctx, str(exc), exc.exit_code)
        except OSError as exc:
            if isinstance(exc, BrokenPipeError):
                raise
            # A file we were told to write and cannot (a full disk, a folder without rights).
            where = f": {exc.filename}" if exc.filename else ""
            fail(ctx, f"{exc.strerror or exc}{where}", EXIT_USAGE)


def output_option(func: F) -> F:
    path = click.Path(path_type=Path, dir_okay=False)
    return click.option("-o", "--output", type=path, help="File to write (default stdout).")(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def _format_for(output: Path | None, formats: dict[str, str], default: str) -> str:
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


def _shard_map(ctx: click.Context) -> ShardMap:
    """The shard map, parsed on first use so that --help works without one."""
    obj = ctx.ensure_object(dict)
    if "shard_map" not in obj:
        obj["shard_map"] = load_shard_map(obj["config_path"])
    shard_map: ShardMap = obj["shard_map"]
    return shard_map


@click.group(
    name="pipeline", cls=_PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG_PATH,
    show_default=True,
    envvar="PIPELINE_CONFIG",
    help="The shard map (also PIPELINE_CONFIG).",
)
@click.version_option(package_name="resident-pipeline")
@click.pass_context
def cli(ctx: click.Context, config_path: Path) -> None:
    """Route resident records by country into regional PostgreSQL shards.

    Exit codes: 0 ok, 1 a data or shard problem, 2 a usage or configuration error.
    """
    ctx.ensure_object(dict)["config_path"] = config_path


@cli.command()
@click.option(
    "--roles",
    is_flag=True,
    help="Also create the group roles pipeline_loader and pipeline_analyst (if missing) "
    "and grant them each shard's tables.",
)
@click.pass_context
def init(ctx: click.Context, roles: bool) -> None:
    """Create or upgrade the schema on every shard and set its residency constraint.

    Safe to re-run: applied migrations are skipped, and the constraint is only
    rebuilt when the shard map changed. Stops (exit 1) on a shard whose existing
    rows would break its new residency rule, and says how many. Refuses (exit 2),
    changing nothing, when two shards are one database.

    With --roles: pipeline_loader may read and write residents and the ledger (for
    `load`), pipeline_analyst may read them (for `extract`, `report`, `check`);
    neither may drop, alter or truncate. Grant them with `GRANT pipeline_loader TO etl;`.

    Example: pipeline init --roles
    """
    from pipeline import schema

    shard_map = _shard_map(ctx)
    failed = 0
    for outcome in schema.init_all(shard_map, roles):
        if outcome.error is not None:
            failed += 1
            click.echo(f"Error: {outcome.error}", err=True)
            continue
        result = outcome.unwrap()
        if result.from_version == result.to_version:
            migrated = f"schema {result.to_version} (up to date)"
        else:
            migrated = f"schema {result.from_version} -> {result.to_version}"
        rule = ("set to " if result.rule_changed else "unchanged: ") + result.rule
        granted = ""
        if result.roles_created is not None:
            made = ", ".join(result.roles_created)
            granted = "; roles granted" + (f" (created {made})" if made else "")
        click.echo(f"{result.shard}: {migrated}; residency {rule}{granted}")
    if failed:
        fail(ctx, f"{failed} shard(s) not initialised; fix and re-run `pipeline init`", EXIT_DATA)


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


@contextmanager
def _signals_interrupt(interrupt: Callable[[str], None]) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM stop the load cleanly instead of killing it: it rolls
    back what has not committed and returns, and the summary says what did commit."""

    def handler(signum: int, frame: object) -> None:
        interrupt(f"interrupted by {signal.Signals(signum).name}")

    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may handle signals (the CLI run from a thread)
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@cli.command(name="load")
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
    type=click.IntRange(min=1),
    help="Seconds to wait to connect to a shard (default: the DSN's connect_timeout, else 10).",
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
    failed (re-running the same command completes it), 2 for usage errors. Ctrl-C or
    SIGTERM stops it: what has not committed rolls back, and the summary says what did.

    Example: pipeline load data/incoming/ --max-rejects 5%
    """
    from pipeline.config import load_rules
    from pipeline.incoming import find_files
    from pipeline.interrupt import Interrupt
    from pipeline.load import LoadOptions, load
    from pipeline.preflight import before_load
    from pipeline.summary import ProgressBars, printable
    from pipeline.writer import Timeouts

    shard_map = _shard_map(ctx)
    rules = load_rules(shard_map)
    files, passed_over = find_files(paths)
    before_load(shard_map, dry_run)  # one database twice, a read-only role: exit 2, unwritten
    if passed_over:
        names = printable(", ".join(str(p) for p in passed_over))
        click.echo(f"Warning: passed over files of unsupported type: {names}", err=True)
    given = {"statement": statement_timeout, "lock": lock_timeout}
    timeouts = Timeouts(connect_timeout, **{k: v for k, v in given.items() if v is not None})
    options = LoadOptions(max_rejects, rejects_dir, force, dry_run, encoding, timeouts)
    interrupt = Interrupt()
    # Until the command ends: a signal while the summary prints must not cut it short.
    with _signals_interrupt(interrupt):
        result = load(shard_map, rules, files, options, ProgressBars(quiet or as_json), interrupt)
        _print_load_result(result, paths, files, quiet, as_json)
    ctx.exit(result.exit_code)


def _print_load_result(
    result: LoadResult, paths: tuple[Path, ...], files: list[Path], quiet: bool, as_json: bool
) -> None:
    from pipeline.summary import error_lines, printable, summary_lines, warning_lines

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


@cli.command()
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default stdout).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "ndjson", "parquet"]),
    help="Output format (default: from the -o extension, else csv).",
)
@click.option("--country", "countries", multiple=True, help="Only this country (repeatable).")
@click.option("--shard", "shards", multiple=True, help="Only this shard (repeatable).")
@click.option("--with-provenance", is_flag=True, help="Add load_id and loaded_at columns.")
@click.option("--raw", is_flag=True, help="CSV: do not defuse cells that start like a formula.")
@click.option(
    "--allow-partial", is_flag=True, help="Leave out an unreachable shard (with a warning)."
)
@click.pass_context
def extract(
    ctx: click.Context,
    output: Path | None,
    fmt: str | None,
    countries: tuple[str, ...],
    shards: tuple[str, ...],
    with_provenance: bool,
    raw: bool,
    allow_partial: bool,
) -> None:
    """Write every resident of every shard as one dataset: CSV, JSON, NDJSON or Parquet.

    Columns: shard, id, country, name, gender, age, address (then load_id, loaded_at with
    --with-provenance); shard by shard in shard-map order, each by id. (shard, id) is a
    resident's identity: ids repeat across shards. In CSV, a text cell starting with
    = + - @ tab or CR gets a leading ' so that spreadsheets do not run it (--raw: as stored).

    An unreachable shard fails the extract (exit 1) and leaves no file at -o, unless
    --allow-partial.

    Example: pipeline extract -o data/exports/us.parquet --country US
    """
    from pipeline.extract import FORMATS, Selection, check_countries, extract_to

    shard_map = _shard_map(ctx)
    if fmt is None:
        fmt = _format_for(output, FORMATS, "csv")
    selection = Selection(shards, check_countries(countries), with_provenance, allow_partial)
    result = extract_to(shard_map, selection, fmt, output, raw=raw)
    for name, reason in result.missing.items():
        click.echo(f"Warning: shard {name} left out (--allow-partial): {reason}", err=True)
    if output is not None:
        click.echo(
            f"{result.rows} residents from {len(result.shards_read)} shard(s) -> {output}", err=True
        )


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json", "html"]),
    help="Default: from the -o extension (.md, .json, .html), else text.",
)
@output_option
@click.option(
    "--allow-partial", is_flag=True, help="Leave out an unreachable shard (the report says so)."
)
@click.pass_context
def report(ctx: click.Context, fmt: str | None, output: Path | None, allow_partial: bool) -> None:
    """Residents per shard and country, gender split, age bands, average age, latest loads.

    Figures are computed on each shard in SQL and merged (the average age from sums and
    counts). html is one self-contained page with bar charts; markdown pastes into a wiki.
    An unreachable shard fails the report (exit 1), unless --allow-partial: then the report
    names the shards it leaves out.

    Example: pipeline report -o data/exports/report.html
    """
    from pipeline.output import write_atomically
    from pipeline.report import build_report
    from pipeline.report_output import FORMATS, render

    if fmt is None:
        fmt = _format_for(output, FORMATS, "text")
    figures = build_report(_shard_map(ctx), allow_partial)
    for name, reason in figures.missing.items():
        click.echo(f"Warning: shard {name} left out (--allow-partial): {reason}", err=True)
    text = render(figures, fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomically(output, text.encode())
        click.echo(f"report -> {output}", err=True)


@cli.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "junit", "github"]),
    help="text for people, json for scripts, junit for CI servers, github for Actions"
    " (default: from the -o extension, .txt .json .xml, else text).",
)
@output_option
@click.option("--warn-error", is_flag=True, help="Warnings fail the run too.")
@click.option(
    "--only", multiple=True, help="Run only this check (repeatable); residency always runs."
)
@click.option(
    "--show-samples", is_flag=True, help="JSON: include the failing rows (personal data)."
)
@click.pass_context
def check(
    ctx: click.Context,
    fmt: str | None,
    output: Path | None,
    warn_error: bool,
    only: tuple[str, ...],
    show_samples: bool,
) -> None:
    """Run the data-quality checks of config/checks.yaml (and residency, always) on every shard.

    Exit 0 when every check passed (warnings allowed), 1 when an error-level check failed
    (or a warning, with --warn-error), 2 when the checks could not run (configuration,
    connection, SQL error). Samples name ids, not whole rows, unless --show-samples.

    Example: pipeline check --format junit -o reports/checks.xml
    """
    from pipeline.check_output import FORMATS, render, render_error
    from pipeline.check_run import run_all
    from pipeline.checks import exit_code, load_checks
    from pipeline.output import write_atomically

    if fmt is None:
        fmt = _format_for(output, FORMATS, "text")
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if fmt == "github" else None
    summary_path = Path(summary) if summary else None
    try:
        shard_map = _shard_map(ctx)
        results = run_all(shard_map, load_checks(shard_map), only, show_samples)
    except PipelineError as exc:
        # CI reads the report: a missing one is no failure to it. Write one that fails.
        report = render_error(str(exc), fmt, summary_path)
        if output is not None:
            write_atomically(output, report.encode())
        elif fmt != "text":  # text: the Error line below says it all
            click.echo(report, nl=False)
        fail(ctx, str(exc), EXIT_USAGE)
    text = render(results, fmt, warn_error, show_samples, summary_path)
    if output is None:
        click.echo(text, nl=False)
    else:
        write_atomically(output, text.encode())
    ctx.exit(exit_code(results, warn_error))


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each shard: DSN (password hidden), reachable, schema version, residents, last load.

    Exits 1 when any shard is unreachable, 2 when two shards are one database.

    Example: pipeline status --json
    """
    from pipeline.status import all_status, format_line

    statuses = all_status(_shard_map(ctx))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        for s in statuses:
            click.echo(format_line(s))
    if any(s.misconfigured for s in statuses):
        ctx.exit(EXIT_USAGE)
    if not all(s.reachable for s in statuses):
        ctx.exit(EXIT_DATA)


@cli.group(name="embedded")
def embedded_group() -> None:
    """Manage the embedded PostgreSQL server behind `embedded:NAME` shards."""


@embedded_group.command(name="start")
@click.pass_context
def embedded_start(ctx: click.Context) -> None:
    """Start the embedded server and create its shard databases (commands do this on demand).

    Example: pipeline embedded start
    """
    from pipeline import embedded

    shard_map = _shard_map(ctx)
    names = [s.embedded_database for s in shard_map.shards if s.embedded_database is not None]
    for name in names:
        embedded.server_uri(shard_map.embedded_dir, name)
    used = ", ".join(names) or "no shard uses it"
    click.echo(f"embedded PostgreSQL running in {shard_map.embedded_dir} ({used})")


@embedded_group.command(name="stop")
@click.pass_context
def embedded_stop(ctx: click.Context) -> None:
    """Stop the embedded server; its data stays for the next command.

    Example: pipeline embedded stop
    """
    from pipeline import embedded

    shard_map = _shard_map(ctx)
    if embedded.stop(shard_map.embedded_dir):
        click.echo(f"stopped embedded PostgreSQL in {shard_map.embedded_dir}")
    else:
        click.echo(f"embedded PostgreSQL in {shard_map.embedded_dir} was not running")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C: so that it unwinds the same way
    (Python's default for SIGTERM is to die on the spot, leaving partial files behind)."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="pipeline")
    finally:
        # Python's exit ends with a full garbage collection over every object still alive,
        # most of them made by the imports (psycopg's above all): 30 ms, a twentieth of a
        # 1M-row extract. Frozen objects are left out of it. atexit handlers still run;
        # what a collection alone would free (objects in reference cycles) is not finalized,
        # so every file and connection is closed by its `with` block, never left to that.
        gc.freeze()


if __name__ == "__main__":
    main()
