"""The web dashboard's JSON API against a real central, over real HTTP.

A central with ``--web`` and ``--web-token``, a rate-limited secondary and a
client download in flight, all in this process on 127.0.0.1: the replies
must show the download (with the client's progress), the secondary, the
catalog and the sampled series; the token, the methods and bad input are
checked; and a twistd central refuses to open an unprotected dashboard
beyond loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from redesdl.client.access import ClusterAccess
from redesdl.client.central import connect_central
from redesdl.client.job import GetJob
from redesdl.endpoints import central_endpoint
from redesdl.protocol.errors import RemoteError
from redesdl.protocol.wire import Progress

from .inprocess import Cluster

TOKEN = "t" * 20 + "-web-token"
SIZE = 4 * 1024 * 1024
#: Served at 1 MiB/s: a download of about 4 s.
RATE = "1M"
BIN = Path(sys.executable).parent


class Web:
    """GET requests to the dashboard, answered as (status, headers, JSON)."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.agent = Agent(reactor)

    async def call(
        self, path: str, token: str | None = TOKEN, method: bytes = b"GET"
    ) -> tuple[int, Headers, Any]:
        headers = Headers()
        if token is not None:
            headers.addRawHeader(b"authorization", f"Bearer {token}".encode())
        response = await self.agent.request(
            method, (self.base + path).encode(), headers
        )
        body = await readBody(response)
        kind = response.headers.getRawHeaders(b"content-type", [b""])[0]
        is_json = body and kind.startswith(b"application/json")
        value = json.loads(body) if is_json else body
        return response.code, response.headers, value

    async def get(self, path: str) -> Any:
        code, headers, value = await self.call(path)
        assert code == 200, (path, value)
        assert headers.getRawHeaders(b"content-type") == [
            b"application/json; charset=utf-8"
        ]
        assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
        return value


async def start_dashboard(cluster: Cluster) -> int:
    """Start C{cluster}'s central with a dashboard that needs L{TOKEN};
    return the dashboard's port."""
    token = cluster.root / "web.token"
    token.write_text(TOKEN + "\n")
    await cluster.start_central(
        "--web", "tcp:0:interface=127.0.0.1", "--web-token", str(token)
    )
    listening = await cluster.central.web.listener.whenListening()
    return int(listening.getHost().port)


@pytest_twisted.async_yield_fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Web]]:
    cluster = Cluster(tmp_path)
    try:
        web_port = await start_dashboard(cluster)
        await cluster.start_secondary("s1", "--rate-limit", RATE)
        (cluster.data("s1") / "videos").mkdir()
        (cluster.data("s1") / "videos" / "clip.bin").write_bytes(os.urandom(SIZE))
        await cluster.wait_for_sources("videos/clip.bin", 1)
        yield cluster, Web(web_port)
    finally:
        await cluster.stop()


def download(cluster: Cluster, target: Path) -> Deferred[Any]:
    job = GetJob(
        reactor,
        ClusterAccess(central_endpoint(reactor, cluster.central_address)),
        "alice",
        "videos/clip.bin",
        str(target),
    )
    return Deferred.fromCoroutine(job.run())


@pytest_twisted.ensureDeferred
async def test_the_api_shows_a_download_in_flight(
    running: tuple[Cluster, Web], tmp_path: Path
) -> None:
    cluster, web = running
    fetching = download(cluster, tmp_path / "clip.bin")

    async def active() -> Any:
        return (await web.get("/api/downloads"))["active"]

    reported: list[Any] = []

    async def progress_shown() -> bool:
        rows = await active()
        if rows and rows[0]["done"] is not None:
            reported.extend(rows)
            return True
        return False

    await eventually_async(progress_shown, "the client's progress on the dashboard")
    [row] = reported
    assert row["client"] == "alice" and row["file"] == "videos/clip.bin"
    assert row["size"] == SIZE
    assert 0 <= row["done"] <= SIZE and row["rate"] >= 0
    assert row["sources"] == 1 and row["since"] > 0

    summary = await web.get("/api/summary")
    assert summary["secondaries"] == {"up": 1, "down": 0}
    assert summary["files"] == 1 and summary["bytes"] == SIZE
    assert summary["downloads"] == {"active": 1, "queued": 0}
    assert summary["totals"] == {"completed": 0, "failed": 0, "bytes": 0}
    assert summary["alerts"] == []

    files = await web.get("/api/files?limit=10")
    assert files["total"] == 1 and files["more"] is False
    [entry] = files["files"]
    assert entry["name"] == "videos/clip.bin" and entry["size"] == SIZE
    assert entry["sources"] == 1 and entry["replicated"] is True
    assert (await web.get("/api/files?q=CLIP"))["files"] == [entry]
    assert (await web.get("/api/files?q=nothing"))["files"] == []

    async def served() -> bool:
        rows = (await web.get("/api/secondaries"))["secondaries"]
        return bool(rows) and rows[0]["rate"] > 0

    await eventually_async(served, "s1's served rate from its activity report")
    [s1] = (await web.get("/api/secondaries"))["secondaries"]
    assert s1["name"] == "s1" and s1["up"] is True and s1["link"] == "registered"
    assert s1["files"] == 1 and s1["served_bytes"] > 0
    assert s1["address"].startswith("127.0.0.1:") and s1["last_heartbeat"] > 0
    series = await web.get("/api/series?seconds=60")
    assert series["interval"] == 2.0
    columns = ("time", "served_rate", "queue", "active")
    assert len({len(series[c]) for c in columns}) == 1 and series["time"]
    assert max(series["active"]) == 1

    await fetching
    after = await web.get("/api/downloads")
    assert after["active"] == [] and after["queued_total"] == 0
    [ended] = after["recent"]
    assert ended["client"] == "alice" and ended["ok"] is True
    assert ended["bytes"] == SIZE and ended["reason"] == ""
    stats = await web.get("/api/stats")
    assert stats["totals"]["completed"] == 1
    assert stats["per_file"] == [
        {"file": "videos/clip.bin", "completed": 1, "failed": 0, "bytes": SIZE}
    ]
    assert stats["per_client"][0]["client"] == "alice"
    replication = await web.get("/api/replication")
    assert replication == {"backlog": 0, "copies": [], "failing": []}
    await cluster.stop_secondary("s1")

    async def down() -> bool:
        return (await web.get("/api/summary"))["secondaries"]["down"] == 1

    await eventually_async(down, "s1 shown down")
    [gone] = (await web.get("/api/secondaries"))["secondaries"]
    assert gone["up"] is False and gone["link"] == "down"
    alerts = (await web.get("/api/summary"))["alerts"]
    assert alerts[0]["level"] == "warning"
    assert alerts[0]["text"].startswith("secondary s1 is down")


@pytest_twisted.ensureDeferred
async def test_the_token_methods_and_bad_input(running: tuple[Cluster, Web]) -> None:
    _, web = running
    for token in (None, "wrong-token-of-some-length"):
        code, headers, body = await web.call("/api/summary", token=token)
        assert code == 401 and body["error"] == "unauthorized"
        assert headers.getRawHeaders(b"cache-control") == [b"no-store"]
        code, _, _ = await web.call("/", token=token)
        assert code == 401
    code, _, body = await web.call(f"/api/summary?token={TOKEN}", token=None)
    assert code == 200 and body["files"] == 1
    code, headers, page = await web.call("/")
    assert code == 200 and b"<html" in page
    assert headers.getRawHeaders(b"content-type")[0].startswith(b"text/html")
    code, headers, body = await web.call("/api/summary", method=b"POST")
    assert code == 405 and body["error"] == "method_not_allowed"
    assert headers.getRawHeaders(b"allow") == [b"GET, HEAD"]
    code, _, body = await web.call("/api/summary", method=b"HEAD")
    assert code == 200
    for path in ("/api/files?limit=abc", "/api/files?limit=0", "/api/series?seconds=x"):
        code, _, body = await web.call(path)
        assert code == 400 and body["error"] == "bad_request", path
        assert set(body) == {"error", "message"}
    code, _, body = await web.call("/api/files?after=%FF")
    assert code == 400
    for path in ("/api/nothing", "/elsewhere", "/static/", "/static/missing.js"):
        code, _, body = await web.call(path)
        assert code == 404 and body["error"] == "not_found", path
    code, _, _ = await web.call("/static/index.html", token=None)
    assert code == 200


@pytest_twisted.ensureDeferred
async def test_progress_from_a_client_without_a_slot_is_refused(
    running: tuple[Cluster, Web],
) -> None:
    cluster, web = running
    central = await connect_central(
        central_endpoint(reactor, cluster.central_address), "mallory", "m" * 32
    )
    try:
        with pytest.raises(RemoteError) as refused:
            await central.request(
                Progress(central.allocateId(), "videos/clip.bin", 1, 1.0, 1)
            )
        assert refused.value.code == "bad_request"
        assert (await web.get("/api/downloads"))["active"] == []
    finally:
        await central.close()


async def eventually_async(check: Any, what: str, timeout: float = 30.0) -> None:
    """Wait until the coroutine function C{check} returns true."""
    deadline = reactor.seconds() + timeout
    while not await check():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await deferLater(reactor, 0.2, lambda: None)


@pytest.mark.parametrize(
    ("web", "token"),
    [("tcp:0", False), ("tcp:0:interface=0.0.0.0", False), ("tcp6:0", False)],
)
def test_an_open_dashboard_beyond_loopback_is_refused_at_start(
    tmp_path: Path, web: str, token: bool
) -> None:
    result = subprocess.run(
        [
            str(BIN / "twistd"),
            "--pidfile=",
            "-n",
            "redesdl-central",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--state-dir",
            str(tmp_path / "central"),
            "--web",
            web,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    last = (result.stdout + result.stderr).strip().splitlines()[-1]
    assert "--web" in last and "--web-token" in last and "loopback" in last, last
