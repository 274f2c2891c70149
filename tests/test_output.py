"""Output files (`-o`): private, whole or not at all, never through a special file, and no
partial file left behind by a failure, Ctrl-C, SIGTERM or (at the next run) SIGKILL."""

from __future__ import annotations

import fcntl
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.generate import write_csv
from pipeline.errors import ConfigError
from pipeline.output import PARTIAL, STALE_AFTER, remove_stale_partials, write_atomically
from tests.conftest import RunCli


def partials(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if PARTIAL in p.name)


def test_a_new_output_is_private_and_a_replaced_one_keeps_its_mode(tmp_path: Path) -> None:
    new = tmp_path / "new.csv"
    write_atomically(new, b"a\n")
    assert stat.S_IMODE(new.stat().st_mode) == 0o600  # personal data: not the umask's 0644
    shared = tmp_path / "shared.csv"
    shared.write_bytes(b"old\n")
    shared.chmod(0o640)
    write_atomically(shared, b"new\n")
    assert shared.read_bytes() == b"new\n"
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    assert partials(tmp_path) == []


def test_a_symbolic_link_is_followed_and_kept(tmp_path: Path) -> None:
    target = tmp_path / "real" / "r.csv"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    write_atomically(link, b"new\n")
    assert link.is_symlink() and target.read_bytes() == b"new\n"
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "real" / "later.csv")
    write_atomically(dangling, b"x\n")
    assert dangling.is_symlink() and (tmp_path / "real" / "later.csv").read_bytes() == b"x\n"


def special_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link-to-fifo"
    link.symlink_to(fifo)
    found = {"a FIFO": fifo, "a FIFO, through a link": link, "a folder": tmp_path}
    if os.geteuid() == 0:  # a device node of our own, never the system's /dev/full
        device = tmp_path / "full"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 7))
        found["a character device"] = device
    return found


def test_special_files_are_refused_and_left_as_they_are(tmp_path: Path) -> None:
    for kind, path in special_files(tmp_path).items():
        before = os.stat(path)
        with pytest.raises(ConfigError, match=f"is {kind.split(',')[0]}; -o writes regular files"):
            write_atomically(path, b"data\n")
        after = os.stat(path)
        assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), kind


def test_extract_refuses_a_fifo_with_exit_2(
    run_cli: RunCli, offline_map: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    result = run_cli("extract", "-o", str(fifo), config=offline_map)  # before any connection
    assert result.exit_code == 2
    assert result.output == (
        f"Error: -o {fifo}: is a FIFO; -o writes regular files only"
        " (leave -o out to write to stdout, and redirect that)\n"
    )
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_partial_file_of_a_dead_writer_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "r.csv"
    dead = tmp_path / f".r.csv{PARTIAL}dead1234"
    live = tmp_path / f".r.csv{PARTIAL}live1234"
    young = tmp_path / f".r.csv{PARTIAL}young123"
    other = tmp_path / f".other.csv{PARTIAL}dead1234"
    for path in (dead, live, other, young):
        path.write_bytes(b"half a file")
    old = time.time() - STALE_AFTER - 60
    for path in (dead, live, other):
        os.utime(path, (old, old))
    # A writer that still runs holds its partial file's lock (another process here).
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]);"
         " fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)", str(live)],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    with holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == b"locked\n"
            assert remove_stale_partials(target) == [dead]
        finally:
            holder.kill()
    assert partials(tmp_path) == sorted(p.name for p in (live, other, young))


@pytest.fixture
def locked_shard(initialised: None, shard_dsns: dict[str, str]) -> Any:
    """Lock a shard's residents table, so that an extract waits on it with its output open."""

    def lock(shard: str) -> psycopg.Connection[Any]:
        conn = psycopg.connect(shard_dsns[shard])
        conn.execute("LOCK TABLE residents IN ACCESS EXCLUSIVE MODE")
        return conn

    return lock


def waiting_extracts(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name = 'resident-pipeline' AND query LIKE 'COPY%%'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def first_helper_thread(pid: int) -> int:
    """The id of the first thread `pid` started (an extract's: its read-ahead's)."""
    helpers = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    assert helpers, "the extract has no thread but its main one"
    return min(helpers)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("shard", "to"),
    [("default", "process"), ("db_us", "process"), ("db_us", "thread")],
    ids=["streaming", "read-ahead", "read-ahead-by-its-thread"],
)
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_extract_exits_1_and_leaves_no_partial_file(
    config_file: Path,
    locked_shard: Any,
    shard_dsns: dict[str, str],
    tmp_path: Path,
    shard: str,
    how: signal.Signals,
    to: str,
) -> None:
    """`to`: the signal is sent to the process (the kernel hands it to the main thread, as a
    rule) or by the read-ahead thread's own id, which hands it to that thread if it does not
    block it: a handler runs in the main thread only, and a main thread asleep waiting for
    the read-ahead slept on (found in CI once in some 300 runs; every time this way)."""
    out = tmp_path / "exports" / "r.parquet"
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), "extract",
               "-o", str(out)]  # fmt: skip
    # A process that does not end is made to say where it is: faulthandler prints every
    # thread's stack on SIGABRT.
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    with (
        locked_shard(shard),
        subprocess.Popen(command, stderr=subprocess.PIPE, env=env) as proc,
    ):
        deadline = time.monotonic() + 30
        while waiting_extracts(shard_dsns[shard]) == 0:  # the extract waits, its file open
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        assert len(partials(out.parent)) == 1
        if to == "thread":
            time.sleep(0.5)  # for the main thread to be asleep waiting for the locked shard
            os.kill(first_helper_thread(proc.pid), how)
        began = time.monotonic()
        if to == "process":
            proc.send_signal(how)
        try:
            stderr = proc.communicate(timeout=10)[1].decode()
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # a test that fails, not one that hangs
            try:
                stacks = proc.communicate(timeout=10)[1].decode()
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            pytest.fail(f"no exit 10 s after {how.name}; where it was:\n{stacks}")
        assert proc.returncode == 1
        assert time.monotonic() - began < 2
        # The lock is still held: a wait that ends now was cancelled, not sat out (a read-ahead
        # thread's cancel may reach its server a moment after the process is gone).
        while waiting_extracts(shard_dsns[shard]):
            assert time.monotonic() - began < 5
            time.sleep(0.05)
    assert "Traceback" not in stderr
    assert stderr.strip() == (
        "Error: terminated (SIGTERM)" if how == signal.SIGTERM else "Error: interrupted (SIGINT)"
    )
    assert not out.exists() and partials(out.parent) == []


@pytest.mark.slow
def test_a_killed_extracts_partial_file_is_removed_by_the_next_run(
    config_file: Path, locked_shard: Any, shard_dsns: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "r.csv"
    command = [sys.executable, "-m", "pipeline.cli", "--config", str(config_file), "extract",
               "-o", str(out)]  # fmt: skip
    with locked_shard("db_us"), subprocess.Popen(command, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 30
        while waiting_extracts(shard_dsns["db_us"]) == 0:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.kill()  # SIGKILL: no handler runs
    (left,) = partials(tmp_path)
    old = time.time() - STALE_AFTER - 1
    os.utime(tmp_path / left, (old, old))
    result = subprocess.run(command, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert partials(tmp_path) == [] and out.read_text().startswith("shard,id,")
    with open(out) as stream:  # the finished file is not left locked
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)


# A file-size limit (RLIMIT_FSIZE) for the extract's process: any write past it fails with
# EFBIG, as one into a full disk fails with ENOSPC (Python ignores SIGXFSZ). Half a MiB: the
# rows below make some 3 MB in every format, and the read-ahead spool (4 MiB in memory,
# then a file beside the output) and the CSV writer's 1 MiB chunks reach past it.
FILE_LIMIT = 512 << 10


def limited(limit: int) -> str:
    """The pipeline's process, with the limit set before it starts (no preexec_fn: not safe
    in a process with threads, as pytest's may be)."""
    return (
        "import os, resource, sys; "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'pipeline.cli', *sys.argv[1:]])"
    )


LIMITED = limited(FILE_LIMIT)


@pytest.mark.parametrize("fmt", ["csv", "ndjson", "json", "parquet"])
def test_an_output_the_disk_cannot_hold_is_a_one_line_error_naming_it_and_nothing_is_left(
    run_cli: RunCli, initialised: None, config_file: Path, tmp_path: Path, fmt: str
) -> None:
    data = tmp_path / "residents.csv"
    write_csv(data, 30_000, seed=11)
    assert run_cli("load", str(data)).exit_code == 0
    out = tmp_path / "exports" / f"r.{fmt}"
    command = [sys.executable, "-c", LIMITED, "--config", str(config_file), "extract", "-o",
               str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip() == f"Error: -o {out}: cannot write: File too large; nothing was written"
    )
    assert list(out.parent.iterdir()) == []  # no output, no partial file, no spool


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_stdout_that_the_disk_cannot_hold_is_an_error_not_a_short_file(
    run_cli: RunCli, initialised: None, config_file: Path, tmp_path: Path, unbuffered: bool
) -> None:
    # stdout redirected to a file on a full disk. Unbuffered (as many container images run
    # Python), stdout's raw write writes what fits and says so only in its count: the
    # report's one write came out cut short, exit 0.
    data = tmp_path / "residents.csv"
    write_csv(data, 30_000, seed=11)
    assert run_cli("load", str(data)).exit_code == 0
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    # The report and the status are some 2 KB: cut at 200 bytes. The export's 3 MB at
    # FILE_LIMIT, its later shard held in memory (no spool file, which the limit would stop
    # first).
    commands = (
        (200, ["report", "--format", "json"]),
        (FILE_LIMIT, ["extract"]),
        (200, ["status", "--json"]),  # any command's output, through click
    )
    for limit, command in commands:
        out = tmp_path / "stdout.txt"
        with open(out, "wb") as stdout:
            done = subprocess.run(
                [sys.executable, "-c", limited(limit), "--config", str(config_file), *command],
                stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, env=env,
            )  # fmt: skip
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.strip() == (
            "Error: stdout: cannot write: File too large; the output is incomplete"
        ), command
        assert out.stat().st_size == limit


def test_checks_that_cannot_run_and_whose_report_cannot_be_written_say_both(
    tmp_path: Path,
) -> None:
    # The report of checks that could not run (pipeline check's error path) on a full disk:
    # its error named the disk only, and the reason the checks did not run was lost.
    config = tmp_path / "bad.yaml"
    config.write_text("shards: {}\n")
    report = tmp_path / "reports" / "r.xml"
    unwritten = {
        "stdout": "stdout: cannot write: File too large; the output is incomplete",
        "-o": f"-o {report}: cannot write: File too large; nothing was written",
    }
    for where, options in (("stdout", ["--format", "junit"]), ("-o", ["-o", str(report)])):
        with open(tmp_path / "stdout.txt", "wb") as stdout:
            done = subprocess.run(
                [sys.executable, "-c", limited(10), "--config", str(config), "check", *options],
                stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
            )  # fmt: skip
        assert done.returncode == 2, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("Error: ") and "shards:" in line, line  # why the checks did not run
        assert line.endswith("; " + unwritten[where]), line
    assert not report.parent.exists() or list(report.parent.iterdir()) == []  # nor a partial


def test_dash_is_stdout_and_dot_slash_dash_a_file(run_cli: RunCli, loaded: None) -> None:
    for command in (["extract"], ["report", "--format", "json"], ["check", "--format", "json"]):
        to_stdout = run_cli(*command, "-o", "-")
        assert to_stdout.exit_code == 0, (command, to_stdout.output)
        assert to_stdout.output == run_cli(*command).output, command
        assert not Path("-").exists()
    assert run_cli("extract", "-o", "./-").exit_code == 0
    assert Path("-").read_text().startswith("shard,id,country,")
