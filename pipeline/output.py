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
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import ConfigError
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
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.filename is not None or isinstance(exc, BrokenPipeError):
            raise  # about another file, named in it
        # A write into the partial file (or a spool beside it) failed: a full disk, a quota.
        # pyarrow's says "Error writing bytes to file. Detail: [errno 28] ...": the errno's.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"-o {path}: cannot write: {reason}; nothing was written") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


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
