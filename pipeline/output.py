"""Output files (`-o PATH` of extract, report and check): whole or not at all, private, and
never through a special file.

Exports, reports and check results hold personal data, so a new file is created 0600 (a
file being replaced keeps its mode and owner: share one by making it so once). The output
is written to a hidden partial file beside PATH and renamed over it only when complete; a
failure, Ctrl-C or SIGTERM removes the partial file, and a partial file left by a process
that was killed outright (SIGKILL, a power cut) is removed by the next write to the same
PATH. A writer holds a lock on its partial file, so the next one tells the dead from the
still running.

PATH must be a regular file or not exist yet (a symbolic link is followed: the file it
points to is replaced, the link stays). A FIFO, a device or a socket is refused: renaming
over `/dev/full` would replace the device itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ConfigError, StdoutFailed
from pipeline.regular_file import kind_of

NEW_FILE_MODE = 0o600
PARTIAL = ".partial-"  # .NAME.partial-XXXXXXXX beside NAME
# A partial file is removed by a later run only when no process holds its lock and it is
# older than this: a writer takes its lock right after creating the file, a few
# microseconds in which the file is unlocked.
STALE_AFTER = 5.0


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that the file appears whole or not at all."""
    with atomic_output(path) as partial:
        partial.write_bytes(data)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """A partial file to write, renamed over `path` when the block ends without an error
    and removed when it does not. ConfigError (exit 2) when `path` cannot be written."""
    target = _target(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        fd, name = tempfile.mkstemp(prefix=f".{target.name}{PARTIAL}", dir=target.parent)
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot write there: {exc.strerror or exc}") from None
    partial = Path(name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # "still being written": see remove_stale_partials
        yield partial
        _keep_mode_and_owner(fd, target)
        # On disk before it is renamed, and the rename on disk before we say it is done: a
        # power cut must leave the old file or the whole new one, never an empty one under
        # PATH (a file system may commit the rename before the data).
        os.fsync(fd)
        os.replace(partial, target)
        _sync_folder(target.parent)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.filename is not None or isinstance(exc, BrokenPipeError):
            raise  # about another file, named in it
        # A write into the partial file (or a spool beside it) failed: a full disk, a quota.
        raise ConfigError(f"-o {path}: cannot write: {_reason(exc)}; nothing was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:  # a folder we may write but not open: the rename stands, unsynced
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder (EINVAL): nothing more to do
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def stdout_errors() -> Iterator[None]:
    """A write to stdout that fails (a full disk or a quota under a redirect) as an error
    naming stdout (StdoutFailed, exit 2); a closed pipe (`| head`) stays a BrokenPipeError.
    The command line sends what stdout's buffer still holds nowhere (cli_shared)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = _reason(exc)
        raise StdoutFailed(f"stdout: cannot write: {reason}; the output is incomplete") from None


class GuardedStdout:
    """sys.stdout's bytes, for an output: each write is written whole or fails as
    stdout_errors says. Under PYTHONUNBUFFERED (or -u) sys.stdout.buffer is the raw file,
    whose write may write part of what it is given and say so only in its count: at a full
    disk, the rest would be lost without an error. Only its own writes are guarded: a
    spool's in $TMPDIR, which fail alike, are no stdout's."""

    def __init__(self) -> None:
        sys.stdout.flush()  # text written before goes first
        self._stream = sys.stdout.buffer

    def write(self, data: bytes | bytearray | memoryview) -> int:
        view = memoryview(data).cast("B")
        with stdout_errors():
            while view:
                written = self._stream.write(view)
                if written is None:  # a non-blocking stdout, full for now
                    select.select([], [self._stream], [])
                    continue
                view = view[written:]
        return len(data)

    def flush(self) -> None:
        with stdout_errors():
            self._stream.flush()


def write_stdout(text: str) -> None:
    """An output (a report, the checks' results) to stdout, whole or an error."""
    stdout = GuardedStdout()
    stdout.write(text.encode(sys.stdout.encoding or "utf-8", sys.stdout.errors or "strict"))
    stdout.flush()


def _reason(exc: OSError) -> str:
    # pyarrow's says "Error writing bytes to file. Detail: [errno 28] ...": the errno's.
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _target(path: Path) -> Path:
    """The file to replace: `path`, or the file its symbolic link points to; a special file
    is a usage error."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ConfigError(f"-o {path}: cannot write there: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise ConfigError(
            f"-o {path}: is {kind_of(mode)}; -o writes regular files only (leave -o out to write to"
            " stdout, and redirect that)"
        )
    return path.resolve() if path.is_symlink() else path


def _keep_mode_and_owner(fd: int, target: Path) -> None:
    """A replaced file keeps its permissions (and, for root, its owner); a new one is
    private. The partial file was made 0600 by mkstemp."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        os.fchmod(fd, NEW_FILE_MODE)
        return
    os.fchmod(fd, stat.S_IMODE(old.st_mode))
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        with contextlib.suppress(OSError):
            os.fchown(fd, old.st_uid, old.st_gid)


def remove_stale_partials(target: Path) -> list[Path]:
    """Remove partial files of `target` left by writers that died; returns them."""
    removed = []
    prefix = f".{target.name}{PARTIAL}"
    try:
        candidates = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return []
    for candidate in candidates:
        with contextlib.suppress(OSError):
            fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                if time.time() - os.fstat(fd).st_mtime < STALE_AFTER:
                    continue
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises while a writer lives
                candidate.unlink()
                removed.append(candidate)
            finally:
                os.close(fd)
    return removed
