"""Where to reach a secondary: the address the central hands to downloaders."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.fields import count, printable_text


@dataclass(frozen=True)
class SourceAddress:
    """One secondary's name and the host and port clients connect to."""

    name: str
    host: str
    port: int

    @classmethod
    def from_wire(cls, value: Any) -> SourceAddress:
        if not isinstance(value, dict):
            raise ProtocolError("bad_request", "a source must be an object")
        return cls(
            printable_text(
                value,
                "name",
                max_length=256,
                refusal="a source name may not contain unprintable characters",
            ),
            printable_text(
                value,
                "host",
                max_length=256,
                refusal="a source host may not contain unprintable characters",
            ),
            count(value, "port", maximum=65535),
        )

    def to_wire(self) -> dict[str, Any]:
        return {"name": self.name, "host": self.host, "port": self.port}


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (or ``[V6]:PORT``), raising ValueError if malformed.

    A host with a colon must be an IPv6 address: ``tls:example.org:443`` is
    a mistyped endpoint string, not the host ``tls:example.org``.
    """
    host, separator, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if (
        not separator
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or (":" in host and not _is_ipv6(host))
    ):
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def _is_ipv6(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 6
    except ValueError:
        return False


def central_addresses(value: str) -> list[str]:
    """The centrals a comma-separated C{--central} value names, in order."""
    addresses = [part.strip() for part in value.split(",") if part.strip()]
    if not addresses:
        raise ValueError("no central given")
    return addresses


def is_endpoint_string(value: str) -> bool:
    """Whether a C{--central} address is a Twisted endpoint string
    (C{tcp:host=H:port=P}, C{unix:path=...}) rather than C{HOST:PORT}:
    those name their arguments."""
    return "=" in value
