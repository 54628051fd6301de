"""The dashboard's web site: the page, its static files and the JSON API.

Read-only: only GET and HEAD are answered (anything else is 405). With a
token (``--web-token``), the page and every ``/api/*`` path need it, as an
``Authorization: Bearer`` header or a ``token`` query parameter, compared in
constant time. ``/static/`` (the page's own scripts and styles, no data) is
served to anyone, from L{STATIC} alone and never as a listing, because a
browser fetches it without the page's header. Every error is JSON.

What a peer may make the central hold is bounded: a request with a body is
refused before any byte of the body is read (Twisted would store it in a
temporary file first), every reply closes its connection (pipelined
requests whose replies are never read piled up in memory), and the
listener caps its connections (L{redesdl.central.web.service}). Nothing is
logged per request, a HEAD included, and a static file is served whole,
never in byte ranges.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

from twisted.logger import Logger
from twisted.web import static
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from redesdl.central.web.api import MAX_LIMIT, BadQueryError, DashboardApi
from redesdl.central.web.series import INTERVAL, KEPT

#: The page and its files, shipped with the package.
STATIC = Path(__file__).parent / "static"
JSON_TYPE = b"application/json; charset=utf-8"
READ_METHODS = (b"GET", b"HEAD")
#: On every reply: never cached, never sniffed as another type, never framed,
#: scripts from the dashboard alone.
SECURITY_HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"content-security-policy": b"default-src 'self'; style-src 'self' "
    b"'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

log = Logger(namespace="redesdl.central.web")


def json_body(request: Request, code: int, value: Any) -> bytes:
    """C{value} as the reply's JSON body, with status C{code} (no body for a
    HEAD, which Twisted would otherwise log as one it had to drop)."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"cache-control", b"no-store")
    body = json.dumps(value, separators=(",", ":")).encode("ascii")
    return b"" if request.method == b"HEAD" else body


class ErrorPage(Resource):
    """A JSON error answering any method, such as a 401, 404 or 405."""

    isLeaf = True

    def __init__(
        self,
        code: int,
        error: str,
        message: str,
        headers: dict[bytes, bytes] | None = None,
    ) -> None:
        super().__init__()
        self._reply = (code, {"error": error, "message": message})
        self._headers = headers or {}

    def render(self, request: Request) -> bytes:
        for name, value in self._headers.items():
            request.setHeader(name, value)
        return json_body(request, *self._reply)

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        return self


def not_found() -> ErrorPage:
    return ErrorPage(404, "not_found", "no such page")


class Query:
    """A request's query parameters, read as the API needs them."""

    def __init__(self, request: Request) -> None:
        self._args = request.args or {}

    def text(self, name: str) -> str | None:
        values = self._args.get(name.encode())
        if not values:
            return None
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise BadQueryError(f"{name} is not UTF-8") from None

    def number(self, name: str, default: float, low: float, high: float) -> float:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise BadQueryError(f"{name} must be a number") from None
        if not low <= value <= high:
            raise BadQueryError(f"{name} must be between {low:g} and {high:g}")
        return value

    def whole(self, name: str, default: int, low: int, high: int) -> int:
        value = self.number(name, default, low, high)
        if value != int(value):
            raise BadQueryError(f"{name} must be a whole number")
        return int(value)


class Answer(Resource):
    """One API path: a function of the query, answered as JSON."""

    isLeaf = True

    def __init__(self, answer: Callable[[Query], dict[str, Any]]) -> None:
        super().__init__()
        self._answer = answer

    def render_GET(self, request: Request) -> bytes:
        try:
            value = self._answer(Query(request))
        except BadQueryError as e:
            return json_body(request, 400, {"error": "bad_request", "message": str(e)})
        except Exception:
            log.failure("failed to answer {path}", path=request.path)
            return json_body(
                request, 500, {"error": "internal", "message": "see the central's log"}
            )
        return json_body(request, 200, value)


def api_root(api: DashboardApi) -> Resource:
    """``/api/``: one L{Answer} per path."""
    paths: dict[str, Callable[[Query], dict[str, Any]]] = {
        "summary": lambda q: api.summary(),
        "secondaries": lambda q: api.secondaries(
            q.text("after"), q.whole("limit", 50, 1, MAX_LIMIT)
        ),
        "files": lambda q: api.files(
            q.text("after"), q.whole("limit", 50, 1, MAX_LIMIT), q.text("q") or None
        ),
        "downloads": lambda q: api.downloads(),
        "replication": lambda q: api.replication(),
        "stats": lambda q: api.stats(),
        "series": lambda q: api.series(
            min(q.number("seconds", 300, 1, 1e9), INTERVAL * KEPT)
        ),
    }
    root = _NotFoundRoot()
    for name, answer in paths.items():
        root.putChild(name.encode(), Answer(answer))
    return root


class _NotFoundRoot(Resource):
    """A folder whose unknown children are JSON 404s."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        return not_found()

    def render(self, request: Request) -> bytes:
        return not_found().render(request)


class WholeFile(static.File):
    """A file served whole: a request for many byte ranges made Twisted's
    producer fail, leaving a traceback in the log and the reply unended."""

    def render_GET(self, request: Request) -> Any:
        request.requestHeaders.removeHeader(b"range")
        return super().render_GET(request)


class StaticFolder(WholeFile):
    """The page's files: served from its folder, never listed."""

    childNotFound = not_found()
    indexNames: list[str] = []

    def directoryListing(self) -> IResource:
        return not_found()

    def getChild(self, path: bytes, request: Request) -> IResource:
        if b"\x00" in path:
            # FilePath refuses it with an error Twisted shows as a 500.
            return self.childNotFound
        return super().getChild(path, request)


class DashboardRoot(Resource):
    """The site's root: the method check, then the token, then the path."""

    def __init__(self, api: DashboardApi, token: str | None, folder: Path = STATIC):
        super().__init__()
        self._token = token.encode() if token is not None else None
        self._api = api_root(api)
        self._page = WholeFile(str(folder / "index.html"), b"text/html")
        self._static = StaticFolder(str(folder))

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        if request.method not in READ_METHODS:
            return ErrorPage(
                405,
                "method_not_allowed",
                "the dashboard is read-only: GET or HEAD only",
                {b"allow": b"GET, HEAD"},
            )
        if path == b"static":
            return self._static
        if not self._authorized(request):
            return ErrorPage(
                401,
                "unauthorized",
                "a token is needed: Authorization: Bearer TOKEN or ?token=TOKEN",
                {b"www-authenticate": b'Bearer realm="redesdl-central"'},
            )
        if path == b"" and not request.postpath:
            return self._page
        if path == b"api":
            return self._api
        return not_found()

    def render(self, request: Request) -> bytes:
        # Reached only for a request with an empty path, which HTTP never makes.
        return not_found().render(request)

    def _authorized(self, request: Request) -> bool:
        if self._token is None:
            return True
        offered = b""
        header = request.getHeader(b"authorization") or b""
        if isinstance(header, str):
            header = header.encode()
        if header[:7].lower() == b"bearer ":
            offered = header[7:].strip()
        else:
            offered = (request.args or {}).get(b"token", [b""])[0]
        return hmac.compare_digest(offered, self._token)


#: What a request that carries a body gets, before the body is read.
BODY_REFUSED = (
    b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


class _Discarded(BytesIO):
    """Where the bytes of a refused body go, if any arrive before the close."""

    def write(self, data: Any) -> int:
        return len(data)


class DashboardRequest(Request):
    """A request that may carry no body (the dashboard only reads)."""

    def gotLength(self, length: int | None) -> None:
        if length == 0:
            super().gotLength(length)
            return
        # A length, or a chunked body (None): refused before any of it is
        # read, rather than stored in a temporary file first.
        self.content = _Discarded()
        self.channel.transport.write(BODY_REFUSED)
        self.channel.transport.loseConnection()


class DashboardChannel(HTTPChannel):
    """One request per connection: the reply closes it."""

    def checkPersistence(self, request: Request, version: bytes) -> bool:
        # Twisted keeps reading pipelined requests while replies wait unsent,
        # so a peer that never reads would make the central hold them all.
        request.responseHeaders.setRawHeaders(b"connection", [b"close"])
        return False


class DashboardSite(Site):
    """The dashboard's Site: no line logged per request, no tracebacks shown."""

    noisy = False
    displayTracebacks = False
    protocol = DashboardChannel
    requestFactory = DashboardRequest

    def log(self, request: Any) -> None:
        pass


def dashboard_site(api: DashboardApi, token: str | None) -> DashboardSite:
    return DashboardSite(DashboardRoot(api, token))
