"""The secondary's console: registration, files, what it serves right now.

``VIDEOS_DESCARGANDO`` (files being served now, with how many clients) and
``VIDEOS_DESCARGADOS`` (files served, with counts) are the original system's
commands.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from redesdl.client.progress import human_size
from redesdl.console import CommandSet

if TYPE_CHECKING:
    from redesdl.secondary.service import SecondaryService
    from redesdl.transfer.download import Download


def describe_copy(download: Download, elapsed: float) -> str:
    """One copy from peers: name, bytes so far of its size, rate, ETA, peers."""
    done, size = download.bytesDone, download.info.size
    rate = (done - download.bytesReused) / elapsed if elapsed > 0 else 0.0
    eta = f"{(size - done) / rate:.0f} s" if rate > 0 else "?"
    percent = 100 * done / size if size else 100
    peers = ", ".join(sorted(s.name for s in download.sources))
    return (
        f"{download.info.name}: {percent:3.0f}% {human_size(done)} of "
        f"{human_size(size)}, {human_size(rate)}/s, ETA {eta}, from {peers}"
    )


class SecondaryCommands(CommandSet):
    """What an operator can ask a secondary."""

    aliases = {"h": "help", "exit": "quit"}

    def __init__(self, secondary: SecondaryService) -> None:
        super().__init__()
        self._secondary = secondary

    def cmd_status(self, args: list[str]) -> list[str]:
        """Registered or not, the central's address, files, copies in progress."""
        secondary = self._secondary
        standing = [
            f"{secondary.name}: "
            f"{'registered' if m.registered else 'not registered'} "
            f"with the central at {m.description}"
            for m in secondary.memberships
        ]
        copying = ["copying from peers: none"]
        if secondary.replicator.active:
            copying = ["copying from peers:", *self.cmd_copies([])]
        return [
            *standing,
            f"{len(secondary.index.entries)} files served from "
            f"{secondary.index.data.path}",
            *copying,
        ]

    def cmd_copies(self, args: list[str]) -> list[str]:
        """Copies from peers in progress: bytes so far, rate, ETA, peers."""
        replicator = self._secondary.replicator
        now = self._secondary.reactor.seconds()
        return [
            "  " + describe_copy(download, now - replicator.started.get(name, now))
            for name, download in sorted(replicator.active.items())
        ] or ["no copies in progress"]

    def cmd_files(self, args: list[str]) -> list[str]:
        """The files this secondary serves."""
        entries = sorted(
            self._secondary.index.entries.values(), key=lambda e: e.manifest.name
        )
        return [
            f"{e.manifest.name}  {e.manifest.size} bytes  {e.manifest.sha256[:16]}"
            for e in entries
        ] or ["no files"]

    def cmd_rescan(self, args: list[str]) -> Deferred[list[str]]:
        """Scan the data folder for changes now."""
        return self._secondary.index.scan().addCallback(
            lambda changes: [
                f"{len(changes.added)} added or changed, {len(changes.removed)} removed"
            ]
        )

    def farewell(self) -> list[str]:
        return [f"statistics saved in {self._secondary.stats.file.path.path}"]

    def cmd_stats(self, args: list[str]) -> list[str]:
        """Totals kept across restarts."""
        data = self._secondary.stats.data
        served = data["served"].values()
        replication = data["replication"]
        return [
            f"served {sum(f['chunks'] for f in served)} chunks, "
            f"{sum(f['bytes'] for f in served)} bytes",
            f"copies from peers: {replication['copied']} done, "
            f"{replication['failed']} failed",
            f"errors: {data['errors'] or 'none'}",
            f"kept in {self._secondary.stats.file.path.path}",
        ]

    def cmd_videos_descargando(self, args: list[str]) -> list[str]:
        """Files being served right now, with how many clients."""
        serving = self._secondary.chunkServer.beingServed()
        return [f"{name}: {n} client(s)" for name, n in sorted(serving.items())] or [
            "nothing is being served"
        ]

    def cmd_videos_descargados(self, args: list[str]) -> list[str]:
        """Files served so far, with chunk and byte counts."""
        served = self._secondary.stats.data["served"]
        return [
            f"{name}: {entry['chunks']} chunks, {entry['bytes']} bytes, "
            f"{len(entry['clients'])} client(s)"
            for name, entry in sorted(served.items())
        ] or ["nothing served yet"]
