"""redesdl against aria2c, side by side, on one file served from three places.

One file (1 GiB by default) is served by three redesdl secondaries and by
three nginx servers on 127.0.0.1. ``redesdl get`` and
``aria2c -s3 -x1 --file-allocation=none`` over the three mirrors run
alternately, N times each, in one run; the script prints each time, the
median ratio redesdl/aria2c (lower is better) and redesdl's peak RSS.

Setup: ``python benchmarks/vs_aria2c.py`` installs Debian's aria2 and
nginx-light with apt-get if they are missing (run it as root, or install them
first). Only 127.0.0.1 is used. Every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from redesdl.devca import TestAuthority
from redesdl.localcluster import LocalCluster, wait_until
from redesdl.manifest import file_sha256

NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {root}/tmp;
    proxy_temp_path {root}/tmp;
    fastcgi_temp_path {root}/tmp;
    uwsgi_temp_path {root}/tmp;
    scgi_temp_path {root}/tmp;
    server {{
        listen 127.0.0.1:{port};
        root {data};
    }}
}}
"""


def ensure_tools() -> None:
    missing = [
        tool
        for tool in ("aria2c", "nginx")
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
    ]
    if missing:
        print(f"installing aria2 and nginx-light (missing: {', '.join(missing)})")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "aria2", "nginx-light"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = 16 * 1024 * 1024
    with open(path, "wb") as f:
        left = size
        while left:
            data = os.urandom(min(block, left))
            digest.update(data)
            f.write(data)
            left -= len(data)
    return digest.hexdigest()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(root: Path, data: Path) -> tuple[subprocess.Popen[bytes], int]:
    root.mkdir(parents=True)
    (root / "tmp").mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, data=data))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    process = subprocess.Popen(
        [nginx, "-c", str(conf), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    def accepting() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_until(accepting, 10, f"nginx on port {port}")
    return process, port


def timed(argv: list[str]) -> tuple[float, int]:
    """Run C{argv}; return wall seconds and the child's peak RSS in KiB.

    Dirty pages left by the previous run are flushed first, so that neither
    tool pays for the other's writeback.
    """
    os.sync()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            output.seek(0)
            raise SystemExit(f"{argv[0]} failed: {output.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed runs of each tool first: on a VM the first writes of a "
        "session touch fresh memory and are slower for any tool",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where both tools write (default: beside the sources); "
        "a tmpfs such as /dev/shm takes the disk out of the measure",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="run redesdl with a cluster secret, --require-tickets and mutual "
        "TLS on every hop (aria2c stays on plain HTTP)",
    )
    parser.add_argument(
        "--sparse",
        action="store_true",
        help="use a sparse file of zeros (for 4 GiB RSS checks)",
    )
    args = parser.parse_args()
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="redesdl-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    nginxes: list[subprocess.Popen[bytes]] = []
    try:
        client_tls: list[str] = []
        if args.secure:
            authority = TestAuthority(work / "pki")
            client_tls = authority.issue("client")
            cluster = LocalCluster(
                work / "cluster",
                secret=True,
                central_args=authority.issue("central"),
                secondary_args=[*authority.issue("secondary"), "--require-tickets"],
                client_args=client_tls,
            )
        else:
            cluster = LocalCluster(work / "cluster")
        original = work / "source.bin"
        size = args.size_mib * 1024 * 1024
        if args.sparse:
            with open(original, "wb") as f:
                f.truncate(size)
            expected = file_sha256(original)
        else:
            expected = make_file(original, size)
        for number in (1, 2, 3):
            os.link(original, cluster.data(number) / "big.bin")
        ports = []
        for number in (1, 2, 3):
            process, port = start_nginx(work / f"nginx{number}", cluster.data(number))
            nginxes.append(process)
            ports.append(port)
        with cluster:
            cluster.wait_for_sources("big.bin", 3, timeout=600)
            out = Path(
                tempfile.mkdtemp(prefix="redesdl-bench-out-", dir=args.out_dir or work)
            )
            out.chmod(0o755)
            redesdl = [
                str(cluster.bin / "redesdl"),
                "--central",
                cluster.central_address,
                "--stats",
                str(work / "client-stats.json"),
                *client_tls,
                "get",
                "big.bin",
                "-o",
                str(out / "redesdl.bin"),
            ]
            aria2c = [
                shutil.which("aria2c") or "aria2c",
                "-s3",
                "-x1",
                "--file-allocation=none",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--console-log-level=error",
                "--summary-interval=0",
                "-d",
                str(out),
                "-o",
                "aria2c.bin",
                *[f"http://127.0.0.1:{port}/big.bin" for port in ports],
            ]
            ours, theirs, rss = [], [], []
            for _ in range(args.warmup):
                for name in ("redesdl.bin", "aria2c.bin"):
                    (out / name).unlink(missing_ok=True)
                timed(redesdl)
                timed(aria2c)
            for run in range(args.runs):
                for name in ("redesdl.bin", "aria2c.bin"):
                    (out / name).unlink(missing_ok=True)
                seconds, peak = timed(redesdl)
                ours.append(seconds)
                rss.append(peak)
                seconds, _ = timed(aria2c)
                theirs.append(seconds)
                print(
                    f"run {run + 1}: redesdl {ours[-1]:.2f} s "
                    f"(peak RSS {peak / 1024:.0f} MiB), aria2c {theirs[-1]:.2f} s",
                    flush=True,
                )
            for name in ("redesdl.bin", "aria2c.bin"):
                if file_sha256(out / name) != expected:
                    raise SystemExit(f"{name} does not match the original")
        mib = size / 2**20
        print(
            f"file: {mib:.0f} MiB, {args.warmup} warm-up + {args.runs} alternating "
            f"runs, outputs verified"
        )
        print(
            f"median redesdl {statistics.median(ours):.2f} s "
            f"({mib / statistics.median(ours):.0f} MiB/s), aria2c "
            f"{statistics.median(theirs):.2f} s "
            f"({mib / statistics.median(theirs):.0f} MiB/s)"
        )
        print(
            f"ratio redesdl/aria2c (median): "
            f"{statistics.median(ours) / statistics.median(theirs):.2f}"
        )
        print(f"redesdl peak RSS: {max(rss) / 1024:.0f} MiB")
    finally:
        for process in nginxes:
            process.terminate()
            process.wait()
        if args.out_dir is not None:
            for leftover in args.out_dir.glob("redesdl-bench-out-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
