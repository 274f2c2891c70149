"""The files a load reads: the files and folders named on the command line, their types,
and each file's identity (its sha256, which the ledger keeps).

Nothing here imports the readers (pyarrow, numpy): `pipeline load` finds its files and
starts hashing them (`FileHashes`) before those imports, which take a quarter of a second
that the hash no longer waits for."""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from pipeline import threads
from pipeline.errors import ConfigError
from pipeline.regular_file import NotRegular, kind_of, open_regular

SUPPORTED = ".csv, .tsv, .json, .ndjson or .jsonl, each maybe .gz"
FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".ndjson": "ndjson", ".jsonl": "ndjson"}
HASH_BLOCK = 1 << 20  # bytes read and hashed at a time


def source_format(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return FORMATS.get(suffixes[-1]) if suffixes else None


def regular_file_error(path: Path) -> str | None:
    """Why `path` (followed if a link) cannot be loaded as a file, or None if it can: only
    regular files are read (a FIFO would block, a device such as /dev/zero never ends)."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    return not_regular(kind_of(mode))


def not_regular(kind: str) -> str:
    """Why a file of `kind` ("a FIFO"...) is not loaded."""
    return f"not a regular file ({kind}); only regular files are loaded"


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path]]:
    """The files to load (each file given, and the supported files of each folder, by name),
    and the files of those folders that are passed over (unsupported types). Only regular
    files are read (links followed): a FIFO or a device named directly is a usage error, as
    an unsupported type is; in a folder, such entries are passed over without a word."""
    found: list[Path] = []
    passed_over: list[Path] = []
    for path in paths:
        if path.is_dir():
            for p in sorted(path.iterdir()):
                if not p.is_file() or p.name.startswith("."):
                    continue  # hidden: a file still being written, editor files
                (found if source_format(p) is not None else passed_over).append(p)
        elif source_format(path) is None:
            raise ConfigError(f"{path}: unsupported file type (expected {SUPPORTED})")
        elif (problem := regular_file_error(path)) is not None:
            raise ConfigError(f"{path}: {problem}")
        else:
            found.append(path)
    return found, passed_over


def sha256_of(path: Path) -> str:
    """The sha256 of a regular file's bytes: a file swapped for a FIFO after it was listed
    raises an OSError saying so, where a plain open would wait for a writer for ever."""
    digest = hashlib.sha256()
    try:
        stream, _ = open_regular(path)
    except NotRegular as exc:
        raise OSError(not_regular(exc.kind)) from None
    with stream:
        for block in iter(lambda: stream.read(HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


class FileHashes:
    """The sha256 of each of a run's files, hashed one after the other in a thread of its
    own from the moment the files are known, while the caller goes on (hashlib and the
    reads let go of Python's lock: the hash takes a core the start-up leaves idle). Each
    file is hashed once; `of` waits for its turn. A file that cannot be read gives its
    OSError to whoever asks for its hash."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.files = list(files)
        self._known = set(self.files)  # `of` asks once a file a run: a list would cost n each
        self._hashes: dict[Path, str | OSError] = {}
        self._readable: list[tuple[int, str]] | None = None  # (index, sha256): readable_after
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._done = False
        self._first_taken = False
        # A daemon: a run that ends early (an interrupt, a usage error) does not wait for
        # the hash of a file it will not load.
        self._thread = threads.start(self._hash_all, name="hash")

    def _hash_all(self) -> None:
        try:
            for path in self.files:
                if self._stop.is_set():
                    return
                try:
                    value: str | OSError = sha256_of(path)
                except OSError as exc:
                    value = exc
                with self._ready:
                    self._hashes.setdefault(path, value)
                    self._ready.notify_all()
        finally:
            with self._ready:
                self._done = True
                self._ready.notify_all()

    def of(self, path: Path) -> str:
        """The file's sha256, as the thread hashed it (raises the OSError it met); hashed
        here for a file the thread was not given or did not get to."""
        if path not in self._known:
            return sha256_of(path)
        with self._ready:
            self._ready.wait_for(lambda: path in self._hashes or self._done)
            value = self._hashes.get(path)
        if value is None:
            return sha256_of(path)
        if isinstance(value, OSError):
            raise value
        return value

    def readable_after(self, index: int) -> list[str]:
        """The hashes of the run's files after its `index`-th that can be read (one that
        cannot fails at its own turn), each at its first place in the run only: a content
        named again is loaded where it first comes (the ledger skips it after), so a file
        between is no earlier than it (`load a b a` leaves b's rows, as `load a b` does; but
        the last file of a snapshot source is its state again: pipeline.sync.last_of_source).
        Each file of a run asks: the hashes are gathered once, in order, and each answer is
        a slice (a run of 10,000 small files asked for them file by file for minutes)."""
        if self._readable is None:
            self._readable = []
            seen: set[str] = set()
            for i, path in enumerate(self.files):
                with contextlib.suppress(OSError):
                    sha256 = self.of(path)
                    if sha256 not in seen:
                        seen.add(sha256)
                        self._readable.append((i, sha256))
        start = bisect.bisect_right(self._readable, index, key=lambda item: item[0])
        return [sha256 for _, sha256 in self._readable[start:]]

    def at_turn(self, path: Path) -> str:
        """The sha256 a file loads under, taken at its turn: the thread's for the run's
        first file (its turn is the run's start), a new one for any later file, which may
        have changed since the run began."""
        if not self._first_taken and self.files and path == self.files[0]:
            self._first_taken = True
            return self.of(path)
        return sha256_of(path)

    def close(self) -> None:
        """Stop hashing after the file at hand: the files not hashed yet are not wanted."""
        self._stop.set()
