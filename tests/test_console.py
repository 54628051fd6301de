"""The console command table and the line console, on fakes."""

from __future__ import annotations

from twisted.internet.testing import StringTransport

from redesdl.console import (
    HELP_COLUMN,
    CommandSet,
    ConsoleUsageError,
    LineConsole,
    usage,
)


class Sample(CommandSet):
    aliases = {"h": "help", "saluda": "greet"}

    @usage("NAME")
    def cmd_greet(self, args: list[str]) -> str:
        """Greet someone."""
        if len(args) != 1:
            raise ConsoleUsageError("")
        return f"hello {args[0]}"


def run(commands: CommandSet, line: str) -> list[str]:
    result: list[list[str]] = []
    commands.execute(line).addCallback(result.append)
    return result[0]


def test_commands_and_aliases_ignore_case() -> None:
    commands = Sample()
    assert run(commands, "greet ana") == ["hello ana"]
    assert run(commands, "SALUDA ana") == ["hello ana"]
    assert run(commands, "Greet ana") == ["hello ana"]


def test_wrong_arguments_give_a_one_line_usage_hint() -> None:
    assert run(Sample(), "greet") == ["usage: greet NAME"]


def test_unknown_command_gives_a_hint() -> None:
    assert run(Sample(), "frobnicate") == [
        "unknown command 'frobnicate'; type 'help' for the list"
    ]


def test_help_lists_commands_with_aliases() -> None:
    lines = run(Sample(), "h")
    assert any(
        line.startswith("greet NAME") and "(also saluda)" in line for line in lines
    )
    assert any(line.startswith("trace on|off") for line in lines)


class LongUsage(CommandSet):
    @usage("[--first] [--[no-]second] NAME [PATH]")
    def cmd_fetch(self, args: list[str]) -> str:
        """Fetch something.

        Only the first line shows in help.
        """
        return "fetched"


def test_help_puts_the_summary_of_a_long_usage_on_the_next_line() -> None:
    lines = run(LongUsage(), "help fetch")
    assert lines == [
        "fetch [--first] [--[no-]second] NAME [PATH]",
        " " * (HELP_COLUMN + 1) + "Fetch something.",
    ]
    assert run(LongUsage(), "help trace")[0].index("Show") == HELP_COLUMN + 1


def test_line_console_runs_lines_in_order_and_closes_after_end_of_input() -> None:
    closed: list[bool] = []
    console = LineConsole(Sample(), "> ", lambda: closed.append(True), "welcome")
    transport = StringTransport()
    console.makeConnection(transport)
    console.dataReceived(b"greet a\nbogus\n")
    console.readConnectionLost()
    assert transport.value().decode() == (
        "welcome\n> hello a\n> unknown command 'bogus'; type 'help' for the list\n> "
    )
    assert closed == [True]


def piped(*chunks: bytes) -> tuple[str, int, bool]:
    """What a line console fed C{chunks} then end of input wrote, its error
    count, and whether it closed."""
    closed: list[bool] = []
    commands = Sample()
    console = LineConsole(commands, "> ", lambda: closed.append(True))
    transport = StringTransport()
    console.makeConnection(transport)
    for chunk in chunks:
        console.dataReceived(chunk)
    console.readConnectionLost()
    return transport.value().decode(), commands.errors, closed == [True]


SKIPPED = "skipped a line of over 16384 bytes: no command is that long"


def test_a_line_too_long_is_skipped_and_the_lines_after_it_still_run() -> None:
    """It once ended the console: the lines after it never ran, exit 0."""
    long_line = b"x" * 20000
    bogus = "unknown command 'bogus'; type 'help' for the list"
    expected = f"> {SKIPPED}\n> hello a\n> {bogus}\n> "
    assert piped(long_line + b"\ngreet a\nbogus\n") == (expected, 2, True)
    # The same line arriving in pieces, its end in the middle of a later one.
    pieces = [long_line[:9000], long_line[9000:], b"yyy", b"\ngreet a\nbo", b"gus\n"]
    assert piped(*pieces) == (expected, 2, True)


def test_a_last_line_without_its_newline_still_runs() -> None:
    """It was ignored, with exit 0."""
    assert piped(b"greet a\ngreet b") == ("> hello a\n> hello b\n> ", 0, True)
    assert piped(b"bogus") == (
        "> unknown command 'bogus'; type 'help' for the list\n> ",
        1,
        True,
    )
    # What is left of a line too long is still thrown away.
    assert piped(b"x" * 20000) == (f"> {SKIPPED}\n> ", 1, True)
