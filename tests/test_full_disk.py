"""The commands when the machine runs short: a full disk under a file of their own (a load's
rejects file, a spool in $TMPDIR: the load stops as an interrupted one does, and says what
the earlier files committed), memory, file descriptors, a stderr that cannot be written."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from pipeline import copyout
from pipeline.batch import BATCH_RECORDS
from pipeline.shard_rows import SPOOL_IN_MEMORY
from tests.conftest import RunCli, ledger, rows


def _ndjson(path: Path, first_id: int, count: int) -> Path:
    """Residents alternately US and German; every fourth has an age that is no number."""
    with path.open("w") as out:
        for i in range(first_id, first_id + count):
            age = "old" if i % 4 == 0 else i % 90
            record = {"id": i, "country": "US" if i % 2 else "DE", "name": f"R {i}", "age": age}
            out.write(json.dumps(record) + "\n")
    return path


def _pipeline(config: Path, *args: str, max_bytes: int, **env: str) -> tuple[int, str, str]:
    """`pipeline ARGS` in a process whose files cannot grow past `max_bytes`: a write past it
    fails (EFBIG) as one to a full disk does (ENOSPC), after writing what fits. Its stdout
    and stderr are pipes, which the limit leaves alone."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the signal ends the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "--config", str(config), *args],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env},  # no .pyc: no other file
    )
    return done.returncode, done.stdout, done.stderr


def _load(
    config: Path, files: list[Path], rejects: Path, max_bytes: int, **env: str
) -> tuple[int, str, str]:
    """`pipeline load --json FILES` (see `_pipeline`), every record allowed to be rejected."""
    options = ["--json", "--rejects", str(rejects), "--max-rejects", "100%"]
    return _pipeline(config, "load", *map(str, files), *options, max_bytes=max_bytes, **env)


# The second file, and how much of its rejects fit: its second batch fails half-way (after
# its first batch's rejects were written), or its five rejects (less than 2 KB, less than any
# buffer holds) fit only in part, so that a buffered file would fail as it is flushed.
CASES = {
    "a later batch": (2 * BATCH_RECORDS + 1_000, BATCH_RECORDS / 4 * 1.5, 2 * BATCH_RECORDS),
    "a few lines": (20, 3, 20),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_full_rejects_disk_stops_the_run_and_reports_what_committed(
    run_cli: RunCli,
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    case: str,
) -> None:
    count, fitting, read = CASES[case]
    first = _ndjson(tmp_path / "a.ndjson", 1, 2_000)
    big = _ndjson(tmp_path / "b.ndjson", 10_001, count)
    later = _ndjson(tmp_path / "c.ndjson", 100_001, 100)
    # The size of the first file's rejects (500 lines), measured by a run of it alone.
    alone = tmp_path / "alone"
    assert (
        run_cli("load", str(first), "--rejects", str(alone), "--max-rejects", "100%").exit_code == 0
    )
    (measured,) = alone.iterdir()
    line = measured.stat().st_size / 500
    max_bytes = int(measured.stat().st_size + line * fitting)
    for dsn in shard_dsns.values():  # the first file again, in the run under test
        with psycopg.connect(dsn) as conn:
            conn.execute("TRUNCATE residents, load_ledger")

    folder = tmp_path / "rejects"
    code, out, err = _load(config_file, [first, big, later], folder, max_bytes)

    assert code == 1, err
    assert "Traceback" not in err
    assert "cannot write the rejects file" in err and "File too large" in err
    assert "the shards keep only what they committed" in err
    report = json.loads(out)
    done, stopped = report["files"]
    assert report["not_started"] == [str(later)]
    assert report["interrupted"].startswith("cannot write the rejects file ")
    assert (done["rows_loaded"], done["rows_rejected"], done["interrupted"]) == (1_500, 500, False)
    # What was read of it is pending, the rest not read.
    assert stopped["rows_read"] == stopped["rows_pending"] == read
    assert (stopped["rows_loaded"], stopped["rows_rejected"], stopped["interrupted"]) == (
        0,
        0,
        True,
    )
    assert stopped["error"] is None
    # The summary's shard lines account for every pending record of the batch that failed.
    pending = re.findall(r"^  \w+: NOT COMMITTED \(interrupted\), (\d+) rows pending$", err, re.M)
    assert len(pending) == 2 and sum(map(int, pending)) == read
    assert (
        report["rows_read"]
        == report["rows_loaded"] + report["rows_rejected"] + report["rows_pending"]
    )
    # The shards hold the first file and nothing of the second; the rejects file holds the
    # first file's rejects, whole lines, none of the second's.
    assert sorted(len(rows(dsn)) for dsn in shard_dsns.values()) == [500, 1_000]
    assert [len(ledger(dsn)) for dsn in shard_dsns.values()] == [1, 1]
    (written,) = folder.iterdir()
    lines = written.read_bytes().split(b"\n")
    assert lines.pop() == b""
    assert {json.loads(entry)["file"] for entry in lines} == {str(first)}
    assert len(lines) == 500

    # Room again: the same command completes the load.
    again = run_cli("load", str(first), str(big), str(later), "--rejects", str(tmp_path / "more"),
                    "--max-rejects", "100%")  # fmt: skip
    assert again.exit_code == 0, again.output
    assert "a.ndjson (ndjson): skipped, every shard already holds it" in again.output
    expected = (2_000 + count + 100) * 3 // 4
    assert sum(len(rows(dsn)) for dsn in shard_dsns.values()) == expected
    assert [len(ledger(dsn)) for dsn in shard_dsns.values()] == [3, 3]


@pytest.mark.slow
def test_a_full_temporary_disk_stops_the_run_and_reports_what_committed(
    run_cli: RunCli,
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    first = _ndjson(tmp_path / "a.ndjson", 1, 2_000)
    # Records without an id go through staging: their spool outgrows SPOOL_IN_MEMORY, and
    # its file in $TMPDIR outgrows the limit.
    records = 2 * SPOOL_IN_MEMORY // 50
    unnumbered = tmp_path / "b.ndjson"
    unnumbered.write_text(
        "".join(f'{{"country": "DE", "name": "Resident {i}", "age": 30}}\n' for i in range(records))
    )
    later = _ndjson(tmp_path / "c.ndjson", 100_001, 100)
    spools = tmp_path / "tmp"
    spools.mkdir()
    folder = tmp_path / "rejects"
    code, out, err = _load(
        config_file, [first, unnumbered, later], folder, 300_000, TMPDIR=str(spools)
    )

    assert code == 1, err
    assert "Traceback" not in err
    said = f"cannot write a temporary file in {spools} ($TMPDIR): File too large"
    assert f"Error: {said}: the shards keep only what they committed" in err
    report = json.loads(out)
    done, stopped = report["files"]
    assert (report["interrupted"], report["not_started"]) == (said, [str(later)])
    assert (done["rows_loaded"], done["rows_rejected"]) == (1_500, 500)
    assert stopped["rows_read"] == stopped["rows_pending"] > 0
    assert (stopped["rows_loaded"], stopped["rows_rejected"], stopped["interrupted"]) == (
        0,
        0,
        True,
    )
    assert sorted(len(rows(dsn)) for dsn in shard_dsns.values()) == [500, 1_000]
    assert [len(ledger(dsn)) for dsn in shard_dsns.values()] == [1, 1]
    (written,) = folder.iterdir()  # the first file's rejects, whole
    assert {json.loads(line)["file"] for line in written.read_text().splitlines()} == {str(first)}
    assert len(written.read_text().splitlines()) == 500


@pytest.mark.slow
def test_an_extract_whose_spool_the_disk_refuses_names_the_folder(
    run_cli: RunCli, config_file: Path, initialised: None, tmp_path: Path
) -> None:
    # The later shard's rows are read ahead into a spool, past SPOOL_IN_MEMORY in a file.
    name = "A resident with a long name, " * 2  # rows of some 75 bytes as CSV
    count = 3 * copyout.SPOOL_IN_MEMORY // 75  # half of them US: 1.5 times the spool
    path = tmp_path / "a.ndjson"
    path.write_text(
        "".join(
            json.dumps({"id": i, "country": "US" if i % 2 else "DE", "name": name + str(i)}) + "\n"
            for i in range(1, count + 1)
        )
    )
    assert run_cli("load", str(path)).exit_code == 0
    spools = tmp_path / "tmp"
    spools.mkdir()
    code, _, err = _pipeline(config_file, "extract", max_bytes=100_000, TMPDIR=str(spools))
    assert code == 2, err
    assert err == f"Error: cannot write a temporary file in {spools} ($TMPDIR): File too large\n"
    assert list(spools.iterdir()) == []  # the spool's file is gone


@pytest.mark.slow
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
@pytest.mark.parametrize("encoding", ["utf-8", "ascii"])  # ascii: click writes its bytes
def test_a_stderr_that_cannot_be_written_changes_no_outcome(
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encoding: str,
) -> None:
    monkeypatch.setenv("PYTHONIOENCODING", encoding)
    # The summary goes to stderr first: it failed, and the load lost its --json and exited 1
    # after it had committed; an extract that had written its file whole exited 1.
    path = _ndjson(tmp_path / "a.ndjson", 1, 100)
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file)]
    with open("/dev/full", "w") as full:
        load = subprocess.run(
            [*command, "load", str(path), "--json", "--max-rejects", "100%"],
            stdout=subprocess.PIPE, stderr=full, text=True, timeout=300, cwd=tmp_path,
        )  # fmt: skip
        assert load.returncode == 0
        assert json.loads(load.stdout)["rows_loaded"] == 75
        assert sum(len(rows(dsn)) for dsn in shard_dsns.values()) == 75
        output = tmp_path / "out.csv"
        extract = subprocess.run(
            [*command, "extract", "-o", str(output)], stderr=full, timeout=300, cwd=tmp_path
        )
        assert extract.returncode == 0
        assert len(output.read_text().splitlines()) == 76
        # An error still sets the exit code it always did.
        failed = subprocess.run(
            [*command, "extract", "--country", "ZZ"], stderr=full, timeout=300, cwd=tmp_path
        )
        assert failed.returncode == 2


# `pipeline ARGS` in a process where memory runs out at a chosen point: the N-th batch's
# check raises MemoryError ("reading"), or shard db_us's N-th commit cannot start a thread
# ("committing"), while default commits beside it. (A limit on the address space would
# fail wherever glibc's per-thread arenas put it: a different place on every machine.)
OUT_OF_MEMORY_AT = """
import sys
from pipeline import validate, writer
where, nth = sys.argv.pop(1), int(sys.argv.pop(1))
checks, commits = [], []
check, commit = validate.Validator.check, writer.ShardWriter.commit
def checking(self, batch):
    checks.append(1)
    if where == "reading" and len(checks) == nth:
        raise MemoryError()
    return check(self, batch)
def committing(self, ledger):
    if where == "committing" and self.shard.name == "db_us":
        commits.append(1)
        if len(commits) == nth:
            raise RuntimeError("can't start new thread")
    return commit(self, ledger)
validate.Validator.check, writer.ShardWriter.commit = checking, committing
from pipeline.entry import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["reading", "committing"])
def test_a_load_out_of_memory_says_so_in_one_line_and_what_committed(
    config_file: Path, initialised: None, shard_dsns: dict[str, str], tmp_path: Path, where: str
) -> None:
    # A traceback before, and the summary of the files that had committed was lost.
    first = tmp_path / "a.ndjson"  # no rejects: the rejects file is made by the second
    first.write_text(
        "".join(f'{{"id": {i}, "country": "DE", "name": "A"}}\n' for i in range(1, 501))
    )
    second = _ndjson(tmp_path / "b.ndjson", 10_001, BATCH_RECORDS + 1_000)  # two batches
    later = _ndjson(tmp_path / "c.ndjson", 100_001, 100)
    nth = 3 if where == "reading" else 2  # the second file's second batch, or its commit
    command = [sys.executable, "-c", OUT_OF_MEMORY_AT, where, str(nth), "--config"]
    done = subprocess.run(
        [*command, str(config_file), "load", str(first), str(second), str(later), "--json",
         "--max-rejects", "100%", "--rejects", str(tmp_path / "rejects")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert "Traceback" not in done.stderr
    assert done.stderr.endswith(
        "Error: out of memory: the process could not allocate what it needed (a memory limit?)"
        ": the shards keep only what they committed (the summary says what); re-running the"
        " same command completes the load\n"
    )
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["not_started"] == [str(later)]
    done_file, stopped = report["files"]
    assert (done_file["rows_loaded"], done_file["interrupted"]) == (500, False)
    assert stopped["interrupted"] and list(stopped["shard_errors"]) == (
        ["default", "db_us"] if where == "reading" else ["db_us"]
    )
    for file in report["files"]:
        assert (
            file["rows_read"] == file["rows_loaded"] + file["rows_rejected"] + file["rows_pending"]
        )
    rejects = sorted((tmp_path / "rejects").glob("*.ndjson"))
    if where == "reading":  # nothing of the second file: its rejects (the only ones) are gone
        read = BATCH_RECORDS + 1_000  # the batch that failed was read, not checked
        assert (stopped["rows_read"], stopped["rows_pending"]) == (read, read)
        assert report["rejects_file"] is None and rejects == []
        assert [len(rows(dsn)) for dsn in shard_dsns.values()] == [500, 0]
    else:  # default committed its part of the second file, with the rejects that explain it
        read = BATCH_RECORDS + 1_000
        assert stopped["rows_read"] == read and stopped["rows_pending"] == read // 2
        assert stopped["rows_loaded"] == report["shards"]["default"]["inserted"] - 500 > 0
        (written,) = rejects
        assert len(written.read_text().splitlines()) == stopped["rows_rejected"] > 0
        assert len(rows(shard_dsns["default"])) == 500 + stopped["rows_loaded"]
        assert rows(shard_dsns["db_us"]) == []


@pytest.mark.slow
def test_a_refusal_the_full_disk_cannot_record_leaves_the_counts_whole(
    run_cli: RunCli,
    config_file: Path,
    initialised: None,
    shard_dsns: dict[str, str],
    tmp_path: Path,
) -> None:
    # db_us lost the file (its rows and ledger row gone by hand); default holds it. Loaded
    # again over its reject budget, the file is refused as a whole, and the disk fills at
    # the refusal's own line: the counts were made twice (1000 read = 1200 loaded + ... -200
    # pending, in a reviewer's count).
    path = _ndjson(tmp_path / "a.ndjson", 1, 1_000)
    assert run_cli("load", str(path), "--max-rejects", "100%").exit_code == 0
    held = len(rows(shard_dsns["default"]))

    def forget() -> None:
        with psycopg.connect(shard_dsns["db_us"]) as conn:
            conn.execute("TRUNCATE residents, load_ledger")

    forget()
    roomy = tmp_path / "roomy"
    refused = ["load", str(path), "--json", "--max-rejects", "0"]
    code, out, err = _pipeline(config_file, *refused, "--rejects", str(roomy), max_bytes=1 << 30)
    (written,) = roomy.iterdir()  # the records' rejects, then the refusal's line
    *_, last = written.read_bytes().splitlines(keepends=True)
    assert code == 1 and json.loads(last)["reason"] == "file_rejected", err
    forget()
    # The same run where the records' rejects fit and the refusal's line does not.
    size = written.stat().st_size - len(last) + 10
    full = tmp_path / "full"
    code, out, err = _pipeline(config_file, *refused, "--rejects", str(full), max_bytes=size)
    assert code == 1, err
    (file,) = json.loads(out)["files"]
    assert file["rows_read"] == 1_000
    # default's part as the first run left it (its loaded and rejected), db_us's pending.
    assert (file["rows_loaded"], file["rows_rejected"], file["rows_pending"]) == (held, 250, 500)
    assert file["error"] is None and list(file["shard_errors"]) == ["db_us"]


# `pipeline check` with the cross-shard checks' keys spilled to files at once (a partition a
# few dozen keys), none of which may grow past 100 bytes.
SPILLING_CHECK = """
import resource, signal
from pipeline import crosscheck
crosscheck.KEYS_A_PARTITION, crosscheck.SPILL_ROWS = 64, 100
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
from pipeline.entry import main
main()
"""


@pytest.mark.slow
def test_a_check_whose_spill_the_disk_refuses_names_the_folder(
    run_cli: RunCli, config_file: Path, initialised: None, tmp_path: Path
) -> None:
    assert run_cli("load", str(_ndjson(tmp_path / "a.ndjson", 1, 1_000)), "--max-rejects", "100%")
    spools = tmp_path / "tmp"
    spools.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", SPILLING_CHECK, "--config", str(config_file), "check"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(spools), "PYTHONDONTWRITEBYTECODE": "1"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(
        f"Error: cannot write a temporary file in {spools} ($TMPDIR): File too large\n"
    )
    assert list(spools.iterdir()) == []  # its folder is gone


# `pipeline ARGS` with the process's file descriptors limited to those open after its
# imports and three more: the config file and the output take one each, and close it or
# keep it; the first shard's connection finds none left.
FEW_FILES = """
import os, resource, sys
import pipeline.cli, pipeline.extract, psycopg
n = len(os.listdir("/proc/self/fd")) + 3
resource.setrlimit(resource.RLIMIT_NOFILE, (n, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from pipeline.entry import main
main()
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="no /proc")
def test_a_connection_without_a_file_descriptor_says_so(
    config_file: Path, initialised: None, tmp_path: Path
) -> None:
    # libpq said only "connection is bad: no error details available", as if the shard were
    # down, where this process had reached its `ulimit -n`.
    command = [sys.executable, "-c", FEW_FILES, "--config", str(config_file)]
    done = subprocess.run(
        [*command, "extract", "-o", str(tmp_path / "out.csv")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert re.fullmatch(
        r"Error: shard \w+: cannot connect: this process has no file descriptor left \(Too many"
        r" open files; ulimit -n is \d+\)\n",
        done.stderr,
    )
    assert not (tmp_path / "out.csv").exists()
