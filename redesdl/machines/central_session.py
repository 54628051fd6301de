"""The central's end of one connection, as an explicit state machine.

A connection starts awaiting ``hello``. A client is welcomed at once and then
moves between idle, queued (waiting for a download slot) and active (holding
one); a secondary is registered at once in an open cluster, or after it
answers the cluster-secret challenge. Every way the connection ends (our
hang-up, its hang-up, a timeout, a newer connection of the same secondary)
leads to closed, and only the transition into closed releases what the
session held, so a slot or a registration is released exactly once.

The machine decides; it acts only through two small interfaces
(L{redesdl.machines.central_verbs}): L{Connection} (send, refuse, hang up,
the two timers) and L{Central} (the registry, the admission queue,
statistics and tickets shared by every connection). Timeouts and the
connection's end are inputs, like messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.logger import Logger

from redesdl.machines.central_verbs import Central, Connection
from redesdl.machines.indexed import indexed
from redesdl.machines.rules import refuse_the_rest
from redesdl.protocol.auth import is_nonce, new_nonce
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import (
    PROTOCOL_VERSION,
    Activity,
    Admit,
    Admitted,
    Auth,
    BadReplica,
    CatalogDone,
    Challenge,
    ClientHello,
    Error,
    FilesAdded,
    FilesRemoved,
    ListFiles,
    Locate,
    Message,
    Ping,
    Pong,
    Progress,
    Queued,
    Replicated,
    Report,
    SecondaryHello,
    Verified,
    Welcome,
    peer_name_problem,
)

#: Shortest client token accepted; clients make theirs of 64 hex digits.
MIN_TOKEN_LENGTH = 16

STATES = {
    "awaiting_hello": "connected; only hello (and ping) mean anything yet",
    "challenging": "a secondary must answer the cluster-secret challenge (auth)",
    "registered_secondary": "a secondary offered to clients; it reports and heartbeats",
    "client_idle": "a client that may list, locate and ask for a download slot",
    "client_queued": "a client waiting in line for a download slot",
    "client_active": "a client holding a download slot; tickets only for its file",
    "closed": "the connection is ending; what it held was released once",
}
#: Outputs that only refuse (drawn in the docs' table, not as edges).
REFUSALS = frozenset(
    {
        "hello_first",
        "answer_challenge_first",
        "hello_said",
        "forbidden",
        "closing",
        "one_download_at_a_time",
        "forbid_bad_replica",
        "no_download_held",
    }
)

log = Logger(namespace="redesdl.central.session")


class CentralSession(Protocol):
    """The inputs: one per message type, then events, then decisions taken."""

    def hello(self, message: ClientHello | SecondaryHello) -> None: ...
    def auth(self, message: Auth) -> None: ...
    def list_files(self, message: ListFiles) -> None: ...
    def locate(self, message: Locate) -> None: ...
    def admit(self, message: Admit) -> None: ...
    def report(self, message: Report) -> None: ...
    def bad_replica(self, message: BadReplica) -> None: ...
    def progress(self, message: Progress) -> None: ...
    def files_added(self, message: FilesAdded) -> None: ...
    def files_removed(self, message: FilesRemoved) -> None: ...
    def catalog_done(self, message: CatalogDone) -> None: ...
    def replicated(self, message: Replicated) -> None: ...
    def verified(self, message: Verified) -> None: ...
    def activity(self, message: Activity) -> None: ...
    def ping(self, message: Ping) -> None: ...

    def slot_granted(self, waited: float) -> None:
        """The admission queue gave this client its slot."""

    def queue_moved(self, position: int) -> None:
        """This client's place in the admission queue changed."""

    def slot_idle(self) -> None:
        """The slot timer ran out: no locate of the slot's file for too long."""

    def silence(self) -> None:
        """Nothing arrived for the idle (or heartbeat) timeout."""

    def replaced(self) -> None:
        """A newer connection registered the same secondary."""

    def connection_lost(self) -> None: ...

    # Decisions an output took, fed back so the table shows where they lead.
    def client_welcomed(self) -> None: ...
    def secondary_challenged(self) -> None: ...
    def secondary_welcomed(self) -> None: ...
    def secondary_refused(
        self, error: ProtocolError, request_id: int | None
    ) -> None: ...
    def slot_asked(self) -> None: ...
    def download_reported(self, message: Report) -> None: ...


#: The input each message type calls (the wire type ``list`` is a builtin here).
INPUT_FOR_TYPE = {
    "hello": "hello",
    "auth": "auth",
    "list": "list_files",
    "locate": "locate",
    "admit": "admit",
    "report": "report",
    "bad_replica": "bad_replica",
    "progress": "progress",
    "files_added": "files_added",
    "files_removed": "files_removed",
    "catalog_done": "catalog_done",
    "replicated": "replicated",
    "verified": "verified",
    "activity": "activity",
    "ping": "ping",
}


@dataclass
class Slot:
    """The download slot a client asked for, then holds."""

    file: str
    admit_id: int
    #: Sources this download already reported corrupt (once per source).
    reported: set[str] = field(default_factory=set)


@dataclass
class SessionCore:
    """What one session knows, whatever its state."""

    connection: Connection
    central: Central
    role: str | None = None
    name: str = ""
    token: str = ""
    record: Any = None
    #: (the secondary's hello, our nonce) while it answers the challenge.
    challenge: tuple[SecondaryHello, str] | None = None
    slot: Slot | None = None
    #: The file of a slot taken back, whose late report still counts once.
    expired: str | None = None
    #: What any message gets once the session is closed.
    closing: ProtocolError = field(
        default_factory=lambda: ProtocolError(
            "bad_request", "this connection is closing"
        )
    )


def _id(message: Message) -> int | None:
    return getattr(message, "id", None)


def _refuse(core: SessionCore, message: Message, code: str, why: str) -> None:
    core.connection.refuse(message.TYPE, ProtocolError(code, why), _id(message))


# -- Outputs: what each transition does ---------------------------------------


def greet(inputs: CentralSession, core: SessionCore, message: Any) -> None:
    # The parser refuses these too; the machine does not rely on it.
    problem = peer_name_problem(message.name)
    if problem is not None:
        _refuse(core, message, "bad_request", problem)
        return
    if isinstance(message, ClientHello):
        _greet_client(inputs, core, message)
        return
    core.name = message.name
    secret = core.central.secret
    if secret is None:
        _register(inputs, core, message, None)
        return
    if not is_nonce(message.nonce):
        why = "it has no cluster secret (--secret-file)"
        inputs.secondary_refused(ProtocolError("unauthenticated", why), message.id)
        return
    ours = new_nonce()
    core.challenge = (message, ours)
    core.connection.send(Challenge(message.id, ours))
    inputs.secondary_challenged()


def _greet_client(
    inputs: CentralSession, core: SessionCore, hello: ClientHello
) -> None:
    token = hello.token or ""
    if len(token) < MIN_TOKEN_LENGTH:
        why = f"a client token has at least {MIN_TOKEN_LENGTH} characters"
        _refuse(core, hello, "bad_request", why)
        return
    if not core.central.may_use_client_name(hello.name, token):
        why = (
            f"the client name {hello.name!r} belongs to another client; "
            "choose another with --name"
        )
        _refuse(core, hello, "client_name_taken", why)
        return
    core.role, core.name, core.token = "client", hello.name, token
    core.connection.send(Welcome(hello.id, version=PROTOCOL_VERSION))
    inputs.client_welcomed()


def _register(
    inputs: CentralSession,
    core: SessionCore,
    hello: SecondaryHello,
    proof: str | None,
    request_id: int | None = None,
) -> None:
    try:
        record = core.central.register_secondary(hello, core.connection)
    except ProtocolError as e:
        inputs.secondary_refused(e, hello.id if request_id is None else request_id)
        return
    core.role, core.name, core.record = "secondary", hello.name, record
    core.connection.send(
        Welcome(hello.id if request_id is None else request_id, proof=proof)
    )
    inputs.secondary_welcomed()


def check_proof(inputs: CentralSession, core: SessionCore, message: Auth) -> None:
    assert core.challenge is not None and core.central.secret is not None
    hello, ours = core.challenge
    core.challenge = None
    secret = core.central.secret
    theirs = hello.nonce
    if not secret.verify(message.proof, "secondary", ours, theirs, hello.secondary_id):
        why = "wrong cluster secret"
        inputs.secondary_refused(ProtocolError("unauthenticated", why), message.id)
        return
    _register(inputs, core, hello, secret.mac("central", theirs, ours), message.id)


def refuse_secondary(
    inputs: CentralSession,
    core: SessionCore,
    error: ProtocolError,
    request_id: int | None,
) -> None:
    core.connection.complain(
        "refused secondary {name} from {peer}: {why}", name=core.name, why=error.message
    )
    core.connection.send(Error(error.code, error.message, request_id))
    core.connection.hang_up(None)


def watch_heartbeats(inputs: CentralSession, core: SessionCore) -> None:
    core.connection.watch_silence(core.central.heartbeat_timeout)


def list_page(inputs: CentralSession, core: SessionCore, message: ListFiles) -> None:
    core.connection.send(core.central.catalog_page(message))


def locate_without_ticket(
    inputs: CentralSession, core: SessionCore, message: Locate
) -> None:
    _locate(core, message, None)


def locate_as_downloader(
    inputs: CentralSession, core: SessionCore, message: Locate
) -> None:
    """Sources, and a ticket only for the file whose slot this client holds."""
    assert core.slot is not None
    if message.name != core.slot.file:
        _locate(core, message, None)
        return
    # Any locate of its file is the downloader's sign of life, found or not.
    core.connection.watch_slot(core.central.slot_idle_timeout)
    _locate(core, message, core.name)


def _locate(core: SessionCore, message: Locate, holder: str | None) -> None:
    try:
        located = core.central.locate(message, holder, core.name)
    except ProtocolError as e:
        core.connection.refuse(message.TYPE, e, message.id)
        return
    core.connection.send(located)


def pong(inputs: CentralSession, core: SessionCore, message: Ping) -> None:
    core.connection.send(Pong(message.id))


def heartbeat(inputs: CentralSession, core: SessionCore, message: Ping) -> None:
    core.central.secondary_said(core.record, message)
    core.connection.send(Pong(message.id))


def secondary_report(inputs: CentralSession, core: SessionCore, message: Any) -> None:
    core.central.secondary_said(core.record, message)


def check_admit(inputs: CentralSession, core: SessionCore, message: Admit) -> None:
    if not core.central.in_catalog(message.name):
        _refuse(core, message, "not_found", f"no file named {message.name!r}")
        return
    core.slot = Slot(message.name, message.id)
    core.expired = None
    inputs.slot_asked()


def queue_for_slot(inputs: CentralSession, core: SessionCore) -> None:
    assert core.slot is not None
    core.connection.watch_silence(None)
    core.central.ask_slot(core.connection, core.name, core.slot.file, inputs)


def tell_position(inputs: CentralSession, core: SessionCore, position: int) -> None:
    assert core.slot is not None
    core.connection.send(Queued(core.slot.admit_id, position))


def start_download(inputs: CentralSession, core: SessionCore, waited: float) -> None:
    assert core.slot is not None
    core.connection.watch_silence(core.central.idle_timeout)
    core.connection.watch_slot(core.central.slot_idle_timeout)
    core.connection.send(Admitted(core.slot.admit_id, round(waited, 3)))


def one_download_at_a_time(
    inputs: CentralSession, core: SessionCore, message: Admit
) -> None:
    why = "one download per connection: report the end of the current one first"
    _refuse(core, message, "bad_request", why)


def report_without_slot(
    inputs: CentralSession, core: SessionCore, message: Report
) -> None:
    if message.name == core.expired and core.slot is None:
        # A slow end (a long final check) after its slot was taken back:
        # the download still happened; count it, there is nothing to free.
        core.expired = None
        core.central.download_ended(core.name, core.token, message)
        return
    if not core.central.in_catalog(message.name):
        _refuse(core, message, "not_found", f"no file named {message.name!r}")
        return
    why = f"no download of {message.name!r} was admitted on this connection"
    _refuse(core, message, "bad_request", why)


def check_report(inputs: CentralSession, core: SessionCore, message: Report) -> None:
    assert core.slot is not None
    if message.name != core.slot.file:
        report_without_slot(inputs, core, message)
        return
    inputs.download_reported(message)


def end_download(inputs: CentralSession, core: SessionCore, message: Report) -> None:
    core.connection.watch_slot(None)
    core.slot = None
    core.central.download_ended(core.name, core.token, message)
    core.central.release_slot(core.connection)


def take_slot_back(inputs: CentralSession, core: SessionCore) -> None:
    assert core.slot is not None
    slot, core.slot = core.slot, None
    core.expired = slot.file
    core.connection.watch_slot(None)
    seconds = core.central.slot_idle_timeout
    log.info(
        "took back {client}'s slot for {file}: no locate for {seconds} s",
        client=core.name,
        file=slot.file,
        seconds=seconds,
    )
    core.central.release_slot(core.connection)
    why = f"slot taken back: no locate of {slot.file!r} for {seconds:g} s"
    core.connection.send(Error("slot_expired", why, slot.admit_id))


def note_bad_replica(
    inputs: CentralSession, core: SessionCore, message: BadReplica
) -> None:
    assert core.slot is not None
    if message.name != core.slot.file:
        why = "only a client downloading a file may report its copies"
        _refuse(core, message, "forbidden", why)
        return
    if message.source in core.slot.reported:
        return
    core.slot.reported.add(message.source)
    core.central.bad_replica(core.name, message)


def forbid_bad_replica(
    inputs: CentralSession, core: SessionCore, message: BadReplica
) -> None:
    why = "only a client downloading a file may report its copies"
    _refuse(core, message, "forbidden", why)


def note_progress(inputs: CentralSession, core: SessionCore, message: Progress) -> None:
    assert core.slot is not None
    if message.file != core.slot.file:
        why = f"this connection's slot is for {core.slot.file!r}, not {message.file!r}"
        _refuse(core, message, "bad_request", why)
        return
    core.central.download_progress(core.connection, message)


def no_download_held(
    inputs: CentralSession, core: SessionCore, message: Progress
) -> None:
    why = "no download holds a slot on this connection"
    _refuse(core, message, "bad_request", why)


def close_silent(inputs: CentralSession, core: SessionCore) -> None:
    core.connection.close_silent(core.central.idle_timeout)
    _release(core)


def drop_hung_secondary(inputs: CentralSession, core: SessionCore) -> None:
    log.warn(
        "secondary {name} said nothing for {seconds} s; taking it for hung",
        name=core.name,
        seconds=core.central.heartbeat_timeout,
    )
    core.connection.abort()
    _release(core)


def step_aside(inputs: CentralSession, core: SessionCore) -> None:
    """A newer connection of this secondary took over its registration."""
    core.record = None
    core.closing = ProtocolError(
        "not_registered", "a newer connection replaced this one: register again"
    )
    core.connection.hang_up(None)
    _release(core)


def release(inputs: CentralSession, core: SessionCore, *args: Any) -> None:
    _release(core)


def _release(core: SessionCore) -> None:
    """Everything the session held, given back; called only entering closed."""
    core.connection.watch_silence(None)
    core.connection.watch_slot(None)
    if core.slot is not None:
        core.slot = None
        core.central.release_slot(core.connection)
    if core.record is not None:
        record, core.record = core.record, None
        core.central.secondary_gone(record)


# -- Refusals by rule --------------------------------------------------------


def hello_first(inputs: CentralSession, core: SessionCore, message: Message) -> None:
    _refuse(core, message, "hello_first", "say hello first")


def answer_challenge_first(
    inputs: CentralSession, core: SessionCore, message: Message
) -> None:
    _refuse(core, message, "hello_first", "answer the challenge (auth) first")


def hello_said(inputs: CentralSession, core: SessionCore, message: Message) -> None:
    _refuse(core, message, "bad_request", "hello was already said")


def forbidden(inputs: CentralSession, core: SessionCore, message: Message) -> None:
    _refuse(core, message, "forbidden", f"a {core.role} may not do this")


def closing(inputs: CentralSession, core: SessionCore, message: Message) -> None:
    # Answered, but not logged: a peer may well have sent it before it
    # learned that we hung up, and its complaints must not crowd out others.
    error = core.closing
    core.connection.send(Error(error.code, error.message, _id(message)))


def ignore(inputs: CentralSession, core: SessionCore, *args: Any) -> None:
    """An event with no meaning in this state (a timer that raced its cancel)."""


# -- The table ---------------------------------------------------------------

builder = TypeMachineBuilder(CentralSession, SessionCore)
awaiting_hello = builder.state("awaiting_hello")
challenging = builder.state("challenging")
registered_secondary = builder.state("registered_secondary")
client_idle = builder.state("client_idle")
client_queued = builder.state("client_queued")
client_active = builder.state("client_active")
closed = builder.state("closed")

ALL_STATES = [
    awaiting_hello,
    challenging,
    registered_secondary,
    client_idle,
    client_queued,
    client_active,
    closed,
]
OPEN_STATES = ALL_STATES[:-1]
CLIENT_STATES = [client_idle, client_queued, client_active]
On = CentralSession
MESSAGE_INPUTS = [getattr(On, name) for name in INPUT_FOR_TYPE.values()]
SECONDARY_MESSAGES = [
    On.files_added,
    On.files_removed,
    On.catalog_done,
    On.replicated,
    On.verified,
    On.activity,
]
CLIENT_MESSAGES = [On.admit, On.report, On.bad_replica, On.progress]
EVENT_INPUTS = [
    On.slot_granted,
    On.queue_moved,
    On.slot_idle,
    On.silence,
    On.replaced,
    On.connection_lost,
    On.client_welcomed,
    On.secondary_challenged,
    On.secondary_welcomed,
    On.secondary_refused,
    On.slot_asked,
    On.download_reported,
]

awaiting_hello.upon(On.hello).loop()(greet)
awaiting_hello.upon(On.client_welcomed).to(client_idle).returns(None)
awaiting_hello.upon(On.secondary_welcomed).to(registered_secondary)(watch_heartbeats)
awaiting_hello.upon(On.secondary_challenged).to(challenging).returns(None)
awaiting_hello.upon(On.secondary_refused).to(closed)(refuse_secondary)
challenging.upon(On.auth).loop()(check_proof)
challenging.upon(On.secondary_welcomed).to(registered_secondary)(watch_heartbeats)
challenging.upon(On.secondary_refused).to(closed)(refuse_secondary)

for state in OPEN_STATES:
    state.upon(On.connection_lost).to(closed)(release)
for state in (awaiting_hello, challenging, client_idle, client_active):
    state.upon(On.silence).to(closed)(close_silent)
    state.upon(On.ping).loop()(pong)
client_queued.upon(On.ping).loop()(pong)
registered_secondary.upon(On.silence).to(closed)(drop_hung_secondary)
registered_secondary.upon(On.replaced).to(closed)(step_aside)
registered_secondary.upon(On.ping).loop()(heartbeat)
for an_input in SECONDARY_MESSAGES:
    registered_secondary.upon(an_input).loop()(secondary_report)

for state in (registered_secondary, client_idle, client_queued):
    state.upon(On.list_files).loop()(list_page)
    state.upon(On.locate).loop()(locate_without_ticket)
client_active.upon(On.list_files).loop()(list_page)
client_active.upon(On.locate).loop()(locate_as_downloader)

client_idle.upon(On.admit).loop()(check_admit)
client_idle.upon(On.slot_asked).to(client_queued)(queue_for_slot)
client_idle.upon(On.report).loop()(report_without_slot)
client_idle.upon(On.bad_replica).loop()(forbid_bad_replica)
client_queued.upon(On.queue_moved).loop()(tell_position)
client_queued.upon(On.slot_granted).to(client_active)(start_download)
client_queued.upon(On.admit).loop()(one_download_at_a_time)
client_queued.upon(On.report).loop()(report_without_slot)
client_queued.upon(On.bad_replica).loop()(forbid_bad_replica)
client_active.upon(On.admit).loop()(one_download_at_a_time)
client_active.upon(On.report).loop()(check_report)
client_active.upon(On.download_reported).to(client_idle)(end_download)
client_active.upon(On.bad_replica).loop()(note_bad_replica)
client_active.upon(On.slot_idle).to(client_idle)(take_slot_back)
client_active.upon(On.progress).loop()(note_progress)
for state in (client_idle, client_queued):
    state.upon(On.progress).loop()(no_download_held)

refuse_the_rest([awaiting_hello], MESSAGE_INPUTS, hello_first)
refuse_the_rest([challenging], MESSAGE_INPUTS, answer_challenge_first)
refuse_the_rest(OPEN_STATES[2:], [On.hello, On.auth], hello_said)
refuse_the_rest([registered_secondary], CLIENT_MESSAGES, forbidden)
refuse_the_rest(CLIENT_STATES, SECONDARY_MESSAGES, forbidden)
refuse_the_rest([closed], MESSAGE_INPUTS, closing)
refuse_the_rest(ALL_STATES, EVENT_INPUTS, ignore)

MACHINE = indexed(builder.build())
