"""The README is the user's manual: it may not drift from the code.

In the spirit of sqlite-utils' tests/test_docs.py: every command has a section of its own,
every option of every command is named in the README, and the commands the README shows
with their output print that output (tests/test_load.py and tests/test_extract.py check
the data they show; here, the output of commands that need no data).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.test_cli import _commands

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
# The headings of the "Commands" part: `### \`pipeline load PATH... [--max-rejects ...]\``.
HEADINGS = re.findall(r"^### `pipeline ([a-z ]+?)(?: [^`]*)?`", README, flags=re.MULTILINE)


def _command(path: tuple[str, ...]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def _options() -> list[tuple[str, tuple[str, ...]]]:
    """(command, the option's spellings) for every option of every command."""
    found = [("", tuple(p.opts)) for p in cli.params if isinstance(p, click.Option)]
    for path in _commands(cli):
        for param in _command(path).params:
            if isinstance(param, click.Option) and "--help" not in param.opts:
                found.append((" ".join(path), tuple(param.opts)))
    return found


@pytest.mark.parametrize("path", _commands(cli), ids=" ".join)
def test_every_command_has_a_section_in_the_readme(path: tuple[str, ...]) -> None:
    if isinstance(_command(path), click.Group):
        # A group's section names its subcommands: `pipeline embedded start | stop`.
        assert any(h.startswith(" ".join(path)) for h in HEADINGS), path
        return
    name = " ".join(path)
    parent = " ".join(path[:-1])
    assert name in HEADINGS or (parent and any(h.startswith(parent) for h in HEADINGS)), name


@pytest.mark.parametrize(
    ("command", "spellings"), _options(), ids=lambda v: v if isinstance(v, str) else v[-1]
)
def test_every_option_is_in_the_readme(command: str, spellings: tuple[str, ...]) -> None:
    if "--version" in spellings:
        return
    named = (re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", README) for o in spellings)
    assert any(named), (command, spellings)


def test_the_exit_codes_are_the_readmes() -> None:
    table = re.search(r"## Exit codes\n\n\| code \| meaning \|\n\|[-| ]+\|\n((?:\|.*\n)+)", README)
    assert table is not None
    codes = [line.split("|")[1].strip() for line in table.group(1).splitlines()]
    assert codes == ["0", "1", "2"]
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert "0 ok, 1 a data or shard problem, 2 a usage or configuration error" in help_text


def test_the_readme_shows_the_two_commands() -> None:
    setup = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "make load" in setup and "make test" in setup
