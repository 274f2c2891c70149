"""The `pipeline` command: a thin click layer over the library.

It parses options, calls the library, prints, and maps the project's exceptions to
one-line messages and exit codes: 0 ok, 1 a data or shard problem, 2 a usage or
configuration error. No business logic lives here. Here are the `pipeline` group, its
commands and `main`; `load`, the command with the most options, is pipeline.cli_load, and
what every command shares (the error handling above all) is pipeline.cli_shared.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

# Only what every command needs is imported here; each command imports its own library
# modules when it runs, so that `pipeline extract` does not pay for loading the checks,
# the load path or the report (about 45 ms of a 1M-row extract's 0.7 s).
from pipeline import cli_shared
from pipeline.cli_embedded import embedded_group
from pipeline.cli_erase import erase_command
from pipeline.cli_load import load_command
from pipeline.cli_rebalance import plan_command, rebalance_command
from pipeline.cli_shared import (
    PipelineGroup,
    Terminated,
    described,
    fail,
    format_for,
    json_option,
    output_option,
    shard_map_of,
)
from pipeline.config import DEFAULT_CONFIG_PATH
from pipeline.errors import EXIT_DATA, EXIT_USAGE, ConfigError, PipelineError
from pipeline.stderr import forgive_stderr


@click.group(
    name="pipeline", cls=PipelineGroup, context_settings={"help_option_names": ["-h", "--help"]}
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


cli.add_command(load_command)  # pipeline/cli_load.py
cli.add_command(plan_command)  # pipeline/cli_rebalance.py
cli.add_command(rebalance_command)  # pipeline/cli_rebalance.py
cli.add_command(erase_command)  # pipeline/cli_erase.py
cli.add_command(embedded_group)  # pipeline/cli_embedded.py


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
    rebuilt when the shard map changed. A shard whose erasure log lacks erasures
    another shard's holds (one added to the map) gets them. Stops (exit 1) on a
    shard whose existing rows would break its new residency rule, and says how many.
    Refuses (exit 2), changing nothing, when two shards are one database.

    With --roles: pipeline_loader may read and write residents and the ledger (for
    `load`), pipeline_analyst may read them (for `extract`, `report`, `check`, `status`, `plan`);
    neither may drop, alter or truncate. Grant them with `GRANT pipeline_loader TO etl;`.

    Example: pipeline init --roles
    """
    from pipeline import schema
    from pipeline.erase import share_logs

    shard_map = shard_map_of(ctx)
    failed = 0
    code = EXIT_DATA
    initialised = []
    for outcome in schema.init_all(shard_map, roles):
        if outcome.error is not None:
            failed += 1
            if isinstance(outcome.error, ConfigError):  # a DSN libpq refuses: no re-run helps
                code = EXIT_USAGE
            click.echo(f"Error: {outcome.error}", err=True)
            continue
        initialised.append(outcome.shard)
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
    if initialised and len(shard_map.shards) > 1:
        # A shard added to the map starts with an empty erasure log: the others' go to it,
        # those of shards whose init failed too (a residency rule their rows break).
        others = [s for s in shard_map.shards if s not in initialised]
        recorded, errors = share_logs(shard_map, initialised, others)
        for name, count in recorded.items():
            click.echo(f"{name}: recorded {count} erasure(s) the other shards' logs hold")
        for error in errors:
            failed += 1
            click.echo(f"Error: {error}", err=True)
    if failed:
        fail(ctx, f"{failed} shard(s) not initialised; fix and re-run `pipeline init`", code)


@cli.command()
@output_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "ndjson", "parquet"]),
    help="Output format (default: from the -o extension, else csv).",
)
@click.option("--country", "countries", multiple=True, help="Only this country (repeatable).")
@click.option("--shard", "shards", multiple=True, help="Only this shard (repeatable).")
@click.option("--with-provenance", is_flag=True, help="Add load_id, loaded_at and source columns.")
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

    Columns: shard, id, country, name, gender, age, address (then load_id, loaded_at,
    source with --with-provenance); shard by shard in shard-map order, each by id. (shard, id) is a
    resident's identity: ids repeat across shards. In CSV, a text cell starting with
    = + - @ tab or CR gets a leading ' so that spreadsheets do not run it (--raw: as stored).

    An unreachable shard fails the extract (exit 1) and leaves no file at -o, unless
    --allow-partial.

    Example: pipeline extract -o data/exports/us.parquet --country US
    """
    from pipeline.extract import FORMATS, Selection, check_countries, extract_to

    shard_map = shard_map_of(ctx)
    if fmt is None:
        fmt = format_for(output, FORMATS, "csv")
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
    help="Default: from the -o extension (.txt, .md, .json, .html or .htm), else text.",
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
    from pipeline.output import write_atomically, write_stdout
    from pipeline.report import build_report
    from pipeline.report_output import FORMATS, render

    if fmt is None:
        fmt = format_for(output, FORMATS, "text")
    figures = build_report(shard_map_of(ctx), allow_partial)
    for name, reason in figures.missing.items():
        click.echo(f"Warning: shard {name} left out (--allow-partial): {reason}", err=True)
    text = render(figures, fmt)
    if output is None:
        write_stdout(text)
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
    from pipeline.output import write_atomically, write_stdout

    if fmt is None:
        fmt = format_for(output, FORMATS, "text")
    summary = os.environ.get("GITHUB_STEP_SUMMARY") if fmt == "github" else None
    summary_path = Path(summary) if summary else None
    try:
        shard_map = shard_map_of(ctx)
        results = run_all(shard_map, load_checks(shard_map), only, show_samples)
    except PipelineError as exc:
        # CI reads the report: a missing one is no failure to it. Write one that fails.
        report = render_error(str(exc), fmt, summary_path)
        try:
            if output is not None:
                write_atomically(output, report.encode())
            elif fmt != "text":  # text: the Error line below says it all
                write_stdout(report)
        except PipelineError as unwritten:  # a full disk: the checks' error still comes first
            raise type(unwritten)(f"{exc}; {unwritten}") from None
        fail(ctx, described(exc, ctx.command_path), EXIT_USAGE)
    text = render(results, fmt, warn_error, show_samples, summary_path)
    if output is None:
        write_stdout(text)
    else:
        write_atomically(output, text.encode())
    ctx.exit(exit_code(results, warn_error))


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show each shard: DSN (password hidden), reachable, schema version, residents, last load.

    Also names a rebalance move left copied and not deleted (its rows counted on both
    shards). Exits 1 when any shard is unreachable or such a move is left, 2 when two shards
    are one database or a DSN is one libpq refuses.

    Example: pipeline status --json
    """
    from pipeline.status import all_status, format_line

    statuses = all_status(shard_map_of(ctx))
    if as_json:
        click.echo(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        for s in statuses:
            click.echo(format_line(s))
    if any(s.misconfigured for s in statuses):
        ctx.exit(EXIT_USAGE)
    if not all(s.reachable and not s.unfinished_moves for s in statuses):
        ctx.exit(EXIT_DATA)


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def done_at_a_signal(code: int) -> None:
    """Once the command has ended (its output written, its exit code chosen), Ctrl-C or
    SIGTERM ends the process at once with that code, its output flushed: one that came as
    the interpreter closed (joining threads, shutting logging down) printed a traceback,
    or ended a finished run as killed by the signal (measured: 4 of 100 interrupted
    extracts, the file complete)."""

    def handler(signum: int, frame: Any) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    # psycopg logs what its clean-up after an error could not do, chiefly a rollback sent
    # into a connection that an interrupt left busy ("error ignored in rollback"): its
    # `transaction()` blocks do that themselves. The command reports the error in one line;
    # Python's last-resort handler would print psycopg's beside it. Handlers a caller
    # configures still get it (this only stops the last resort).
    logging.getLogger("psycopg").addHandler(logging.NullHandler())
    cli_shared.STANDALONE = True  # the process is ours alone (see pyarrow_for_a_load)
    # numpy's OpenBLAS starts a thread a core when imported, which spin a while: 0.05 s of
    # CPU that a 1M-row Parquet extract's other work needs. No command does linear algebra.
    # Set here, for this process only: a notebook's `to_dataframe` leaves its own alone.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # pyarrow's memory pool: the C library's allocator. pyarrow's default (mimalloc) keeps
    # what a batch freed for the next one: a 1M-row load peaked at 165-177 MB with it against
    # 125-130 MB, a 1M-row Parquet extract at 162-167 MB against 136-146 MB (measured, same
    # time). Read when pyarrow first allocates, which no command has done yet.
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    forgive_stderr()  # a summary stderr cannot take changes no outcome (pipeline.stderr)
    code = EXIT_DATA
    try:
        cli(prog_name="pipeline")
    except SystemExit as exc:  # click's standalone mode ends every command with one
        code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else EXIT_DATA
        raise
    finally:
        done_at_a_signal(code)
        # Python's exit ends with a full garbage collection over every object still alive,
        # most of them made by the imports (psycopg's above all): 30 ms, a twentieth of a
        # 1M-row extract. Frozen objects are left out of it. atexit handlers still run;
        # what a collection alone would free (objects in reference cycles) is not finalized,
        # so every file and connection is closed by its `with` block, never left to that.
        gc.freeze()


if __name__ == "__main__":
    main()
