"""``redesdl``: the one-shot commands (``list``, ``get``) and the console.

Every failure ends as one line on stderr and a non-zero exit status that
says what kind of failure it was (see L{redesdl.client.reasons}); a
traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TextIO

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, formatEvent, globalLogBeginner
from twisted.python.failure import Failure

from redesdl.client.access import ClusterAccess, load_client_token
from redesdl.client.central import connect_central
from redesdl.client.errors import UserError
from redesdl.client.identity import remembered_name
from redesdl.client.job import GetJob, InterruptedByUserError
from redesdl.client.listing import JsonListing, TextListing, describe_result
from redesdl.client.options import build_parser
from redesdl.client.progress import ProgressLine
from redesdl.client.reasons import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    exit_status,
    explain,
)
from redesdl.client.stats import ClientStats, default_stats_path
from redesdl.client.streaming import OrderedOutput
from redesdl.endpoints import central_endpoint, source_connector
from redesdl.printable import escape_logs, printable
from redesdl.tlsoptions import TLSFileError, tls_from_options
from redesdl.trace import TRACER
from redesdl.transfer.allocator import keep_freed_buffers
from redesdl.transfer.reasons import describe_error
from redesdl.transfer.result import DownloadResult


def state_folder(stats_path: str | None) -> Path:
    """The folder of C{stats_path}, created if missing; without one, the
    client's state folder (which also holds its token)."""
    if stats_path:
        folder = Path(os.path.abspath(stats_path)).parent
    else:
        folder = default_stats_path().parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create {folder}: {e.strerror}") from None
    return folder


def open_client_stats(path: str | None) -> ClientStats:
    """The statistics store at C{path} (or the default), its folder created."""
    state_folder(path)
    target = os.path.abspath(path) if path else str(default_stats_path())
    try:
        return ClientStats(target)
    except sqlite3.Error as e:
        raise UserError(f"cannot keep statistics in {target}: {e}") from None


def run_stats(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print this machine's client statistics, as lines or one JSON document."""
    out = out or sys.stdout
    stats = open_client_stats(args.stats)
    try:
        if args.json:
            document = stats.store.document(timelines=args.timelines)
            out.write(json.dumps(document, indent=1) + "\n")
        else:
            lines = (printable(line, limit=None) for line in stats.summary(args.last))
            out.write("\n".join(lines) + "\n")
    finally:
        stats.close()
    return EXIT_OK


def client_name() -> str:
    """The name INSCRIBIR chose in an earlier session, else user@host."""
    folder = state_folder(None)
    return remembered_name(folder) or f"{getpass.getuser()}@{socket.gethostname()}"


async def run_list(
    access: ClusterAccess, args: argparse.Namespace, out: TextIO | None = None
) -> int:
    """Print the catalog page by page as it arrives, holding one page.

    If the central fails midway, what was printed stays and the failure
    ends as one line on stderr like any other (L{main}).
    """
    out = out or sys.stdout
    listing = JsonListing() if args.json else TextListing(header=True)
    central = await connect_central(
        access.central, args.name, access.token, access.reply_timeout
    )
    try:
        async for page in central.catalog_pages():
            out.write(listing.page(page))
            out.flush()
        out.write(listing.end())
        out.flush()
    except BrokenPipeError:
        # The reader (``| head``) has read enough: stop quietly, as ``ls`` does,
        # and let nothing try to flush into the closed pipe on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
    finally:
        await central.close()
    return EXIT_OK


async def run_get(
    reactor: Any, access: ClusterAccess, args: argparse.Namespace, display: LogDisplay
) -> int:
    stats = open_client_stats(args.stats)
    to_stdout = args.output == "-"
    streamer = scratch = None
    output = args.output
    if to_stdout:
        # The chunks still land in a .part file, in a folder of our own.
        scratch = tempfile.mkdtemp(prefix="redesdl-")
        output = scratch
        streamer = OrderedOutput(sys.stdout.buffer)
    job = GetJob(
        reactor,
        access,
        args.name,
        args.file,
        output,
        args.force,
        stats,
        retryFor=args.retry_for,
        progressTimeout=args.progress_timeout,
        restart=args.restart,
        directIO=args.direct_io,
        onVerified=streamer.verified if streamer is not None else None,
    )
    progress = None
    if not args.quiet and sys.stderr.isatty():
        progress = ProgressLine(job, sys.stderr, reactor)
        display.show = lambda text: progress.above(f"redesdl: {text}")
        progress.start()

    def wrap_up() -> None:
        if progress is not None:
            progress.stop()
        stopped = job.stop()
        stopped.addTimeout(5, reactor)
        # Not wound down in time: at least keep what can be resumed.
        stopped.addErrback(lambda _: job.interrupted())
        stopped.addCallback(lambda _: stats.close())
        return stopped

    reactor.addSystemEventTrigger("before", "shutdown", wrap_up)
    try:
        result = await job.start()
    except Exception:
        if streamer is None or streamer.error is None:
            raise
        # Our stdout failed, and stopped the download: that is the news,
        # not the interruption, nor a .part in the scratch folder just removed.
        result = None
    finally:
        if progress is not None:
            progress.stop()
        if streamer is not None:
            streamer.close()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if streamer is not None and streamer.error is not None:
        raise UserError(f"cannot write to stdout: {describe_error(streamer.error)}")
    assert result is not None
    summary = sys.stderr if to_stdout else sys.stdout
    if to_stdout:
        result.path = "-"
    if args.json:
        summary.write(json.dumps(result.to_json()) + "\n")
    elif not args.quiet:
        seconds = fetch_seconds(job, result)
        summary.write(describe_result(result, seconds) + "\n")
    summary.flush()
    return EXIT_OK


def fetch_seconds(job: GetJob, result: DownloadResult) -> float:
    """How long the download spent fetching (not queueing or rechecking)."""
    download = job.download
    started = download.fetchStarted if download is not None else None
    if started is None or job.downloadStarted is None:
        return result.seconds
    return max(result.seconds - (started - job.downloadStarted), 0.0)


def cluster_access(reactor: Any, args: argparse.Namespace) -> ClusterAccess:
    """The central's endpoint, this client's token and TLS, from the options."""
    try:
        tls = tls_from_options(
            {
                "tls-ca": args.tls_ca,
                "tls-cert": args.tls_cert,
                "tls-key": args.tls_key,
            }
        )
    except TLSFileError as e:
        raise UserError(str(e)) from None
    endpoint = central_endpoint(reactor, args.central, args.timeout, tls)
    token_path = state_folder(None) / "client-token"
    try:
        token = load_client_token(token_path)
    except OSError as e:
        raise UserError(f"cannot keep {token_path}: {e.strerror}") from None
    return ClusterAccess(endpoint, token, source_connector(tls), args.timeout)


async def run(reactor: Any, args: argparse.Namespace, display: LogDisplay) -> int:
    if args.command == "stats":
        return run_stats(args)
    args.name = args.name or client_name()
    access = cluster_access(reactor, args)
    if args.command == "list":
        return await run_list(access, args)
    if args.command == "get":
        return await run_get(reactor, access, args, display)
    return await run_console(reactor, access, args, display)


async def run_console(
    reactor: Any, access: ClusterAccess, args: argparse.Namespace, display: LogDisplay
) -> int:
    """Run the interactive console until quit, Ctrl-D or Ctrl-C.

    On a terminal, leaving while downloads run asks first, then records them
    as interrupted. From a pipe, the end of input lets every download started
    finish; the status is then 0 only if every line and download succeeded.
    """
    # Imported here: the one-shot commands need not pay for the line editor.
    from redesdl.client.console import ClientCommands
    from redesdl.console import attach_console

    stats = open_client_stats(args.stats)
    commands = ClientCommands(reactor, access, args.central, args.name, stats)
    finished: Deferred[None] = Deferred()

    def leave() -> None:
        if not finished.called:
            finished.callback(None)

    commands.quit = leave
    terminal = sys.stdin.isatty()
    greeting = f"redesdl console as {args.name!r}, central {args.central}; type 'help'"
    restore = attach_console(commands, "redesdl> ", leave, terminal, greeting)
    TRACER.sink = commands.say
    display.show = commands.say

    def shutdown() -> None:
        restore()
        commands.interrupt()
        stats.close()

    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
    await finished
    if terminal:
        return EXIT_OK
    await commands.settled()
    if commands.failures:
        return exit_status(commands.failures[-1])
    return EXIT_FAILURE if commands.errors else EXIT_OK


class LogDisplay:
    """Show log events for a person: on stderr, or in the console once open."""

    def __init__(self, verbose: bool, quiet: bool = False) -> None:
        self._threshold = LogLevel.info if verbose else LogLevel.critical
        self._verbose = verbose
        #: Notices below a warning are hidden too (``get --quiet``).
        self._quiet = quiet
        self.show: Callable[[str], None] = lambda text: sys.stderr.write(
            f"redesdl: {text}\n"
        )

    def __call__(self, event: dict[str, Any]) -> None:
        namespace = event.get("log_namespace") or ""
        level = event.get("log_level", LogLevel.info)
        notice = namespace == "redesdl.notice" and not (
            self._quiet and level < LogLevel.warn
        )
        if level < self._threshold and not notice:
            return
        if namespace.startswith("twisted.") and level < LogLevel.warn:
            # The reactor's own chatter ("Main loop terminated.").
            return
        text = formatEvent(event)
        if "log_failure" in event and self._verbose:
            text += "\n" + event["log_failure"].getTraceback()
        self.show(text)


def start_logging(verbose: bool, quiet: bool = False) -> LogDisplay:
    display = LogDisplay(verbose, quiet)
    escape_logs()
    globalLogBeginner.beginLoggingTo([display], redirectStandardIO=False)
    return display


def main(argv: list[str] | None = None) -> NoReturn:
    """Parse C{argv} (default: the process's arguments) and run that command."""
    run_command(build_parser().parse_args(argv))


def run_command(args: argparse.Namespace) -> NoReturn:
    """Run the command C{args} were parsed from, and exit with its status."""
    # What importing the client built (modules, classes, functions) lives
    # until exit: leave it out of every collection, and out of the one at
    # exit (about 30 ms of a one-shot command's life, here). The command's
    # entry point (redesdl.client.launch) paused the collector while it was
    # built; it runs again from here.
    gc.freeze()
    gc.enable()
    keep_freed_buffers()
    from twisted.internet import reactor

    try:
        if args.command != "stats":  # which needs no central
            central_endpoint(reactor, args.central, args.timeout)
    except ValueError as e:
        sys.stderr.write(f"redesdl: --central: {e}\n")
        sys.exit(EXIT_USAGE)
    TRACER.enabled = args.trace
    TRACER.sink = lambda line: sys.stderr.write(f"redesdl: {line}\n")
    display = start_logging(args.verbose, getattr(args, "quiet", False))

    outcome: list[Any] = []

    def done(result: Any) -> None:
        outcome.append(result)
        if reactor.running and not getattr(reactor, "_stopped", False):
            reactor.stop()

    def begin() -> None:
        Deferred.fromCoroutine(run(reactor, args, display)).addBoth(done)

    reactor.callWhenRunning(begin)
    reactor.run()
    if not outcome and args.command is None:
        sys.exit(EXIT_OK)
    if not outcome:
        sys.stderr.write(
            "redesdl: interrupted; partial data, if any, is kept in its .part file\n"
        )
        sys.exit(EXIT_INTERRUPTED)
    result = outcome[0]
    if isinstance(result, Failure) and isinstance(result.value, InterruptedByUserError):
        sys.stderr.write(f"redesdl: {describe_interruption(result.value, args)}\n")
        sys.exit(EXIT_INTERRUPTED)
    if isinstance(result, Failure):
        if args.debug:
            sys.stderr.write(result.getTraceback())
        line = explain(result.value, args.central, getattr(args, "file", None))
        # Peers' words (source names, error texts) may be in it.
        sys.stderr.write(f"redesdl: {printable(line, limit=None)}\n")
        sys.exit(exit_status(result.value))
    sys.exit(result)


def describe_interruption(
    error: InterruptedByUserError, args: argparse.Namespace
) -> str:
    """The one line after Ctrl-C: where the data is and how to go on."""
    if error.part is None or args.output == "-":
        return "interrupted; nothing was downloaded yet"
    return (
        f"interrupted; the data so far is kept in {error.part}: run the same "
        "command again to resume"
    )
