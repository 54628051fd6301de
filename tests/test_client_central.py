"""The client's conversation with a central that may be hostile, on typed replies."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.testing import StringTransport

from redesdl.client import central as central_module
from redesdl.client.central import BadCentralReplyError, CentralConnection
from redesdl.client.reasons import explain
from redesdl.protocol.codec import encode
from redesdl.protocol.errors import RemoteError
from redesdl.protocol.wire import Ticket

from .wire import frames

SHA = "a" * 64
FILE = {"name": "a.bin", "size": 10, "sha256": SHA, "root": "b" * 64}
SOURCE = {"name": "s1", "host": "127.0.0.1", "port": 7101}


class Central:
    """A StringTransport central: read what the client asked, answer it."""

    def __init__(self) -> None:
        self.connection = CentralConnection("c")
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.welcome = self.connection.welcomed
        self.refusals: list[Any] = []
        self.welcome.addErrback(self.refusals.append)

    def asked(self) -> list[dict[str, Any]]:
        written = frames(self.transport.value())
        self.transport.clear()
        return written

    def answer(self, *messages: dict[str, Any]) -> None:
        for message in messages:
            self.connection.dataReceived(encode(message))


def welcomed() -> Central:
    central = Central()
    [hello] = central.asked()
    assert hello["type"] == "hello" and hello["token"]
    central.answer({"type": "welcome", "id": hello["id"], "version": 1})
    assert central.welcome.called
    return central


def entry(name: str) -> dict[str, Any]:
    return {**FILE, "name": name, "sources": 1}


def failure_of(d: Deferred[Any]) -> BaseException:
    failures: list[Any] = []
    d.addErrback(failures.append)
    [failure] = failures
    return failure.value


def test_the_catalog_is_read_page_by_page() -> None:
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    [first] = central.asked()
    assert "after" not in first
    central.answer(
        {"type": "catalog", "id": first["id"], "files": [entry("a")], "more": True}
    )
    [second] = central.asked()
    assert second["after"] == "a"
    central.answer(
        {"type": "catalog", "id": second["id"], "files": [entry("b")], "more": False}
    )
    assert [e["name"] for e in listing.result] == ["a", "b"]


def test_an_endless_catalog_stops_with_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(central_module, "MAX_LISTING_PAGES", 50)
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    for page in range(60):
        [request] = central.asked()
        central.answer(
            {
                "type": "catalog",
                "id": request["id"],
                "files": [entry(f"{page:03}")],
                "more": True,
            }
        )
        if listing.called:
            break
    error = failure_of(listing)
    assert isinstance(error, BadCentralReplyError)
    assert str(error) == "the central's catalog has more than 50 pages; stopped listing"
    assert page == 49


def answer_pages(*pages: tuple[list[dict[str, Any]], bool]) -> Deferred[Any]:
    """A listing that reads C{pages} (files, more) in turn."""
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    for files, more in pages:
        [request] = central.asked()
        central.answer(
            {"type": "catalog", "id": request["id"], "files": files, "more": more}
        )
    return listing


def test_a_catalog_that_does_not_advance_stops() -> None:
    listing = answer_pages(([entry("a")], True), ([entry("a")], True))
    assert "not in name order" in str(failure_of(listing))


def test_a_page_out_of_order_stops() -> None:
    listing = answer_pages(([entry("b"), entry("a")], True))
    assert str(failure_of(listing)) == (
        "the central's catalog pages are not in name order; stopped listing"
    )


def test_an_empty_page_that_promises_more_stops() -> None:
    listing = answer_pages(([entry("a")], True), ([], True))
    assert str(failure_of(listing)) == (
        "the central's catalog does not advance; stopped listing"
    )


def test_a_page_of_only_unsafe_names_still_advances() -> None:
    hostile = {**entry("x"), "name": "b\x1b]0;owned\x07"}
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    [request] = central.asked()
    central.answer(
        {"type": "catalog", "id": request["id"], "files": [hostile], "more": True}
    )
    [request] = central.asked()
    assert request["after"] == hostile["name"]
    central.answer(
        {"type": "catalog", "id": request["id"], "files": [entry("c")], "more": False}
    )
    assert [e["name"] for e in listing.result] == ["c"]


@pytest.mark.parametrize(
    "files",
    [
        [{**FILE, "sources": "many"}],
        [{**FILE, "size": -1, "sources": 1}],
        ["a.bin"],
        [{**FILE, "name": 7, "sources": 1}],
    ],
)
def test_entries_of_the_wrong_type_give_one_line(files: list[Any]) -> None:
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    [request] = central.asked()
    central.answer({"type": "catalog", "id": request["id"], "files": files})
    error = failure_of(listing)
    assert isinstance(error, BadCentralReplyError)
    line = explain(error, "127.0.0.1:7000", None)
    assert line.startswith("the central's answer to 'list' is malformed: in files[0]")
    assert "\n" not in line


def test_names_a_terminal_would_obey_are_skipped() -> None:
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    [request] = central.asked()
    hostile = {**entry("x"), "name": "\x1b]0;owned\x07x.bin"}
    central.answer(
        {"type": "catalog", "id": request["id"], "files": [hostile, entry("a.bin")]}
    )
    assert [e["name"] for e in listing.result] == ["a.bin"]


def test_a_reply_of_the_wrong_type_fails_the_request() -> None:
    central = welcomed()
    listing = Deferred.fromCoroutine(central.connection.list())
    [request] = central.asked()
    central.answer({"type": "admitted", "id": request["id"], "queued_seconds": 0})
    assert str(failure_of(listing)) == "the central answered 'list' with 'admitted'"


def test_located_gives_typed_sources_and_a_typed_ticket() -> None:
    central = welcomed()
    located = Deferred.fromCoroutine(central.connection.locate("a.bin"))
    [request] = central.asked()
    assert request == {"type": "locate", "id": request["id"], "name": "a.bin"}
    ticket = {"expires": 100, "mac": "m" * 64}
    central.answer(
        {
            "type": "located",
            "id": request["id"],
            "file": FILE,
            "sources": [SOURCE],
            "ticket": ticket,
        }
    )
    info, sources = located.result
    assert info.sha256 == SHA and [s.port for s in sources] == [7101]
    assert central.connection.ticket(SHA) == Ticket(100, "m" * 64)


def test_located_for_another_name_is_refused() -> None:
    central = welcomed()
    located = Deferred.fromCoroutine(central.connection.locate("b.bin"))
    [request] = central.asked()
    central.answer(
        {"type": "located", "id": request["id"], "file": FILE, "sources": []}
    )
    assert "answered for 'a.bin' when asked for 'b.bin'" in str(failure_of(located))


def test_queued_positions_are_heard_until_admitted() -> None:
    central = welcomed()
    positions: list[int] = []
    admitted = Deferred.fromCoroutine(
        central.connection.admit("a.bin", positions.append)
    )
    [request] = central.asked()
    central.answer(
        {"type": "queued", "id": request["id"], "position": 3},
        {"type": "queued", "id": request["id"], "position": 1},
        {"type": "queued", "id": 999, "position": 7},
        {"type": "admitted", "id": request["id"], "queued_seconds": 2.5},
    )
    assert positions == [3, 1] and admitted.result == 2.5


def test_a_malformed_queued_fails_the_admission_with_one_line() -> None:
    central = welcomed()
    admitted = Deferred.fromCoroutine(central.connection.admit("a.bin", print))
    [request] = central.asked()
    central.answer({"type": "queued", "id": request["id"], "position": "first"})
    error = failure_of(admitted)
    assert isinstance(error, BadCentralReplyError) and "'position'" in str(error)


def test_a_refused_hello_fails_the_welcome() -> None:
    central = Central()
    [hello] = central.asked()
    central.answer(
        {
            "type": "error",
            "id": hello["id"],
            "code": "client_name_taken",
            "message": "x",
        }
    )
    [refusal] = central.refusals
    error = refusal.value
    assert isinstance(error, RemoteError) and error.code == "client_name_taken"


def test_reports_go_out_typed() -> None:
    central = welcomed()
    central.connection.report("a.bin", True, 10, 10, "")
    central.connection.reportBadReplica("a.bin", SHA, "s1")
    assert central.asked() == [
        {
            "type": "report",
            "name": "a.bin",
            "ok": True,
            "size": 10,
            "bytes_fetched": 10,
            "reason": "",
        },
        {"type": "bad_replica", "name": "a.bin", "sha256": SHA, "source": "s1"},
    ]


def test_a_central_that_does_not_know_progress_is_not_sent_it_again() -> None:
    central = welcomed()
    assert not central.connection.refuses_progress
    central.answer(
        {
            "type": "error",
            "code": "unknown_type",
            "message": "unknown message type 'progress'",
            "id": 7,
        }
    )
    assert central.connection.refuses_progress
