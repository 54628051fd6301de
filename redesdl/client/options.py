"""The ``redesdl`` command line: its commands and options, and what they ask of
the process before anything else is loaded.

Kept apart from L{redesdl.client.cli} so the command's entry point
(L{redesdl.client.launch}) can read the options before Twisted's reactor and
endpoints are loaded (they load pyOpenSSL when it is installed), and decide
first whether this process needs a TLS stack at all.
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import socket
from typing import Any

from redesdl import __version__
from redesdl.client.stats import default_stats_path
from redesdl.protocol.sources import central_addresses, is_endpoint_string

DEFAULT_CENTRAL = "127.0.0.1:7000"

#: Seconds a connection may take before the client gives up on it.
DEFAULT_TIMEOUT = 10.0


def percent_escaped(text: str) -> str:
    """C{text} as argparse prints it in a help string."""
    return text.replace("%", "%%")


def seconds(text: str, zero: bool = False) -> float:
    """A finite number of seconds: above zero, or also zero if C{zero}."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds"
        ) from None
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        least = "0 or more" if zero else "more than 0"
        raise argparse.ArgumentTypeError(f"{text!r}: give {least} seconds")
    return value


def seconds_or_zero(text: str) -> float:
    return seconds(text, zero=True)


def how_many(text: str) -> int:
    """A count of 0 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more")
    return value


def add_global_options(parser: argparse.ArgumentParser, again: bool) -> None:
    """The options of every command; C{again} for a command's own parser,
    where they are accepted too (``redesdl list --central ...``) but leave
    the values given before the command alone unless given again."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if again else value

    # A suppressed default has no %(default)s to expand, so defaults are
    # written into the help text itself (with argparse's % escaped).
    parser.add_argument(
        "--central",
        default=default(os.environ.get("REDESDL_CENTRAL", DEFAULT_CENTRAL)),
        help="the central as HOST:PORT or a Twisted client endpoint "
        "string; several, separated by commas, are tried in order "
        f"[default: $REDESDL_CENTRAL or {percent_escaped(DEFAULT_CENTRAL)}]",
    )
    parser.add_argument(
        "--name",
        default=default(None),
        help="this client's name, as the central records it [default: the "
        "name last chosen with the console's INSCRIBIR, else "
        f"{percent_escaped(f'{getpass.getuser()}@{socket.gethostname()}')}]",
    )
    parser.add_argument(
        "--stats",
        metavar="FILE",
        default=default(None),
        help="where this client keeps statistics "
        f"[default: {percent_escaped(str(default_stats_path()))}]",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=default(DEFAULT_TIMEOUT),
        help="seconds to wait for a connection, and for the central to answer "
        f"each request [default: {DEFAULT_TIMEOUT}]",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="log what happens on stderr",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks of unexpected errors",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        default=default(False),
        help="show every protocol message sent and received",
    )
    for flag, what in (
        ("--tls-ca", "the CA certificate (PEM) every server must be signed by"),
        ("--tls-cert", "this client's certificate (PEM), signed by that CA"),
        ("--tls-key", "the private key (PEM) of --tls-cert"),
    ):
        parser.add_argument(
            flag,
            metavar="FILE",
            default=default(None),
            help=f"{what}; all three turn on TLS for every connection "
            "[default: plain TCP]",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redesdl",
        description="Download a file in verified parts from every live secondary.",
    )
    add_global_options(parser, again=False)
    parser.add_argument("--version", action="version", version=f"redesdl {__version__}")
    commands = parser.add_subparsers(
        dest="command",
        metavar="COMMAND",
        description="Without a command, redesdl opens its interactive console.",
    )
    listing = commands.add_parser("list", help="list the files the cluster serves")
    add_global_options(listing, again=True)
    listing.add_argument("--json", action="store_true", help="print one JSON array")
    get = commands.add_parser("get", help="download a file")
    add_global_options(get, again=True)
    get.add_argument("file", metavar="NAME", help="the file's name, as 'list' shows it")
    get.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="where to save it [default: its base name, here]; "
        "an existing folder means inside it; '-' writes it to stdout",
    )
    get.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    get.add_argument(
        "--restart",
        action="store_true",
        help="discard what an earlier attempt left in PATH.part and start over",
    )
    get.add_argument(
        "--direct-io",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write every chunk around the page cache (O_DIRECT, where the file "
        "system allows; the file is not cached after), or with --no-direct-io "
        "every chunk through it [default: through it until that costs over "
        "0.6 CPU-s per GiB, then around it]",
    )
    get.add_argument(
        "--progress-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="drop a source that makes no progress for this long while it owes "
        "a chunk (ends no reply and sends under 16 KiB) [default: %(default)s]",
    )
    get.add_argument(
        "--retry-for",
        type=seconds_or_zero,
        default=30.0,
        metavar="SECONDS",
        help="when no source is left, keep asking the central for one this long "
        "[default: %(default)s]",
    )
    get.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="print only errors: no progress line, no summary",
    )
    get.add_argument(
        "--json",
        action="store_true",
        help="end with one JSON object describing the download",
    )
    stats = commands.add_parser(
        "stats", help="show this machine's download statistics (no central needed)"
    )
    stats.add_argument(
        "--json", action="store_true", help="print them as one JSON document"
    )
    stats.add_argument(
        "--timelines",
        action="store_true",
        help="with --json, add the chunk timelines kept (the last downloads')",
    )
    stats.add_argument(
        "-n",
        "--last",
        type=how_many,
        default=10,
        metavar="N",
        help="list the last N downloads [default: %(default)s]",
    )
    return parser


def needs_tls_stack(args: argparse.Namespace) -> bool:
    """Whether this command may open a TLS connection.

    C{stats} opens none. Another command may with the C{--tls-*} options
    (even empty: that is an error to report), and with a C{--central} given
    as a Twisted endpoint string, which may name a TLS endpoint (C{tls:},
    C{ssl:}, a plugin's). A plain C{HOST:PORT} never does.
    """
    if args.command == "stats":
        return False
    if any(value is not None for value in (args.tls_ca, args.tls_cert, args.tls_key)):
        return True
    try:
        centrals = central_addresses(args.central)
    except ValueError:
        return False  # a usage error, said before any connection
    return any(is_endpoint_string(one) for one in centrals)
