"""A slow source must not slow a download down: endgame and pull scheduling.

Three secondaries serve the same 128 MiB file on 127.0.0.1, two limited to
32 MiB/s and one to 2 MiB/s (``--rate-limit``). ``redesdl get`` is timed with
all three, and with the two fast ones alone (the slow one stopped), in
alternation, N times each, in one run. Target: all three take at most 1.3
times what the two fast ones take alone.
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

RATES = {1: "32M", 2: "32M", 3: "2M"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="redesdl-slow-"))
    cluster = LocalCluster(work / "cluster", secondaries=0)
    source = work / "source.bin"
    with open(source, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(1024 * 1024))
    for number in RATES:
        os.link(source, cluster.data(number) / "big.bin")
    try:
        cluster.start()
        for number, rate in RATES.items():
            cluster.start_secondary(number, ["--rate-limit", rate])
        cluster.wait_for_sources("big.bin", 3, timeout=300)
        out = work / "out.bin"

        def timed() -> float:
            out.unlink(missing_ok=True)
            started = time.perf_counter()
            result = subprocess.run(
                [
                    str(cluster.bin / "redesdl"),
                    "--central",
                    cluster.central_address,
                    "--stats",
                    str(work / "stats.json"),
                    "get",
                    "big.bin",
                    "-o",
                    str(out),
                ],
                capture_output=True,
                text=True,
                env=cluster.client_environment(),
            )
            if result.returncode != 0:
                raise SystemExit(result.stderr)
            return time.perf_counter() - started

        with_slow, fast_only = [], []
        for run in range(args.runs):
            with_slow.append(timed())
            cluster.secondaries[3].stop()
            cluster.wait_for_sources("big.bin", 2)
            while any(e["sources"] > 2 for e in cluster.listing()):
                time.sleep(0.1)
            fast_only.append(timed())
            cluster.start_secondary(3, ["--rate-limit", RATES[3]])
            cluster.wait_for_sources("big.bin", 3)
            print(
                f"run {run + 1}: with the slow source {with_slow[-1]:.2f} s, "
                f"two fast ones alone {fast_only[-1]:.2f} s",
                flush=True,
            )
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    ratio = statistics.median(with_slow) / statistics.median(fast_only)
    print(
        f"{args.size_mib} MiB, rates {RATES}: median with slow "
        f"{statistics.median(with_slow):.2f} s, fast only "
        f"{statistics.median(fast_only):.2f} s, ratio {ratio:.2f} (target <= 1.3)"
    )


if __name__ == "__main__":
    sys.exit(main())
