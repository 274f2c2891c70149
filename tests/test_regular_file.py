"""pipeline.regular_file: what every reader of a named file relies on (incoming files,
configuration files, the erasure key, -o targets)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from pipeline.regular_file import NotRegular, TooLarge, kind_of, open_regular, read_bounded


def test_a_regular_file_is_read_within_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    data, info = read_bounded(path, 10)
    assert data == b"x" * 10 and info.st_size == 10
    with pytest.raises(TooLarge):
        read_bounded(path, 9)


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            open_regular(fifo)
        except NotRegular as exc:
            outcome.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "opening a FIFO blocked"
    assert [getattr(e, "kind", None) for e in outcome] == ["a FIFO"]


def test_what_a_file_that_is_not_regular_is_called(tmp_path: Path) -> None:
    assert kind_of(os.stat(tmp_path).st_mode) == "a folder"
    if os.path.exists("/dev/null"):
        assert kind_of(os.stat("/dev/null").st_mode) == "a character device"
    with pytest.raises(NotRegular) as found:
        read_bounded(tmp_path, 10)
    assert found.value.kind == "a folder"
