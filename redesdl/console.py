"""The console every actor offers: commands, help and aliases, on a terminal or a pipe.

An actor describes its commands as ``cmd_<name>`` methods of a L{CommandSet}
subclass (the docstring's first line is the help text, ``usage`` the
arguments). Two front ends run them: L{TerminalConsole} on a terminal, which
edits the line itself and prints asynchronous output above the prompt so it
never mangles what is being typed, and L{LineConsole} for pipes and for the
daemons, whose log shares the terminal. Every line either prints is passed
through L{printable} first: command output and asynchronous messages carry
names chosen by peers, and none may drive the terminal.
"""

from __future__ import annotations

import os
import sys
import termios
import tty
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.stdio import StandardIO
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from redesdl.printable import printable
from redesdl.trace import TRACER

CTRL_C, CTRL_D = b"\x03", b"\x04"


class ConsoleUsageError(Exception):
    """The command's arguments are wrong; the console prints its usage."""


def usage(text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a command's arguments, as its help and usage errors show them."""

    def mark(method: Callable[..., Any]) -> Callable[..., Any]:
        method.usage = text  # type: ignore[attr-defined]
        return method

    return mark


class CommandSet:
    """An actor's console commands: each ``cmd_<name>(args)`` returns lines.

    A command returns a string, a list of strings, None, or a Deferred of
    one of those. L{aliases} maps other names (such as the original system's
    Spanish commands) to command names; matching ignores case.
    """

    log = Logger()
    aliases: dict[str, str] = {}

    def __init__(self) -> None:
        self.say: Callable[[str], None] = lambda text: None
        self.quit: Callable[[], None] = lambda: None

    def commands(self) -> dict[str, Callable[..., Any]]:
        return {
            name[4:]: getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }

    def execute(self, line: str) -> Deferred[list[str]]:
        """Run one typed line; fire with the lines to show."""
        words = line.split()
        if not words:
            return succeed([])
        typed = words[0].lower()
        name = self.aliases.get(typed, typed)
        handler = self.commands().get(name)
        if handler is None:
            return succeed([f"unknown command {words[0]!r}; type 'help' for the list"])
        running = maybeDeferred(handler, words[1:])
        running.addCallback(_as_lines)

        def failed(reason: Failure) -> list[str]:
            if reason.check(ConsoleUsageError):
                hint = f"usage: {name} {getattr(handler, 'usage', '')}".rstrip()
                message = str(reason.value)
                return [f"{message}; {hint}" if message else hint]
            self.log.failure("console command {line!r} failed", reason, line=line)
            return [f"{name} failed: {reason.getErrorMessage()}"]

        return running.addErrback(failed).addCallback(_printable_lines)

    @usage("[COMMAND]")
    def cmd_help(self, args: list[str]) -> list[str]:
        """List the commands, or describe one."""
        commands = self.commands()
        aliases: dict[str, list[str]] = {}
        for alias, target in self.aliases.items():
            aliases.setdefault(target, []).append(alias)
        wanted = sorted(commands)
        if args:
            name = self.aliases.get(args[0].lower(), args[0].lower())
            if name not in commands:
                raise ConsoleUsageError(f"no command {args[0]!r}")
            wanted = [name]
        lines = []
        for name in wanted:
            handler = commands[name]
            summary = (handler.__doc__ or "").strip().splitlines()[0]
            spelled = " ".join([name, getattr(handler, "usage", "")]).strip()
            also = (
                f" (also {', '.join(sorted(aliases[name]))})" if name in aliases else ""
            )
            lines.append(f"{spelled:<28} {summary}{also}")
        return lines

    @usage("on|off")
    def cmd_trace(self, args: list[str]) -> str:
        """Show every protocol message sent and received, one line each."""
        if args not in (["on"], ["off"]):
            raise ConsoleUsageError("")
        TRACER.enabled = args == ["on"]
        return f"trace {args[0]}"

    def cmd_quit(self, args: list[str]) -> None:
        """Leave (Ctrl-D and Ctrl-C do too)."""
        self.quit()


def _printable_lines(lines: list[str]) -> list[str]:
    return [printable(line, None) for line in lines]


def _as_lines(result: Any) -> list[str]:
    if result is None:
        return []
    if isinstance(result, str):
        return result.splitlines() or [""]
    return [str(line) for line in result]


@implementer(IHalfCloseableProtocol)
class LineConsole(LineReceiver):
    """Commands read line by line from a pipe or a cooked terminal.

    Lines run one after the other, so each command's output follows it; at
    end of input the commands already read finish before the console closes.
    """

    delimiter = b"\n"

    def __init__(
        self,
        commands: CommandSet,
        prompt: str,
        onClose: Callable[[], None],
        greeting: str = "",
    ) -> None:
        self._commands = commands
        self._prompt = prompt
        self._onClose = onClose
        self._greeting = greeting
        self._waiting: deque[str] = deque()
        self._busy = False
        self._ended = False

    def connectionMade(self) -> None:
        self._commands.say = self.say
        greeting = f"{self._greeting}\n" if self._greeting else ""
        self.transport.write((greeting + self._prompt).encode())

    def lineReceived(self, line: bytes) -> None:
        self._waiting.append(line.decode(errors="replace"))
        self._next()

    def _next(self) -> None:
        if self._busy:
            return
        if not self._waiting:
            if self._ended:
                self._onClose()
            return
        self._busy = True
        self._commands.execute(self._waiting.popleft()).addCallback(self._show)

    def _show(self, lines: list[str]) -> None:
        text = "".join(f"{line}\n" for line in lines) + self._prompt
        self.transport.write(text.encode())
        self._busy = False
        self._next()

    def say(self, text: str) -> None:
        lines = _printable_lines(text.splitlines() or [""])
        self.transport.write("".join(f"{line}\n" for line in lines).encode())

    def readConnectionLost(self) -> None:
        """End of input (Ctrl-D, or the end of a pipe): finish, then close."""
        self._ended = True
        self._next()

    def writeConnectionLost(self) -> None:
        self._onClose()

    def connectionLost(self, reason: Failure) -> None:
        self._onClose()


class TerminalConsole(HistoricRecvLine):
    """Commands typed on a terminal, with asynchronous output above the prompt."""

    def __init__(
        self,
        commands: CommandSet,
        prompt: str,
        onClose: Callable[[], None],
        greeting: str = "",
    ) -> None:
        super().__init__()
        self._commands = commands
        self.ps = (prompt.encode(), b"... ")
        self._onClose = onClose
        self._greeting = greeting

    def connectionMade(self) -> None:
        super().connectionMade()
        self._commands.say = self.say
        self.keyHandlers[CTRL_C] = self._onClose
        self.keyHandlers[CTRL_D] = self._endOfInput

    def initializeScreen(self) -> None:
        if self._greeting:
            self.terminal.write(self._greeting.encode())
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def _endOfInput(self) -> None:
        if not self.lineBuffer:
            self._onClose()

    def lineReceived(self, line: bytes) -> None:
        self._commands.execute(line.decode(errors="replace")).addCallback(self._show)

    def _show(self, lines: list[str]) -> None:
        for line in lines:
            self.terminal.write(line.encode())
            self.terminal.nextLine()
        self.drawInputLine()

    def say(self, text: str) -> None:
        """Print C{text} above the prompt, then redraw the line being typed."""
        self.terminal.write(b"\r")
        self.terminal.eraseLine()
        for line in _printable_lines(text.splitlines()):
            self.terminal.write(line.encode())
            self.terminal.nextLine()
        self.drawInputLine()
        typed = len(self.lineBuffer) - self.lineBufferIndex
        if typed:
            self.terminal.cursorBackward(typed)

    def connectionLost(self, reason: Failure) -> None:
        self._onClose()


def attach_console(
    commands: CommandSet,
    prompt: str,
    onClose: Callable[[], None],
    terminal: bool,
    greeting: str = "",
) -> Callable[[], None]:
    """Run C{commands} on stdin/stdout; return a function that restores the tty.

    On a terminal the tty goes to raw mode (the console echoes and edits the
    line itself) until the returned function is called.
    """
    if not terminal:
        StandardIO(LineConsole(commands, prompt, onClose, greeting))
        return lambda: None
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    StandardIO(ServerProtocol(TerminalConsole, commands, prompt, onClose, greeting))

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSANOW, saved)
        os.write(sys.stdout.fileno(), b"\r\n")

    return restore
