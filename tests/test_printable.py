"""Peer strings printed on a terminal or in a log carry no control characters."""

from __future__ import annotations

import io
import unicodedata

from twisted.internet.testing import StringTransport
from twisted.logger import (
    Logger,
    LogPublisher,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)

from redesdl.central.tap import Options as CentralOptions
from redesdl.console import CommandSet, LineConsole
from redesdl.daemon import escape_logs
from redesdl.jsonlog import JSONLinesObserver
from redesdl.printable import escaped_event, printable
from redesdl.protocol.complaints import Complaints

HOSTILE = "a\x1b[2J\rb\x9b31m\ud800c\u202egnp.exe\x7f\x00\u2028\U000e0001"


def raw_controls(text: str) -> list[str]:
    """Characters a terminal or a log reader would act on instead of show."""
    return [c for c in text if not c.isprintable() or unicodedata.category(c) == "Cf"]


def test_every_control_character_is_escaped() -> None:
    shown = printable(HOSTILE)
    assert raw_controls(shown) == []
    assert shown == (
        "a\\x1b[2J\\x0db\\x9b31m\\ud800c\\u202egnp.exe\\x7f\\x00\\u2028\\U000e0001"
    )


def test_printable_text_comes_back_unchanged() -> None:
    text = "café/naïve 日本 file name.iso"
    assert printable(text) is text
    assert printable(printable(HOSTILE)) == printable(HOSTILE)


def test_a_long_string_is_cut_with_a_marker() -> None:
    assert printable("x" * 1000, limit=10) == "xxxxxxxxxx...[990 more characters]"
    assert printable("\x1b" * 10, limit=8) == "\\x1b\\x1b...[8 more characters]"
    assert printable("x" * 1000, limit=None) == "x" * 1000


def test_escaped_event_leaves_the_original_and_twisted_fields() -> None:
    event = {"log_format": "{name}\n", "name": HOSTILE, "sizes": [1, "\r"]}
    copy = escaped_event(event)
    assert event["name"] == HOSTILE
    assert copy["log_format"] == "{name}\n"
    assert copy["name"] == printable(HOSTILE) and copy["sizes"] == [1, "\\x0d"]


def formatted_through(publisher: LogPublisher, **fields: object) -> str:
    out = io.StringIO()
    publisher.addObserver(textFileLogObserver(out))
    Logger(namespace="test", observer=publisher).warn(
        "client {client} asked for {names} ({error})", **fields
    )
    return out.getvalue()


def test_the_log_escapes_a_hostile_field_in_a_formatted_event() -> None:
    publisher = LogPublisher()
    escape_logs(publisher)
    escape_logs(publisher)
    line = formatted_through(
        publisher,
        client=HOSTILE,
        names=["ok", "\x1b]0;owned\x07"],
        error=ValueError("bad \r\nforged line"),
    )
    assert line.count("\n") == 1
    assert raw_controls(line.rstrip("\n")) == []
    assert f"client {printable(HOSTILE)} asked for" in line
    assert "'\\\\x1b]0;owned\\\\x07'" in line and "bad \\x0d\\x0aforged line" in line


def test_parsing_a_daemons_options_escapes_the_global_log() -> None:
    CentralOptions().parseOptions([])
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        Logger().info("peer {name}", name="\x1b[2Jx")
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert seen[-1]["name"] == "\\x1b[2Jx"


def test_json_lines_hold_the_escaped_text() -> None:
    out = io.StringIO()
    JSONLinesObserver(out)({"log_format": "got {name}", "name": "\x1b[2J\ud800"})
    assert "\\\\x1b[2J\\\\ud800" in out.getvalue()
    assert '"text": "got \\\\x1b[2J\\\\ud800"' in out.getvalue()


def test_complaints_log_a_hostile_field_escaped() -> None:
    seen: list[str] = []
    publisher = LogPublisher()
    publisher.addObserver(lambda event: seen.append(formatEvent(event)))
    complaints = Complaints(clock=lambda: 0.0)
    complaints.log = Logger(observer=publisher)
    complaints.complain("10.0.0.1", "{peer} sent {name}", name="\x1b[2J\u202ex")
    assert seen == ["10.0.0.1 sent \\x1b[2J\\u202ex"]


class Echo(CommandSet):
    def cmd_show(self, args: list[str]) -> list[str]:
        """Show a name a peer chose."""
        return [f"file {HOSTILE}", "second line"]


def test_console_output_and_messages_are_escaped() -> None:
    transport = StringTransport()
    console = LineConsole(Echo(), "> ", lambda: None)
    console.makeConnection(transport)
    console.dataReceived(b"show\n")
    console.say("copied \x1b]0;owned\x07 from \u202epeer")
    shown = transport.value().decode("utf-8")
    assert raw_controls(shown.replace("\n", "")) == []
    assert f"file {printable(HOSTILE, None)}\nsecond line\n> " in shown
    assert shown.endswith("copied \\x1b]0;owned\\x07 from \\u202epeer\n")


def test_a_huge_log_field_is_cut() -> None:
    shown = escaped_event({"name": "n" * 5000})["name"]
    assert shown == "n" * 2000 + "...[3000 more characters]"
