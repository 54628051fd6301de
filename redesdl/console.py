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

import atexit
import codecs
import difflib
import fcntl
import os
import shlex
import termios
import tty
import unicodedata
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.conch.insults.insults import ServerProtocol
from twisted.conch.recvline import HistoricRecvLine
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IHalfCloseableProtocol
from twisted.internet.stdio import StandardIO
from twisted.logger import Logger, globalLogPublisher
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from redesdl.printable import printable
from redesdl.trace import TRACER

CTRL_A, CTRL_C, CTRL_D, CTRL_E = b"\x01", b"\x03", b"\x04", b"\x05"
CTRL_K, CTRL_U, CTRL_W = b"\x0b", b"\x15", b"\x17"
#: Longest wait, when stopping, for the reader of a piped console's output.
FLUSH_SECONDS = 5.0
#: Most completions listed under the prompt when Tab cannot pick one.
COMPLETIONS_SHOWN = 40
#: Width of the command column of ``help``.
HELP_COLUMN = 28


def joins_the_character_before(character: str) -> bool:
    """Whether C{character} is a mark drawn on the character before it (an
    accent typed apart, a variation selector): no position of its own."""
    return unicodedata.category(character) in ("Mn", "Me")


def editing_positions(text: str) -> list[bytes]:
    """C{text} as the line editor holds it: one position per character, with
    the marks drawn on it."""
    positions: list[str] = []
    for character in text:
        if positions and joins_the_character_before(character):
            positions[-1] += character
        else:
            positions.append(character)
    return [position.encode() for position in positions]


def columns(position: bytes) -> int:
    """Terminal columns one position takes: two for a wide (East Asian)
    character, one for any other."""
    text = position.decode(errors="replace")
    wide = bool(text) and unicodedata.east_asian_width(text[0]) in ("W", "F")
    return 2 if wide else 1


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
        #: Set by a terminal console: leaving may then ask to be confirmed.
        self.interactive = False
        #: Lines a pipe fed that were not understood or failed.
        self.errors = 0
        self._leave_warned = False

    def commands(self) -> dict[str, Callable[..., Any]]:
        return {
            name[4:]: getattr(self, name)
            for name in dir(self)
            if name.startswith("cmd_")
        }

    def execute(self, line: str) -> Deferred[list[str]]:
        """Run one typed line; fire with the lines to show.

        The line is split into words as a shell would, so a quoted name may
        hold spaces.
        """
        try:
            words = shlex.split(line)
        except ValueError as e:
            self.errors += 1
            return succeed([f"cannot read that line: {e} (close the quote)"])
        if not words:
            return succeed([])
        typed = words[0].lower()
        name = self.aliases.get(typed, typed)
        handler = self.commands().get(name)
        if handler is None:
            self.errors += 1
            return succeed([self._unknown(words[0])])
        if name != "quit":
            self._leave_warned = False
        running = maybeDeferred(handler, words[1:])
        running.addCallback(_as_lines)

        def failed(reason: Failure) -> list[str]:
            self.errors += 1
            if reason.check(ConsoleUsageError):
                hint = f"usage: {name} {getattr(handler, 'usage', '')}".rstrip()
                message = str(reason.value)
                return [f"{message}; {hint}" if message else hint]
            self.log.failure("console command {line!r} failed", reason, line=line)
            return [f"{name} failed: {reason.getErrorMessage()}"]

        return running.addErrback(failed).addCallback(_printable_lines)

    def refuse_long_line(self, limit: int) -> Deferred[list[str]]:
        """A line too long to be a command was skipped; say so, count it."""
        self.errors += 1
        return succeed(
            [f"skipped a line of over {limit} bytes: no command is that long"]
        )

    def _unknown(self, typed: str) -> str:
        names = [*self.commands(), *self.aliases]
        close = difflib.get_close_matches(typed.lower(), names, n=1)
        guess = f"did you mean {close[0]!r}? " if close else ""
        return f"unknown command {typed!r}; {guess}type 'help' for the list"

    def leave_warning(self) -> str | None:
        """What leaving now would abandon, if anything; None to leave at once."""
        return None

    def request_leave(self) -> None:
        """Leave, unless that abandons work the person was not yet told about."""
        warning = None
        if self.interactive and not self._leave_warned:
            warning = self.leave_warning()
        if warning:
            self._leave_warned = True
            self.say(warning)
            return
        self.quit()

    def farewell(self) -> list[str]:
        """Lines printed once the actor has stopped (and saved what it keeps)."""
        return []

    def complete(self, before: str) -> Deferred[list[str]]:
        """Candidates for the word ending at the cursor, C{before} being the
        line up to it: command names, then what a command's
        ``complete_<name>(prefix)`` offers for its arguments."""
        start, word = current_word(before)
        if not before[:start].strip():
            names = sorted({*self.commands(), *self.aliases})
            return succeed([n for n in names if n.startswith(word.lower())])
        try:
            typed = shlex.split(before[:start])[0].lower()
        except (ValueError, IndexError):
            return succeed([])
        completer = getattr(self, f"complete_{self.aliases.get(typed, typed)}", None)
        if completer is None:
            return succeed([])
        return maybeDeferred(completer, word)

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
            if len(spelled) > HELP_COLUMN:
                # Too long for the column: the summary goes below, as argparse
                # does.
                lines += [spelled, f"{'':<{HELP_COLUMN}} {summary}{also}"]
            else:
                lines.append(f"{spelled:<{HELP_COLUMN}} {summary}{also}")
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
        self.request_leave()


def current_word(before: str) -> tuple[int, str]:
    """Where the word under the cursor starts in C{before}, and that word
    unquoted as the shell would read it (an open quote counts as closed)."""
    start, quote = 0, ""
    for index, char in enumerate(before):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char.isspace():
            start = index + 1
    raw = before[start:]
    try:
        words = shlex.split(raw + quote)
    except ValueError:
        words = [raw]
    return start, words[0] if words else ""


def _common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    first, last = min(words), max(words)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


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
    end of input the commands already read finish before the console closes,
    a last line without its newline included. A line longer than
    L{MAX_LENGTH} is skipped with an error, and the lines after it still run.
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
        #: Lines read and not yet run; None stands for a line too long.
        self._waiting: deque[str | None] = deque()
        #: True while the rest of a line too long is being thrown away.
        self._skipping = False
        #: What came after a line too long, to be read again.
        self._after_long_line: bytes | None = None
        self._busy = False
        self._ended = False
        self._flushed: list[Deferred[None]] = []
        self._lost = False

    def connectionMade(self) -> None:
        self._commands.say = self.say
        greeting = f"{self._greeting}\n" if self._greeting else ""
        self.transport.write((greeting + self._prompt).encode())

    def dataReceived(self, data: bytes) -> None:
        while True:
            if self._skipping:
                end = data.find(self.delimiter)
                if end < 0:
                    return
                self._skipping = False
                data = data[end + len(self.delimiter) :]
            self._after_long_line = None
            super().dataReceived(data)
            if self._after_long_line is None:
                return
            data = self._after_long_line

    def lineReceived(self, line: bytes) -> None:
        self._waiting.append(line.decode(errors="replace"))
        self._next()

    def lineLengthExceeded(self, line: bytes) -> None:
        # Twisted hands over the long line and everything buffered after it,
        # which L{dataReceived} reads again once Twisted's own call returned.
        self._waiting.append(None)
        self._next()
        end = line.find(self.delimiter)
        if end < 0:
            self._skipping = True
        else:
            self._after_long_line = line[end + len(self.delimiter) :]

    def _next(self) -> None:
        if self._busy:
            return
        if not self._waiting:
            if self._ended:
                self._onClose()
            return
        self._busy = True
        line = self._waiting.popleft()
        if line is None:
            running = self._commands.refuse_long_line(self.MAX_LENGTH)
        else:
            running = self._commands.execute(line)
        running.addCallback(self._show)

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
        last = self.clearLineBuffer()
        if last and not self._skipping:
            self.lineReceived(last)
        self._ended = True
        self._next()

    def flush(self, reactor: Any) -> Deferred[None]:
        """Close stdout once all written so far is out (a download's outcome
        printed just before the process stops), or after a few seconds if
        nobody reads it."""
        if self._lost:
            return succeed(None)
        flushed: Deferred[None] = Deferred()
        self._flushed.append(flushed)
        self.transport.loseConnection()
        return flushed.addTimeout(FLUSH_SECONDS, reactor, lambda *_: None)

    def writeConnectionLost(self) -> None:
        if not self._flushed:
            self._onClose()

    def connectionLost(self, reason: Failure) -> None:
        self._lost = True
        if not self._flushed:
            self._onClose()
        for flushed in self._flushed:
            if not flushed.called:
                flushed.callback(None)


class TerminalConsole(HistoricRecvLine):
    """Commands typed on a terminal, with asynchronous output above the prompt.

    Twisted's line editor gives arrows, Home/End and history; this adds the
    readline keys people expect (Ctrl-A/E/U/K/W), Tab completion, and leaving
    with Ctrl-C or Ctrl-D (confirmed when that would abandon work).

    Twisted's editor takes one byte for one column. Here a position is a
    character with the marks drawn on it (L{editing_positions}), the cursor
    moves by the columns it takes (L{columns}: a wide character takes two),
    and an edit redraws the line, which the terminal then lays out itself.
    """

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
        #: The bytes of a character typed in UTF-8, as they come one by one.
        self._typed = codecs.getincrementaldecoder("utf-8")()

    def keystrokeReceived(self, keyID: Any, modifier: Any) -> None:
        # Twisted's editor takes printable ASCII only: each byte of an
        # accented or non-Latin letter was dropped, so 'remove canción.mp4'
        # ran 'remove cancin.mp4'. They are put together here, and the
        # whole character goes in the line as one position.
        if isinstance(keyID, bytes) and len(keyID) == 1 and keyID[0] >= 0x80:
            try:
                character = self._typed.decode(keyID)
            except UnicodeDecodeError:
                # What came before was no character; this byte may start one.
                self._typed.reset()
                try:
                    character = self._typed.decode(keyID)
                except UnicodeDecodeError:
                    self._typed.reset()
                    return
            if character and character.isprintable():
                self.characterReceived(character.encode(), False)
            return
        self._typed.reset()
        super().keystrokeReceived(keyID, modifier)

    def _deliverBuffer(self, buf: bytes) -> None:
        # A line recalled from history: one position per character, as typed
        # (Twisted's own puts each byte in a position of its own).
        characters = [character.encode() for character in buf.decode(errors="replace")]
        for position, character in enumerate(characters, 1):
            self.characterReceived(character, position < len(characters))

    def characterReceived(self, ch: bytes, moreCharactersComing: bool) -> None:
        index = self.lineBufferIndex
        if index and joins_the_character_before(ch.decode(errors="replace")):
            self.lineBuffer[index - 1] += ch
        elif self.mode == "insert":
            self.lineBuffer.insert(index, ch)
            self.lineBufferIndex += 1
        else:
            self.lineBuffer[index : index + 1] = [ch]
            self.lineBufferIndex += 1
        if not moreCharactersComing:
            self._redraw()

    def handle_LEFT(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            self.terminal.cursorBackward(columns(self.lineBuffer[self.lineBufferIndex]))

    def handle_RIGHT(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            self.terminal.cursorForward(columns(self.lineBuffer[self.lineBufferIndex]))
            self.lineBufferIndex += 1

    def handle_HOME(self) -> None:
        if self.lineBufferIndex:
            self.terminal.cursorBackward(self._columns(0, self.lineBufferIndex))
            self.lineBufferIndex = 0

    def handle_END(self) -> None:
        after = self._columns(self.lineBufferIndex, len(self.lineBuffer))
        if after:
            self.terminal.cursorForward(after)
            self.lineBufferIndex = len(self.lineBuffer)

    def handle_BACKSPACE(self) -> None:
        if self.lineBufferIndex > 0:
            self.lineBufferIndex -= 1
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def handle_DELETE(self) -> None:
        if self.lineBufferIndex < len(self.lineBuffer):
            del self.lineBuffer[self.lineBufferIndex]
            self._redraw()

    def _columns(self, start: int, end: int) -> int:
        """The columns positions C{start} to C{end} of the line take."""
        return sum(columns(position) for position in self.lineBuffer[start:end])

    def connectionMade(self) -> None:
        super().connectionMade()
        self._commands.say = self.say
        self._commands.interactive = True
        self.keyHandlers.update(
            {
                CTRL_C: self._commands.request_leave,
                CTRL_D: self._endOfInput,
                CTRL_A: self.handle_HOME,
                CTRL_E: self.handle_END,
                CTRL_U: lambda: self._cut(0, self.lineBufferIndex),
                CTRL_K: lambda: self._cut(self.lineBufferIndex, len(self.lineBuffer)),
                CTRL_W: lambda: self._cut(self._word_start(), self.lineBufferIndex),
            }
        )

    def initializeScreen(self) -> None:
        if self._greeting:
            self.terminal.write(self._greeting.encode())
            self.terminal.nextLine()
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def _endOfInput(self) -> None:
        if not self.lineBuffer:
            self._commands.request_leave()

    def lineReceived(self, line: bytes) -> None:
        self._commands.execute(line.decode(errors="replace")).addCallback(self._show)

    def _show(self, lines: list[str]) -> None:
        for line in lines:
            self.terminal.write(line.encode())
            self.terminal.nextLine()
        self.drawInputLine()

    def say(self, text: str) -> None:
        """Print C{text} above the prompt, then redraw the line being typed."""
        self.clear_input_line()
        for line in _printable_lines(text.splitlines()):
            self.terminal.write(line.encode())
            self.terminal.nextLine()
        self.redraw_input_line()

    def clear_input_line(self) -> None:
        self.terminal.write(b"\r")
        self.terminal.eraseLine()

    def redraw_input_line(self) -> None:
        """Draw the prompt and the line typed so far, cursor where it was."""
        self.drawInputLine()
        after = self._columns(self.lineBufferIndex, len(self.lineBuffer))
        if after:
            self.terminal.cursorBackward(after)

    def _redraw(self) -> None:
        self.clear_input_line()
        self.redraw_input_line()

    def _line(self) -> str:
        """The line typed so far."""
        return b"".join(self.lineBuffer).decode(errors="replace")

    def _replace(self, positions: list[bytes], cursor: int) -> None:
        self.lineBuffer = positions
        self.lineBufferIndex = cursor
        self._redraw()

    def _cut(self, start: int, end: int) -> None:
        self._replace(self.lineBuffer[:start] + self.lineBuffer[end:], start)

    def _word_start(self) -> int:
        """Where Ctrl-W cuts from: the start of the word before the cursor,
        spaces after it included, as a shell's unix-word-rubout does."""
        characters = [position.decode(errors="replace") for position in self.lineBuffer]
        start = self.lineBufferIndex
        while start and characters[start - 1].isspace():
            start -= 1
        while start and not characters[start - 1].isspace():
            start -= 1
        return start

    def handle_TAB(self) -> None:
        line = self._line()
        cursor = self.lineBufferIndex
        before = b"".join(self.lineBuffer[:cursor]).decode(errors="replace")
        self._commands.complete(before).addCallback(
            self._complete, line, cursor, before
        ).addErrback(lambda reason: self.say(f"cannot complete: {reason.value}"))

    def _complete(
        self, candidates: list[str], line: str, cursor: int, before: str
    ) -> None:
        if self._line() != line or self.lineBufferIndex != cursor:
            return  # typed on while the candidates were being looked up
        start, word = current_word(before)
        common = _common_prefix(candidates)
        if len(candidates) != 1 and len(common) <= len(word):
            if candidates:
                shown = candidates[:COMPLETIONS_SHOWN]
                more = len(candidates) - len(shown)
                self.say("  ".join(shown) + (f"  … and {more} more" if more else ""))
            return
        spelled = shlex.quote(common) + (" " if len(candidates) == 1 else "")
        typed = editing_positions(before[:start] + spelled)
        self._replace(typed + self.lineBuffer[cursor:], len(typed))

    def connectionLost(self, reason: Failure) -> None:
        self._onClose()


class TerminalModes:
    """What the console changes on the terminal, put back exactly once.

    Raw mode and insert mode (the line editor's) on a terminal, and the
    non-blocking flag StandardIO sets on stdin and stdout, which would
    otherwise outlive the process and garble the next program run there.
    L{restore} runs on every way out: a clean stop, an exception, exit.
    """

    def __init__(self, terminal: bool) -> None:
        self._fds = (0, 1)  # what StandardIO reads and writes
        self._flags = [fcntl.fcntl(fd, fcntl.F_GETFL) for fd in self._fds]
        self._terminal = terminal
        self._saved = termios.tcgetattr(self._fds[0]) if terminal else None
        self._restored = False
        atexit.register(self.restore)

    def enter_raw(self) -> None:
        """Raw input (the console edits the line itself), cooked output so
        that lines others write (a daemon's log) still start at the left."""
        fd = self._fds[0]
        tty.setraw(fd)
        modes = termios.tcgetattr(fd)
        modes[1] |= termios.OPOST | termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, modes)

    def restore(self) -> None:
        if self._restored:
            return
        self._restored = True
        for fd, flags in zip(self._fds, self._flags, strict=True):
            fcntl.fcntl(fd, fcntl.F_SETFL, flags)
        if self._saved is not None:
            termios.tcsetattr(self._fds[0], termios.TCSADRAIN, self._saved)
            os.write(self._fds[1], b"\x1b[4l\r\n")


class LogAbovePrompt:
    """Keep a daemon's log lines, written to the terminal by twistd, above
    the console's prompt: clear the input line before each log event and
    redraw it after.

    Observers are called in the order they were added, so one half must be
    created before twistd adds its log observer (while the service is being
    built) and L{attach} called after (once the console runs).
    """

    def __init__(self) -> None:
        self.console: TerminalConsole | None = None
        globalLogPublisher.addObserver(self._before)

    def attach(self, console: TerminalConsole) -> None:
        self.console = console
        globalLogPublisher.addObserver(self._after)

    def _before(self, event: dict[str, Any]) -> None:
        if self.console is not None and self.console.terminal is not None:
            os.write(1, b"\r\x1b[K")

    def _after(self, event: dict[str, Any]) -> None:
        console = self.console
        if console is not None and console.terminal is not None:
            typed = b"".join(console.lineBuffer)
            back = len(console.lineBuffer) - console.lineBufferIndex
            move = f"\x1b[{back}D".encode() if back else b""
            os.write(1, console.ps[console.pn] + typed + move)


def attach_console(
    commands: CommandSet,
    prompt: str,
    onClose: Callable[[], None],
    terminal: bool,
    greeting: str = "",
    log_frame: LogAbovePrompt | None = None,
) -> Callable[[], None]:
    """Run C{commands} on stdin/stdout; return a function that restores the tty.

    On a terminal the tty goes to raw mode (the console echoes and edits the
    line itself) until the returned function is called, or the reactor
    stops, or the process exits, whichever comes first. Once the reactor has
    stopped (and the actor saved its state), the commands' farewell is printed.
    """
    from twisted.internet import reactor

    modes = TerminalModes(terminal)

    def restore() -> None:
        if log_frame is not None:
            log_frame.console = None
        modes.restore()

    def farewell() -> None:
        restore()
        lines = _printable_lines(commands.farewell())
        if lines:
            os.write(1, "".join(f"{line}\n" for line in lines).encode())

    reactor.addSystemEventTrigger("after", "shutdown", farewell)
    if not terminal:
        console = LineConsole(commands, prompt, onClose, greeting)
        StandardIO(console)
        reactor.addSystemEventTrigger("before", "shutdown", console.flush, reactor)
        return restore
    modes.enter_raw()
    server = ServerProtocol(TerminalConsole, commands, prompt, onClose, greeting)
    StandardIO(server)
    if log_frame is not None:
        log_frame.attach(server.terminalProtocol)
    return restore
