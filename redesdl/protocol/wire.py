"""Every message of the protocol as a frozen dataclass, parsed once at the edge.

A message arrives as a JSON object; L{parse} turns it into one of the
classes below or raises a L{ProtocolError} naming the bad field, and nothing
past the codec ever sees the dict. L{Message.to_wire} is the only way back.
Some type names mean different things by direction (``hello``, ``welcome``,
``manifest``), so each receiver has a I{vocabulary}: the types it accepts
from its peer and the class each becomes. A type outside the receiver's
vocabulary is ``unknown_type``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from redesdl.manifest import MAX_CHUNKS, FileInfo, Manifest
from redesdl.names import validate_name
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.fields import (
    MAX_STRING,
    count,
    digest,
    flag,
    items,
    mapping,
    optional_text,
    printable_text,
    request_id,
    seconds,
    text,
)
from redesdl.protocol.sources import SourceAddress

PROTOCOL_VERSION = 1
#: Most file entries or names one ``files_added``/``files_removed``/``catalog`` holds.
MAX_FILES_PER_MESSAGE = 256
#: Most sources a ``located`` or ``replicate`` lists.
MAX_SOURCES = 1024
#: Longest peer (client or secondary) name.
MAX_PEER_NAME = 256


def name(message: dict[str, Any], key: str) -> str:
    return validate_name(text(message, key))


def version(message: dict[str, Any]) -> int:
    found = message.get("version")
    if isinstance(found, bool) or found != PROTOCOL_VERSION:
        raise ProtocolError("version", f"this peer speaks version {PROTOCOL_VERSION}")
    return PROTOCOL_VERSION


def peer_name_problem(name: str) -> str | None:
    """Say why C{name} may not name a peer (it reaches logs, screens and
    statistics)."""
    if not name:
        return "a peer name may not be empty"
    if not name.isprintable():
        # Control characters, but also bidi overrides and other format
        # characters: a secondary's name reaches every downloader's screen,
        # and clients refuse a source whose name is not printable.
        return "a peer name may not contain control or format characters"
    return None


def peer_name(message: dict[str, Any], key: str) -> str:
    """A client's or secondary's name: 1 to L{MAX_PEER_NAME} printable characters."""
    value = text(message, key, max_length=MAX_PEER_NAME)
    problem = peer_name_problem(value)
    if problem is not None:
        raise ProtocolError("bad_request", problem)
    return value


def nested(message: dict[str, Any], key: str, read: Callable[[Any], Any]) -> Any:
    """Read an object field with C{read}, naming the field in any error."""
    try:
        return read(mapping(message, key))
    except ProtocolError as e:
        raise ProtocolError(e.code, f"in {key!r}: {e.message}") from None


def nested_list(
    message: dict[str, Any], key: str, read: Callable[[Any], Any], max_items: int
) -> tuple[Any, ...]:
    values = items(message, key, max_items=max_items)
    parsed = []
    for i, value in enumerate(values):
        try:
            parsed.append(read(value))
        except ProtocolError as e:
            raise ProtocolError(e.code, f"in {key}[{i}]: {e.message}") from None
    return tuple(parsed)


def source_list(message: dict[str, Any]) -> tuple[SourceAddress, ...]:
    """The C{sources} of a C{located} or C{replicate}: secondaries are known by
    name (a download keeps one connection and one record per name), so two
    entries with one name are refused."""
    sources = nested_list(message, "sources", SourceAddress.from_wire, MAX_SOURCES)
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise ProtocolError("bad_request", f"two sources named {source.name!r}")
        seen.add(source.name)
    return sources


def _to_json(value: Any) -> Any:
    if hasattr(value, "to_wire"):
        return value.to_wire()
    if isinstance(value, tuple | list):
        return [_to_json(v) for v in value]
    return value


@dataclass(frozen=True)
class Ticket:
    """The central's permission for one holder to fetch one content, until expiry."""

    expires: int
    mac: str

    @classmethod
    def from_wire(cls, value: Any) -> Ticket:
        if not isinstance(value, dict):
            raise ProtocolError("bad_request", "a ticket must be an object")
        return cls(count(value, "expires"), text(value, "mac", max_length=128))

    def to_wire(self) -> dict[str, Any]:
        return {"expires": self.expires, "mac": self.mac}


def compact_json(value: Any) -> bytes:
    """C{value} as the protocol writes JSON: no spaces, ASCII only.

    Non-ASCII text goes out as JSON escapes, so no string (not even one
    holding a lone surrogate) can make encoding fail.
    """
    return json.dumps(value, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One name in a ``catalog`` page: its content and how many serve it.

    C{encoded}, when given, is its JSON object already encoded (the central
    keeps it per name), so a page costs a join rather than an encoding.
    """

    info: FileInfo
    sources: int
    encoded: bytes | None = dataclasses.field(default=None, compare=False, repr=False)

    @classmethod
    def from_wire(cls, value: Any) -> CatalogEntry:
        info = FileInfo.from_wire(value)
        return cls(info, count(value, "sources", maximum=2**31))

    def to_wire(self) -> dict[str, Any]:
        return {**self.info.to_wire(), "sources": self.sources}

    def json(self) -> bytes:
        """Its JSON object as the protocol writes it."""
        if self.encoded is not None:
            return self.encoded
        return compact_json(self.to_wire())


@dataclass(frozen=True)
class Served:
    """What a secondary served one client of one file since its last report."""

    file: str
    client: str
    chunks: int
    bytes: int

    @classmethod
    def from_wire(cls, value: Any) -> Served:
        if not isinstance(value, dict):
            raise ProtocolError("bad_request", "activity items are objects")
        return cls(
            name(value, "file"),
            text(value, "client", max_length=MAX_PEER_NAME),
            count(value, "chunks"),
            count(value, "bytes"),
        )

    def to_wire(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Message:
    """A protocol message; subclasses are frozen dataclasses with a C{TYPE}."""

    TYPE: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.TYPE}
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if value is not None:
                body[field.name] = _to_json(value)
        return body

    def encode_body(self) -> bytes:
        """The frame's body: L{to_wire} as compact JSON."""
        return compact_json(self.to_wire())

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Message:
        raise NotImplementedError


# -- Anyone to anyone -------------------------------------------------------


@dataclass(frozen=True)
class Error(Message):
    """A request refused, with a code from L{redesdl.protocol.errors.ERROR_CODES}."""

    TYPE = "error"
    code: str
    message: str
    id: int | None = None

    @classmethod
    def of(cls, error: ProtocolError, request_id: int | None = None) -> Error:
        """The message refusing a request with C{error}."""
        return cls(error.code, error.message, request_id)

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Error:
        # Lenient on purpose: an error is never answered, so a malformed one
        # is still taken as a refusal of the request it names.
        code = body.get("code")
        why = body.get("message")
        return cls(
            code
            if isinstance(code, str) and code.isidentifier() and len(code) <= 64
            else "internal",
            why[:MAX_STRING] if isinstance(why, str) else "",
            request_id(body),
        )


@dataclass(frozen=True)
class Ping(Message):
    TYPE = "ping"
    id: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Ping:
        return cls(count(body, "id"))


@dataclass(frozen=True)
class Pong(Message):
    TYPE = "pong"
    id: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Pong:
        return cls(count(body, "id"))


# -- Client and secondary to central ---------------------------------------


@dataclass(frozen=True)
class ClientHello(Message):
    """A client opens a conversation with the central or with a chunk server."""

    TYPE = "hello"
    id: int
    name: str
    token: str | None = None
    version: int = PROTOCOL_VERSION
    role: str = "client"

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ClientHello:
        version(body)
        return cls(
            count(body, "id"),
            peer_name(body, "name"),
            optional_text(body, "token", max_length=128),
        )


@dataclass(frozen=True)
class SecondaryHello(Message):
    """A secondary asks the central to register it."""

    TYPE = "hello"
    id: int
    name: str
    secondary_id: str
    boot: int
    port: int
    advertise: str | None = None
    nonce: str | None = None
    version: int = PROTOCOL_VERSION
    role: str = "secondary"

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SecondaryHello:
        version(body)
        return cls(
            count(body, "id"),
            peer_name(body, "name"),
            text(body, "secondary_id", max_length=64),
            count(body, "boot") if body.get("boot") is not None else 0,
            count(body, "port", maximum=65535),
            (
                None
                if body.get("advertise") is None
                else printable_text(
                    body,
                    "advertise",
                    max_length=MAX_PEER_NAME,
                    # It becomes the host every downloader is told to reach.
                    refusal="an advertised host may not contain control or "
                    "format characters",
                )
            ),
            optional_text(body, "nonce", max_length=64),
        )


def parse_central_hello(body: dict[str, Any]) -> ClientHello | SecondaryHello:
    """The central's ``hello``: its shape depends on the role it names."""
    version(body)
    role = text(body, "role", max_length=16)
    if role == "client":
        hello = ClientHello.parse(body)
        if hello.token is None:
            raise ProtocolError("bad_request", "'token' must be a string")
        return hello
    if role == "secondary":
        return SecondaryHello.parse(body)
    raise ProtocolError("bad_request", f"unknown role {role!r}")


@dataclass(frozen=True)
class Auth(Message):
    """A secondary's answer to the central's challenge."""

    TYPE = "auth"
    id: int
    proof: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Auth:
        return cls(count(body, "id"), text(body, "proof", max_length=128))


@dataclass(frozen=True)
class ListFiles(Message):
    """Ask for one page of the catalog, the names after C{after}."""

    TYPE = "list"
    id: int
    after: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ListFiles:
        return cls(count(body, "id"), optional_text(body, "after"))


@dataclass(frozen=True)
class Locate(Message):
    TYPE = "locate"
    id: int
    name: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Locate:
        return cls(count(body, "id"), name(body, "name"))


@dataclass(frozen=True)
class Admit(Message):
    """Ask for a download slot for one file."""

    TYPE = "admit"
    id: int
    name: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Admit:
        return cls(count(body, "id"), name(body, "name"))


@dataclass(frozen=True)
class Report(Message):
    """How a client's admitted download ended; frees its slot."""

    TYPE = "report"
    name: str
    ok: bool
    size: int
    bytes_fetched: int
    reason: str = ""

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Report:
        return cls(
            name(body, "name"),
            flag(body, "ok"),
            count(body, "size"),
            count(body, "bytes_fetched"),
            optional_text(body, "reason", max_length=1024) or "",
        )


@dataclass(frozen=True)
class BadReplica(Message):
    """A client got bytes from C{source} that did not match their hash."""

    TYPE = "bad_replica"
    name: str
    sha256: str
    source: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> BadReplica:
        return cls(
            name(body, "name"),
            digest(body, "sha256"),
            text(body, "source", max_length=MAX_PEER_NAME),
        )


@dataclass(frozen=True)
class Progress(Message):
    """How far a client's admitted download is; the central answers nothing."""

    TYPE = "progress"
    id: int
    file: str
    done: int
    rate: float
    sources: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Progress:
        rate = body.get("rate")
        if type(rate) not in (int, float) or not 0 <= rate < 2**53:
            raise ProtocolError("bad_request", "'rate' must be bytes per second")
        return cls(
            count(body, "id"),
            name(body, "file"),
            count(body, "done"),
            float(rate),
            count(body, "sources", maximum=MAX_SOURCES),
        )


@dataclass(frozen=True)
class FilesAdded(Message):
    TYPE = "files_added"
    files: tuple[FileInfo, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FilesAdded:
        return cls(
            nested_list(body, "files", FileInfo.from_wire, MAX_FILES_PER_MESSAGE)
        )


@dataclass(frozen=True)
class FilesRemoved(Message):
    TYPE = "files_removed"
    names: tuple[str, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> FilesRemoved:
        return cls(
            nested_list(
                body,
                "names",
                lambda value: name({"name": value}, "name"),
                MAX_FILES_PER_MESSAGE,
            )
        )


@dataclass(frozen=True)
class CatalogDone(Message):
    TYPE = "catalog_done"

    @classmethod
    def parse(cls, body: dict[str, Any]) -> CatalogDone:
        return cls()


@dataclass(frozen=True)
class Replicated(Message):
    TYPE = "replicated"
    name: str
    ok: bool
    reason: str = ""

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Replicated:
        return cls(
            name(body, "name"),
            flag(body, "ok"),
            optional_text(body, "reason", max_length=1024) or "",
        )


@dataclass(frozen=True)
class Verified(Message):
    TYPE = "verified"
    name: str
    ok: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Verified:
        return cls(name(body, "name"), flag(body, "ok"))


@dataclass(frozen=True)
class Activity(Message):
    TYPE = "activity"
    served: tuple[Served, ...]

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Activity:
        return cls(nested_list(body, "served", Served.from_wire, MAX_FILES_PER_MESSAGE))


# -- Central to client and secondary ---------------------------------------


@dataclass(frozen=True)
class Welcome(Message):
    """The central accepts a hello (with its own proof, to a secondary)."""

    TYPE = "welcome"
    id: int
    proof: str | None = None
    version: int = PROTOCOL_VERSION

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Welcome:
        version(body)
        return cls(count(body, "id"), optional_text(body, "proof", max_length=128))


@dataclass(frozen=True)
class Challenge(Message):
    TYPE = "challenge"
    id: int
    nonce: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Challenge:
        return cls(count(body, "id"), text(body, "nonce", max_length=64))


@dataclass(frozen=True)
class Catalog(Message):
    """One page of the catalog."""

    TYPE = "catalog"
    id: int
    files: tuple[CatalogEntry, ...]
    more: bool

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Catalog:
        return cls(
            count(body, "id"),
            nested_list(body, "files", CatalogEntry.from_wire, MAX_FILES_PER_MESSAGE),
            flag(body, "more"),
        )

    def encode_body(self) -> bytes:
        """The page with each entry's JSON reused: a page costs a join."""
        files = b",".join([entry.json() for entry in self.files])
        more = b"true" if self.more else b"false"
        return b'{"type":"catalog","id":%d,"files":[%s],"more":%s}' % (
            self.id,
            files,
            more,
        )


@dataclass(frozen=True)
class Located(Message):
    TYPE = "located"
    id: int
    file: FileInfo
    sources: tuple[SourceAddress, ...]
    ticket: Ticket | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Located:
        return cls(
            count(body, "id"),
            nested(body, "file", FileInfo.from_wire),
            source_list(body),
            nested(body, "ticket", Ticket.from_wire)
            if body.get("ticket") is not None
            else None,
        )


@dataclass(frozen=True)
class Queued(Message):
    TYPE = "queued"
    id: int
    position: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Queued:
        return cls(count(body, "id"), count(body, "position"))


@dataclass(frozen=True)
class Admitted(Message):
    TYPE = "admitted"
    id: int
    queued_seconds: float = 0.0

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Admitted:
        return cls(count(body, "id"), seconds(body, "queued_seconds"))


@dataclass(frozen=True)
class Replicate(Message):
    """The central orders a secondary to copy a file from its peers."""

    TYPE = "replicate"
    file: FileInfo
    sources: tuple[SourceAddress, ...]
    ticket: Ticket | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Replicate:
        return cls(
            nested(body, "file", FileInfo.from_wire),
            source_list(body),
            nested(body, "ticket", Ticket.from_wire)
            if body.get("ticket") is not None
            else None,
        )


@dataclass(frozen=True)
class Verify(Message):
    """The central asks a secondary to hash its copy again."""

    TYPE = "verify"
    name: str
    sha256: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Verify:
        return cls(name(body, "name"), digest(body, "sha256"))


@dataclass(frozen=True)
class Withdraw(Message):
    """The central orders a secondary to move its copy of a removed file aside.

    An operator removed the file from the cluster; the content is named so a
    secondary never sets aside another content that now has the same name.
    """

    TYPE = "withdraw"
    name: str
    sha256: str

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Withdraw:
        return cls(name(body, "name"), digest(body, "sha256"))


# -- Downloader and chunk server --------------------------------------------


@dataclass(frozen=True)
class ServerWelcome(Message):
    """A chunk server accepts a hello and says its name."""

    TYPE = "welcome"
    id: int
    name: str
    version: int = PROTOCOL_VERSION

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ServerWelcome:
        version(body)
        return cls(count(body, "id"), text(body, "name", max_length=MAX_PEER_NAME))


def _optional_ticket(body: dict[str, Any]) -> Ticket | None:
    if body.get("ticket") is None:
        return None
    return nested(body, "ticket", Ticket.from_wire)


@dataclass(frozen=True)
class ManifestRequest(Message):
    TYPE = "manifest"
    id: int
    name: str
    sha256: str
    ticket: Ticket | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ManifestRequest:
        return cls(
            count(body, "id"),
            name(body, "name"),
            digest(body, "sha256"),
            _optional_ticket(body),
        )


@dataclass(frozen=True)
class ManifestReply(Message):
    TYPE = "manifest"
    id: int
    manifest: Manifest

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ManifestReply:
        return cls(count(body, "id"), nested(body, "manifest", Manifest.from_wire))


@dataclass(frozen=True)
class Get(Message):
    """Ask for chunk C{index} of one content."""

    TYPE = "get"
    id: int
    name: str
    sha256: str
    index: int
    ticket: Ticket | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Get:
        return cls(
            count(body, "id"),
            name(body, "name"),
            digest(body, "sha256"),
            count(body, "index", maximum=MAX_CHUNKS),
            _optional_ticket(body),
        )


@dataclass(frozen=True)
class ChunkHeader(Message):
    """Announces exactly C{length} raw bytes of chunk C{index}, which follow."""

    TYPE = "chunk"
    id: int
    index: int
    length: int

    @classmethod
    def parse(cls, body: dict[str, Any]) -> ChunkHeader:
        length = count(body, "length", maximum=2**40)
        if length == 0:
            raise ProtocolError("bad_request", "'length' of a chunk is at least 1")
        return cls(count(body, "id"), count(body, "index"), length)


Parser = Callable[[dict[str, Any]], Message]
Vocabulary = Mapping[str, Parser]


def _vocabulary(*classes: type[Message], **extra: Parser) -> dict[str, Parser]:
    table: dict[str, Parser] = {cls.TYPE: cls.parse for cls in classes}
    table.update(extra)
    table.setdefault(Error.TYPE, Error.parse)
    return table


#: What the central accepts, from clients and secondaries alike.
CENTRAL_INBOUND = _vocabulary(
    Auth,
    ListFiles,
    Locate,
    Admit,
    Report,
    Progress,
    BadReplica,
    FilesAdded,
    FilesRemoved,
    CatalogDone,
    Replicated,
    Verified,
    Activity,
    Ping,
    hello=parse_central_hello,
)
#: What a client accepts from the central.
CLIENT_FROM_CENTRAL = _vocabulary(Welcome, Catalog, Located, Queued, Admitted, Pong)
#: What a secondary accepts from the central.
SECONDARY_FROM_CENTRAL = _vocabulary(
    Welcome, Challenge, Catalog, Located, Replicate, Verify, Withdraw, Pong
)
#: What a chunk server accepts from a downloader.
CHUNK_SERVER_INBOUND = _vocabulary(ClientHello, ManifestRequest, Get, Ping)
#: What a downloader accepts from a chunk server.
DOWNLOADER_FROM_SERVER = _vocabulary(ServerWelcome, ManifestReply, ChunkHeader, Pong)


def parse(body: dict[str, Any], vocabulary: Vocabulary) -> Message:
    """The typed message C{body} is, for a receiver that knows C{vocabulary}."""
    kind = body["type"]
    parser = vocabulary.get(kind)
    if parser is None:
        raise ProtocolError("unknown_type", f"unknown message type {kind[:64]!r}")
    return parser(body)
