"""The terminal console's line editing, completion and word splitting, on fakes.

Keys go in as a terminal would send them; what is asserted is the screen a
person would see, rendered by Twisted's own terminal emulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from twisted.conch.insults.helper import TerminalBuffer
from twisted.conch.insults.insults import ClientProtocol, ServerProtocol
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from redesdl.client import console as client_console
from redesdl.client.access import ClusterAccess
from redesdl.client.console import ClientCommands
from redesdl.console import CommandSet, ConsoleUsageError, TerminalConsole, usage
from redesdl.manifest import FileInfo
from redesdl.protocol.wire import CatalogEntry


class Sample(CommandSet):
    aliases = {"h": "help", "video": "get"}

    def __init__(self) -> None:
        super().__init__()
        self.got: list[list[str]] = []
        self.names = ["alpha one.bin", "alpha two.bin", "beta.bin"]

    @usage("NAME")
    def cmd_get(self, args: list[str]) -> str:
        """Fetch a name."""
        if len(args) != 1:
            raise ConsoleUsageError("")
        self.got.append(args)
        return f"got {args[0]}"

    def cmd_status(self, args: list[str]) -> str:
        """Say how things are."""
        return "fine"

    def complete_get(self, prefix: str) -> Deferred[list[str]]:
        return succeed([n for n in self.names if n.startswith(prefix)])


class Screen:
    """A console on a fake terminal, and what that terminal shows."""

    def __init__(self, commands: CommandSet) -> None:
        self.commands = commands
        self.left: list[bool] = []
        self.server = ServerProtocol(
            TerminalConsole, commands, "> ", lambda: self.left.append(True)
        )
        self.wire = StringTransport()
        self.server.makeConnection(self.wire)
        self.console: TerminalConsole = self.server.terminalProtocol
        self.buffer = TerminalBuffer()
        self.client = ClientProtocol(lambda: self.buffer)
        self.client.makeConnection(StringTransport())

    def type(self, keys: str | bytes) -> None:
        self.server.dataReceived(keys.encode() if isinstance(keys, str) else keys)

    def lines(self) -> list[str]:
        self.client.dataReceived(self.wire.value())
        self.wire.clear()
        screen = bytes(self.buffer).decode()
        return [line.rstrip() for line in screen.splitlines() if line.strip()]

    def cursor(self) -> int:
        return self.buffer.reportCursorPosition()[0]


def test_ctrl_a_and_ctrl_e_move_to_the_start_and_end() -> None:
    screen = Screen(Sample())
    screen.type("tatus")
    screen.type(b"\x01s")
    assert screen.lines()[-1] == "> status"
    screen.type(b"\x05\r")
    assert screen.lines()[-2:] == ["fine", ">"]


def test_ctrl_u_k_and_w_cut_before_after_and_the_word_before() -> None:
    screen = Screen(Sample())
    screen.type("get alpha beta")
    screen.type(b"\x17")
    assert screen.lines()[-1] == "> get alpha"
    screen.type("x")
    assert screen.lines()[-1] == "> get alpha x"
    screen.type(b"\x1b[D\x1b[D\x1b[D\x0b")
    assert screen.lines()[-1] == "> get alph"
    screen.type(b"\x1b[D\x15")
    assert screen.lines()[-1] == "> h"
    assert screen.cursor() == len("> ")


def test_letters_beyond_ascii_are_typed_edited_and_completed_whole() -> None:
    """Each byte of an accented letter was dropped: 'remove canción.mp4'
    ran 'remove cancin.mp4', and could have removed another file. (Twisted's
    terminal emulator shows ASCII only: what ran, and the echo, are checked.)"""
    commands = Sample()
    commands.names = ["canción.mp4", "日本.bin"]
    screen = Screen(commands)
    screen.type("get canción.mp4")
    assert "canción.mp4".encode() in screen.wire.value()
    # One position per letter: five arrows back and Ctrl-K leave "canció".
    screen.type(b"\x1b[D" * 5 + b"\x0b" + b"\r")
    screen.type("get 日\t\r")
    screen.type("get canc\t\r")
    # A byte that starts no character is ignored, the line goes on.
    screen.type(b"get \xff\x80ok\r")
    assert commands.got == [["canció"], ["日本.bin"], ["canción.mp4"], ["ok"]]
    # Recalled from history, a line still holds one position per letter.
    screen.type("get ñx\r")
    screen.type(b"\x1b[A\x1b[D\x0b\r")
    assert commands.got[-2:] == [["ñx"], ["ñ"]]


LEFT, CTRL_A, CTRL_E, BACKSPACE = b"\x1b[D", b"\x01", b"\x05", b"\x7f"


def moves(screen: Screen, keys: bytes) -> bytes:
    """What the console writes to the terminal for C{keys} alone."""
    screen.wire.clear()
    screen.type(keys)
    return screen.wire.value()


def test_the_cursor_moves_by_the_columns_a_character_takes() -> None:
    """A wide character takes two columns: the cursor drifted one per arrow."""
    commands = Sample()
    screen = Screen(commands)
    screen.type("get 日本")
    assert moves(screen, LEFT) == b"\x1b[2D"
    assert moves(screen, CTRL_A) == b"\x1b[6D"  # 'get ' and 日
    assert moves(screen, CTRL_E) == b"\x1b[8C"
    screen.type(LEFT + b"x\r")
    assert commands.got == [["日x本"]]


def test_a_mark_typed_apart_belongs_to_the_letter_before_it() -> None:
    """An accent typed as its own character (as macOS files name it) is one
    position with its letter: arrows and Backspace take both at once."""
    commands = Sample()
    screen = Screen(commands)
    screen.type("get ae\u0301x")
    assert moves(screen, LEFT + LEFT) == b"\x1b[1D\x1b[1D"
    screen.type(CTRL_E + BACKSPACE + BACKSPACE + b"\r")
    assert commands.got == [["a"]]
    screen.type("get e\u0301\r")
    assert commands.got[-1] == ["e\u0301"]


def test_tab_completes_a_command_name() -> None:
    screen = Screen(Sample())
    screen.type("sta\t")
    assert screen.lines()[-1] == "> status"
    screen.type("\r")
    assert "fine" in screen.lines()


def test_tab_completes_a_name_quoting_spaces_and_lists_choices() -> None:
    commands = Sample()
    screen = Screen(commands)
    screen.type("video a\t")
    assert screen.lines()[-1] == "> video 'alpha '"
    screen.type("\t")
    assert screen.lines()[-2:] == ["alpha one.bin  alpha two.bin", "> video 'alpha '"]
    screen.type(b"\x7ft\t\r")
    assert commands.got == [["alpha two.bin"]]


def test_quoted_words_keep_their_spaces_and_open_quotes_are_reported() -> None:
    commands = Sample()
    screen = Screen(commands)
    screen.type("get 'a b.bin'\r")
    screen.type('get "broken\r')
    assert commands.got == [["a b.bin"]]
    assert "cannot read that line: No closing quotation (close the quote)" in (
        screen.lines()
    )


def test_a_mistyped_command_gets_a_suggestion() -> None:
    screen = Screen(Sample())
    screen.type("stauts\r")
    assert (
        "unknown command 'stauts'; did you mean 'status'? type 'help' for the list"
        in screen.lines()
    )


class Busy(Sample):
    def leave_warning(self) -> str | None:
        return "1 download running; Ctrl-C again (or 'quit') to stop it"


def test_leaving_with_work_running_asks_first_then_leaves() -> None:
    commands = Busy()
    left: list[bool] = []
    commands.quit = lambda: left.append(True)
    screen = Screen(commands)
    screen.type(b"\x03")
    assert screen.lines()[-2:] == [
        "1 download running; Ctrl-C again (or 'quit') to stop it",
        ">",
    ]
    assert left == []
    screen.type(b"\x03")
    assert left == [True]


def test_another_command_between_two_ctrl_c_asks_again() -> None:
    commands = Busy()
    left: list[bool] = []
    commands.quit = lambda: left.append(True)
    screen = Screen(commands)
    screen.type(b"\x03status\r\x03")
    assert left == []
    screen.type("quit\r")
    assert left == [True]


class FakeCentral:
    """Serves a large sorted catalog in pages, counting the pages asked for."""

    def __init__(self, names: list[str], page: int = 50) -> None:
        self.names = sorted(names)
        self.page = page
        self.pages_served = 0
        self.asked_after: list[str | None] = []

    async def catalog_pages(self, after: str | None = None) -> AsyncIterator[Any]:
        self.asked_after.append(after)
        rest = [n for n in self.names if after is None or n > after]
        for start in range(0, len(rest), self.page):
            self.pages_served += 1
            yield [
                CatalogEntry(FileInfo(n, 1, "a" * 64, "b" * 64), 1)
                for n in rest[start : start + self.page]
            ]

    async def close(self) -> None:
        pass


@pytest.fixture
def central(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCentral]:
    fake = FakeCentral(
        [f"{letter}{n:05}.bin" for letter in "abcxyz" for n in range(20000)]
    )

    async def connect(*args: Any) -> FakeCentral:
        return fake

    monkeypatch.setattr(client_console, "connect_central", connect)
    yield fake


def completions(commands: CommandSet, before: str) -> list[str]:
    found: list[list[str]] = []
    commands.complete(before).addCallback(found.append)
    return found[0]


def test_completing_a_name_asks_the_central_for_that_range_only(
    central: FakeCentral,
) -> None:
    commands = ClientCommands(Clock(), ClusterAccess(None, "t", None), "c", "me", None)  # type: ignore[arg-type]
    assert completions(commands, "VIDEO b0001") == [
        f"b{n:05}.bin" for n in range(10, 20)
    ]
    assert central.asked_after == ["b000"]
    assert central.pages_served <= 2
    assert completions(commands, "get x1999")[-1] == "x19999.bin"
    assert central.pages_served <= 6


def test_console_get_takes_force_and_rejects_unknown_options() -> None:
    split = client_console.split_get_arguments
    assert split(["--force", "a b", "out"]) == (True, "a b", "out", None)
    assert split(["--", "--odd"]) == (False, "--odd", None, None)
    assert split(["--direct-io", "x"]).direct_io is True
    assert split(["--direct-io", "--no-direct-io", "x"]).direct_io is False
    assert split(["--", "--direct-io"]) == (False, "--direct-io", None, None)
    with pytest.raises(ConsoleUsageError, match="unknown option '--forse'"):
        client_console.split_get_arguments(["--forse", "x"])
