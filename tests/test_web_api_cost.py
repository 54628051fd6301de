"""The dashboard's API answers at catalog scale: counted entries, kept counts.

A files page and a search slice must read a bounded number of index
entries (the index's C{touched} counter) whatever the catalog's size, and
the summary must read kept counts, not walk anything.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock

from redesdl.central.protocol import CentralFactory
from redesdl.central.web.api import SEARCH_SCAN, BadQueryError, DashboardApi
from redesdl.central.web.series import SeriesSampler
from redesdl.protocol.wire import Progress

from .test_central import make_factory
from .test_registry_index import BIG, info, names, record


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[CentralFactory, Clock]:
    """A central whose one secondary reports a 100,000-name catalog."""
    clock = Clock()
    factory = make_factory(tmp_path_factory.mktemp("central"), clock)
    holder = record("s1")
    factory.registry.register(holder)
    factory.registry.addFiles(holder, names(BIG))
    factory.registry.catalogDone(holder)
    return factory, clock


def api_of(factory: CentralFactory, clock: Clock) -> DashboardApi:
    return DashboardApi(factory, SeriesSampler(factory, clock), clock)


def test_a_files_page_touches_the_page_not_the_catalog(
    big: tuple[CentralFactory, Clock],
) -> None:
    factory, clock = big
    api, index = api_of(factory, clock), factory.registry.index
    for after in (None, "f049999", "f099990"):
        before = index.touched
        page = api.files(after, 50, None)
        assert index.touched - before <= 51
        assert page["total"] == BIG
        assert page["files"][0]["name"] > (after or "")
    last = api.files("f099990", 50, None)
    assert [f["name"] for f in last["files"]] == [
        f"f{i:06d}" for i in range(99991, BIG)
    ]
    assert last["more"] is False
    middle = api.files("f049999", 50, None)
    assert middle["more"] is True and middle["next_after"] == "f050049"
    assert middle["files"][0] == {
        "name": "f050000",
        "size": 10,
        "sha256": "a" * 64,
        "sources": 1,
        "replicated": True,
        "downloads": {"completed": 0, "failed": 0},
    }


def test_a_search_examines_a_bounded_slice(big: tuple[CentralFactory, Clock]) -> None:
    factory, clock = big
    api, index = api_of(factory, clock), factory.registry.index
    before = index.touched
    # Matches nothing: one slice examines SEARCH_SCAN names and says where
    # to go on.
    slice_ = api.files(None, 50, "nothing-like-this")
    assert index.touched - before <= SEARCH_SCAN + 1
    assert slice_["files"] == []
    assert slice_["scanned"] == SEARCH_SCAN
    assert slice_["more"] is True
    assert slice_["next_after"] == f"f{SEARCH_SCAN - 1:06d}"
    # Matches many: it stops at the page's limit.
    before = index.touched
    found = api.files("f070000", 5, "F0777")
    assert index.touched - before <= SEARCH_SCAN + 1
    assert [f["name"] for f in found["files"]] == [f"f0777{i:02d}" for i in range(5)]
    assert found["more"] is True and found["next_after"] == "f077704"
    # The last slice says there is no more.
    end = api.files("f095000", 50, "nothing")
    assert end["more"] is False and end["scanned"] == BIG - 95001


def test_the_summary_reads_kept_counts(big: tuple[CentralFactory, Clock]) -> None:
    factory, clock = big
    api, index = api_of(factory, clock), factory.registry.index
    before = index.touched
    summary = api.summary()
    assert index.touched == before
    assert summary["files"] == BIG
    assert summary["bytes"] == 10 * BIG
    assert summary["secondaries"] == {"up": 1, "down": 0}


def test_the_catalog_size_follows_every_change(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    registry = factory.registry
    s1, s2 = record("s1"), record("s2")
    registry.register(s1)
    registry.register(s2)
    registry.addFiles(s1, [info("a", size=100), info("b", size=7)])
    assert registry.index.listed_bytes == 107
    # Another content of b (a tie, won by the larger sha256) is served instead.
    registry.addFiles(s2, [info("b", sha="b", size=30), info("c", size=1)])
    assert registry.index.listed_bytes == 100 + 30 + 1
    registry.suspect(s1, "a")
    assert registry.index.listed_bytes == 31
    registry.cleared(s1, "a")
    registry.removeFiles(s2, ["b"])
    assert registry.index.listed_bytes == 100 + 7 + 1
    registry.unregister(s2)
    assert registry.index.listed_bytes == 107
    registry.unregister(s1)
    assert registry.index.listed_bytes == 0


def test_bad_limits_and_a_progress_out_of_place(tmp_path: Path) -> None:
    factory = make_factory(tmp_path, Clock())
    api = api_of(factory, Clock())
    assert api.files(None, 50, None) == {
        "files": [],
        "more": False,
        "next_after": None,
        "total": 0,
        "scanned": 0,
    }
    # A progress from a connection holding no slot changes nothing.
    factory.download_progress(object(), Progress(1, "a", 1, 1.0, 1))
    assert api.downloads()["active"] == []
    assert issubclass(BadQueryError, ValueError)
