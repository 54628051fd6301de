"""A real central and three secondaries in-process, over TCP on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed

from redesdl.client.access import ClusterAccess
from redesdl.client.central import connect_central
from redesdl.client.job import GetJob
from redesdl.endpoints import central_endpoint
from redesdl.manifest import MIN_CHUNK_SIZE, build_manifest, chunk_size_for
from redesdl.protocol.errors import RemoteError
from redesdl.transfer.download import Download
from redesdl.transfer.errors import (
    DestinationExistsError,
    IntegrityError,
    NoLiveSourceError,
)
from redesdl.transfer.resume import save_state

from .damage import rot
from .inprocess import Cluster, eventually, sha256_file


@pytest_twisted.async_yield_fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    running = Cluster(tmp_path)
    try:
        await running.start_central()
        for name in ("s1", "s2", "s3"):
            await running.start_secondary(name)
        yield running
    finally:
        await running.stop()


async def locate(cluster: Cluster, name: str):
    """Ask the central where C{name} is, as a client would."""
    central = await connect_central(
        central_endpoint(reactor, cluster.central_address), "tester"
    )
    try:
        return await central.locate(name)
    finally:
        central.close()


async def fetch(cluster: Cluster, name: str, destination: Path, **options):
    info, sources = await locate(cluster, name)
    return await Download(
        info, sources, str(destination), reactor=reactor, **options
    ).start()


def place(cluster: Cluster, secondary: str, name: str, data: bytes) -> str:
    path = cluster.data(secondary) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


SIZES = [0, 1, MIN_CHUNK_SIZE, MIN_CHUNK_SIZE + 1, 3 * MIN_CHUNK_SIZE + 17]


@pytest.mark.parametrize("size", SIZES)
@pytest_twisted.ensureDeferred
async def test_every_size_downloads_intact(
    cluster: Cluster, tmp_path: Path, size: int
) -> None:
    sha = place(cluster, "s1", "f.bin", os.urandom(size))
    await cluster.wait_for_sources("f.bin", 3)
    result = await fetch(cluster, "f.bin", tmp_path / "out.bin")
    assert sha256_file(tmp_path / "out.bin") == sha == result.sha256
    assert result.size == size == sum(result.sources.values())
    assert not (tmp_path / "out.bin.part").exists()


@pytest_twisted.ensureDeferred
async def test_chunks_come_from_every_source(cluster: Cluster, tmp_path: Path) -> None:
    data = os.urandom(12 * MIN_CHUNK_SIZE)
    for name in ("s1", "s2", "s3"):
        place(cluster, name, "sub/many.bin", data)
    await cluster.wait_for_sources("sub/many.bin", 3)
    result = await fetch(cluster, "sub/many.bin", tmp_path / "many.bin")
    assert sorted(result.sources) == ["s1", "s2", "s3"]
    assert sha256_file(tmp_path / "many.bin") == hashlib.sha256(data).hexdigest()


@pytest_twisted.ensureDeferred
async def test_replication_copies_a_file_to_every_secondary(cluster: Cluster) -> None:
    sha = place(cluster, "s2", "deep/dir/new.bin", os.urandom(5 * MIN_CHUNK_SIZE + 3))
    await cluster.wait_for_sources("deep/dir/new.bin", 3)
    for name in ("s1", "s3"):
        assert sha256_file(cluster.data(name) / "deep/dir/new.bin") == sha
        assert not list((cluster.data(name) / ".redesdl-incoming").iterdir())


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_a_lying_replica_costs_a_chunk_not_the_file(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(8 * MIN_CHUNK_SIZE)
    sha = place(cluster, "s1", "rot.bin", data)
    await cluster.wait_for_sources("rot.bin", 3)
    rot(cluster.data("s2") / "rot.bin", every=MIN_CHUNK_SIZE)
    info, sources = await locate(cluster, "rot.bin")
    download = Download(info, sources, str(tmp_path / "rot.bin"), reactor=reactor)
    result = await download.start()
    assert sha256_file(tmp_path / "rot.bin") == sha
    assert result.sources.get("s2", 0) == 0
    failures = [e for e in download.timeline if e["event"] == "failed"]
    mismatches = [f for f in failures if f["reason"] == "chunk hash mismatch"]
    assert all(f["source"] == "s2" for f in mismatches)
    for failure in failures:
        assert any(
            e["event"] == "verified"
            and e["chunk"] == failure["chunk"]
            and e["source"] not in (failure["source"], "s2")
            for e in download.timeline
        )


@pytest_twisted.ensureDeferred
async def test_existing_destination_is_not_overwritten(
    cluster: Cluster, tmp_path: Path
) -> None:
    place(cluster, "s1", "x.bin", b"new content")
    await cluster.wait_for_sources("x.bin", 1)
    target = tmp_path / "x.bin"
    target.write_bytes(b"precious")
    with pytest.raises(DestinationExistsError):
        await fetch(cluster, "x.bin", target)
    assert target.read_bytes() == b"precious"
    await fetch(cluster, "x.bin", target, overwrite=True)
    assert target.read_bytes() == b"new content"


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_losing_every_source_keeps_the_part(
    cluster: Cluster, tmp_path: Path
) -> None:
    place(cluster, "s1", "gone.bin", os.urandom(4 * MIN_CHUNK_SIZE))
    await cluster.wait_for_sources("gone.bin", 3)
    info, sources = await locate(cluster, "gone.bin")
    await cluster.stop_secondaries()
    with pytest.raises(NoLiveSourceError):
        await Download(
            info, sources, str(tmp_path / "gone.bin"), reactor=reactor
        ).start()
    assert not (tmp_path / "gone.bin").exists()


@pytest_twisted.ensureDeferred
async def test_unknown_file_is_a_typed_error(cluster: Cluster) -> None:
    with pytest.raises(RemoteError) as raised:
        await locate(cluster, "missing.bin")
    assert raised.value.code == "not_found"


@pytest_twisted.ensureDeferred
async def test_a_secondary_dying_mid_download_changes_nothing(
    cluster: Cluster, tmp_path: Path
) -> None:
    size = 48 * 1024 * 1024
    data = os.urandom(size)
    sha = place(cluster, "s1", "big.bin", data)
    await cluster.wait_for_sources("big.bin", 3)
    info, sources = await locate(cluster, "big.bin")
    download = Download(info, sources, str(tmp_path / "big.bin"), reactor=reactor)
    finished = download.start()
    await eventually(
        lambda: download.bytesDone >= chunk_size_for(size), "the first chunk"
    )
    for connection in list(cluster.secondaries["s3"].listener.factory.connections):
        connection.transport.abortConnection()
    await cluster.stop_secondary("s3")
    result = await finished
    assert sha256_file(tmp_path / "big.bin") == sha
    assert result.bytes_fetched == size


@pytest.fixture
def memory_folder(tmp_path: Path) -> Iterator[Path]:
    """A folder in RAM where there is one, so writing 4 GiB costs no disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="redesdl-test-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest_twisted.ensureDeferred
async def test_a_file_over_4_gib(tmp_path: Path, memory_folder: Path) -> None:
    running = Cluster(tmp_path)
    try:
        await running.start_central()
        big = running.data("s1") / "sparse.bin"
        with open(big, "wb") as f:
            f.truncate(4 * 1024**3 + 1)
            f.seek(4 * 1024**3)
            f.write(b"!")
        await running.start_secondary("s1")
        await running.wait_for_sources("sparse.bin", 1, timeout=120)
        result = await fetch(running, "sparse.bin", memory_folder / "out.bin")
        assert result.size == 4 * 1024**3 + 1
        expected = hashlib.sha256()
        zeros = bytes(1 << 24)
        for _ in range(4 * 1024**3 // len(zeros)):
            expected.update(zeros)
        expected.update(b"!")
        assert result.sha256 == expected.hexdigest()
        assert sha256_file(memory_folder / "out.bin") == expected.hexdigest()
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_files_removed_everywhere_leave_no_source(cluster: Cluster) -> None:
    place(cluster, "s1", "brief.txt", b"short-lived")
    await cluster.wait_for_sources("brief.txt", 3)
    for name in ("s1", "s2", "s3"):
        (cluster.data(name) / "brief.txt").unlink()
    await eventually(lambda: cluster.sources_of("brief.txt") == 0, "the removals")


@pytest_twisted.ensureDeferred
async def test_two_names_with_the_same_content_both_replicate(cluster: Cluster) -> None:
    data = os.urandom(3 * MIN_CHUNK_SIZE)
    sha = place(cluster, "s1", "one.bin", data)
    place(cluster, "s1", "copies/one.bin", data)
    await cluster.wait_for_sources("one.bin", 3)
    await cluster.wait_for_sources("copies/one.bin", 3)
    for name in ("s2", "s3"):
        assert sha256_file(cluster.data(name) / "one.bin") == sha
        assert sha256_file(cluster.data(name) / "copies/one.bin") == sha


@pytest_twisted.ensureDeferred
async def test_a_source_that_comes_back_finishes_the_download(
    cluster: Cluster, tmp_path: Path
) -> None:
    sha = place(cluster, "s1", "back.bin", os.urandom(6 * MIN_CHUNK_SIZE))
    await cluster.wait_for_sources("back.bin", 3)
    info, sources = await locate(cluster, "back.bin")
    await cluster.stop_secondaries()

    async def current() -> list:
        try:
            return (await locate(cluster, "back.bin"))[1]
        except RemoteError:
            return []

    download = Download(
        info,
        sources,
        str(tmp_path / "back.bin"),
        reactor=reactor,
        findSources=lambda: Deferred.fromCoroutine(current()),
        retryFor=30,
        refreshInterval=0.2,
    )
    finished = download.start()
    await eventually(lambda: len(download.sourceErrors) == 3, "every source to fail")
    await cluster.start_secondary("s2")
    result = await finished
    assert result.sources == {"s2": 6 * MIN_CHUNK_SIZE}
    assert sha256_file(tmp_path / "back.bin") == sha


@pytest_twisted.ensureDeferred
async def test_giving_up_after_retry_for_keeps_the_part(
    cluster: Cluster, tmp_path: Path
) -> None:
    place(cluster, "s1", "gone.bin", os.urandom(2 * MIN_CHUNK_SIZE))
    await cluster.wait_for_sources("gone.bin", 3)
    info, sources = await locate(cluster, "gone.bin")
    await cluster.stop_secondaries()
    download = Download(
        info,
        sources,
        str(tmp_path / "gone.bin"),
        reactor=reactor,
        findSources=lambda: succeed([]),
        retryFor=0.5,
    )
    with pytest.raises(NoLiveSourceError) as raised:
        await download.start()
    assert "none came back within 0.5 s" in str(raised.value)


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_only_lying_sources_is_an_integrity_error(
    tmp_path: Path,
) -> None:
    running = Cluster(tmp_path)
    try:
        await running.start_central()
        data = os.urandom(2 * MIN_CHUNK_SIZE)
        place(running, "s1", "rot.bin", data)
        await running.start_secondary("s1")
        await running.wait_for_sources("rot.bin", 1)
        rot(running.data("s1") / "rot.bin", every=MIN_CHUNK_SIZE)
        with pytest.raises(IntegrityError):
            await fetch(running, "rot.bin", tmp_path / "rot.bin")
    finally:
        await running.stop()


@pytest_twisted.ensureDeferred
async def test_resume_keeps_verified_chunks_and_rechecks_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(8 * MIN_CHUNK_SIZE)
    sha = place(cluster, "s1", "r.bin", data)
    await cluster.wait_for_sources("r.bin", 3)
    first = await fetch(cluster, "r.bin", tmp_path / "whole.bin")
    assert first.bytes_reused == 0
    manifest = build_manifest(str(tmp_path / "whole.bin"), "r.bin")
    part = tmp_path / "r.bin.part"
    damaged = bytearray(data)
    damaged[4 * MIN_CHUNK_SIZE :] = bytes(4 * MIN_CHUNK_SIZE)
    damaged[MIN_CHUNK_SIZE + 7] ^= 0xFF
    part.write_bytes(bytes(damaged))
    save_state(str(part), manifest, {0, 1, 2, 3, 4})
    result = await fetch(cluster, "r.bin", tmp_path / "r.bin")
    assert result.bytes_reused == 3 * MIN_CHUNK_SIZE
    assert result.bytes_fetched == 5 * MIN_CHUNK_SIZE
    assert sha256_file(tmp_path / "r.bin") == sha
    assert not part.exists() and not (tmp_path / "r.bin.part.json").exists()


@pytest_twisted.ensureDeferred
async def test_a_part_of_another_content_is_discarded(
    cluster: Cluster, tmp_path: Path
) -> None:
    sha = place(cluster, "s1", "v.bin", os.urandom(3 * MIN_CHUNK_SIZE))
    await cluster.wait_for_sources("v.bin", 3)
    old = tmp_path / "old.bin"
    old.write_bytes(os.urandom(3 * MIN_CHUNK_SIZE))
    part = tmp_path / "v.bin.part"
    part.write_bytes(old.read_bytes())
    save_state(str(part), build_manifest(str(old), "v.bin"), {0, 1, 2})
    result = await fetch(cluster, "v.bin", tmp_path / "v.bin")
    assert result.bytes_reused == 0
    assert sha256_file(tmp_path / "v.bin") == sha


@pytest.mark.allow_logged_errors
@pytest_twisted.ensureDeferred
async def test_a_reported_rotten_replica_is_set_aside_and_replaced(
    cluster: Cluster, tmp_path: Path
) -> None:
    data = os.urandom(8 * MIN_CHUNK_SIZE)
    sha = place(cluster, "s1", "decay.bin", data)
    await cluster.wait_for_sources("decay.bin", 3)
    await cluster.stop_secondary("s3")
    rotten = cluster.data("s2") / "decay.bin"
    rot(rotten, every=MIN_CHUNK_SIZE)
    job = GetJob(
        reactor,
        ClusterAccess(central_endpoint(reactor, cluster.central_address)),
        "tester",
        "decay.bin",
        str(tmp_path / "decay.bin"),
    )
    result = await job.run()
    assert result.sources.get("s2", 0) == 0
    assert sha256_file(tmp_path / "decay.bin") == sha
    aside = cluster.data("s2") / ".redesdl-corrupt" / "decay.bin"
    await eventually(aside.exists, "s2 to set its corrupt copy aside")

    def replaced() -> bool:
        return rotten.exists() and sha256_file(rotten) == sha

    await eventually(replaced, "a good copy replicated back to s2")
    await cluster.wait_for_sources("decay.bin", 2)


@pytest_twisted.ensureDeferred
async def test_idle_sources_finish_a_slow_sources_chunks(tmp_path: Path) -> None:
    running = Cluster(tmp_path)
    try:
        await running.start_central()
        data = os.urandom(16 * MIN_CHUNK_SIZE)
        for name in ("s1", "s2", "s3"):
            place(running, name, "e.bin", data)
        await running.start_secondary("s1", "--rate-limit", "128K")
        await running.start_secondary("s2")
        await running.start_secondary("s3")
        await running.wait_for_sources("e.bin", 3)
        info, sources = await locate(running, "e.bin")
        download = Download(info, sources, str(tmp_path / "e.bin"), reactor=reactor)
        result = await download.start()
        assert sha256_file(tmp_path / "e.bin") == hashlib.sha256(data).hexdigest()
        duplicates = [e for e in download.timeline if e["event"] == "duplicate"]
        assert duplicates and all(e["source"] != "s1" for e in duplicates)
        assert result.sources.get("s1", 0) < 2 * MIN_CHUNK_SIZE
    finally:
        await running.stop()
