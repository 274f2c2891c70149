"""The files a load reads: the files and folders named on the command line, and each file's
identity (its sha256, which the ledger keeps)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.sources import SUPPORTED, regular_file_error, source_format


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
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
