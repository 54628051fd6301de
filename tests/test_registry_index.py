"""The catalog index: what pages, updates and scrapes cost, counted in entries.

Each test bounds the entries the index reads or updates (its C{touched}
counter), so a return to whole-catalog rebuilds fails without timing
anything; a randomised test checks the index against the old rebuild.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock, Cooperator

from redesdl.central.metrics import central_metrics
from redesdl.central.protocol import CentralFactory
from redesdl.central.registry import FORGET_SLICE, Registry, SecondaryRecord
from redesdl.central.services import LIST_PAGE_BYTES
from redesdl.manifest import FileInfo
from redesdl.protocol.errors import ProtocolError
from redesdl.protocol.wire import MAX_FILES_PER_MESSAGE, ListFiles, compact_json

from .test_central import client, make_factory, secondary

BIG = 100_000


class _Connection:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def sendMessage(self, message: Any) -> None:
        self.sent.append(message)


def record(name: str) -> SecondaryRecord:
    return SecondaryRecord(f"id-{name}", name, "10.0.0.1", 7101, _Connection())


def info(name: str, sha: str = "a", size: int = 10) -> FileInfo:
    return FileInfo(name, size, sha * 64, "1" * 64)


def names(count: int) -> list[FileInfo]:
    return [info(f"f{i:06d}") for i in range(count)]


@pytest.fixture(scope="module")
def big() -> tuple[Registry, SecondaryRecord]:
    """A registry whose one secondary reports a 100,000-name catalog."""
    registry = Registry()
    holder = record("s1")
    registry.register(holder)
    registry.addFiles(holder, names(BIG))
    return registry, holder


@pytest.fixture
def factory(tmp_path: Path) -> CentralFactory:
    return make_factory(tmp_path, Clock())


def test_a_page_touches_the_page_not_the_catalog(
    big: tuple[Registry, SecondaryRecord], factory: CentralFactory
) -> None:
    factory.registry = big[0]
    index = factory.registry.index
    for after in (None, "f049999", "f099990"):
        before = index.touched
        page = factory.catalog_page(ListFiles(1, after))
        assert index.touched - before <= MAX_FILES_PER_MESSAGE + 1
        assert page.files[0].info.name > (after or "")
    first = factory.catalog_page(ListFiles(1, "f049999"))
    assert [e.info.name for e in first.files][:2] == ["f050000", "f050001"]
    assert len(first.files) == MAX_FILES_PER_MESSAGE and first.more
    last = factory.catalog_page(ListFiles(1, "f099990"))
    assert len(last.files) == 9 and not last.more


def test_adding_and_removing_a_file_touch_one_entry(
    big: tuple[Registry, SecondaryRecord],
) -> None:
    registry, holder = big
    index = registry.index
    before = index.touched
    registry.addFiles(holder, [info("g-new")])
    assert index.touched - before == 1
    before = index.touched
    registry.removeFiles(holder, ["g-new"])
    assert index.touched - before == 1
    assert registry.file_count() == BIG


def test_a_scrape_touches_no_entry(
    big: tuple[Registry, SecondaryRecord], factory: CentralFactory
) -> None:
    registry, holder = big
    holder.catalogComplete = True
    lacking = record("s2")
    lacking.catalogComplete = True
    registry.register(lacking)
    factory.registry = registry
    factory.planner._registry = registry
    before = registry.index.touched
    samples = {s.name: s.value for m in central_metrics(factory) for s in m.samples}
    assert registry.index.touched == before
    assert samples["redesdl_central_files"] == BIG
    assert samples["redesdl_central_replication_backlog_copies"] == BIG
    registry.unregister(lacking)
    holder.catalogComplete = False


def test_planning_skips_a_secondary_that_holds_everything(
    big: tuple[Registry, SecondaryRecord], tmp_path: Path
) -> None:
    registry, holder = big
    holder.catalogComplete = True
    factory = make_factory(tmp_path, Clock())
    factory.registry = registry
    factory.planner._registry = registry
    before = registry.index.touched
    factory.planner.plan()
    assert registry.index.touched == before
    assert factory.planner.inProgress == {}
    holder.catalogComplete = False


def test_a_name_nobody_holds_leaves_the_catalog() -> None:
    registry = Registry()
    s1, s2 = record("s1"), record("s2")
    registry.register(s1)
    registry.register(s2)
    registry.addFiles(s1, [info("a"), info("b")])
    registry.addFiles(s2, [info("a")])
    registry.removeFiles(s1, ["a"])
    assert [e.info.name for e in registry.catalog()] == ["a", "b"]
    registry.removeFiles(s2, ["a"])
    assert [e.info.name for e in registry.catalog()] == ["b"]
    assert registry.index.get("a") is None
    with pytest.raises(ProtocolError) as removed:
        registry.locate("a")
    assert removed.value.code == "not_found"
    registry.unregister(s1)
    assert registry.catalog() == [] and registry.file_count() == 0
    with pytest.raises(ProtocolError) as gone:
        registry.locate("b")
    assert gone.value.code == "no_source"
    back = record("s1")
    registry.register(back)
    assert registry.catalog() == []
    registry.addFiles(back, [info("b")])
    assert registry.locate("b").holders == [back]


def test_a_name_only_suspects_hold_is_not_listed() -> None:
    registry = Registry()
    s1 = record("s1")
    registry.register(s1)
    registry.addFiles(s1, [info("a")])
    registry.suspect(s1, "a")
    assert registry.catalog() == [] and s1.listed_held == 0
    with pytest.raises(ProtocolError) as suspect:
        registry.locate("a")
    assert suspect.value.code == "no_source"
    registry.cleared(s1, "a")
    assert [e.holders for e in registry.catalog()] == [[s1]]
    assert s1.listed_held == 1


def test_a_page_keeps_the_byte_budget(factory: CentralFactory) -> None:
    registry = factory.registry
    s1 = record("s1")
    registry.register(s1)
    long_names = [info(f"{i:03d}-" + "x" * 1000) for i in range(200)]
    registry.addFiles(s1, long_names)
    page = factory.catalog_page(ListFiles(1, None))
    sizes = [len(compact_json(e.to_wire())) + 1 for e in page.files]
    assert page.more and sum(sizes) <= LIST_PAGE_BYTES
    assert sum(sizes) + sizes[0] > LIST_PAGE_BYTES


def test_a_page_reuses_each_entrys_json_until_the_entry_changes(
    factory: CentralFactory,
) -> None:
    registry = factory.registry
    s1, s2 = record("s1"), record("s2")
    registry.register(s1)
    registry.register(s2)
    registry.addFiles(s1, [info("a"), info("b")])
    first = factory.catalog_page(ListFiles(1, None))
    assert json.loads(first.encode_body()) == first.to_wire()
    again = factory.catalog_page(ListFiles(2, None))
    assert [e.json() for e in again.files] == [e.json() for e in first.files]
    assert again.files[0].encoded is first.files[0].encoded is not None
    registry.addFiles(s2, [info("a")])
    later = factory.catalog_page(ListFiles(3, None))
    assert [json.loads(e.json())["sources"] for e in later.files] == [2, 1]
    assert later.files[1].encoded is first.files[1].encoded
    assert json.loads(later.encode_body()) == later.to_wire()


def _old_entry(registry: Registry, name: str) -> tuple[FileInfo, list[str]] | None:
    """The rule the central used before the index, rebuilt from the records."""
    groups: dict[tuple[int, str, str], list[SecondaryRecord]] = {}
    for holder in registry.secondaries.values():
        held = holder.files.get(name)
        if held is not None:
            groups.setdefault(held.content, []).append(holder)
    if not groups:
        return None
    _, holders = max(groups.items(), key=lambda item: (len(item[1]), item[0][1]))
    trusted = sorted(h.name for h in holders if name not in h.suspect)
    return holders[0].files[name], trusted


def test_the_index_agrees_with_a_rebuild_after_random_changes() -> None:
    rng = random.Random(11)
    registry = Registry()
    pool = {f"s{i}": record(f"s{i}") for i in range(5)}
    files = [info(f"n{i}", sha) for i in range(12) for sha in "ab"]
    for step in range(3000):
        who = pool[rng.choice(sorted(pool))]
        live = registry.secondaries.get(who.id) is who
        action = rng.random()
        if not live:
            # A secondary that comes back is a new registration.
            who = pool[who.name] = record(who.name)
            registry.register(who)
        elif action < 0.4:
            registry.addFiles(who, rng.sample(files, 3))
        elif action < 0.6:
            registry.removeFiles(who, [f.name for f in rng.sample(files, 3)])
        elif action < 0.75:
            registry.suspect(who, rng.choice(files).name)
        elif action < 0.9:
            registry.cleared(who, rng.choice(files).name)
        else:
            registry.unregister(who)
        expected = {}
        for name in sorted({f.name for f in files}):
            old = _old_entry(registry, name)
            if old is not None and old[1]:
                expected[name] = old
        listed = {
            e.info.name: (e.info, sorted(h.name for h in e.holders))
            for e in registry.catalog()
        }
        assert listed == expected, step
        for holder in registry.secondaries.values():
            assert holder.listed_held == len(set(holder.files) & set(expected)), step


def test_a_full_listing_over_the_wire_reads_each_entry_about_once(
    factory: CentralFactory,
) -> None:
    count = 20_000
    wire = [info(f"v/{i:06d}.mkv", size=i + 1).to_wire() for i in range(count)]
    holder = secondary(factory, "s1", [])
    for start in range(0, count, MAX_FILES_PER_MESSAGE):
        batch = wire[start : start + MAX_FILES_PER_MESSAGE]
        holder.send({"type": "files_added", "files": batch})
    alice = client(factory)
    before = factory.registry.index.touched
    listed: list[str] = []
    pages, after = 0, None
    while True:
        ask: dict[str, Any] = {"type": "list"}
        if after is not None:
            ask["after"] = after
        page = alice.ask(ask)
        pages += 1
        listed += [f["name"] for f in page["files"]]
        if not page["more"]:
            break
        after = listed[-1]
    assert listed == [f["name"] for f in wire]
    assert pages == -(-count // MAX_FILES_PER_MESSAGE)
    assert factory.registry.index.touched - before <= count + pages


def test_a_gone_secondary_leaves_the_index_in_slices_and_its_return_is_kept() -> None:
    turns: list[Callable[[], None]] = []  # what the reactor would run next
    slices = Cooperator(
        terminationPredicateFactory=lambda: lambda: True, scheduler=turns.append
    )
    registry = Registry(slices.cooperate)
    library = names(5_000)
    first, other = record("s1"), record("s2")
    for who in (first, other):
        registry.register(who)
        registry.addFiles(who, library)
    registry.unregister(first)
    # Gone at once for clients, though its files still leave the index.
    assert registry.locate(library[0].name).holders == [other]
    back = record("s1")
    registry.register(back)
    registry.addFiles(back, library[:10])
    ticks = 0
    while turns:
        before = registry.index.touched
        turns.pop(0)()
        assert registry.index.touched - before <= FORGET_SLICE
        ticks += 1
    assert ticks >= 5_000 // FORGET_SLICE
    assert [sorted(h.name for h in e.holders) for e in registry.catalog()] == (
        [["s1", "s2"]] * 10 + [["s2"]] * 4_990
    )
    assert back.listed_held == 10 and other.listed_held == 5_000


def _bytes_held(holders: int, files: int, copies: int) -> int:
    """What the registry allocates for C{files} names on C{copies} holders each.

    Each holder's entries are decoded apart, as they arrive from the wire.
    """
    registry = Registry()
    records = [record(f"s{i:04d}") for i in range(holders)]
    for who in records:
        registry.register(who)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(files):
            digests = [hashlib.sha256(b"%d %d" % (i, n)).hexdigest() for n in (1, 2)]
            wire = FileInfo(f"videos/{i:07d}.mp4", 1 << 20, *digests).to_wire()
            for c in range(copies):
                who = records[(i + c * (holders // copies)) % holders]
                registry.addFiles(
                    who, [FileInfo.from_wire(json.loads(json.dumps(wire)))]
                )
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


def test_a_holder_of_a_name_costs_a_few_dozen_bytes() -> None:
    """Holders of one content share its strings: a holder is two dict slots."""
    every = _bytes_held(holders=50, files=600, copies=50)
    assert every / 30_000 <= 120
    ten = _bytes_held(holders=10, files=3_000, copies=10)
    assert ten / 30_000 <= 200
    # With two copies the name's own cost dominates: digests, index, entry.
    two = _bytes_held(holders=100, files=5_000, copies=2)
    assert two / 5_000 <= 1_000
