"""The files of a load and their hashes (pipeline.incoming): hashed in a thread, once each,
the same as hashlib's whatever the file's size against the block the thread reads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pipeline.incoming import HASH_BLOCK, FileHashes, sha256_of

SIZES = (0, 1, HASH_BLOCK - 1, HASH_BLOCK, HASH_BLOCK + 1, 2 * HASH_BLOCK + 1)


def _files(folder: Path) -> list[Path]:
    files = []
    for size in SIZES:
        path = folder / f"f{size}.csv"
        path.write_bytes(os.urandom(size))
        files.append(path)
    return files


def test_every_file_is_hashed_as_hashlib_hashes_it_across_the_read_block(tmp_path: Path) -> None:
    files = _files(tmp_path)
    hashes = FileHashes(files)
    for path in reversed(files):  # asked out of the thread's order: each waits for its own
        expected = hashlib.sha256(path.read_bytes()).hexdigest()
        assert hashes.of(path) == expected
        assert sha256_of(path) == expected
    hashes.close()


def test_a_file_that_cannot_be_read_gives_its_error_and_the_others_their_hashes(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "gone.csv"
    there = tmp_path / "there.csv"
    there.write_bytes(b"id,country\n1,DE\n")
    hashes = FileHashes([missing, there])
    with pytest.raises(FileNotFoundError):
        hashes.of(missing)
    assert hashes.of(there) == hashlib.sha256(there.read_bytes()).hexdigest()


def test_the_first_file_loads_under_the_threads_hash_a_later_one_under_its_hash_at_its_turn(
    tmp_path: Path,
) -> None:
    first, later = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_bytes(b"first\n")
    later.write_bytes(b"before\n")
    hashes = FileHashes([first, later])
    assert hashes.of(later) == hashlib.sha256(b"before\n").hexdigest()
    later.write_bytes(b"changed since the run began\n")
    assert hashes.at_turn(first) == hashlib.sha256(b"first\n").hexdigest()
    assert hashes.at_turn(later) == hashlib.sha256(b"changed since the run began\n").hexdigest()
    # the thread's hash of a later file stays the one taken at the start (ShardWriter.begin's
    # `later`), as it did when the run hashed them all before the first file
    assert hashes.of(later) == hashlib.sha256(b"before\n").hexdigest()


def test_after_close_a_file_not_hashed_yet_is_hashed_when_asked(tmp_path: Path) -> None:
    files = _files(tmp_path)
    hashes = FileHashes(files)
    hashes.close()
    for path in files:
        assert hashes.of(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    stranger = tmp_path / "not_given.csv"
    stranger.write_bytes(b"x")
    assert hashes.of(stranger) == hashlib.sha256(b"x").hexdigest()


def test_a_file_swapped_for_a_fifo_after_it_was_listed_is_refused_at_once(tmp_path: Path) -> None:
    # open() of a FIFO waits for a writer for ever: the hash thread, and a load asking for
    # the hashes of its later files, would hang (bounded time for hostile input).
    fifo = tmp_path / "swapped.csv"
    os.mkfifo(fifo)
    there = tmp_path / "there.csv"
    there.write_bytes(b"id,country\n1,DE\n")
    hashes = FileHashes([fifo, there])
    with pytest.raises(OSError, match="FIFO"):
        hashes.of(fifo)
    # The later files' hashes, as each file of a run asks for them: the FIFO left out.
    there_sha256 = hashlib.sha256(there.read_bytes()).hexdigest()
    assert [hashes.readable_after(i) for i in (-1, 0, 1)] == [[there_sha256], [there_sha256], []]
    with pytest.raises(OSError, match="FIFO"):
        sha256_of(fifo)
