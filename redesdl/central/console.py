"""The central's console: who is registered, what is served, who waits.

``NUMERO_DESCARGAS_VIDEO`` and ``VIDEOS_CLIENTE`` are the original system's
commands: completed downloads per file, and per client name which files.
"""

from __future__ import annotations

import time

from redesdl.central.protocol import CentralFactory
from redesdl.console import CommandSet, ConsoleUsageError, usage
from redesdl.machines.rules import state_of

#: Widest the name column of ``files`` grows; a longer name pushes its line.
FILES_NAME_CAP = 60


def _human_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def _ago(then: float) -> str:
    return f"{time.time() - then:.0f} s ago"


class CentralCommands(CommandSet):
    """What an operator can ask the central."""

    aliases = {"h": "help", "exit": "quit"}

    def __init__(self, factory: CentralFactory) -> None:
        super().__init__()
        self._factory = factory

    def cmd_secondaries(self, args: list[str]) -> list[str]:
        """Registered secondaries: name, address, state, files, last heartbeat."""
        records = sorted(
            self._factory.registry.secondaries.values(), key=lambda r: r.name
        )
        now = self._factory.clock.seconds()

        def heartbeat(heard: float | None) -> str:
            return (
                "no heartbeat yet"
                if heard is None
                else (f"last heartbeat {now - heard:.0f} s ago")
            )

        return [
            f"{r.name}  {r.host}:{r.port}  registered {_ago(r.registeredAt)}  "
            f"{len(r.files)} files  {heartbeat(r.lastHeard)}"
            for r in records
        ] or ["no secondary registered"]

    def cmd_files(self, args: list[str]) -> list[str]:
        """The merged catalog: each name, its size and how many sources."""
        entries = list(self._factory.registry.names_after(None))
        if not entries:
            return ["no files"]
        width = min(max(len(e.name) for e in entries), FILES_NAME_CAP)
        header = f"{'NAME':<{width}}  {'SIZE':>10}  {'SOURCES':>7}  SHA256"
        return [header] + [
            f"{e.name:<{width}}  {_human_size(e.info.size):>10}  {e.sources:>7}  "
            f"{e.info.sha256[:16]}"
            for e in entries
        ]

    def cmd_clients(self, args: list[str]) -> list[str]:
        """Clients connected now, and what each is doing (idle, queued, active)."""
        clients = [c for c in self._factory.connections if c.role == "client"]
        return [
            f"{c.peerName}  {c.peerDescription()}  "
            f"{state_of(c.session).removeprefix('client_')}"
            for c in clients
        ] or ["no client connected"]

    def cmd_queue(self, args: list[str]) -> list[str]:
        """Downloads running, and clients waiting for a slot, in order."""
        admission = self._factory.admission
        lines = [f"{len(admission.active)} of {admission.maxActive} slots in use"]
        lines += [f"  running: {t.client} {t.file}" for t in admission.active]
        lines += [
            f"  waiting {n}: {t.client} {t.file}"
            for n, t in enumerate(admission.waiting, start=1)
        ]
        return lines

    def farewell(self) -> list[str]:
        return [f"statistics saved in {self._factory.stats.file.path.path}"]

    def cmd_stats(self, args: list[str]) -> list[str]:
        """Totals kept across restarts."""
        data = self._factory.stats.data
        files = data["files"].values()
        return [
            f"up {data.get('uptime_seconds', 0):.0f} s in all, {data['starts']} starts",
            f"downloads completed {sum(f['completed'] for f in files)}, failed "
            f"{sum(f['failed'] for f in files)}",
            f"secondaries seen: {', '.join(sorted(data['secondaries'])) or 'none'}",
            f"kept in {self._factory.stats.file.path.path}",
        ]

    def cmd_numero_descargas_video(self, args: list[str]) -> list[str]:
        """Completed downloads per file."""
        files = self._factory.stats.data["files"]
        return [
            f"{name}: {entry['completed']}" for name, entry in sorted(files.items())
        ] or ["no downloads yet"]

    def cmd_videos_cliente(self, args: list[str]) -> list[str]:
        """Per client name: completed downloads, and of which files how many."""
        clients = self._factory.stats.data["clients"]
        lines = []
        for name, entry in sorted(clients.items()):
            lines.append(f"{name}: {entry['completed']} completed")
            files = entry.get("files", {})
            lines += [f"  {file}: {n}" for file, n in sorted(files.items())]
            remembered = sum(files.values())
            if remembered < entry["completed"]:
                lines.append(
                    f"  ({entry['completed'] - remembered} more, of files no "
                    "longer listed)"
                )
        return lines or ["no downloads yet"]

    @usage("NAME")
    def cmd_remove(self, args: list[str]) -> str:
        """Remove a file from the cluster: every secondary moves its copy aside."""
        if not args:
            raise ConsoleUsageError("")
        name = " ".join(args)
        told = self._factory.remove_file(name)
        if told is None:
            return f"no secondary holds {name!r}; nothing removed"
        where = (
            f"moved aside on {', '.join(told)}"
            if told
            else "no live secondary holds it"
        )
        return (
            f"removed {name!r}: {where} (into .redesdl-removed in each data "
            "folder); a copy that turns up later is moved aside too"
        )

    def cmd_removed(self, args: list[str]) -> list[str]:
        """Files removed from the cluster (see unremove)."""
        return self._factory.removals.names() or ["no file removed"]

    @usage("NAME")
    def cmd_unremove(self, args: list[str]) -> str:
        """Let a removed file be served again, the same bytes included."""
        if not args:
            raise ConsoleUsageError("")
        name = " ".join(args)
        if not self._factory.removals.forget(name):
            return f"{name!r} was not removed"
        return f"{name!r} may be served again: put it back in a data folder"
