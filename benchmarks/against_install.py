"""This redesdl against another install of it, side by side: wall time and CPU per GiB.

A change to the core (codec, machines, chunk server, transfer engine) must
not make the data path dearer. This starts two clusters of three secondaries
on 127.0.0.1, one from this install and one from another (``--other-bin``,
the ``bin`` folder of a virtualenv holding, say, the previous release), each
serving the same file (hard links, so both read the same cached pages), and
runs ``redesdl get`` on them alternately (ABBA). Before each run dirty pages are
flushed; one warm-up run of each comes first. It prints the medians of wall
time, of CPU seconds per GiB of the client and of the three secondaries
together (read from /proc, the figure that does not swing on a busy VM), and
of the client's peak RSS::

    python benchmarks/against_install.py --other-bin /path/to/old/.venv/bin

``--secure`` runs both clusters with a cluster secret, ``--require-tickets``
and mutual TLS on every hop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redesdl.localcluster import LocalCluster
from redesdl.manifest import file_sha256
from redesdl.procstat import cpu_seconds


def make_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(block)


def new_cluster(root: Path, bin_dir: Path, secure: bool) -> LocalCluster:
    if secure:
        return LocalCluster.secure(root, bin_dir)
    return LocalCluster(root, bin_dir=bin_dir)


def run_get(cluster: LocalCluster, output: Path) -> dict[str, float]:
    daemons = cluster.secondaries.values()
    servers = [d.process.pid for d in daemons if d.process is not None]
    before = sum(cpu_seconds(pid) for pid in servers)
    os.sync()
    started = time.perf_counter()
    argv = cluster.client_argv("get", "big.bin", "-o", str(output), "--force")
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=cluster.client_environment(),
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        assert process.stderr is not None
        raise SystemExit(f"redesdl get failed: {process.stderr.read().decode()}")
    return {
        "wall": wall,
        "client_cpu": usage.ru_utime + usage.ru_stime,
        "client_sys": usage.ru_stime,
        "servers_cpu": sum(cpu_seconds(pid) for pid in servers) - before,
        "rss_mib": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other-bin", type=Path, required=True)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--secure", action="store_true", help="mutual TLS, tickets")
    args = parser.parse_args()
    gib = args.size_mib / 1024
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as scratch:
        work = Path(scratch)
        original = work / "big.bin"
        make_file(original, args.size_mib << 20)
        sha = file_sha256(original)
        installs = {"this": Path(sys.executable).parent, "other": args.other_bin}
        clusters = {}
        try:
            for label, bin_dir in installs.items():
                cluster = new_cluster(work / label, bin_dir, args.secure)
                clusters[label] = cluster
                for number in range(1, 4):
                    os.link(original, cluster.data(number) / "big.bin")
                cluster.start()
                cluster.wait_for_sources("big.bin", 3, timeout=600)
            results: dict[str, list[dict[str, float]]] = {k: [] for k in clusters}
            for run in range(args.runs + 1):
                # ABBA order: whoever goes first in a round meets the other's
                # freed pages and writeback, so each goes first half the time.
                order = list(clusters.items())
                for label, cluster in order if run % 2 else order[::-1]:
                    output = work / f"out-{label}.bin"
                    measured = run_get(cluster, output)
                    if file_sha256(output) != sha:
                        raise SystemExit(f"{label}: the download is corrupt")
                    output.unlink()
                    if run:
                        results[label].append(measured)
        finally:
            for cluster in clusters.values():
                cluster.stop()
    over = "mutual TLS" if args.secure else "plain TCP"
    print(
        f"{args.size_mib} MiB from 3 secondaries over {over},"
        f" {args.runs} runs each (medians)"
    )
    print(
        f"{'':6} {'wall s':>8} {'client CPU-s/GiB':>17} {'(system)':>9}"
        f" {'servers CPU-s/GiB':>18} {'client RSS MiB':>15}"
    )
    for label, runs in results.items():
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"{label:6} {median['wall']:8.2f} {median['client_cpu'] / gib:17.2f}"
            f" {median['client_sys'] / gib:9.2f}"
            f" {median['servers_cpu'] / gib:18.2f} {median['rss_mib']:15.0f}"
        )
    ratio = statistics.median(r["wall"] for r in results["this"]) / statistics.median(
        r["wall"] for r in results["other"]
    )
    print(f"wall ratio this/other: {ratio:.2f}")


if __name__ == "__main__":
    main()
