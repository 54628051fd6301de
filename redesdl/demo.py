"""``make demo``: a whole cluster on 127.0.0.1, one verified download, then stop.

It starts a central and three secondaries with the real ``twistd`` plugins,
puts a different sample file on each secondary, waits until replication has
copied every file everywhere, lists the catalog and downloads the largest
file with the ``redesdl`` script, checks its SHA-256 against the original and
stops every process it started. Everything lives under ``./demo-run``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path

from redesdl.localcluster import ClusterError, LocalCluster
from redesdl.manifest import file_sha256

SAMPLES = {
    1: ("videos/sample.bin", 64 * 1024 * 1024),
    2: ("docs/notes.txt", 4096),
    3: ("clips/short.bin", 1024 * 1024 + 1),
}


def say(line: str) -> None:
    print(f"demo: {line}", flush=True)


def make_samples(cluster: LocalCluster) -> dict[str, str]:
    digests = {}
    for number, (name, size) in SAMPLES.items():
        path = cluster.data(number) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        digests[name] = hashlib.sha256(data).hexdigest()
        say(f"s{number} starts with {name} ({size} bytes)")
    return digests


def run(root: Path) -> int:
    if root.exists():
        shutil.rmtree(root)
    cluster = LocalCluster(root, secret=True, secondary_args=["--require-tickets"])
    digests = make_samples(cluster)
    started = time.monotonic()
    with cluster:
        say(
            f"central listening on {cluster.central_address}; secondaries s1, s2, s3 "
            f"up, joined with the cluster secret in {root / 'cluster.secret'}; "
            "they serve only clients holding a download ticket"
        )
        for name in digests:
            cluster.wait_for_sources(name, 3, timeout=60)
        say(
            f"replication done: every secondary holds every file "
            f"({time.monotonic() - started:.1f} s after start)"
        )
        listing = cluster.client("list")
        print(listing.stdout, end="", flush=True)
        name = SAMPLES[1][0]
        target = root / "downloads" / "sample.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        say(f"redesdl --central {cluster.central_address} get {name} -o {target}")
        result = cluster.client("get", name, "-o", str(target), "--json")
        if result.returncode != 0:
            say(f"download failed: {result.stderr.strip()}")
            return 1
        report = json.loads(result.stdout.strip().splitlines()[-1])
        sources = ", ".join(
            f"{s} {n // 2**20} MiB" for s, n in report["sources"].items()
        )
        say(
            f"downloaded {report['size']} bytes in {report['seconds']:.2f} s "
            f"from {sources}"
        )
        actual = file_sha256(target)
        if actual != digests[name]:
            say(f"MISMATCH: {actual} != {digests[name]}")
            return 1
        say(f"verified: sha256 {actual} matches the original")
    say(f"stopped every process; logs are in {root / 'logs'}")
    return 0


def main() -> None:
    root = Path(os.environ.get("REDESDL_DEMO_DIR", "demo-run")).resolve()
    try:
        sys.exit(run(root))
    except ClusterError as e:
        say(f"failed: {e} (logs in {root / 'logs'})")
        sys.exit(1)


if __name__ == "__main__":
    main()
