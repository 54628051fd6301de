"""How many bytes a connection's transport still holds unsent.

The chunk server asks before every block (and, over plain TCP, before every
``sendfile`` slice, since bytes sent behind Twisted's back must not overtake
what Twisted holds). Twisted has no public count, so it is read from the
attributes Twisted's TCP transport (``dataBuffer``, ``offset``,
``_tempDataLen``) and TLS layer (``_appSendBuffer``) keep.

A TLS transport is a L{ProtocolWrapper}, which answers through
C{__getattr__} for the attributes of the TCP transport under it; counting
those again at the TLS layer would double the count. So the layers and the
attributes each answers itself are found once, when the connection is made,
and L{unsent_counter} returns a function that reads only those.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Most layers looked through: TLS over TCP is two.
MAX_LAYERS = 3


def _own(layer: Any, name: str, default: Any) -> Any:
    """C{layer}'s own attribute C{name}, not one its C{__getattr__} forwards."""
    try:
        return object.__getattribute__(layer, name)
    except AttributeError:
        return default


def _has_own(layer: Any, name: str) -> bool:
    return _own(layer, name, _own) is not _own


def _layer_counter(layer: Any) -> Callable[[], int] | None:
    """What one layer holds unsent, or None if it holds nothing of its own."""
    if all(_has_own(layer, name) for name in ("dataBuffer", "offset", "_tempDataLen")):
        # Twisted's TCP transport (any FileDescriptor).
        return lambda: len(layer.dataBuffer) - layer.offset + layer._tempDataLen
    if _has_own(layer, "_appSendBuffer"):
        # Twisted's TLS layer, holding writes until its handshake is done.
        return lambda: sum(len(data) for data in layer._appSendBuffer)
    return None


def unsent_counter(transport: Any) -> Callable[[], int]:
    """A function counting what C{transport} and the layers under it hold."""
    counters = []
    layer = transport
    for _ in range(MAX_LAYERS):
        if layer is None:
            break
        counter = _layer_counter(layer)
        if counter is not None:
            counters.append(counter)
        layer = _own(layer, "transport", None)
    if not counters:
        return lambda: 0
    if len(counters) == 1:
        return counters[0]
    return lambda: sum(counter() for counter in counters)


def unsent_in(transport: Any) -> int:
    """What C{transport} (and any transport it wraps, such as TLS) holds unsent."""
    return unsent_counter(transport)()
