"""A real central and secondaries in this process, on 127.0.0.1 port 0.

Built from the same twistd option parsing and makeService as the daemons,
so integration tests exercise real TCP, real files and real threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater

from redesdl.central import tap as central_tap
from redesdl.manifest import file_sha256 as sha256_file
from redesdl.secondary import tap as secondary_tap


async def eventually(condition: Any, what: str, timeout: float = 30.0) -> Any:
    """Wait until C{condition()} is true, checking as the reactor runs."""
    deadline = reactor.seconds() + timeout
    while True:
        value = condition()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, 0.02, lambda: None)


class Cluster:
    """A central plus secondaries s1..sN, each with a data folder under root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.central: Any = None
        self.secondaries: dict[str, Any] = {}

    def data(self, name: str) -> Path:
        folder = self.root / f"data-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def registry(self) -> Any:
        return self.central.factory.registry

    @property
    def central_address(self) -> str:
        return f"127.0.0.1:{self.central.listener.port.getHost().port}"

    async def start_central(self, *args: str) -> None:
        options = central_tap.Options()
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--state-dir",
                str(self.root / "central"),
                *args,
            ]
        )
        self.central = central_tap.makeService(options, reactor)
        self.central.startService()
        await self.central.listener.whenListening()

    async def start_secondary(self, name: str, *args: str) -> Any:
        options = secondary_tap.Options()
        options.parseOptions(
            [
                "--listen",
                "tcp:0:interface=127.0.0.1",
                "--central",
                self.central_address,
                "--data",
                str(self.data(name)),
                "--state-dir",
                str(self.root / name),
                "--name",
                name,
                "--rescan-interval",
                "0.2",
                *args,
            ]
        )
        service = secondary_tap.makeService(options, reactor)
        service.startService()
        await service.listener.whenListening()
        self.secondaries[name] = service
        return service

    async def stop_secondary(self, name: str) -> None:
        await self.secondaries.pop(name).stopService()

    def sources_of(self, name: str) -> int:
        entry = self.registry.entry(name)
        return 0 if entry is None else len(entry.holders)

    async def wait_for_sources(
        self, name: str, count: int, timeout: float = 30
    ) -> None:
        await eventually(
            lambda: self.sources_of(name) >= count,
            f"{name} on {count} secondaries",
            timeout,
        )

    async def stop_secondaries(self) -> None:
        for name in list(self.secondaries):
            await self.stop_secondary(name)

    async def stop(self) -> None:
        await self.stop_secondaries()
        if self.central is not None:
            await self.central.stopService()


__all__ = ["Cluster", "eventually", "sha256_file"]
