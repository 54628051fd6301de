"""redesdl against aria2c and curl on one file served from three places: speed and cost.

Why: a download tool that is fast only because it burns CPU, on the client or
on the servers, is not fast. This puts ``redesdl get`` (three secondaries)
beside ``aria2c -s3 -x1`` (three nginx mirrors) and ``curl`` (one stream from
one nginx) on 127.0.0.1 and measures, for every run, the wall time, the CPU
of the client (its rusage) and of every server process behind it (the three
secondaries' ``twistd``, or every nginx master and worker: utime + stime from
``/proc/PID/stat``, read before and after the run), and the client's peak
RSS (its VmHWM, sampled from ``/proc/PID/status``). A second table measures
replication: a third secondary copying the file from the two that hold it,
through the central, and the CPU of all three.

How it runs: the tools take turns, the order rotating every round, after
untimed warm-up rounds; dirty pages are flushed before every run so that no
tool pays for another's writeback. The file lies either in a separate copy
per secondary and per nginx root (the default) or in one file hard-linked
everywhere (``--hardlink``). ``--secure`` adds redesdl with a cluster secret,
tickets and mutual TLS on every hop, beside plain redesdl in the same run;
``--write-ways`` adds plain redesdl writing every chunk around the page cache
(``get --direct-io``) and every chunk through it (``--no-direct-io``), beside
its default, which chooses as it goes.

How to read it: each row gives medians over the rounds; CPU is in CPU
seconds per GiB downloaded (lower is better), "servers" being all the server
processes of that tool together (for redesdl its three secondaries; the
central, which only answers a locate, is not counted). Below the table, the
ratios redesdl/aria2c and redesdl/curl, and each target of issue 12 with PASS
or FAIL; under each ratio, the median of the ratios taken within each round
(this VM slows down for whole rounds, which moves every tool alike). In the
replication table "copier" is the secondary that copies (its CPU and the
wall time counted from when it listens, so not its start-up),
"peers" the two it copies from. At small sizes the figures are dominated by
process start-up; judge them at 1 GiB::

    python benchmarks/vs_aria2c.py [--size-mib 1024] [--runs 3] [--hardlink] [--secure]
                                    [--write-ways]

Setup: it installs Debian's aria2, nginx-light and curl with apt-get if they
are missing (run it as root, or install them first). Only 127.0.0.1 is used.
Every process started is stopped by its PID at the end, also on failure,
Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from redesdl.localcluster import LocalCluster, free_port, wait_until
from redesdl.manifest import file_sha256
from redesdl.procstat import cpu_seconds

NAME = "big.bin"
TOOLS = {"aria2c": "aria2", "nginx": "nginx-light", "curl": "curl"}

# Issue 12's targets, printed beside the figures.
WALL_VS_ARIA2C = 0.6
WALL_VS_CURL = 1.0
CPU_VS_ARIA2C = 1.4
SECONDARIES_CPU_PER_GIB = 0.2
RSS_MIB = 64
TLS_PERCENT_OF_PLAIN = 60

# Workers run as whoever runs this, so they read what it can read.
NGINX_CONF = """\
daemon off;
user {user} {group};
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


# --- tools and files ---------------------------------------------------------


def find_tool(tool: str) -> str | None:
    found = shutil.which(tool)
    if found is None and Path(f"/usr/sbin/{tool}").exists():
        found = f"/usr/sbin/{tool}"
    return found


def ensure_tools() -> None:
    """apt-get install whichever of aria2c, nginx and curl is missing."""
    missing = [tool for tool in TOOLS if find_tool(tool) is None]
    if missing:
        print(f"installing {', '.join(TOOLS[t] for t in missing)}", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", *(TOOLS[t] for t in missing)],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )


def make_file(path: Path, size: int, sparse: bool) -> str:
    """Write C{size} random bytes (or a sparse hole) and return their sha256."""
    if sparse:
        with open(path, "wb") as f:
            f.truncate(size)
        return file_sha256(path)
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


def place(original: Path, folders: list[Path], hardlink: bool) -> None:
    """Put the file into every folder: hard links, or a copy each."""
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        if hardlink:
            os.link(original, folder / NAME)
        else:
            shutil.copyfile(original, folder / NAME)
    os.sync()


# --- CPU and processes -------------------------------------------------------


def children(pid: int) -> list[int]:
    """The PIDs whose parent is C{pid} (nginx's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def spent(before: dict[int, float]) -> float:
    """CPU seconds the processes of C{before} used since it was read."""
    return sum(cpu_seconds(pid) - seconds for pid, seconds in before.items())


def stop_process(process: subprocess.Popen[bytes], extra: Sequence[int] = ()) -> None:
    """Terminate C{process}; if it must be killed, kill the C{extra} PIDs
    (its workers) too, unless they are gone already."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        for pid in extra:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "nginx":
                    os.kill(pid, signal.SIGKILL)


@dataclass
class Nginx:
    process: subprocess.Popen[bytes]
    port: int
    workers: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [self.process.pid, *self.workers]


@contextlib.contextmanager
def nginx_mirrors(work: Path, roots: list[Path]) -> Iterator[list[Nginx]]:
    """One nginx per root on 127.0.0.1, each stopped by PID at the end."""
    started: list[Nginx] = []
    try:
        for number, data in enumerate(roots, 1):
            started.append(launch_nginx(work / f"nginx{number}", data))
            wait_for_nginx(started[-1])
        yield started
    finally:
        for nginx in started:
            stop_process(nginx.process, nginx.workers)


def launch_nginx(root: Path, data: Path) -> Nginx:
    root.mkdir(parents=True)
    (root / "tmp").mkdir()
    port = free_port()
    conf = root / "nginx.conf"
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    conf.write_text(
        NGINX_CONF.format(root=root, port=port, data=data, user=user, group=group)
    )
    process = subprocess.Popen(
        [find_tool("nginx") or "nginx", "-c", str(conf), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Nginx(process, port)


def wait_for_nginx(nginx: Nginx) -> None:
    """Wait until it accepts connections; learn its workers' PIDs."""

    def accepting() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", nginx.port)) == 0

    wait_until(accepting, 10, f"nginx on port {nginx.port}")
    nginx.workers = wait_until(
        lambda: children(nginx.process.pid), 10, "nginx's workers"
    )


# --- one measured run --------------------------------------------------------


@dataclass
class Tool:
    """A client command, where it writes, and the server PIDs behind it."""

    name: str
    argv: list[str]
    output: Path
    servers: Callable[[], list[int]]
    env: dict[str, str] | None = None


@dataclass
class Sample:
    wall: float
    client_cpu: float
    servers_cpu: float
    rss_mib: float

    @property
    def total_cpu(self) -> float:
        return self.client_cpu + self.servers_cpu


class PeakRss(threading.Thread):
    """Samples a child's VmHWM from /proc every 10 ms while it runs.

    Not its rusage: Linux carries the RSS high-water mark of the memory a
    child had before exec (a copy of this Python process) into ru_maxrss,
    so every tool would show this script's size. Samples taken before the
    child has exec'd (its command line still ours) are skipped the same way.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self.done = threading.Event()
        self._ours = Path("/proc/self/cmdline").read_bytes()

    def run(self) -> None:
        while True:
            self.peak_kib = max(self.peak_kib, self.sample())
            if self.done.wait(0.01):
                return

    def sample(self) -> int:
        try:
            if Path(f"/proc/{self.pid}/cmdline").read_bytes() == self._ours:
                return 0
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0  # a zombie has no memory left

    def stop(self) -> float:
        """The peak seen, in MiB."""
        self.done.set()
        self.join()
        return self.peak_kib / 1024


def measure(tool: Tool) -> Sample:
    """Run C{tool} once: wall time, client and server CPU, client peak RSS.

    Dirty pages left by the previous run are flushed first, so that no tool
    pays for another's writeback.
    """
    tool.output.unlink(missing_ok=True)
    os.sync()
    servers = cpu_of(tool.servers())
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            tool.argv, stdout=log, stderr=subprocess.STDOUT, env=tool.env
        )
        peak = PeakRss(process.pid)
        peak.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        except BaseException:
            stop_process(process)
            raise
        finally:
            rss_mib = peak.stop()
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise SystemExit(f"{tool.name} failed: {log.read().decode()[-2000:]}")
    return Sample(
        wall=wall,
        client_cpu=usage.ru_utime + usage.ru_stime,
        servers_cpu=spent(servers),
        rss_mib=rss_mib,
    )


def rounds(tools: list[Tool], warmup: int, runs: int) -> dict[str, list[Sample]]:
    """Warm-up rounds, then timed ones; the order rotates every round."""
    samples: dict[str, list[Sample]] = {tool.name: [] for tool in tools}
    for number in range(warmup + runs):
        shift = number % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            sample = measure(tool)
            if number >= warmup:
                samples[tool.name].append(sample)
        if number >= warmup:
            print(
                f"round {number - warmup + 1}: "
                + ", ".join(f"{n} {s[-1].wall:.2f} s" for n, s in samples.items()),
                flush=True,
            )
    return samples


# --- redesdl clusters ---------------------------------------------------------


def secondary_pids(cluster: LocalCluster) -> list[int]:
    return [
        daemon.process.pid
        for daemon in cluster.secondaries.values()
        if daemon.process is not None
    ]


def plain_cluster(root: Path) -> LocalCluster:
    return LocalCluster(root)


def redesdl_tool(name: str, cluster: LocalCluster, out: Path, *options: str) -> Tool:
    return Tool(
        name=name,
        argv=cluster.client_argv("get", NAME, "-o", str(out / f"{name}.bin"), *options),
        output=out / f"{name}.bin",
        servers=lambda: secondary_pids(cluster),
        env=cluster.client_environment(),
    )


def aria2c_tool(mirrors: list[Nginx], out: Path) -> Tool:
    return Tool(
        name="aria2c",
        argv=[
            find_tool("aria2c") or "aria2c",
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
            *[f"http://127.0.0.1:{nginx.port}/{NAME}" for nginx in mirrors],
        ],
        output=out / "aria2c.bin",
        servers=lambda: [pid for nginx in mirrors for pid in nginx.pids],
    )


def curl_tool(mirrors: list[Nginx], out: Path) -> Tool:
    return Tool(
        name="curl",
        argv=[
            find_tool("curl") or "curl",
            "--silent",
            "--show-error",
            "--fail",
            "-o",
            str(out / "curl.bin"),
            f"http://127.0.0.1:{mirrors[0].port}/{NAME}",
        ],
        output=out / "curl.bin",
        servers=lambda: [pid for nginx in mirrors for pid in nginx.pids],
    )


# --- replication --------------------------------------------------------------


def central_said(log: Path, offset: int, text: str) -> bool:
    """Whether the central's log holds C{text} past C{offset} (or anywhere,
    if twistd rotated it meanwhile)."""
    with open(log, "rb") as f:
        if f.seek(0, os.SEEK_END) < offset:
            offset = 0
        f.seek(offset)
        return text.encode() in f.read()


def replicate_once(cluster: LocalCluster, expected: str) -> Sample:
    """Secondary 3 restarts with no file and copies it from 1 and 2.

    Its CPU is counted from the moment it listens (its start-up is not the
    copy's cost); the copy ends when the central logs that it holds the file,
    which it does once the copy is verified.
    """
    target = cluster.secondaries[3]
    target.stop()
    copy = cluster.data(3) / NAME
    copy.unlink(missing_ok=True)
    os.sync()
    log = cluster.root / "logs" / "central.log"
    offset = log.stat().st_size
    peers = cpu_of([cluster.secondaries[n].process.pid for n in (1, 2)])
    target = cluster.start_secondary(3)
    assert target.process is not None
    own = cpu_of([target.process.pid])
    started = time.perf_counter()
    wait_until(
        lambda: central_said(log, offset, f"s3 now holds {NAME}"),
        3600,
        f"s3 to copy {NAME}",
        interval=0.02,
    )
    wall = time.perf_counter() - started
    sample = Sample(
        wall=wall, client_cpu=spent(own), servers_cpu=spent(peers), rss_mib=0
    )
    if file_sha256(copy) != expected:
        raise SystemExit("the replicated copy does not match the original")
    return sample


# --- report -------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def medians(samples: list[Sample]) -> Sample:
    return Sample(
        wall=statistics.median(s.wall for s in samples),
        client_cpu=statistics.median(s.client_cpu for s in samples),
        servers_cpu=statistics.median(s.servers_cpu for s in samples),
        rss_mib=statistics.median(s.rss_mib for s in samples),
    )


def total_cpu(samples: list[Sample]) -> float:
    return statistics.median(s.total_cpu for s in samples)


def print_table(results: dict[str, list[Sample]], mib: float) -> None:
    gib = mib / 1024
    print(
        f"{'tool':14} {'wall s':>8} {'MiB/s':>7} {'client CPU-s/GiB':>17}"
        f" {'servers CPU-s/GiB':>18} {'total CPU-s/GiB':>16} {'peak RSS MiB':>13}"
    )
    for name, samples in results.items():
        m = medians(samples)
        print(
            f"{name:14} {m.wall:8.2f} {mib / m.wall:7.0f} {m.client_cpu / gib:17.2f}"
            f" {m.servers_cpu / gib:18.2f} {total_cpu(samples) / gib:16.2f}"
            f" {m.rss_mib:13.0f}"
        )


def print_ratio(
    results: dict[str, list[Sample]], other: str, wall: float, cpu: float | None
) -> None:
    ours, theirs = results["redesdl"], results[other]
    wall_ratio = medians(ours).wall / medians(theirs).wall
    cpu_ratio = total_cpu(ours) / total_cpu(theirs)
    cpu_note = (
        f" (target <= {cpu:.1f}: {verdict(cpu_ratio <= cpu)})"
        if cpu is not None
        else ""
    )
    print(
        f"ratio redesdl/{other}: wall {wall_ratio:.2f}"
        f" (target <= {wall:.1f}: {verdict(wall_ratio <= wall)}),"
        f" total CPU {cpu_ratio:.2f}{cpu_note}"
    )
    # This VM slows down for whole rounds at a time: ratios taken within each
    # round (the tools ran back to back) swing less than ratios of medians.
    by_round = list(zip(ours, theirs, strict=True))
    print(
        f"  same-round ratios redesdl/{other} (median):"
        f" wall {statistics.median(a.wall / b.wall for a, b in by_round):.2f},"
        " total CPU"
        f" {statistics.median(a.total_cpu / b.total_cpu for a, b in by_round):.2f}"
    )


def print_targets(results: dict[str, list[Sample]], mib: float) -> None:
    print_ratio(results, "aria2c", WALL_VS_ARIA2C, CPU_VS_ARIA2C)
    print_ratio(results, "curl", WALL_VS_CURL, None)
    ours = medians(results["redesdl"])
    secondaries = ours.servers_cpu / (mib / 1024)
    print(
        f"redesdl secondaries: {secondaries:.2f} CPU-s/GiB"
        f" (target <= {SECONDARIES_CPU_PER_GIB}:"
        f" {verdict(secondaries <= SECONDARIES_CPU_PER_GIB)})"
    )
    print(
        f"redesdl peak RSS: {ours.rss_mib:.0f} MiB"
        f" (target <= {RSS_MIB}: {verdict(ours.rss_mib <= RSS_MIB)})"
    )
    if "redesdl-tls" in results:
        percent = 100 * ours.wall / medians(results["redesdl-tls"]).wall
        print(
            f"TLS throughput: {percent:.0f}% of plain"
            f" (target >= {TLS_PERCENT_OF_PLAIN}%:"
            f" {verdict(percent >= TLS_PERCENT_OF_PLAIN)})"
        )


def print_replication(samples: list[Sample], mib: float) -> None:
    gib = mib / 1024
    m = medians(samples)
    print(
        f"{'copy':14} {'wall s':>8} {'MiB/s':>7} {'copier CPU-s/GiB':>17}"
        f" {'peers CPU-s/GiB':>18} {'total CPU-s/GiB':>16}"
    )
    print(
        f"{'replication':14} {m.wall:8.2f} {mib / m.wall:7.0f}"
        f" {m.client_cpu / gib:17.2f} {m.servers_cpu / gib:18.2f}"
        f" {total_cpu(samples) / gib:16.2f}"
    )


# --- main ---------------------------------------------------------------------


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3, help="timed rounds")
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed rounds first: on a VM the first writes of a session "
        "touch fresh memory and are slower for any tool",
    )
    parser.add_argument(
        "--hardlink",
        action="store_true",
        help="one file hard-linked into every secondary and nginx root "
        "(default: a separate copy in each)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="also run redesdl with a cluster secret, --require-tickets and "
        "mutual TLS on every hop, beside plain redesdl (aria2c and curl stay "
        "on plain HTTP)",
    )
    parser.add_argument(
        "--write-ways",
        action="store_true",
        help="also run plain redesdl with get --direct-io (row redesdl-dio) "
        "and --no-direct-io (row redesdl-cached), beside its default",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where the tools write (default: beside the sources); "
        "a tmpfs such as /dev/shm takes the disk out of the measure",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="where the sources and clusters go (a temporary folder in it)",
    )
    parser.add_argument(
        "--sparse", action="store_true", help="a sparse file of zeros (for RSS checks)"
    )
    return parser.parse_args()


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so every ``finally`` stops its processes."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace, work: Path) -> None:
    size = args.size_mib * 1024 * 1024
    mib = size / 2**20
    original = work / "source.bin"
    expected = make_file(original, size, args.sparse)
    clusters = {"redesdl": plain_cluster(work / "cluster")}
    if args.secure:
        clusters["redesdl-tls"] = LocalCluster.secure(work / "cluster-tls")
    roots = [work / f"www{number}" for number in (1, 2, 3)]
    folders = [c.data(n) for c in clusters.values() for n in (1, 2, 3)]
    place(original, folders + roots, args.hardlink)
    original.unlink()
    layout = "one hard-linked file" if args.hardlink else "a separate copy each"
    out = Path(tempfile.mkdtemp(prefix="redesdl-bench-out-", dir=args.out_dir or work))
    with contextlib.ExitStack() as stack:
        for cluster in clusters.values():
            stack.enter_context(cluster)
        mirrors = stack.enter_context(nginx_mirrors(work, roots))
        for cluster in clusters.values():
            cluster.wait_for_sources(NAME, 3, timeout=600)
        tools = [redesdl_tool(n, c, out) for n, c in clusters.items()]
        if args.write_ways:
            plain = clusters["redesdl"]
            tools.append(redesdl_tool("redesdl-dio", plain, out, "--direct-io"))
            tools.append(redesdl_tool("redesdl-cached", plain, out, "--no-direct-io"))
        tools += [aria2c_tool(mirrors, out), curl_tool(mirrors, out)]
        results = rounds(tools, args.warmup, args.runs)
        for tool in tools:
            if file_sha256(tool.output) != expected:
                raise SystemExit(f"{tool.name}'s download does not match the original")
        copies = [
            replicate_once(clusters["redesdl"], expected)
            for _ in range(args.warmup + args.runs)
        ][args.warmup :]
    print(
        f"file: {mib:.0f} MiB, {layout}, {args.warmup} warm-up + {args.runs} timed "
        f"rounds (order rotating), outputs verified; medians:"
    )
    print_table(results, mib)
    print_targets(results, mib)
    print(
        f"replication: secondary 3 copies {mib:.0f} MiB from 1 and 2"
        " (verified); medians:"
    )
    print_replication(copies, mib)


def main() -> None:
    args = parse_arguments()
    stop_on_sigterm()
    ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="redesdl-bench-", dir=args.work_dir))
    try:
        run(args, work)
    finally:
        if args.out_dir is not None:
            for leftover in args.out_dir.glob("redesdl-bench-out-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
