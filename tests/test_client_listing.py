"""``redesdl list`` and the console's ``list`` against a fake central over TCP.

The fake central speaks our real codec on 127.0.0.1 and makes its catalog
pages on demand from a name generator, so a 100,000-entry catalog costs it
one page at a time too: what these tests measure is the client.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tracemalloc
from bisect import bisect_right
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue

from redesdl.client.access import ClusterAccess
from redesdl.client.cli import run_list
from redesdl.client.console import LIST_SHOWN, ClientCommands
from redesdl.client.listing import TextListing
from redesdl.endpoints import central_endpoint
from redesdl.protocol.codec import FrameDecoder, MessageReceived, encode
from redesdl.protocol.wire import CENTRAL_INBOUND, CatalogEntry

SHA = "ab" * 32
ROOT = "cd" * 32
PAGE = 256


def name_of(index: int) -> str:
    return f"file{index:06d}.bin"


def entry_of(index: int) -> dict[str, Any]:
    return {
        "name": name_of(index),
        "size": index,
        "sha256": SHA,
        "root": ROOT,
        "sources": 1 + index % 3,
    }


class Names:
    """The catalog's sorted names, made when looked at, for bisecting a cursor."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> str:
        return name_of(index)


class PagedCentral(Protocol):
    """Welcomes anyone and serves C{factory.size} entries in pages of 256.

    After C{factory.hang_up_after} pages it closes the connection instead.
    """

    factory: CatalogFactory

    def connectionMade(self) -> None:
        self.decoder = FrameDecoder(CENTRAL_INBOUND, 1 << 16)

    def dataReceived(self, data: bytes) -> None:
        for event in self.decoder.feed(data):
            if isinstance(event, MessageReceived):
                self.answer(event.message)

    def answer(self, message: Any) -> None:
        if message.TYPE == "hello":
            self.transport.write(
                encode({"type": "welcome", "id": message.id, "version": 1})
            )
            return
        if message.TYPE != "list":
            return
        if self.factory.pages_served == self.factory.hang_up_after:
            self.transport.loseConnection()
            return
        self.factory.pages_served += 1
        names = Names(self.factory.size)
        start = 0 if message.after is None else bisect_right(names, message.after)
        end = min(start + PAGE, self.factory.size)
        files = [entry_of(index) for index in range(start, end)]
        more = end < self.factory.size
        reply = {"type": "catalog", "id": message.id, "files": files, "more": more}
        self.transport.write(encode(reply))


class CatalogFactory(Factory):
    protocol = PagedCentral

    def __init__(self) -> None:
        self.size = 0
        self.hang_up_after: int | None = None
        self.pages_served = 0


@pytest_twisted.async_yield_fixture
async def central() -> AsyncIterator[tuple[CatalogFactory, ClusterAccess, str]]:
    factory = CatalogFactory()
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    address = f"127.0.0.1:{port.getHost().port}"
    try:
        yield factory, ClusterAccess(central_endpoint(reactor, address)), address
    finally:
        await port.stopListening()


def list_args(json_output: bool = False) -> argparse.Namespace:
    return argparse.Namespace(json=json_output, name="tester")


def held_bytes(count: int) -> int:
    """What holding C{count} parsed catalog entries costs, measured on 1,000."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [CatalogEntry.from_wire(entry_of(index)) for index in range(1000)]
        cost = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(held) == 1000
    return cost * count // 1000


@pytest_twisted.ensureDeferred
async def test_a_100k_catalog_prints_whole_and_in_order_in_one_pages_memory(
    central: tuple[CatalogFactory, ClusterAccess, str], tmp_path: Path
) -> None:
    factory, access, _ = central
    factory.size = 100_000
    listing = tmp_path / "listing.txt"
    with listing.open("w", encoding="utf-8") as out:
        tracemalloc.start()
        try:
            status = await run_list(access, list_args(), out)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert status == 0
    header, *lines = listing.read_text(encoding="utf-8").splitlines()
    assert header.split() == ["NAME", "SIZE", "SOURCES", "SHA256"]
    assert len(lines) == 100_000
    assert [line.split()[0] for line in lines] == [name_of(i) for i in range(100_000)]
    assert lines[99_999] == (f"{name_of(99_999)}    97.7 KiB  1 source(s)  {SHA[:16]}")
    all_held = held_bytes(100_000)
    print(f"peak {peak} bytes; holding every entry would take {all_held}")
    assert peak < all_held / 10


@pytest_twisted.ensureDeferred
async def test_a_streamed_json_listing_is_one_array_of_every_entry(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    factory, access, _ = central
    factory.size = 1000
    out = io.StringIO()
    assert await run_list(access, list_args(json_output=True), out) == 0
    expected = [entry_of(index) for index in range(1000)]
    assert factory.pages_served == 4
    assert json.loads(out.getvalue()) == expected
    assert out.getvalue() == json.dumps(expected) + "\n"


@pytest_twisted.ensureDeferred
async def test_an_empty_catalog_says_so(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    _, access, _ = central
    text, as_json = io.StringIO(), io.StringIO()
    await run_list(access, list_args(), text)
    await run_list(access, list_args(json_output=True), as_json)
    assert text.getvalue() == "no files yet\n"
    assert as_json.getvalue() == "[]\n"


def test_the_first_page_sets_the_name_column_up_to_60_characters() -> None:
    def entry(name: str) -> CatalogEntry:
        return CatalogEntry.from_wire({**entry_of(2049), "name": name})

    text = TextListing()
    first = text.lines([entry("a"), entry("b" * 100)])
    later = text.lines([entry("c"), entry("d" * 70)])
    assert first == [
        f"{'a':<60}     2.0 KiB  1 source(s)  {SHA[:16]}",
        f"{'b' * 100}     2.0 KiB  1 source(s)  {SHA[:16]}",
    ]
    assert later[0] == f"{'c':<60}     2.0 KiB  1 source(s)  {SHA[:16]}"
    assert later[1].startswith("d" * 70 + "     2.0 KiB")
    short = TextListing()
    assert short.lines([entry("ab"), entry("c")])[1] == (
        f"{'c':<2}  {'2.0 KiB':>10}  1 source(s)  {SHA[:16]}"
    )


def test_names_with_format_characters_are_listed_escaped() -> None:
    """Names carry no control characters, but a bidi override (U+202E) would
    show ``invoice<RLO>fdp.exe`` as ``invoiceexe.pdf``."""
    entries = [
        CatalogEntry.from_wire({**entry_of(2049), "name": name})
        for name in ("invoice\u202efdp.exe", "line\u2028break", "zero\u200bwidth")
    ]
    lines = TextListing().lines(entries)
    assert all(line.isprintable() for line in lines)
    assert [line.split("  ")[0] for line in lines] == [
        "invoice\\u202efdp.exe",
        "line\\u2028break",
        "zero\\u200bwidth",
    ]


async def run_cli(address: str, *args: str) -> tuple[str, str, int]:
    """Run the real ``redesdl`` in a process; its stdout, stderr, exit status."""
    command = "from redesdl.client.cli import main; main()"
    out, err, status = await getProcessOutputAndValue(
        sys.executable,
        ["-c", command, "--central", address, *args],
        env=dict(os.environ),
    )
    return out.decode(), err.decode(), status


@pytest_twisted.ensureDeferred
async def test_a_central_lost_midway_keeps_what_was_printed_and_says_one_line(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    factory, _, address = central
    factory.size = 1000
    factory.hang_up_after = 2
    out, err, status = await run_cli(address, "list")
    assert [line.split()[0] for line in out.splitlines()] == [
        "NAME",
        *(name_of(i) for i in range(2 * PAGE)),
    ]
    assert err == f"redesdl: lost the connection to the central at {address}\n"
    assert status == 3
    factory.pages_served = 0
    out, err, status = await run_cli(address, "list", "--json")
    assert out.startswith("[") and not out.endswith("]\n")
    assert json.loads(out + "]") == [entry_of(i) for i in range(2 * PAGE)]
    assert err.count("\n") == 1 and status == 3


def console(access: ClusterAccess) -> ClientCommands:
    return ClientCommands(reactor, access, "the central", "tester", None)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_the_console_shows_at_most_200_names_and_counts_the_rest(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    factory, access, _ = central
    factory.size = 1000
    lines = await console(access).execute("ls")
    assert [line.split()[0] for line in lines[:-1]] == [
        name_of(i) for i in range(LIST_SHOWN)
    ]
    assert lines[-1] == "… and 800 more; 'redesdl list' prints them all"


@pytest_twisted.ensureDeferred
async def test_the_console_lists_names_by_prefix_and_stops_past_them(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    factory, access, _ = central
    factory.size = 2000
    lines = await console(access).execute("list file0005")
    assert [line.split()[0] for line in lines] == [name_of(i) for i in range(500, 600)]
    assert factory.pages_served == 3
    assert await console(access).execute("list nothing") == [
        "no file names start with 'nothing'"
    ]
    factory.size = 0
    assert await console(access).execute("list") == ["no files yet"]


@pytest_twisted.ensureDeferred
async def test_the_console_help_shows_the_prefix(
    central: tuple[CatalogFactory, ClusterAccess, str],
) -> None:
    _, access, _ = central
    [line] = await console(access).execute("help ls")
    assert line.startswith("list [PREFIX]")
    assert "starting with PREFIX" in line and "200" in line
