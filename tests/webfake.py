"""A fake of the central's web dashboard API, for developing and testing the page.

It serves the real static folder (``redesdl/central/web/static``) and canned
JSON replies that follow the dashboard contract, on 127.0.0.1 with
twisted.web. The replies change with time (downloads progress, rates wobble,
the queue grows and shrinks), so a browser test can see the page update live.

Run it by hand to look at the page::

    .venv/bin/python -m tests.webfake --port 8080 [--token SECRET]

It prints ``webfake listening on http://127.0.0.1:PORT/`` once it listens.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.web import resource, server, static

STATIC = Path(__file__).resolve().parent.parent / "redesdl/central/web/static"

#: The real central examines at most 10,000 names per search slice; the fake
#: examines fewer so that the page's "ask again from next_after" loop runs.
SCAN_LIMIT = 300

MiB = 1024 * 1024


class Static(static.File):
    """The static folder, with a charset on every text type."""

    contentTypes = {
        **static.File.contentTypes,
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".png": "image/png",
    }


def _catalog() -> list[dict[str, Any]]:
    """1,200 files with realistic names and sizes, sorted by name."""
    rng = random.Random(14)
    names = [f"videos/lecture-{i:04d}.mp4" for i in range(1, 1190)]
    names += [f"docs/notes-{i:02d}.pdf" for i in range(1, 8)]
    names += [
        "docs/manual.pdf",
        "videos/canción de cuna 🎵.mp4",
        "videos/<script>alert(1)</script>.mp4",
        "videos/第一课.mkv",
    ]
    files = []
    for name in sorted(names):
        sources = 4 if rng.random() > 0.05 else rng.choice([1, 2, 3])
        files.append(
            {
                "name": name,
                "size": rng.randint(20 * MiB, 1400 * MiB)
                if name.startswith("videos/")
                else rng.randint(80_000, 9 * MiB),
                "sha256": f"{rng.getrandbits(256):064x}",
                "sources": sources,
                "replicated": sources == 4,
                "downloads": {
                    "completed": rng.choice([0, 0, 1, 2, 3, 5, 8]),
                    "failed": rng.choice([0, 0, 0, 0, 1]),
                },
            }
        )
    return files


class FakeCentral:
    """The canned state of a small cluster, as a function of the time."""

    SECONDARIES = (
        # name, address, base rate (bytes/s), up
        ("almacén-β", "10.0.0.15:7101", 2.1 * MiB, True),
        ("s1", "10.0.0.11:7101", 6.0 * MiB, True),
        ("s2", "10.0.0.12:7101", 4.5 * MiB, True),
        ("s3", "10.0.0.13:7101", 3.2 * MiB, True),
        ("s4", "10.0.0.14:7101", 0.0, False),
    )

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.started = clock()
        self.files = _catalog()
        self.byName = {f["name"]: f for f in self.files}

    def elapsed(self) -> float:
        return self.clock() - self.started

    # --- pieces ---

    def rateOf(self, index: int, t: float) -> float | None:
        _, _, base, up = self.SECONDARIES[index]
        if not up:
            return None if t > self.started - 40 else 0.7 * MiB
        return base * (1 + 0.35 * math.sin(t / 17 + index * 1.7))

    def secondaryList(self) -> list[dict[str, Any]]:
        now = self.clock()
        out = []
        for index, (name, address, _, up) in enumerate(self.SECONDARIES):
            rate = self.rateOf(index, now)
            out.append(
                {
                    "name": name,
                    "address": address,
                    "up": up,
                    "files": 1200 if up else 1187,
                    "served_bytes": int(
                        (index + 2) * 7.3e9 + (rate or 0) * self.elapsed()
                    ),
                    "rate": rate if up else 0.0,
                    "last_heartbeat": now - (now % 2) if up else self.started - 40,
                    "boot": [2, 3, 1, 5, 4][index],
                    "link": "registered" if up else "lost",
                }
            )
        return out

    def active(self) -> list[dict[str, Any]]:
        t = self.elapsed()
        now = self.clock()
        first = self.byName["videos/lecture-0007.mp4"]
        song = self.byName["videos/canción de cuna 🎵.mp4"]
        rate1 = 5.5 * MiB * (1 + 0.2 * math.sin(t / 3))
        return [
            {
                "client": "alice",
                "file": first["name"],
                "size": first["size"],
                "done": min(first["size"], int(0.18 * first["size"] + 5.5 * MiB * t)),
                "rate": rate1,
                "sources": 3,
                "since": self.started - 25,
            },
            {
                "client": "José",
                "file": song["name"],
                "size": song["size"],
                "done": min(song["size"], int(0.42 * song["size"] + 1.6 * MiB * t)),
                "rate": 1.6 * MiB,
                "sources": 2,
                "since": self.started - 70,
            },
            {
                "client": "carol",
                "file": "docs/manual.pdf",
                "size": self.byName["docs/manual.pdf"]["size"],
                "done": None,
                "rate": None,
                "sources": None,
                "since": now - 1,
            },
        ]

    def queuedTotal(self) -> int:
        return 4 + int(self.elapsed() / 6) % 3

    # --- API replies ---

    def summary(self, args: dict[str, str]) -> dict[str, Any]:
        secondaries = self.secondaryList()
        stats = self.stats(args)
        return {
            "time": self.clock(),
            "secondaries": {
                "up": sum(s["up"] for s in secondaries),
                "down": sum(not s["up"] for s in secondaries),
            },
            "files": len(self.files),
            "bytes": sum(f["size"] for f in self.files),
            "downloads": {"active": 3, "queued": self.queuedTotal()},
            "replication": self.replicationCounts(),
            "totals": stats["totals"],
            "alerts": [
                {
                    "level": "warning",
                    "text": "secondary s4 is down (last heard "
                    f"{int(self.elapsed() + 40)} s ago)",
                },
                {
                    "level": "info",
                    "text": "61 files are not yet on every secondary",
                },
            ],
        }

    def replicationCounts(self) -> dict[str, int]:
        return {"backlog": max(12, 40 - int(self.elapsed() / 3)), "copying": 2}

    def secondaries(self, args: dict[str, str]) -> dict[str, Any]:
        after, limit = args.get("after", ""), _limit(args)
        rows = [s for s in self.secondaryList() if s["name"] > after]
        return {"secondaries": rows[:limit], "more": len(rows) > limit}

    def files_(self, args: dict[str, str]) -> dict[str, Any]:
        after, limit, q = args.get("after", ""), _limit(args), args.get("q", "")
        rest = [f for f in self.files if f["name"] > after]
        if not q:
            page = rest[:limit]
            return {
                "files": page,
                "more": len(rest) > limit,
                "total": len(self.files),
                "scanned": len(page),
                "next_after": page[-1]["name"] if page else after,
            }
        found: list[dict[str, Any]] = []
        scanned = 0
        for entry in rest[:SCAN_LIMIT]:
            scanned += 1
            if q.casefold() in entry["name"].casefold():
                found.append(entry)
                if len(found) == limit:
                    break
        last = rest[scanned - 1]["name"] if scanned else after
        return {
            "files": found,
            "more": scanned < len(rest),
            "total": len(self.files),
            "scanned": scanned,
            "next_after": last,
        }

    def downloads(self, args: dict[str, str]) -> dict[str, Any]:
        waiting = ["bob", "dmitri", "eve", "frank", "grace", "heidi"]
        total = self.queuedTotal()
        queued = [
            {
                "client": waiting[i],
                "file": self.files[(i * 37) % len(self.files)]["name"],
                "position": i + 1,
                "since": self.started - 30 + 9 * i,
            }
            for i in range(min(3, total))
        ]
        recent = [
            ("alice", "videos/lecture-0003.mp4", True, "", 120),
            ("bob", "videos/lecture-0112.mp4", False, "every source failed", 95),
            ("José", "videos/第一课.mkv", True, "", 64),
            ("carol", "docs/notes-02.pdf", True, "", 31),
            ("alice", "videos/lecture-0004.mp4", True, "", 12),
        ]
        return {
            "active": self.active(),
            "queued": queued,
            "queued_total": total,
            "recent": [
                {
                    "client": client,
                    "file": name,
                    "ok": ok,
                    "bytes": self.byName[name]["size"] if ok else 3 * MiB,
                    "reason": reason,
                    "time": self.started - ago,
                }
                for client, name, ok, reason, ago in reversed(recent)
            ],
        }

    def replication(self, args: dict[str, str]) -> dict[str, Any]:
        now = self.clock()
        return {
            "backlog": self.replicationCounts()["backlog"],
            "copies": [
                {
                    "secondary": "s3",
                    "file": "videos/lecture-1180.mp4",
                    "since": now - 4,
                },
                {
                    "secondary": "almacén-β",
                    "file": "videos/lecture-1181.mp4",
                    "since": now - 11,
                },
            ],
            "failing": [
                {
                    "secondary": "s4",
                    "file": "videos/lecture-1182.mp4",
                    "retry_at": now + 10 - self.elapsed() % 10,
                }
            ],
        }

    def stats(self, args: dict[str, str]) -> dict[str, Any]:
        perFile = [
            {
                "file": f["name"],
                "completed": f["downloads"]["completed"],
                "failed": f["downloads"]["failed"],
                "bytes": f["size"] * f["downloads"]["completed"],
            }
            for f in self.files
            if f["downloads"]["completed"] or f["downloads"]["failed"]
        ]
        clients = ["alice", "bob", "carol", "José"]
        perClient = []
        for i, client in enumerate(clients):
            mine = perFile[i::4]
            perClient.append(
                {
                    "client": client,
                    "completed": sum(f["completed"] for f in mine),
                    "failed": sum(f["failed"] for f in mine),
                    "bytes": sum(f["bytes"] for f in mine),
                    "files": [f["file"] for f in mine],
                }
            )
        done = sum(f["completed"] for f in perFile) + int(self.elapsed() / 20)
        return {
            "totals": {
                "completed": done,
                "failed": sum(f["failed"] for f in perFile),
                "bytes": sum(f["bytes"] for f in perFile),
            },
            "per_file": perFile,
            "per_client": perClient,
        }

    def series(self, args: dict[str, str]) -> dict[str, Any]:
        seconds = min(3600.0, float(args.get("seconds", "300")))
        now = self.clock()
        end = now - now % 2
        times = [end - 2 * i for i in range(int(seconds / 2), -1, -1)]
        perSecondary = {
            name: [self.rateOf(i, t) for t in times]
            for i, (name, *_) in enumerate(self.SECONDARIES)
        }
        served = [
            sum(v[k] or 0 for v in perSecondary.values()) for k in range(len(times))
        ]
        return {
            "interval": 2.0,
            "time": times,
            "served_rate": served,
            "per_secondary": perSecondary,
            "queue": [max(0, round(4 + 2.5 * math.sin(t / 40))) for t in times],
            "active": [max(0, round(2 + math.sin(t / 25))) for t in times],
        }


class BadRequestError(Exception):
    pass


def _limit(args: dict[str, str]) -> int:
    try:
        limit = int(args.get("limit", "50"))
    except ValueError:
        raise BadRequestError("limit must be a whole number") from None
    if not 1 <= limit <= 500:
        raise BadRequestError("limit must be between 1 and 500")
    return limit


class Api(resource.Resource):
    """``/api/NAME``: the contract's JSON replies, with optional bearer token."""

    isLeaf = True

    def __init__(self, central: FakeCentral, token: str | None) -> None:
        super().__init__()
        self.central = central
        self.token = token
        self.routes: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "summary": central.summary,
            "secondaries": central.secondaries,
            "files": central.files_,
            "downloads": central.downloads,
            "replication": central.replication,
            "stats": central.stats,
            "series": central.series,
        }

    def reply(self, request: Any, code: int, body: dict[str, Any]) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(body, ensure_ascii=False).encode()

    def render_GET(self, request: Any) -> bytes:
        if self.token is not None:
            expected = f"Bearer {self.token}".encode()
            if request.requestHeaders.getRawHeaders(b"authorization") != [expected]:
                return self.reply(
                    request,
                    401,
                    {"error": "unauthorized", "message": "a bearer token is needed"},
                )
        name = b"/".join(request.postpath).decode("utf-8", "replace")
        route = self.routes.get(name)
        if route is None:
            return self.reply(
                request, 404, {"error": "not-found", "message": f"no API {name!r}"}
            )
        args = {
            k.decode(): v[-1].decode("utf-8", "replace")
            for k, v in request.args.items()
        }
        try:
            return self.reply(request, 200, route(args))
        except (BadRequestError, ValueError) as error:
            return self.reply(
                request, 400, {"error": "bad-request", "message": str(error)}
            )


def make_site(token: str | None = None, central: FakeCentral | None = None) -> Any:
    """The fake central's web site: ``/``, ``/static/``, ``/api/``."""
    root = resource.Resource()
    root.putChild(b"", Static(str(STATIC / "index.html")))
    root.putChild(b"static", Static(str(STATIC)))
    root.putChild(b"api", Api(central or FakeCentral(), token))
    return server.Site(root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", default=None, help="require this bearer token")
    options = parser.parse_args(argv)
    port = reactor.listenTCP(  # type: ignore[attr-defined]
        options.port, make_site(options.token), interface="127.0.0.1"
    )
    print(f"webfake listening on http://127.0.0.1:{port.getHost().port}/", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
