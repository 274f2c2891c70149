"""Where a file first fails to decode (pipeline.undecodable): the line and byte its error
names, wherever the byte falls among the blocks the file is read in."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pipeline import undecodable
from pipeline.bounded import BLOCK
from pipeline.undecodable import undecodable_at
from tests.test_sources import file_error

LINE = "1,DE,J\u00fcrgen M\u00fcller,Male,50,Stra\u00dfe 1\n"  # two-byte characters in UTF-8


def _file(tmp_path: Path, lines_before: int, bad: bytes, gz: bool = False) -> Path:
    """A CSV of `lines_before` good lines after its header, then `bad`, then more lines."""
    good = ("id,country,name,gender,age,address\n" + LINE * lines_before).encode()
    data = good + bad + b"\n" + LINE.encode() * 3
    path = tmp_path / ("people.csv.gz" if gz else "people.csv")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# A line of LINE is 40 bytes: these many lines put the bad one in the first block, on the
# last line of a block, and several blocks on.
@pytest.mark.parametrize("before", [0, 7, BLOCK // 40 - 1, BLOCK // 40, 3 * BLOCK // 40 + 5])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_the_first_undecodable_byte_is_found_by_line_and_byte(
    tmp_path: Path, before: int, gz: bool
) -> None:
    path = _file(tmp_path, before, b"2,DE,J\xfcrgen", gz)
    assert undecodable_at(path, gz, "utf-8") == (before + 2, 7)
    assert f"not valid utf-8 at line {before + 2}, byte 7 (invalid start byte)" in file_error(path)


def test_a_character_cut_between_two_blocks_is_not_a_fault(tmp_path: Path) -> None:
    # One line whose two-byte characters straddle every block's end, then a bad byte.
    path = tmp_path / "people.csv"
    path.write_bytes(("\u00fc" * (BLOCK + 1)).encode() + b"\n" + b"x\xff\n")
    assert undecodable_at(path, False, "utf-8") == (2, 2)


def test_a_file_that_decodes_or_an_encoding_that_cannot_say_gives_no_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _file(tmp_path, 3, LINE.strip().encode())
    assert undecodable_at(good, False, "utf-8") is None
    assert undecodable_at(good, False, "utf-16") is None  # its newline is two bytes
    # A line longer than the search goes: no place, and no more memory than that line.
    monkeypatch.setattr(undecodable, "LONGEST", 2 * BLOCK)
    long = tmp_path / "long.csv"
    long.write_bytes(b"x" * (3 * BLOCK) + b"\xff\n")
    assert undecodable_at(long, False, "utf-8") is None
