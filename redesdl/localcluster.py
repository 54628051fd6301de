"""A whole cluster as real processes on 127.0.0.1: for the demo, tests and benchmarks.

It starts ``twistd redesdl-central`` and ``twistd redesdl-secondary`` exactly
as the README tells a person to, on port 0, learns each port from the log
line the daemon prints once it listens, and stops every process it started,
by PID, when the ``with`` block ends, whatever happened inside it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from redesdl.devca import TestAuthority
from redesdl.fsutil import write_private_file

_LISTENING = re.compile(r"redesdl-(?:central|secondary) listening on [^\s:]+:(\d+)")


class ClusterError(Exception):
    """A daemon did not start, or a condition was not met before its deadline."""


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll C{condition} until it returns something true; fail after C{timeout}."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def free_port(
    host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET
) -> int:
    """A TCP port on C{host} nobody listens on now (another may take it later)."""
    with socket.socket(family) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Daemon:
    """One twistd process and its log file."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        wrapper: Sequence[str] = (),
        knock: int | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        #: A program that runs twistd, such as systemd-socket-activate.
        self.wrapper = list(wrapper)
        #: A port to connect to once, to start a socket-activated daemon.
        self._knock = knock
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None

    def start(self, timeout: float = 30.0) -> int:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_bytes(b"")
        with open(self.log.with_suffix(".stderr"), "wb") as stderr:
            self.process = subprocess.Popen(
                [*self.wrapper, self.argv[0], f"--logfile={self.log}", *self.argv[1:]],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        if self._knock is not None:
            wait_until(self._knocked, timeout, f"{self.name}'s socket to answer")
        self.port = int(
            wait_until(self._listeningPort, timeout, f"{self.name} to listen")
        )
        return self.port

    def _knocked(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self._knock), timeout=1).close()
        except OSError:
            return False
        return True

    def _listeningPort(self) -> str | None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ClusterError(
                f"{self.name} exited with {self.process.returncode}: "
                f"{self.log.with_suffix('.stderr').read_text().strip()}"
            )
        found = _LISTENING.search(self.log.read_text(errors="replace"))
        return found.group(1) if found else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class LocalCluster:
    """A central and N secondaries under C{root}, each with its own folders."""

    def __init__(
        self,
        root: Path,
        secondaries: int = 3,
        bin_dir: Path | None = None,
        central_args: Sequence[str] = (),
        secondary_args: Sequence[str] = (),
        client_args: Sequence[str] = (),
        secret: bool = False,
        socket_activated: str | None = None,
    ) -> None:
        """With C{socket_activated} (a ``systemd:`` endpoint string), the
        central runs under systemd-socket-activate, which holds its port and
        starts it on the first connection, as systemd would."""
        self.root = root
        self.bin = bin_dir or Path(sys.executable).parent
        self.count = secondaries
        self._centralArgs = list(central_args)
        self._secondaryArgs = list(secondary_args)
        self._clientArgs = list(client_args)
        self._socketActivated = socket_activated
        self._secretArgs: list[str] = []
        if secret:
            path = self.write_secret("cluster.secret")
            self._secretArgs = ["--secret-file", str(path)]
            self._centralArgs += self._secretArgs
        self.central: Daemon | None = None
        self.secondaries: dict[int, Daemon] = {}

    @property
    def central_address(self) -> str:
        assert self.central is not None and self.central.port is not None
        return f"127.0.0.1:{self.central.port}"

    def write_secret(self, name: str) -> Path:
        """A fresh random secret file under root, readable by us alone."""
        path = self.root / name
        self.root.mkdir(parents=True, exist_ok=True)
        write_private_file(str(path), f"{secrets.token_urlsafe(32)}\n".encode())
        return path

    def data(self, number: int) -> Path:
        folder = self.root / f"data{number}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def start(self) -> LocalCluster:
        self.start_central()
        for number in range(1, self.count + 1):
            self.start_secondary(number)
        return self

    def start_central(self) -> Daemon:
        """Start the central; a restart listens on the port it had before."""
        port = (
            self.central.port if self.central is not None and self.central.port else 0
        )
        listen = f"tcp:{port}:interface=127.0.0.1"
        wrapper: list[str] = []
        if self._socketActivated:
            port = port or free_port()
            listen = self._socketActivated
            wrapper = [
                shutil.which("systemd-socket-activate") or "systemd-socket-activate",
                f"--listen=127.0.0.1:{port}",
                "--fdname=redesdl-central",
            ]
        self.central = Daemon(
            "central",
            [
                str(self.bin / "twistd"),
                "--pidfile=",
                "-n",
                "redesdl-central",
                "--listen",
                listen,
                "--state-dir",
                str(self.root / "central"),
                *self._centralArgs,
            ],
            self.root / "logs" / "central.log",
            wrapper,
            knock=port if wrapper else None,
        )
        self.central.start()
        return self.central

    def start_secondary(
        self, number: int, extra: Sequence[str] = (), with_secret: bool = True
    ) -> Daemon:
        """Start secondary C{number}, again on its old port if it ran before.

        It gets the cluster secret, if there is one, unless C{with_secret}
        is false.
        """
        previous = self.secondaries.get(number)
        port = previous.port if previous is not None and previous.port else 0
        daemon = Daemon(
            f"s{number}",
            [
                str(self.bin / "twistd"),
                "--pidfile=",
                "-n",
                "redesdl-secondary",
                "--listen",
                f"tcp:{port}:interface=127.0.0.1",
                "--central",
                self.central_address,
                "--data",
                str(self.data(number)),
                "--state-dir",
                str(self.root / f"s{number}"),
                "--name",
                f"s{number}",
                "--rescan-interval",
                "0.5",
                *(self._secretArgs if with_secret else ()),
                *self._secondaryArgs,
                *extra,
            ],
            self.root / "logs" / f"s{number}.log",
        )
        self.secondaries[number] = daemon
        daemon.start()
        return daemon

    def client(
        self, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the ``redesdl`` script against this cluster."""
        return subprocess.run(
            self.client_argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=self.client_environment(),
        )

    def start_client(self, *args: str) -> subprocess.Popen[str]:
        """Start the ``redesdl`` script in the background, output captured."""
        return subprocess.Popen(
            self.client_argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.client_environment(),
        )

    def client_argv(self, *args: str) -> list[str]:
        program = str(self.bin / "redesdl")
        return [program, "--central", self.central_address, *self._clientArgs, *args]

    def client_environment(self) -> dict[str, str]:
        """The environment for client processes: statistics stay under root."""
        return {**os.environ, "XDG_STATE_HOME": str(self.root / "client-state")}

    def listing(self) -> list[dict[str, Any]]:
        result = self.client("list", "--json")
        return json.loads(result.stdout) if result.returncode == 0 else []

    def wait_for_sources(
        self, name: str, sources: int, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Wait until C{name} is listed with at least C{sources} sources."""

        def listed() -> dict[str, Any] | None:
            for entry in self.listing():
                if entry["name"] == name and entry["sources"] >= sources:
                    return entry
            return None

        return wait_until(
            listed, timeout, f"{name} on {sources} secondaries", interval=0.2
        )

    def stop(self) -> None:
        for daemon in [*self.secondaries.values(), self.central]:
            if daemon is not None:
                daemon.stop()

    @classmethod
    def secure(cls, root: Path, bin_dir: Path | None = None) -> LocalCluster:
        """A cluster secret, C{--require-tickets} and mutual TLS on every hop,
        with certificates from a test CA under C{root/pki}."""
        authority = TestAuthority(root / "pki")
        return cls(
            root,
            bin_dir=bin_dir,
            secret=True,
            central_args=authority.issue("central"),
            secondary_args=[*authority.issue("secondary"), "--require-tickets"],
            client_args=authority.issue("client"),
        )

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
