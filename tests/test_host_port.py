"""What a C{HOST:PORT} may be, and what is taken for an endpoint string."""

from __future__ import annotations

import pytest

from redesdl.protocol.sources import is_endpoint_string, parse_host_port


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("example.org:7000", ("example.org", 7000)),
        ("127.0.0.1:1", ("127.0.0.1", 1)),
        ("[::1]:7000", ("::1", 7000)),
        ("::1:7000", ("::1", 7000)),
        ("[fe80::1]:65535", ("fe80::1", 65535)),
    ],
)
def test_hosts_and_ports(value: str, parsed: tuple[str, int]) -> None:
    assert parse_host_port(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "example.org",
        ":7000",
        "example.org:0",
        "example.org:65536",
        "example.org:http",
        # A mistyped endpoint string, not the host 'tls:example.org'.
        "tls:example.org:443",
        "tcp:127.0.0.1:7000",
    ],
)
def test_what_is_not_host_port(value: str) -> None:
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        parse_host_port(value)


def test_endpoint_strings_name_their_arguments() -> None:
    assert is_endpoint_string("tcp:host=example.org:port=7000")
    assert is_endpoint_string("unix:path=/run/redesdl.sock")
    assert not is_endpoint_string("example.org:7000")
    assert not is_endpoint_string("tls:example.org:443")
