"""``redesdl`` with no command: the interactive client console.

Downloads started with ``get`` run in the background; the prompt stays usable
and says when each one ends. The original system's command names
(``INSCRIBIR``, ``LISTA_VIDEOS``, ``VIDEO``, ``VIDEOS_CLIENTE``) work as
aliases.
"""

from __future__ import annotations

import os
import shlex
from contextlib import aclosing
from typing import Any, NamedTuple

from twisted.internet.defer import Deferred, DeferredList
from twisted.python.failure import Failure

from redesdl.client.access import ClusterAccess
from redesdl.client.central import CentralConnection, connect_central
from redesdl.client.identity import remember_name
from redesdl.client.job import GetJob
from redesdl.client.listing import TextListing, describe_result
from redesdl.client.presence import CentralPresence
from redesdl.client.progress import describe_progress
from redesdl.client.reasons import explain
from redesdl.client.stats import ClientStats, default_stats_path
from redesdl.console import CommandSet, ConsoleUsageError, usage
from redesdl.protocol import wire
from redesdl.protocol.wire import MAX_PEER_NAME

#: Most catalog lines the console's ``list`` shows; ``redesdl list`` prints all.
LIST_SHOWN = 200
#: Most names one Tab asks the central for.
COMPLETIONS_ASKED = 100


async def entries_starting(
    central: CentralConnection, prefix: str, cap: int
) -> tuple[list[wire.CatalogEntry], int]:
    """The first C{cap} catalog entries whose names start with C{prefix},
    and how many more do.

    Past the cap the remaining matches are only counted as their pages
    stream by. Names are in order, so the listing starts just before
    C{prefix} and stops at the first name past it.
    """
    entries: list[wire.CatalogEntry] = []
    more = 0
    pages = central.catalog_pages(prefix[:-1] or None)
    async with aclosing(pages):
        async for page in pages:
            matching = [e for e in page if e.info.name.startswith(prefix)]
            room = cap - len(entries)
            entries += matching[:room]
            more += len(matching[room:])
            last = page[-1].info.name
            if last > prefix and not last.startswith(prefix):
                break  # every later name sorts after the prefix's range
    return entries, more


async def capped_listing(
    central: CentralConnection, prefix: str, cap: int
) -> list[str]:
    """The first C{cap} names starting with C{prefix}, then how many more.

    A console is for reading, not for 100,000 lines.
    """
    entries, more = await entries_starting(central, prefix, cap)
    lines = TextListing().lines(entries)
    if not lines:
        return [f"no file names start with {prefix!r}" if prefix else "no files yet"]
    if more:
        lines.append(f"… and {more} more; 'redesdl list' prints them all")
    return lines


class GetArguments(NamedTuple):
    """What the console's ``get`` was asked for."""

    force: bool
    name: str
    path: str | None
    #: Around the page cache (True), through it (False), or chosen (None).
    direct_io: bool | None = None


def split_get_arguments(args: list[str]) -> GetArguments:
    """``get [--force] [--[no-]direct-io] NAME [PATH]``; ``--`` ends the
    options, for a name that starts with a dash. The last of
    ``--direct-io`` and ``--no-direct-io`` wins, as on the command line."""
    force = False
    direct_io: bool | None = None
    rest: list[str] = []
    options = True
    for arg in args:
        if options and arg == "--":
            options = False
        elif options and arg == "--force":
            force = True
        elif options and arg in ("--direct-io", "--no-direct-io"):
            direct_io = arg == "--direct-io"
        elif options and arg.startswith("--"):
            raise ConsoleUsageError(f"unknown option {arg!r}")
        else:
            rest.append(arg)
    if len(rest) not in (1, 2):
        raise ConsoleUsageError("")
    return GetArguments(force, rest[0], rest[1] if len(rest) == 2 else None, direct_io)


class ClientCommands(CommandSet):
    """What a person can do from the client console."""

    aliases = {
        "h": "help",
        "ls": "list",
        "exit": "quit",
        "inscribir": "name",
        "lista_videos": "list",
        "video": "get",
        "videos_cliente": "downloaded",
    }

    def __init__(
        self,
        reactor: Any,
        access: ClusterAccess,
        centralText: str,
        name: str,
        stats: ClientStats,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._access = access
        self._centralText = centralText
        self.name = name
        self._stats = stats
        self.jobs: list[GetJob] = []
        self._presence: CentralPresence | None = None
        self._running: dict[GetJob, Deferred[None]] = {}
        self.failures: list[BaseException] = []
        self._interrupted: list[GetJob] = []

    @usage("NAME")
    def cmd_name(self, args: list[str]) -> Deferred[str]:
        """Register with the central as NAME now; it is remembered for next time."""
        if len(args) != 1:
            raise ConsoleUsageError("")
        name = args[0]
        if not name.isprintable() or len(name) > MAX_PEER_NAME:
            raise ConsoleUsageError(
                f"a name is printable text of at most {MAX_PEER_NAME} characters"
            )
        self.name = name
        folder = default_stats_path().parent
        try:
            remember_name(folder, name)
            kept = "remembered for the next session"
        except OSError as e:
            kept = f"not remembered ({folder}: {e.strerror})"
        if self._presence is None:
            self._presence = CentralPresence(self._reactor, self._access)
        registering = Deferred.fromCoroutine(self._presence.register(name))
        return registering.addCallbacks(
            lambda _: f"you are now {name!r}, registered with the central; {kept}",
            lambda reason: (
                f"you are now {name!r} ({kept}), but not registered: "
                + explain(reason.value, self._centralText, None)
            ),
        )

    async def _ask_central(self, prefix: str, cap: int) -> Any:
        central = await connect_central(
            self._access.central,
            self.name,
            self._access.token,
            self._access.reply_timeout,
        )
        try:
            return await entries_starting(central, prefix, cap)
        finally:
            await central.close()

    @usage("[PREFIX]")
    def cmd_list(self, args: list[str]) -> Deferred[list[str]]:
        """List the files the cluster serves (starting with PREFIX), at most 200."""
        if len(args) > 1:
            raise ConsoleUsageError("")
        prefix = args[0] if args else ""

        async def listing() -> list[str]:
            central = await connect_central(
                self._access.central,
                self.name,
                self._access.token,
                self._access.reply_timeout,
            )
            try:
                return await capped_listing(central, prefix, LIST_SHOWN)
            finally:
                await central.close()

        return Deferred.fromCoroutine(listing()).addErrback(
            lambda reason: [explain(reason.value, self._centralText, None)]
        )

    def complete_get(self, prefix: str) -> Deferred[list[str]]:
        """Names starting with C{prefix}, asked of the central: one short
        listing of that range, never the whole catalog."""

        async def names() -> list[str]:
            entries, _ = await self._ask_central(prefix, COMPLETIONS_ASKED)
            return [entry.info.name for entry in entries]

        def unavailable(reason: Failure) -> list[str]:
            self.say(explain(reason.value, self._centralText, None))
            return []

        return Deferred.fromCoroutine(names()).addErrback(unavailable)

    @usage("[--force] [--[no-]direct-io] NAME [PATH]")
    def cmd_get(self, args: list[str]) -> str:
        """Start downloading a file in the background (--force: overwrite PATH).

        ``--direct-io`` and ``--no-direct-io`` choose the way to disk, as for
        ``redesdl get``.
        """
        force, name, path, direct_io = split_get_arguments(args)
        job = GetJob(
            self._reactor,
            self._access,
            self.name,
            name,
            path,
            force,
            self._stats,
            directIO=direct_io,
        )
        self.jobs.append(job)

        def done(result: Any) -> None:
            self.say(f"done: {describe_result(result)}")

        def failed(reason: Any) -> None:
            self.failures.append(reason.value)
            why = explain(reason.value, self._centralText, name)
            # The console's own command, not the shell's, is what to type here.
            why = why.replace("'redesdl list'", "'list'")
            self.say(f"get {name} failed: {why}")

        running = Deferred.fromCoroutine(job.run()).addCallbacks(done, failed)
        self._running[job] = running
        running.addBoth(lambda _: self._ended(job))
        return f"get {name}: asking the central; 'status' shows how it goes"

    def _ended(self, job: GetJob) -> None:
        del self._running[job]

    def leave_warning(self) -> str | None:
        if not self._running:
            return None
        count = len(self._running)
        running = f"{count} download{'s' if count > 1 else ''} running"
        return (
            f"{running}; Ctrl-C again (or 'quit') to stop "
            f"{'them' if count > 1 else 'it'}: the .part files are kept "
            "and 'get' resumes them"
        )

    def settled(self) -> Deferred[None]:
        """Fire once every download started so far has ended."""
        return DeferredList(list(self._running.values())).addCallback(lambda _: None)

    def interrupt(self) -> None:
        """The console is closing: record running downloads as interrupted,
        keeping their progress, as ``redesdl get`` does when stopped."""
        for job in list(self._running):
            job.interrupted()
            self._interrupted.append(job)

    def farewell(self) -> list[str]:
        lines = [
            f"stopped {job.name}; 'get {shlex.quote(job.name)}' resumes it"
            for job in self._interrupted
        ]
        return [*lines, f"statistics saved in {self._stats.path}"]

    def cmd_status(self, args: list[str]) -> list[str]:
        """Show every download of this session: bytes, rate, sources, ETA, path."""
        if not self.jobs:
            return ["no downloads yet"]
        now = self._reactor.seconds()
        lines = []
        for job in self.jobs:
            line = describe_progress(job, now)
            if job.download is not None:
                line += f" -> {os.path.abspath(job.download.destination)}"
            lines.append(line)
        return lines

    def cmd_stats(self, args: list[str]) -> list[str]:
        """Show this client's statistics (all sessions)."""
        return self._stats.summary()

    def cmd_downloaded(self, args: list[str]) -> list[str]:
        """Which files this machine's client downloaded, and how many times."""
        return self._stats.files_downloaded()
