"""Helpers for unit tests that read what a protocol wrote to a StringTransport."""

from __future__ import annotations

import struct
from typing import Any

from twisted.internet.testing import StringTransport

from redesdl.protocol.codec import decode_body, encode


def frames(data: bytes) -> list[Any]:
    """Split written bytes into messages; a chunk header is followed by bytes."""
    out: list[Any] = []
    offset = 0
    while offset < len(data):
        (length,) = struct.unpack_from("!I", data, offset)
        message = decode_body(data[offset + 4 : offset + 4 + length])
        offset += 4 + length
        out.append(message)
        if message["type"] == "chunk":
            out.append(data[offset : offset + message["length"]])
            offset += message["length"]
    return out


def send(protocol: Any, *messages: dict[str, Any]) -> None:
    for message in messages:
        protocol.dataReceived(encode(message))


def drain(transport: StringTransport) -> None:
    """Pull from a registered pull producer until it unregisters."""
    while transport.producer is not None:
        transport.producer.resumeProducing()


def take(transport: StringTransport) -> list[Any]:
    drain(transport)
    written = frames(transport.value())
    transport.clear()
    return written
