"""``--web`` and ``--web-token``: checking them, and the service they start.

The dashboard shows every file name, client and secondary of the cluster,
so it listens beyond loopback only with a token: L{check_web_options}
refuses anything else before the daemon starts. A unix socket counts as
local; an endpoint whose address it cannot tell (``systemd:``...) needs a
token too.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.interfaces import IProtocol
from twisted.protocols.policies import WrappingFactory
from twisted.python import usage

from redesdl.central.web.api import DashboardApi
from redesdl.central.web.series import SeriesSampler
from redesdl.central.web.site import dashboard_site
from redesdl.listening import ListeningService
from redesdl.protocol.complaints import COMPLAINTS, address_host
from redesdl.shells.tracking import ConnectionCounts, ConnectionLimits

WEB_PARAMETERS = [
    [
        "web",
        None,
        None,
        "Twisted server endpoint serving the live web dashboard and its JSON "
        "API, such as tcp:8080:interface=127.0.0.1 (ssl:... for HTTPS) "
        "[default: none].",
    ],
    [
        "web-token",
        None,
        None,
        "File holding the token the dashboard requires (needed to listen "
        "beyond loopback).",
    ],
]

#: The dashboard's connections: few, so that it never takes the descriptors
#: the central's own port needs (it answered nothing once a peer had opened
#: 20,000 of them here).
WEB_LIMITS = ConnectionLimits(total=128, perPeer=16)

#: Shortest token accepted, in characters.
MIN_TOKEN = 16
_DEFAULT_INTERFACE = {"tcp": "0.0.0.0", "ssl": "0.0.0.0", "tcp6": "::"}


def is_local_endpoint(description: str) -> bool:
    """True if C{description} listens on loopback (or a unix socket) only."""
    fields = re.split(r"(?<!\\):", description)
    kind = fields[0]
    if kind == "unix":
        return True
    if kind not in _DEFAULT_INTERFACE:
        return False
    options = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
    interface = options.get("interface", _DEFAULT_INTERFACE[kind]).replace("\\", "")
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def read_token(path: str) -> str:
    """The token in the file at C{path}; a usage error if unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise usage.UsageError(f"--web-token {path}: {e}") from None
    if len(token) < MIN_TOKEN or not token.isprintable() or " " in token:
        raise usage.UsageError(
            f"--web-token {path}: the token must be one word of at least "
            f"{MIN_TOKEN} printable characters"
        )
    return token


def check_web_options(config: Any) -> None:
    """Read the token; refuse a dashboard beyond loopback without one."""
    config.web_token = None
    if config["web-token"] is not None:
        config.web_token = read_token(config["web-token"])
    if config["web"] is None:
        if config["web-token"] is not None:
            raise usage.UsageError("--web-token goes with --web")
        return
    if config.web_token is None and not is_local_endpoint(config["web"]):
        raise usage.UsageError(
            f"--web {config['web']} listens beyond loopback: give --web-token "
            "FILE, or listen on 127.0.0.1"
        )


class CappedConnections(WrappingFactory):
    """Another factory's connections, capped in all and per address; one
    over a cap is closed at once, with one (rate-limited) log line."""

    def __init__(self, wrapped: Any, limits: ConnectionLimits = WEB_LIMITS) -> None:
        super().__init__(wrapped)
        self._counts = ConnectionCounts(limits, "dashboard")
        self._hosts: dict[IProtocol, str] = {}

    def buildProtocol(self, addr: Any) -> IProtocol | None:
        host = address_host(addr)
        why = self._counts.refusal(host)
        if why is not None:
            COMPLAINTS.complain(
                host, "refused a connection from {peer}: {why}", why=why
            )
            return None
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self._hosts[protocol] = host
            self._counts.add(host)
        return protocol

    def unregisterProtocol(self, protocol: IProtocol) -> None:
        super().unregisterProtocol(protocol)
        host = self._hosts.pop(protocol, None)
        if host is not None:
            self._counts.remove(host)


def web_service(
    description: str, token: str | None, factory: Any, role: str, reactor: Any
) -> MultiService:
    """The dashboard on C{description}, and the sampler behind its charts."""
    top = MultiService()
    sampler = SeriesSampler(factory, reactor)
    sampler.setServiceParent(top)
    api = DashboardApi(factory, sampler, reactor)
    listener = ListeningService(
        description,
        CappedConnections(dashboard_site(api, token)),
        f"{role} web",
        reactor,
    )
    listener.setServiceParent(top)
    top.listener = listener  # type: ignore[attr-defined]
    top.api = api  # type: ignore[attr-defined]
    return top
