"""The README is the user's manual: it may not drift from the code.

In the spirit of sqlite-utils' tests/test_docs.py: every command has a section of its own,
every option of every command is named in the README, and the commands the README shows
with their output print that output: those that can print it again are run on two fresh test
shards, in the README's order, and the others are listed, with why, in ILLUSTRATIVE.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from tests.conftest import ORIGINAL_DATA, RunCli
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
    # --version is click's own, and says nothing a manual would
    found = [
        ("", tuple(p.opts))
        for p in cli.params
        if isinstance(p, click.Option) and "--version" not in p.opts
    ]
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


# -- the examples: every command the README shows with its output still prints it -----------

# Examples whose output cannot be printed again as shown, and why. Every other example of a
# command with its output is run, in the README's order, on two fresh test shards.
ERASE_SHOWN = 'pipeline erase --name "Amelia Clarke" --age 29'
ERASE_DONE = f"{ERASE_SHOWN} --reference GDPR-2291 --yes"
ILLUSTRATIVE = {
    "pipeline status": "the time of the user's load and the embedded DSNs of their machine",
    "pipeline status --json": "an excerpt of the JSON: '...' stands for keys and records",
    "pipeline plan": "a map with a third shard: tests/test_rebalance.py runs it",
    "pipeline rebalance": "a map with a third shard: tests/test_rebalance.py runs it",
    "pipeline load --source crm --mode snapshot crm-2026-11-29.csv": "an export of the user's"
    " own: tests/test_sync.py runs snapshots",
    ERASE_SHOWN: "needs an erasure key: tests/test_erase.py runs it",
    ERASE_DONE: "needs an erasure key: tests/test_erase.py runs it",
}
ELLIPSIS = "..."  # in a shown output: any number of lines left out


def readme_examples() -> list[tuple[str, list[str]]]:
    """(command, the output shown under it) for each `$ pipeline ...` line of the README's
    shell blocks that shows an output; `.venv/bin/pipeline` is `pipeline`, and a comment
    after the command is not part of it."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.DOTALL):
        for example in re.split(r"^\$ ", block, flags=re.MULTILINE)[1:]:
            command, *output = example.rstrip("\n").split("\n")
            command = re.sub(r"\s+#.*$", "", command).replace(".venv/bin/pipeline", "pipeline")
            while output and not output[-1].strip():
                output.pop()
            if output and command.startswith("pipeline "):
                found.append((command, output))
    return found


def shows(shown: list[str], printed: list[str]) -> bool:
    """Whether `printed` is `shown`, each `...` line standing for any lines."""
    if not shown:
        return not printed
    if shown[0] == ELLIPSIS:
        return any(shows(shown[1:], printed[i:]) for i in range(len(printed) + 1))
    return bool(printed) and printed[0] == shown[0] and shows(shown[1:], printed[1:])


def test_the_readme_shows_these_commands_with_their_output() -> None:
    # A new example is run by the test below, or listed in ILLUSTRATIVE with the reason.
    commands = [command for command, _ in readme_examples()]
    assert commands == [
        "pipeline status",
        "pipeline init",
        "pipeline load data/incoming/",
        "pipeline load --source crm --mode snapshot crm-2026-11-29.csv",
        "pipeline extract",
        "pipeline report",
        "pipeline check",
        "pipeline status --json",
        "pipeline plan",
        "pipeline rebalance",
        ERASE_SHOWN,
        ERASE_DONE,
    ]
    assert set(ILLUSTRATIVE) <= set(commands)


def test_every_command_the_readme_shows_with_its_output_prints_it(
    run_cli: RunCli, tmp_path: Path
) -> None:
    incoming = tmp_path / "data" / "incoming"  # run_cli runs in tmp_path, as from the root
    incoming.mkdir(parents=True)
    (incoming / ORIGINAL_DATA.name).write_bytes(ORIGINAL_DATA.read_bytes())
    ran = []
    for command, shown in readme_examples():
        if command in ILLUSTRATIVE:
            continue
        result = run_cli(*shlex.split(command)[1:])
        assert result.exit_code == 0, (command, result.output)
        printed = result.output.rstrip("\n").split("\n")
        assert shows(shown, printed), (command, shown, printed)
        ran.append(command)
    assert len(ran) == 5  # init, load, extract, report, check


@pytest.mark.parametrize(
    ("shown", "printed", "matches"),
    [
        (["a", "...", "d"], ["a", "b", "c", "d"], True),
        (["a", "...", "d"], ["a", "d"], True),
        (["a", "...", "d"], ["a", "b", "c"], False),
        (["a", "b"], ["a", "b", "c"], False),
        (["a", "..."], ["a"], True),
        (["x", "..."], ["a"], False),
    ],
)
def test_an_ellipsis_in_an_example_stands_for_any_lines(
    shown: list[str], printed: list[str], matches: bool
) -> None:
    assert shows(shown, printed) is matches
