"""CPU seconds, servers and client apart, of `pipeline load` into empty shards and of the
direct floor (psql copying the valid rows, split by shard, straight into a table like
`residents`, both shards at once): what two cores leave the client (bench/PROFILE.md).

The servers' CPU is read from their postmasters' /proc/PID/stat (their own time and their
reaped children's: a backend is reaped when its session ends), so it needs embedded servers
on this machine (Linux). usage: python bench/floor_cpu.py [ROUNDS] [CSV]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Servers, bench_config, direct_copy_in, psql_binary

TICK = os.sysconf("SC_CLK_TCK")
PIPELINE = [sys.executable, "-m", "pipeline.cli"]


def servers_cpu(workdir: Path) -> float:
    total = 0.0
    for pidfile in workdir.glob("pg*/**/postmaster.pid"):
        pid = int(pidfile.read_text().split()[0])
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
    return total


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(label: str, cmd: list[str], workdir: Path) -> None:
    servers, client, start = servers_cpu(workdir), client_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    time.sleep(0.3)  # the backends reaped
    print(
        f"{label:7s} wall {wall:5.2f} s  servers' CPU {servers_cpu(workdir) - servers:5.2f} s"
        f"  client CPU {client_cpu() - client:5.2f} s",
        flush=True,
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    data = Path(sys.argv[2]) if len(sys.argv) > 2 else (
        ROOT / ".pipeline" / "bench-data" / "residents-1000000.csv")  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="floor-cpu-"))
    servers = Servers(workdir)
    psql = psql_binary(servers)
    try:
        for _ in range(rounds):
            dsns = servers.fresh()
            cli = [*PIPELINE, "--config", str(bench_config(workdir, dsns))]
            subprocess.run([*cli, "init"], check=True, capture_output=True, cwd=ROOT)
            rejects = str(workdir / "rejects")
            measure("load", [*cli, "load", "-q", "--max-rejects", "5%", "--rejects", rejects,
                             str(data)], workdir)  # fmt: skip
            copies = []
            for i, dsn in enumerate(dsns):
                with psycopg.connect(dsn, autocommit=True) as conn:
                    copies.append(direct_copy_in(conn, dsn, psql, workdir / f"direct{i}.csv"))
            both = f"{copies[1]} & other=$!; {copies[0]} && wait $other"
            measure("direct", ["bash", "-c", both], workdir)
    finally:
        servers.close()


if __name__ == "__main__":
    main()
