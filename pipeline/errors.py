"""The project's exceptions, and the exit code each one means at the command line.

Library code raises these; the command line (`pipeline.cli_shared.PipelineGroup`) turns
them into a one-line message and an exit code. Anything else escaping the library is a bug.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_DATA = 1  # a data or shard problem: bad rows over budget, a shard unreachable or failing
EXIT_USAGE = 2  # a usage or configuration error: nothing was written


class PipelineError(Exception):
    """Base class: a problem the user can act on, with a message fit to print."""

    exit_code = EXIT_DATA


class ConfigError(PipelineError):
    """The shard map (or another configuration file) is missing or invalid."""

    exit_code = EXIT_USAGE


class OptionError(ConfigError):
    """A command-line option's value is wrong: a usage error, which the command line says
    with where to find `--help`, as click does its own."""


class StdoutFailed(ConfigError):
    """stdout cannot take the output (a full disk under a redirect): pipeline.output."""


class LocalFileError(PipelineError):
    """A file of the command's own cannot be written: the load's rejects file, a temporary
    spool in $TMPDIR (a full disk, too many open files). A load stops as an interrupted one
    does (pipeline.load); another command ends with it."""

    exit_code = EXIT_USAGE


class ShardError(PipelineError):
    """A shard could not be reached, or a statement on it failed. `transient`: the failure
    may go away by itself (a connection lost, a time-out), so trying again makes sense."""

    def __init__(self, shard: str, message: str, transient: bool = False) -> None:
        super().__init__(f"shard {shard}: {message}")
        self.shard = shard
        self.reason = message
        self.transient = transient


class ResidencyViolation(ShardError):
    """Rows already on a shard would break the residency rule the shard map now asks for."""

    def __init__(self, shard: str, rule: str, by_country: dict[str, int]) -> None:
        total = sum(by_country.values())
        countries = ", ".join(f"{c} ({n})" for c, n in by_country.items())
        super().__init__(
            shard,
            f"{total} existing row(s) would break the new residency rule {rule}: "
            f"{countries}; the rule was not changed (move those rows first)",
        )
        self.rule = rule
        self.by_country = by_country


# What a process out of memory says, whatever ran out: an allocation (MemoryError), or a
# thread's stack (Python's "can't start new thread", pyarrow's "Failed to launch worker
# thread"), which under a limit on the address space is what fails first.
OUT_OF_MEMORY = "out of memory: the process could not allocate what it needed (a memory limit?)"
_NO_THREAD = ("can't start new thread", "Failed to launch worker thread")


def exhausted(exc: BaseException) -> bool:
    """Whether `exc` says the process ran out of memory (see OUT_OF_MEMORY)."""
    return isinstance(exc, MemoryError) or any(text in str(exc) for text in _NO_THREAD)
