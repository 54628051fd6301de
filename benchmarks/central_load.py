"""Load on a real central: fake secondaries and clients over TCP on 127.0.0.1.

The central runs as the README starts it (``twistd -n redesdl-central
--listen tcp:PORT:interface=127.0.0.1 --state-dir DIR``), as a subprocess, so
its CPU and peak RSS can be read from /proc. In this one Twisted process,
fake secondaries do the real join (``hello`` without a secret, ``files_added``
in batches of 256, ``catalog_done``, a ``ping`` every heartbeat interval) and
fake clients list, locate and queue (``admit``/``report``), all with redesdl's
own codec and typed messages. Each file is synthetic (1 MiB, made-up digests)
and lies on ``--copies`` secondaries (``all``: on every one).

A point is ``SECONDARIESxFILESxCLIENTS`` (``k`` means thousands; ``-all``
puts every file on every secondary). Its phases, each with a deadline:

1. connect the secondaries, ``--connect-batch`` every ``--connect-interval``
   seconds (each from its own loopback address, as real hosts would be), and
   wait until every one is registered: welcomed, its catalog sent, and the
   ``ping`` after its ``catalog_done`` answered;
2. one full listing, repeated until the central lists every file with all its
   copies (the time to register ends at the later of the last registration
   and the start of that complete listing);
3. ``--duration`` seconds of load: each client lists the whole catalog again
   and again while it locates a random file every ``--locate-interval``
   seconds and, every ``--admit-every`` locates, takes a download slot and
   reports the download done;
4. the answers still owed are awaited (``--drain-timeout``), then the
   central is stopped by PID (SIGTERM, SIGKILL 10 s later), as it is on
   Ctrl-C, SIGTERM or any failure.

So a point lasts at most about 30 s (the central starting) + 60 s (clients
welcomed, twice) + ``--register-timeout`` + ``--list-timeout`` +
``--duration`` + ``--drain-timeout`` + 10 s: 270 s with the defaults, and
about ``--duration`` plus a few seconds on a central that keeps up. A point
above the central's default 1,024 connections starts it with
``--max-connections`` raised to fit; ``--central-arg`` passes anything else.

One table row per point::

    python benchmarks/central_load.py --secondaries 20 --files 2k --clients 5
    python benchmarks/central_load.py --points issue
    python benchmarks/central_load.py --points issue --central-bin OTHER/.venv/bin

``drops`` counts connections the central closed, ``not_registered`` answers
and links we gave up on after ``--secondary-timeout`` seconds of silence (a
real secondary does the same). ``conn err`` counts connections that failed
or were refused ``busy``; ``ovfl`` is the kernel's count of SYNs and ACKs
dropped because a listen queue was full (TcpExt ListenOverflows, for the whole
machine, so another program's overflows would show too); ``join max`` is the
slowest hello answered after connecting, where an overflowed accept queue
shows as seconds. ``lost`` counts requests never answered. ``turn max ms``
and ``stalls`` are the central's own watch on its reactor, read from its
``/metrics`` at the end: the longest a due timer waited (about the longest
turn that held the reactor) and the timers run over 50 ms late. ``gen cpu`` is
this process's own CPU, to see whether the generator kept up.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import random
import re
import resource
import secrets
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.internet.threads import deferToThread

from redesdl.localcluster import LocalCluster, free_port
from redesdl.manifest import FileInfo
from redesdl.procstat import cpu_seconds, peak_rss_mib
from redesdl.protocol.codec import (
    FrameDecoder,
    FramingBroken,
    MessageReceived,
    MessageRefused,
    encode,
)
from redesdl.protocol.wire import (
    CLIENT_FROM_CENTRAL,
    MAX_FILES_PER_MESSAGE,
    SECONDARY_FROM_CENTRAL,
    Admit,
    Admitted,
    CatalogDone,
    ClientHello,
    Error,
    FilesAdded,
    ListFiles,
    Locate,
    Located,
    Message,
    Ping,
    Pong,
    Queued,
    Replicate,
    Replicated,
    Report,
    SecondaryHello,
    Verified,
    Verify,
    Welcome,
)

#: The points of issue 11, for ``--points issue``.
ISSUE_POINTS = ("1000x10kx50", "10x100kx1", "100x10k-all")
FILE_SIZE = 1 << 20
#: Largest frame we read from the central (a located with many sources).
MAX_FRAME = 4 << 20
#: Catalog bytes one fake secondary hands its transport per write turn.
CATALOG_WRITE = 256 * 1024
#: Seconds for the clients of a point to connect and be welcomed.
CLIENTS_WELCOMED_WITHIN = 30.0
#: The central's own default cap on connections (--max-connections).
CENTRAL_DEFAULT_CONNECTIONS = 1024

_POINT = re.compile(r"^(\d+k?)x(\d+k?)(?:x(\d+k?))?(-all)?$")


# -- What a point is ---------------------------------------------------------


def _number(text: str) -> int:
    return int(text[:-1]) * 1000 if text.endswith("k") else int(text)


@dataclass(frozen=True)
class Point:
    """One size to measure: secondaries, files, clients, copies of each file."""

    secondaries: int
    files: int
    clients: int
    #: Secondaries holding each file; None means every one.
    copies: int | None = 2

    @classmethod
    def parse(cls, spec: str, copies: int | None = 2) -> Point:
        """``1000x10kx50``, ``10x100kx1`` or ``100x10k-all`` (one client)."""
        found = _POINT.match(spec.strip())
        if found is None:
            raise ValueError(f"{spec!r} is not SECONDARIESxFILES[xCLIENTS][-all]")
        secondaries, files, clients, every = found.groups()
        return cls(
            _number(secondaries),
            _number(files),
            _number(clients) if clients else 1,
            None if every else copies,
        )

    @property
    def holders(self) -> int:
        """How many secondaries hold each file."""
        if self.copies is None:
            return self.secondaries
        return min(self.copies, self.secondaries)

    @property
    def name(self) -> str:
        """As the issue writes it: files in thousands, the rest plain."""
        files = self.files
        files_text = (
            f"{files // 1000}k" if files >= 1000 and not files % 1000 else f"{files}"
        )
        text = f"{self.secondaries}x{files_text}"
        if self.copies is None:
            clients = f"x{self.clients}" if self.clients != 1 else ""
            return f"{text}{clients}-all"
        copies = f"-c{self.copies}" if self.copies != 2 else ""
        return f"{text}x{self.clients}{copies}"


class Library:
    """Synthetic files and which secondary holds which, encoded once."""

    def __init__(self, point: Point) -> None:
        self.point = point
        self.infos = [self.info(i) for i in range(point.files)]
        self.names = sorted(info.name for info in self.infos)
        self._held: list[list[int]] | None = None
        if point.holders < point.secondaries:
            self._held = [[] for _ in range(point.secondaries)]
            for i in range(point.files):
                for j in range(point.holders):
                    self._held[(i + j) % point.secondaries].append(i)
        self._encoded: dict[int, list[bytes]] = {}

    @staticmethod
    def info(i: int) -> FileInfo:
        name = f"library/shelf-{i % 97:02d}/title-{i:07d}.mkv"
        raw = name.encode()
        return FileInfo(
            name,
            FILE_SIZE,
            hashlib.sha256(raw).hexdigest(),
            hashlib.sha256(b"root:" + raw).hexdigest(),
        )

    def files_of(self, secondary: int) -> list[FileInfo]:
        if self._held is None:
            return self.infos
        return [self.infos[i] for i in self._held[secondary]]

    def batches(self, secondary: int) -> list[bytes]:
        """The ``files_added`` frames of C{secondary}'s whole catalog."""
        key = -1 if self._held is None else secondary
        if key not in self._encoded:
            files = self.files_of(secondary)
            self._encoded[key] = [
                encode(FilesAdded(tuple(files[i : i + MAX_FILES_PER_MESSAGE])))
                for i in range(0, len(files), MAX_FILES_PER_MESSAGE)
            ]
        return self._encoded[key]


# -- What was measured -------------------------------------------------------


@dataclass
class Samples:
    """Durations in seconds; percentiles by nearest rank."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    def percentile(self, p: float) -> float | None:
        if not self.values:
            return None
        ordered = sorted(self.values)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    def max(self) -> float | None:
        return max(self.values) if self.values else None

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class Tally:
    """Everything one point counted and timed."""

    connect_errors: int = 0
    dropped_closed: int = 0
    dropped_not_registered: int = 0
    dropped_silent: int = 0
    refused: int = 0
    replicate_orders: int = 0
    join: Samples = field(default_factory=Samples)
    heartbeat: Samples = field(default_factory=Samples)
    pages: Samples = field(default_factory=Samples)
    full: Samples = field(default_factory=Samples)
    short_listings: int = 0
    list_errors: int = 0
    locates: Samples = field(default_factory=Samples)
    locate_errors: int = 0
    admits: Samples = field(default_factory=Samples)
    admit_errors: int = 0
    client_errors: int = 0
    lost: int = 0

    @property
    def drops(self) -> int:
        return self.dropped_closed + self.dropped_not_registered + self.dropped_silent


def _now() -> float:
    return time.perf_counter()


def loopback_address(group: int, number: int) -> str:
    """A distinct source address in 127.0.0.0/8 for peer C{number}."""
    return f"127.{group}.{number // 250}.{number % 250 + 1}"


# -- Fake secondaries --------------------------------------------------------


class FakeSecondary(Protocol):
    """One secondary's link to the central: join, report, heartbeat.

    It acts on what it reads only as far as the load needs: replication
    orders are ignored (or refused with ``--refuse-replication``), a
    ``verify`` is answered intact.
    """

    def __init__(self, fleet: Fleet, number: int) -> None:
        self.fleet = fleet
        self.number = number
        self.decoder = FrameDecoder(SECONDARY_FROM_CENTRAL, MAX_FRAME)
        self.ids = itertools.count(2)
        self.pings: dict[int, float] = {}
        self.marker: int | None = None
        self.registered = False
        #: True once we chose to close: its end is not the central's doing.
        self.leaving = False
        self._batches: Iterator[bytes] = iter(())
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = fleet.reactor
        self._silence: Any = None

    def connectionMade(self) -> None:
        self.fleet.connected(self)
        self._arm_silence()
        self.transport.write(encode(self.fleet.hello(self.number)))

    def dataReceived(self, data: bytes) -> None:
        self._arm_silence()
        for event in self.decoder.feed(data):
            if isinstance(event, MessageReceived):
                self._message(event.message)
            elif isinstance(event, MessageRefused | FramingBroken):
                self.fleet.tally.refused += 1
                if isinstance(event, FramingBroken):
                    self.leave()

    def _message(self, message: Message) -> None:
        fleet = self.fleet
        if isinstance(message, Welcome):
            fleet.tally.join.add(_now() - fleet.connect_started[self.number])
            self._batches = iter(fleet.library.batches(self.number))
            self.transport.registerProducer(self, False)
        elif isinstance(message, Pong):
            self._pong(message.id)
        elif isinstance(message, Replicate):
            fleet.tally.replicate_orders += 1
            if fleet.refuse_replication:
                reason = "a load generator copies nothing"
                self._send(Replicated(message.file.name, False, reason))
        elif isinstance(message, Verify):
            self._send(Verified(message.name, True))
        elif isinstance(message, Error):
            if message.code == "not_registered":
                fleet.tally.dropped_not_registered += 1
                self.leave()
            elif message.code == "busy" and not self.registered:
                fleet.tally.connect_errors += 1
                self.leaving = True
            else:
                fleet.tally.refused += 1

    def _send(self, message: Message) -> None:
        self.transport.write(encode(message))

    # The catalog goes out as the transport drains: a pull producer.
    def resumeProducing(self) -> None:
        written = 0
        for batch in self._batches:
            self.transport.write(batch)
            written += len(batch)
            if written >= CATALOG_WRITE:
                return
        self.transport.unregisterProducer()
        self._send(CatalogDone())
        self.marker = next(self.ids)
        self._send(Ping(self.marker))

    def stopProducing(self) -> None:
        self._batches = iter(())

    def _pong(self, ping_id: int) -> None:
        if ping_id == self.marker and not self.registered:
            self.registered = True
            self._heartbeat.start(self.fleet.heartbeat_interval, now=False)
            self.fleet.registered(self)
            return
        sent = self.pings.pop(ping_id, None)
        if sent is not None:
            self.fleet.tally.heartbeat.add(_now() - sent)

    def _beat(self) -> None:
        ping_id = next(self.ids)
        self.pings[ping_id] = _now()
        self._send(Ping(ping_id))

    def _arm_silence(self) -> None:
        if self._silence is not None and self._silence.active():
            self._silence.reset(self.fleet.silence_timeout)
        else:
            self._silence = self.fleet.reactor.callLater(
                self.fleet.silence_timeout, self._silent
            )

    def _silent(self) -> None:
        self.fleet.tally.dropped_silent += 1
        self.leave()

    def leave(self) -> None:
        """Close from our side (the fleet connects again unless stopping)."""
        self.leaving = True
        self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        if self._heartbeat.running:
            self._heartbeat.stop()
        if self._silence is not None and self._silence.active():
            self._silence.cancel()
        now = _now()
        for sent in self.pings.values():
            # A heartbeat never answered lasted at least this long.
            self.fleet.tally.heartbeat.add(now - sent)
        self.pings.clear()
        if not self.leaving and not self.fleet.stopping:
            self.fleet.tally.dropped_closed += 1
        self.fleet.lost(self)


class Fleet:
    """All fake secondaries: paced connecting, reconnecting, who is registered."""

    def __init__(
        self,
        reactor: Any,
        port: int,
        library: Library,
        tally: Tally,
        options: argparse.Namespace,
    ) -> None:
        self.reactor = reactor
        self.port = port
        self.library = library
        self.tally = tally
        self.heartbeat_interval = options.heartbeat_interval
        self.silence_timeout = options.secondary_timeout
        self.refuse_replication = options.refuse_replication
        self.batch = options.connect_batch
        self.interval = options.connect_interval
        self.count = library.point.secondaries
        self.boot = int(time.time())
        self.run = secrets.token_hex(8)
        self.stopping = False
        self.connect_started: dict[int, float] = {}
        self.links: dict[int, FakeSecondary] = {}
        self.registered_numbers: set[int] = set()
        self._queue: deque[int] = deque()
        self._pacer = LoopingCall(self._connect_some)
        self._pacer.clock = reactor
        self._waiting: list[Deferred[None]] = []

    def hello(self, number: int) -> SecondaryHello:
        return SecondaryHello(
            1,
            f"load-s{number:05d}",
            f"load-{self.run}-{number:05d}",
            self.boot,
            10000 + number % 50000,
        )

    def start(self) -> None:
        self._queue.extend(range(self.count))
        self._pacer.start(self.interval)

    def _connect_some(self) -> None:
        for _ in range(min(self.batch, len(self._queue))):
            self._connect(self._queue.popleft())

    def _connect(self, number: int) -> None:
        if self.stopping:
            return
        self.connect_started[number] = _now()
        endpoint = TCP4ClientEndpoint(
            self.reactor,
            "127.0.0.1",
            self.port,
            timeout=30,
            bindAddress=(loopback_address(1, number), 0),
        )
        connecting = connectProtocol(endpoint, FakeSecondary(self, number))
        connecting.addErrback(self._failed, number)

    def _failed(self, reason: Any, number: int) -> None:
        self.tally.connect_errors += 1
        self._again(number)

    def _again(self, number: int) -> None:
        if not self.stopping:
            delay = 1.0 + random.random()
            self.reactor.callLater(delay, self._queue.append, number)

    def connected(self, link: FakeSecondary) -> None:
        self.links[link.number] = link

    def registered(self, link: FakeSecondary) -> None:
        self.registered_numbers.add(link.number)
        if len(self.registered_numbers) == self.count:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def lost(self, link: FakeSecondary) -> None:
        if self.links.get(link.number) is link:
            del self.links[link.number]
            self.registered_numbers.discard(link.number)
            self._again(link.number)

    def all_registered(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if len(self.registered_numbers) == self.count:
            d.callback(None)
        else:
            self._waiting.append(d)
        return d

    def stop(self) -> None:
        self.stopping = True
        if self._pacer.running:
            self._pacer.stop()
        for link in list(self.links.values()):
            link.leaving = True
            link.transport.abortConnection()


# -- Fake clients ------------------------------------------------------------


@dataclass(frozen=True)
class CatalogCount(Message):
    """A ``catalog`` page as the load's clients read it: names and sources only.

    A real client checks every entry (names, digests); that check costs the
    generator more than the central spends sending the page, and the load is
    about the central, so its clients read only what they count.
    """

    TYPE = "catalog"
    id: int
    last: str | None
    entries: int
    sources: tuple[int, ...]
    more: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CatalogCount:
        files = body["files"]
        return cls(
            body["id"],
            files[-1]["name"] if files else None,
            len(files),
            tuple(entry["sources"] for entry in files),
            bool(body["more"]),
        )


#: What the load's clients accept: the real vocabulary with cheap pages.
LOAD_CLIENT_VOCABULARY = {**CLIENT_FROM_CENTRAL, "catalog": CatalogCount.parse}


class FakeClient(Protocol):
    """A client connection: requests by id, each answered by one message.

    ``queued`` is an update, not an answer; an ``error`` is an answer.
    """

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.decoder = FrameDecoder(LOAD_CLIENT_VOCABULARY, MAX_FRAME)
        self.ids = itertools.count(1)
        self.pending: dict[int, Deferred[Message]] = {}
        self.closed = False

    def request(self, make: Callable[[int], Message]) -> Deferred[Message]:
        request_id = next(self.ids)
        answer: Deferred[Message] = Deferred()
        if self.closed:
            answer.errback(ConnectionLost("the central closed this connection"))
            return answer
        self.pending[request_id] = answer
        self.transport.write(encode(make(request_id)))
        return answer

    def tell(self, message: Message) -> None:
        self.transport.write(encode(message))

    def dataReceived(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Queued):
                    continue
                waiting = self.pending.pop(getattr(message, "id", None), None)
                if waiting is not None:
                    waiting.callback(message)
            elif isinstance(event, MessageRefused):
                self.tally.refused += 1
                waiting = self.pending.pop(event.request_id, None)  # type: ignore[arg-type]
                if waiting is not None:
                    waiting.errback(event.error)
            elif isinstance(event, FramingBroken):
                self.tally.refused += 1
                self.transport.abortConnection()

    def connectionLost(self, reason: Any) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        for waiting in pending.values():
            waiting.errback(reason)


async def connect_client(
    reactor: Any, port: int, number: int, tally: Tally, made: list[FakeClient]
) -> FakeClient:
    """A welcomed client; every connection made is added to C{made}."""
    endpoint = TCP4ClientEndpoint(
        reactor,
        "127.0.0.1",
        port,
        timeout=30,
        bindAddress=(loopback_address(2, number), 0),
    )
    client = await connectProtocol(endpoint, FakeClient(tally))
    made.append(client)
    token = secrets.token_hex(32)
    answer = await client.request(
        lambda i: ClientHello(i, f"load-client-{number}", token)
    )
    if not isinstance(answer, Welcome):
        raise RuntimeError(f"client {number} not welcomed: {answer}")
    return client


async def connect_clients(
    reactor: Any,
    port: int,
    numbers: range,
    tally: Tally,
    made: list[FakeClient],
    timeout: float,
) -> list[FakeClient]:
    """The clients welcomed within C{timeout}; the others count as errors."""
    welcomed: list[FakeClient] = []
    failures: list[Any] = []
    attempts = [
        Deferred.fromCoroutine(
            connect_client(reactor, port, n, tally, made)
        ).addCallbacks(welcomed.append, failures.append)
        for n in numbers
    ]
    await within(reactor, DeferredList(attempts), timeout)
    tally.connect_errors += len(numbers) - len(welcomed)
    if failures and not welcomed:
        print(f"no client connected: {failures[0].getErrorMessage()}", file=sys.stderr)
    return list(welcomed)


@dataclass
class Listing:
    seconds: float
    entries: int
    #: Entries listed with fewer sources than the point puts copies.
    short_sources: int
    #: False if it was stopped before the last page.
    complete: bool = True


async def list_all(
    client: FakeClient,
    pages: Samples | None,
    holders: int,
    stopped: Callable[[], bool] = lambda: False,
) -> Listing | None:
    """The whole catalog, page after page; None if refused.

    Once C{stopped} says so it asks for no more pages and returns what it
    has, marked incomplete.
    """
    started = _now()
    after: str | None = None
    entries = short = 0
    while True:
        if stopped():
            return Listing(_now() - started, entries, short, complete=False)
        asked = _now()
        page = await client.request(lambda i, after=after: ListFiles(i, after))
        if not isinstance(page, CatalogCount):
            client.tally.list_errors += 1
            return None
        if pages is not None:
            pages.add(_now() - asked)
        entries += page.entries
        short += sum(1 for sources in page.sources if sources < holders)
        if not page.more or page.last is None:
            return Listing(_now() - started, entries, short)
        after = page.last


class Load:
    """The clients' work during the measured phase."""

    def __init__(
        self,
        reactor: Any,
        library: Library,
        tally: Tally,
        options: argparse.Namespace,
    ) -> None:
        self.reactor = reactor
        self.library = library
        self.tally = tally
        self.locate_interval = options.locate_interval
        self.admit_every = options.admit_every
        self.duration = options.duration
        self.drain_timeout = options.drain_timeout
        self.stopping = False
        self.random = random.Random(11)

    def stopped(self) -> bool:
        return self.stopping

    async def run(self, clients: list[FakeClient]) -> float:
        """Load for the duration, then wait for what is owed; the seconds loaded."""
        workers = [
            Deferred.fromCoroutine(work(client))
            for client in clients
            for work in (self.lister, self.locator)
        ]
        started = _now()
        await deferLater(self.reactor, self.duration, lambda: None)
        self.stopping = True
        seconds = _now() - started
        everyone = DeferredList(workers, consumeErrors=True)
        if not await within(self.reactor, everyone, self.drain_timeout):
            self.tally.lost += sum(len(client.pending) for client in clients)
        return seconds

    async def lister(self, client: FakeClient) -> None:
        point = self.library.point
        try:
            while not self.stopping:
                listing = await list_all(
                    client, self.tally.pages, point.holders, self.stopped
                )
                if listing is None or not listing.complete:
                    if client.closed:
                        return
                    continue
                self.tally.full.add(listing.seconds)
                if listing.entries != point.files:
                    self.tally.short_listings += 1
        except Exception:
            self.tally.client_errors += 1

    async def locator(self, client: FakeClient) -> None:
        names = self.library.names
        done = 0
        try:
            while not self.stopping:
                name = self.random.choice(names)
                asked = _now()
                answer = await client.request(lambda i, n=name: Locate(i, n))
                if isinstance(answer, Located):
                    self.tally.locates.add(_now() - asked)
                else:
                    self.tally.locate_errors += 1
                done += 1
                if self.admit_every and done % self.admit_every == 0:
                    await self.download(client, name)
                await deferLater(self.reactor, self.locate_interval, lambda: None)
        except Exception:
            self.tally.client_errors += 1

    async def download(self, client: FakeClient, name: str) -> None:
        """Take a slot, and say the download is done at once."""
        asked = _now()
        answer = await client.request(lambda i: Admit(i, name))
        if not isinstance(answer, Admitted):
            self.tally.admit_errors += 1
            return
        self.tally.admits.add(_now() - asked)
        client.tell(Report(name, True, FILE_SIZE, FILE_SIZE))


# -- The central as a process ------------------------------------------------


def listen_overflows() -> int:
    """TcpExt ListenOverflows: connections a full accept queue turned away."""
    lines = Path("/proc/net/netstat").read_text().splitlines()
    for header, values in itertools.pairwise(lines):
        if header.startswith("TcpExt:") and values.startswith("TcpExt:"):
            table = dict(zip(header.split()[1:], values.split()[1:], strict=True))
            return int(table.get("ListenOverflows", 0))
    return 0


def raise_open_files_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class CentralRun:
    """One central process and its folder, stopped and removed exactly once."""

    def __init__(self, work: Path, point: Point, options: argparse.Namespace) -> None:
        args = list(options.central_arg)
        wanted = point.secondaries + point.clients + 64
        if wanted > CENTRAL_DEFAULT_CONNECTIONS and "--max-connections" not in args:
            args += ["--max-connections", str(wanted)]
        self.metrics_port: int | None = None
        if "--metrics" not in args:
            self.metrics_port = free_port()
            args += ["--metrics", f"tcp:{self.metrics_port}:interface=127.0.0.1"]
        self.work = work
        self.keep = options.keep
        self.cluster = LocalCluster(
            work, secondaries=0, bin_dir=options.central_bin, central_args=args
        )

    def start(self) -> tuple[int, int]:
        """Start the central; its PID and port."""
        daemon = self.cluster.start_central()
        assert daemon.process is not None and daemon.port is not None
        return daemon.process.pid, daemon.port

    def reactor_lag(self) -> tuple[float | None, int | None]:
        """The central's longest reactor turn and its turns over 50 ms, if told."""
        if self.metrics_port is None:
            return None, None
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                text = answer.read().decode()
        except OSError:
            return None, None
        values = dict(
            line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#"
        )
        lag = values.get("redesdl_reactor_lag_max_seconds")
        stalls = values.get("redesdl_reactor_stalls_total")
        return (
            None if lag is None else float(lag),
            None if stalls is None else int(float(stalls)),
        )

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        self.cluster.stop()
        if self.keep:
            print(f"kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


#: Every central running, so that an interrupted run still stops it.
RUNNING: list[CentralRun] = []


#: Set once every point ran: a shutdown before that is an interruption.
FINISHED: list[bool] = []


def pin_apart(central_pid: int) -> None:
    """Give the central a CPU of its own and this generator the others.

    On a small machine the generator needs a whole core to keep up; sharing
    one with the central would time the generator's own delays.
    """
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    os.sched_setaffinity(central_pid, {cpus[-1]})
    os.sched_setaffinity(0, set(cpus[:-1]))


def stop_all() -> None:
    for run in list(RUNNING):
        run.stop()


# -- One point, start to end -------------------------------------------------


def within(reactor: Any, waited: Deferred[Any], seconds: float) -> Deferred[bool]:
    """True if C{waited} fires within C{seconds}; it is never cancelled."""
    result: Deferred[bool] = Deferred()

    def settle(value: bool) -> None:
        if not result.called:
            result.callback(value)

    timer = reactor.callLater(seconds, settle, False)

    def fired(outcome: Any) -> None:
        if timer.active():
            timer.cancel()
        settle(True)

    waited.addBoth(fired)
    return result


@dataclass
class Row:
    """One point's figures, as printed and as written by ``--json``."""

    point: str
    secondaries: int
    files: int
    clients: int
    holders: int
    registered: int
    register_seconds: float | None
    listed: int
    listing_seconds: float | None
    drops: int
    dropped: dict[str, int]
    connect_errors: int
    listen_overflows: int
    join_max: float | None
    page_p50: float | None
    page_p99: float | None
    pages: int
    full_p50: float | None
    full_p99: float | None
    full_listings: int
    short_listings: int
    locate_p50: float | None
    locate_p99: float | None
    locates_per_second: float
    admits: int
    heartbeat_max: float | None
    heartbeats: int
    lost: int
    errors: dict[str, int]
    replicate_orders: int
    central_peak_rss_mib: float
    central_lag_max: float | None
    central_stalls: int | None
    central_cpu_seconds: float
    central_cpu_register: float
    generator_cpu_seconds: float
    wall_seconds: float


async def run_point(reactor: Any, point: Point, options: argparse.Namespace) -> Row:
    work = Path(
        tempfile.mkdtemp(prefix=f"central-load-{point.name}-", dir=options.work_dir)
    )
    library = Library(point)
    tally = Tally()
    started = _now()
    own_cpu = time.process_time()
    central = CentralRun(work, point, options)
    RUNNING.append(central)
    try:
        pid, port = await deferToThread(central.start)
    except BaseException:
        await deferToThread(central.stop)
        raise
    if options.pin:
        pin_apart(pid)
    fleet = Fleet(reactor, port, library, tally, options)
    clients: list[FakeClient] = []
    try:
        overflows = listen_overflows()
        timeout = CLIENTS_WELCOMED_WITHIN
        welcomed = await connect_clients(
            reactor, port, range(1), tally, clients, timeout
        )
        if not welcomed:
            raise RuntimeError(f"the central welcomed no client within {timeout} s")
        monitor = welcomed[0]
        begun = _now()
        fleet.start()
        await within(reactor, fleet.all_registered(), options.register_timeout)
        registered_at = _now() if len(fleet.registered_numbers) == fleet.count else None
        cpu_register = cpu_seconds(pid)
        first, listing = await verify_listing(
            reactor, monitor, library, options.list_timeout
        )
        register_seconds = None
        if registered_at is not None and first is not None:
            register_seconds = max(registered_at, first) - begun
        loaded = await connect_clients(
            reactor, port, range(1, point.clients + 1), tally, clients, timeout
        )
        load_seconds = await Load(reactor, library, tally, options).run(loaded)
        still_registered = len(fleet.registered_numbers)
        overflows = listen_overflows() - overflows
        central_cpu = cpu_seconds(pid)
        rss = peak_rss_mib(pid)
        lag_max, stalls = await deferToThread(central.reactor_lag)
    finally:
        fleet.stop()
        for client in clients:
            client.transport.abortConnection()
        await deferToThread(central.stop)
    return Row(
        point=point.name,
        secondaries=point.secondaries,
        files=point.files,
        clients=point.clients,
        holders=point.holders,
        registered=still_registered,
        register_seconds=register_seconds,
        listed=listing.entries if listing is not None else 0,
        listing_seconds=listing.seconds if listing and listing.complete else None,
        drops=tally.drops,
        dropped={
            "closed": tally.dropped_closed,
            "not_registered": tally.dropped_not_registered,
            "silent": tally.dropped_silent,
        },
        connect_errors=tally.connect_errors,
        listen_overflows=overflows,
        join_max=tally.join.max(),
        page_p50=tally.pages.percentile(50),
        page_p99=tally.pages.percentile(99),
        pages=len(tally.pages),
        full_p50=tally.full.percentile(50),
        full_p99=tally.full.percentile(99),
        full_listings=len(tally.full),
        short_listings=tally.short_listings,
        locate_p50=tally.locates.percentile(50),
        locate_p99=tally.locates.percentile(99),
        locates_per_second=len(tally.locates) / load_seconds,
        admits=len(tally.admits),
        heartbeat_max=tally.heartbeat.max(),
        heartbeats=len(tally.heartbeat),
        lost=tally.lost,
        errors={
            "list": tally.list_errors,
            "locate": tally.locate_errors,
            "admit": tally.admit_errors,
            "client": tally.client_errors,
            "refused": tally.refused,
        },
        replicate_orders=tally.replicate_orders,
        central_peak_rss_mib=rss,
        central_lag_max=lag_max,
        central_stalls=stalls,
        central_cpu_seconds=central_cpu,
        central_cpu_register=cpu_register,
        generator_cpu_seconds=time.process_time() - own_cpu,
        wall_seconds=_now() - started,
    )


async def verify_listing(
    reactor: Any, monitor: FakeClient, library: Library, timeout: float
) -> tuple[float | None, Listing | None]:
    """List until every file shows with all its copies, or the deadline passes.

    Returns when the complete listing started, and the last listing made.
    """
    point = library.point
    deadline = _now() + timeout
    last: Listing | None = None
    while True:
        started = _now()
        remaining = deadline - started
        # Past the deadline it asks for no more pages, so it cannot run on
        # into the load phase.
        listing_done = Deferred.fromCoroutine(
            list_all(monitor, None, point.holders, lambda: _now() > deadline)
        )
        outcome: list[Listing | None] = []
        listing_done.addBoth(outcome.append)
        if not await within(reactor, listing_done, max(remaining, 0.1)):
            return None, last
        found = outcome[0]
        if isinstance(found, Listing):
            last = found
            if (
                found.complete
                and found.entries == point.files
                and not found.short_sources
            ):
                return started, found
        if _now() >= deadline or monitor.closed:
            return None, last
        await deferLater(reactor, 0.2, lambda: None)


# -- The table ---------------------------------------------------------------


COLUMNS = [
    ("point", 14),
    ("reg s", 11),
    ("drops", 6),
    ("conn err", 8),
    ("ovfl", 6),
    ("join max", 8),
    ("list1 s", 7),
    ("page ms p50/p99", 16),
    ("full s p50/p99", 15),
    ("loc ms p50/p99", 15),
    ("loc/s", 6),
    ("hb max s", 8),
    ("turn max ms", 11),
    ("stalls", 6),
    ("lost", 5),
    ("rss MiB", 7),
    ("cpu s", 6),
    ("gen cpu", 7),
]


def _f(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def cells(row: Row) -> list[str]:
    if row.register_seconds is not None:
        registered = _f(row.register_seconds, digits=2)
    else:
        registered = f"t/o {row.registered}/{row.secondaries}"
    listed = _f(row.listing_seconds, digits=2)
    if row.listed != row.files:
        listed = f"{row.listed}!"
    return [
        row.point,
        registered,
        str(row.drops),
        str(row.connect_errors),
        str(row.listen_overflows),
        _f(row.join_max, digits=2),
        listed,
        f"{_f(row.page_p50, 1000)}/{_f(row.page_p99, 1000)}",
        f"{_f(row.full_p50, digits=2)}/{_f(row.full_p99, digits=2)}",
        f"{_f(row.locate_p50, 1000)}/{_f(row.locate_p99, 1000)}",
        f"{row.locates_per_second:.0f}",
        _f(row.heartbeat_max, digits=2),
        _f(row.central_lag_max, 1000, digits=0),
        "-" if row.central_stalls is None else str(row.central_stalls),
        str(row.lost),
        f"{row.central_peak_rss_mib:.0f}",
        f"{row.central_cpu_seconds:.1f}",
        f"{row.generator_cpu_seconds:.1f}",
    ]


def table_line(values: list[str]) -> str:
    return " ".join(v.rjust(w) for v, (_, w) in zip(values, COLUMNS, strict=True))


# -- Entry point -------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--secondaries", type=_number, default=20)
    parser.add_argument(
        "--files", type=_number, default=2000, help="distinct files (k = 1000)"
    )
    parser.add_argument("--clients", type=_number, default=5)
    parser.add_argument(
        "--copies",
        default="2",
        help="secondaries holding each file, or 'all' [default: 2]",
    )
    parser.add_argument(
        "--points",
        help=f"'issue' ({', '.join(ISSUE_POINTS)}) or a comma-separated list "
        "of points like 1000x10kx50 or 100x10k-all, run one after another",
    )
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of client load"
    )
    parser.add_argument("--register-timeout", type=float, default=60.0)
    parser.add_argument(
        "--list-timeout",
        type=float,
        default=60.0,
        help="deadline for the listing that checks every file is listed",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds to wait, after the load, for answers still owed",
    )
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument(
        "--secondary-timeout",
        type=float,
        default=15.0,
        help="a fake secondary reconnects after this many seconds of silence",
    )
    parser.add_argument("--locate-interval", type=float, default=0.1)
    parser.add_argument(
        "--admit-every",
        type=int,
        default=10,
        help="take a download slot every N locates (0: never)",
    )
    parser.add_argument(
        "--connect-batch",
        type=int,
        default=100,
        help="secondaries connecting at once, every --connect-interval",
    )
    parser.add_argument("--connect-interval", type=float, default=0.1)
    parser.add_argument(
        "--refuse-replication",
        action="store_true",
        help="answer replication orders with replicated ok=false (default: ignore)",
    )
    parser.add_argument(
        "--central-bin",
        type=Path,
        default=Path(sys.executable).parent,
        help="folder holding the twistd that runs the central [default: ours]",
    )
    parser.add_argument(
        "--central-arg",
        action="append",
        default=[],
        help="one more argument for the central (repeat as needed)",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the central on a CPU of its own, the generator on the others "
        "(with 2 CPUs or more) [default: on]",
    )
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the central's folder")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    options = parser.parse_args(argv)
    copies = None if options.copies == "all" else int(options.copies)
    if copies is not None and copies < 1:
        parser.error("--copies must be 1 or more, or 'all'")
    if options.points:
        specs = ISSUE_POINTS if options.points == "issue" else options.points.split(",")
        try:
            options.point_list = [Point.parse(spec, copies) for spec in specs]
        except ValueError as e:
            parser.error(str(e))
    else:
        options.point_list = [
            Point(options.secondaries, options.files, options.clients, copies)
        ]
    return options


async def run(reactor: Any, options: argparse.Namespace) -> None:
    rows: list[Row] = []
    print(table_line([name for name, _ in COLUMNS]), flush=True)
    for point in options.point_list:
        row = await run_point(reactor, point, options)
        rows.append(row)
        print(table_line(cells(row)), flush=True)
    if options.json is not None:
        options.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    FINISHED.append(True)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)
    limit = raise_open_files_limit()
    needed = max(p.secondaries + p.clients for p in options.point_list) + 64
    if limit < needed:
        raise SystemExit(f"the open files limit {limit} is below {needed}")
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.task import react

    # Ctrl-C or SIGTERM stops the reactor: the central goes first.
    reactor.addSystemEventTrigger("before", "shutdown", stop_all)
    try:
        react(lambda r: Deferred.fromCoroutine(run(r, options)))
    except SystemExit as e:
        if e.code in (0, None) and not FINISHED:
            print("interrupted; the central was stopped", file=sys.stderr)
            raise SystemExit(130) from None
        raise
    finally:
        stop_all()


if __name__ == "__main__":
    main()
