"""The command line as a whole: every command documents itself."""

from __future__ import annotations

import signal
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found.extend(_commands(command, (*prefix, name)))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help and len(command.help.strip()) > 20


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["lod"])
    assert result.exit_code == 2


def test_no_command_shows_the_help_as_help_does_and_exits_2() -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert lines[0] == "Usage: pipeline [OPTIONS] COMMAND [ARGS]..."
    assert "Commands:" in lines and not result.output.startswith("Error:")


def test_the_command_line_keeps_psycopgs_clean_up_warnings_off_stderr() -> None:
    # psycopg logs a rollback it could not send after an interrupt ("error ignored in
    # rollback"); the command has reported the interrupt already, in one line. Other
    # loggers still reach stderr.
    code = (
        "import logging, sys\n"
        "from pipeline.cli import main\n"
        "sys.argv = ['pipeline', '--help']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "logging.getLogger('psycopg').warning('error ignored in rollback')\n"
        "logging.getLogger('elsewhere').warning('still shown')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and "Usage:" in done.stdout
    assert done.stderr == "still shown\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_once_the_command_is_done_ends_it_with_its_code_and_output(signum: int) -> None:
    # As the interpreter closes (threads joined, logging shut down), a signal printed a
    # traceback or ended a finished run as killed.
    code = (
        "import os, sys, time\n"
        "from pipeline.cli import done_at_a_signal\n"
        "sys.stdout.write('written')\n"  # still in the buffer: a pipe's
        "done_at_a_signal(3)\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (3, "written", "")


@pytest.mark.parametrize(
    ("module", "signum", "said"),
    [
        ("click", signal.SIGINT, "interrupted (SIGINT)"),
        ("psycopg", signal.SIGINT, "interrupted (SIGINT)"),
        ("psycopg", signal.SIGTERM, "terminated (SIGTERM)"),
    ],
)
def test_a_signal_during_the_commands_imports_ends_in_one_line(
    module: str, signum: int, said: str
) -> None:
    # The entry point imports the command line itself: a SIGINT that lands while click or
    # psycopg is being imported (the first 0.15 s of every command) is reported as every
    # interrupt is, not with a traceback through the import machinery.
    code = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def hooked(name, *args, **kwargs):\n"
        f"    if name == {module!r}:\n"
        "        builtins.__import__ = real\n"
        f"        os.kill(os.getpid(), {int(signum)})\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = hooked\n"
        "sys.argv = ['pipeline', 'status']\n"
        "from pipeline.entry import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, f"Error: {said}\n")
