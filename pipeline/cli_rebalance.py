"""`pipeline plan` and `pipeline rebalance`: residents moved between shards when the map changes.

Like every command, a thin layer: the plan is pipeline.plan, the moves pipeline.rebalance.
"""

from __future__ import annotations

import json

import click

from pipeline.cli_shared import json_option, shard_map_of
from pipeline.errors import StdoutFailed


def _countries(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    from pipeline.extract import check_countries

    return check_countries(value)


@click.command(name="plan")
@json_option
@click.pass_context
def plan_command(ctx: click.Context, as_json: bool) -> None:
    """Show the moves that would bring every resident to the shard the map routes it to.

    One GROUP BY country query per shard: for each (country, from shard, to shard) the
    rows to move, the rows of countries the map routes nowhere (`default: reject`;
    stranded), and each shard's residency constraint that is not yet the map's. Changes
    nothing. Exit 0 whatever it finds; 1 when a shard cannot be read.

    Example: pipeline plan --json
    """
    from pipeline.plan import plan

    found = plan(shard_map_of(ctx))
    if as_json:
        click.echo(json.dumps(found.to_json(), indent=2))
        return
    for line in found.lines():
        click.echo(line)


@click.command(name="rebalance")
@click.option("--dry-run", is_flag=True, help="Print the moves, change nothing.")
@click.option(
    "--country",
    "countries",
    multiple=True,
    callback=_countries,
    help="Only this country's moves (repeatable).",
)
@click.option(
    "--on-id-conflict",
    type=click.Choice(["stop", "renumber"]),
    default="stop",
    show_default=True,
    help="When the target holds a different row under a moving row's id: stop that "
    "country's move, or give the moving row a new id there.",
)
@json_option
@click.pass_context
def rebalance_command(
    ctx: click.Context,
    dry_run: bool,
    countries: tuple[str, ...],
    on_id_conflict: str,
    as_json: bool,
) -> None:
    """Move residents to the shard the map routes their country to, as `pipeline plan` says.

    Country by country: copy the rows to the target (COPY), verify there that it holds
    the same rows (count and hash, in SQL, on both shards), delete them from the source,
    and set both shards' residency constraints. Loads of either shard wait while a country
    moves. Killed at any point, re-running it finishes the job: no row lost, none doubled.
    A country whose rows' ids the target holds for other rows is not moved (exit 1) and
    its ids are named, unless --on-id-conflict renumber: then they get new ids there, and
    rebalance_renumbered on the target keeps their old shard and id.

    Exit 0 when everything moved, 1 when a move failed or rows are routed to no shard.

    Example: pipeline rebalance --country ID
    """
    from pipeline.rebalance import MoveOutcome, RebalanceOptions, rebalance

    options = RebalanceOptions(countries, on_id_conflict == "renumber", dry_run)

    def moved(outcome: MoveOutcome) -> None:
        if as_json or dry_run:
            return
        try:
            if outcome.error is None:
                click.echo(outcome.line())
            for change in outcome.constraints:
                click.echo(f"constraint {change}")
        except OSError as exc:  # a full disk under `>`, a closed pipe: the log is lost
            raise StdoutFailed(
                f"stdout: cannot write: {exc.strerror or exc}; rebalance stopped after"
                f" {outcome.move.country}'s move: re-running `pipeline rebalance` moves the rest"
                " (`pipeline plan` shows what is left)"
            ) from None

    try:
        result = rebalance(shard_map_of(ctx), options, moved)
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: the moves done are said above
        if not (as_json or dry_run):
            click.echo(
                "rebalance stopped: the moves said above are done; re-running `pipeline"
                " rebalance` finishes the one under way (no row lost or doubled)",
                err=True,
            )
        raise
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    elif dry_run:
        for line in result.plan.lines():
            click.echo(f"would {line}" if line.startswith("move ") else line)
    else:  # each move was said as it ended (moved)
        for change in result.constraints:
            click.echo(f"constraint {change}")
        counts = ", ".join(f"{n} {result.before[n]} -> {result.after[n]}" for n in result.after)
        click.echo(f"residents  {counts}")
    for outcome in result.outcomes:
        if outcome.error is not None:
            click.echo(f"Error: {outcome.line()}", err=True)
    for stranded in result.plan.stranded:
        click.echo(
            f"Error: {stranded.rows} row(s) of {stranded.country} on {stranded.shard} are"
            " routed to no shard (default: reject); they stay",
            err=True,
        )
    for error in result.errors:
        click.echo(f"Error: {error}", err=True)
    ctx.exit(result.exit_code)
