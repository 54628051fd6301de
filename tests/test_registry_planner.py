"""The replication planner on the catalog index: same plans, bounded work.

A randomised run checks that it asks for exactly the copies the old
whole-catalog planner asked for; counting tests bound the index entries a
plan reads, so a return to walking the whole catalog per plan fails.
"""

from __future__ import annotations

import random

import pytest
from twisted.internet.task import Clock

from redesdl.central import planner as planner_module
from redesdl.central.planner import ReplicationPlanner
from redesdl.central.registry import Registry, SecondaryRecord

from .test_registry_index import _old_entry, info, names, record


class _RebuildingPlanner(ReplicationPlanner):
    """The plan as it was before the index: rebuild, then scan every name."""

    def plan(self) -> None:
        now = self._clock.seconds()
        registry = self._registry
        known = sorted({n for r in registry.secondaries.values() for n in r.files})
        entries = [(n, _old_entry(registry, n)) for n in known]
        for holder in list(registry.secondaries.values()):
            if not holder.catalogComplete:
                continue
            busy = sum(1 for (sid, _) in self.inProgress if sid == holder.id)
            for name, old in entries:
                if busy >= self._perSecondary:
                    break
                key = (holder.id, name)
                if (
                    name in holder.files
                    or key in self.inProgress
                    or self._retrying.get(holder.id, {}).get(name, 0) > now
                    or old is None
                    or not old[1]
                ):
                    continue
                entry = registry.index.get(name)
                assert entry is not None
                self._ask(holder, entry)
                busy += 1


@pytest.mark.parametrize("kept", [planner_module.REVISIT_KEPT, 1])
def test_the_planner_plans_what_the_rebuilding_one_did(
    kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(planner_module, "REVISIT_KEPT", kept)
    rng = random.Random(12)
    clock = Clock()
    registry = Registry()
    new = ReplicationPlanner(registry, clock)
    old = _RebuildingPlanner(registry, clock)
    pool = [f"s{i}" for i in range(5)]
    files = [info(f"n{i:02d}", sha) for i in range(15) for sha in "aab"]
    live: dict[str, SecondaryRecord] = {}
    for step in range(4000):
        action = rng.random()
        name = rng.choice(pool)
        who = live.get(name)
        if who is None or action < 0.03:
            fresh = record(name)
            previous = registry.register(fresh)
            for planner in (new, old):
                if previous is not None:
                    planner.forget(previous)
            live[name] = fresh
        elif action < 0.3:
            registry.addFiles(who, rng.sample(files, 2))
        elif action < 0.4:
            registry.catalogDone(who)
        elif action < 0.5:
            registry.removeFiles(who, [f.name for f in rng.sample(files, 2)])
        elif action < 0.55:
            registry.suspect(who, rng.choice(files).name)
        elif action < 0.6:
            registry.cleared(who, rng.choice(files).name)
        elif action < 0.65:
            registry.unregister(who)
            del live[name]
            new.forget(who)
            old.forget(who)
        elif action < 0.9 and new.inProgress:
            sid, copied = rng.choice(sorted(new.inProgress))
            holder = registry.secondaries[sid]
            ok = rng.random() < 0.7
            entry = registry.index.get(copied)
            # A copy may report success before (or without) its files_added.
            if ok and entry is not None and entry.listed and rng.random() < 0.8:
                registry.addFiles(holder, [entry.info])
            new.finished(holder, copied, ok, "test")
            old.finished(holder, copied, ok, "test")
        else:
            clock.advance(rng.choice([0, 3, 11]))
        new.plan()
        old.plan()
        assert new.inProgress == old.inProgress, step


def _replicating(count: int) -> tuple[Registry, SecondaryRecord, ReplicationPlanner]:
    registry = Registry()
    planner = ReplicationPlanner(registry, Clock())
    holder, empty = record("s1"), record("s2")
    for who in (holder, empty):
        registry.register(who)
    registry.addFiles(holder, names(count))
    registry.catalogDone(holder)
    registry.catalogDone(empty)
    return registry, empty, planner


def test_a_copy_that_ends_costs_a_few_entries_not_the_catalog() -> None:
    registry, empty, planner = _replicating(20_000)
    planner.plan()
    before = registry.index.touched
    rounds = 0
    while planner.inProgress and rounds < 2_000:
        for _, name in sorted(planner.inProgress):
            registry.addFiles(empty, [info(name)])
            planner.finished(empty, name, True, "")
        planner.plan()
        rounds += 1
    assert rounds == 2_000 and len(planner.inProgress) == 2
    # Each round: two copies end (two updates), two new names are walked.
    assert registry.index.touched - before <= rounds * 6


def test_a_failed_copy_holds_back_no_other_plan() -> None:
    registry, empty, planner = _replicating(10)
    clock = planner._clock
    planner.plan()
    first, second = sorted(name for _, name in planner.inProgress)
    planner.finished(empty, first, False, "disk full")
    clock.advance(0)
    assert sorted(name for _, name in planner.inProgress) == [second, "f000002"]
    planner.finished(empty, second, True, "")
    registry.addFiles(empty, [info(second)])
    planner.finished(empty, "f000002", True, "")
    registry.addFiles(empty, [info("f000002")])
    clock.advance(0)
    assert sorted(name for _, name in planner.inProgress) == ["f000003", "f000004"]
    for name in ("f000003", "f000004"):
        registry.addFiles(empty, [info(name)])
        planner.finished(empty, name, True, "")
    clock.advance(10)
    assert first in {name for _, name in planner.inProgress}


def test_a_copy_that_ends_visits_its_secondary_not_every_one() -> None:
    clock = Clock()
    registry = Registry()
    planner = ReplicationPlanner(registry, clock)
    holder = record("holder")
    registry.register(holder)
    registry.addFiles(holder, names(50))
    registry.catalogDone(holder)
    others = [record(f"s{i:04d}") for i in range(1000)]
    for other in others:
        registry.register(other)
        registry.catalogDone(other)
    clock.advance(0)
    # Every secondary was woken once by its catalog and now copies two files.
    assert len(planner.inProgress) == 2000
    visits = planner.visits
    name = sorted(n for sid, n in planner.inProgress if sid == others[500].id)[0]
    registry.addFiles(others[500], [info(name)])
    planner.finished(others[500], name, True, "")
    clock.advance(0)
    assert planner.visits - visits == 1
    assert len(planner.inProgress) == 2000


def test_a_long_walk_is_cut_into_turns_and_still_finds_the_gap() -> None:
    clock = Clock()
    registry = Registry()
    planner = ReplicationPlanner(registry, clock)
    holder, almost = record("holder"), record("almost")
    for who in (holder, almost):
        registry.register(who)
    every = names(20_000)
    registry.addFiles(holder, every)
    registry.addFiles(almost, every[:-1])
    registry.catalogDone(holder)
    registry.catalogDone(almost)
    turns = 0
    while not planner.inProgress and turns < 100:
        before = registry.index.touched
        planner.plan()  # what one reactor turn runs
        assert registry.index.touched - before <= planner_module.ENTRIES_PER_TURN + 1
        turns += 1
    assert planner.inProgress == {(almost.id, every[-1].name): every[-1].sha256}
    assert turns >= 20_000 // planner_module.ENTRIES_PER_TURN


def test_a_newly_listed_name_wakes_only_secondaries_with_room() -> None:
    clock = Clock()
    registry = Registry()
    planner = ReplicationPlanner(registry, clock)
    full = [record(f"full{i}") for i in range(3)]
    busy = [record(f"busy{i}") for i in range(300)]
    for who in full + busy:
        registry.register(who)
    registry.addFiles(full[0], names(10))
    for who in full[1:]:
        registry.addFiles(who, names(10))
    for who in full + busy:
        registry.catalogDone(who)
    clock.advance(0)
    assert {sid for sid, _ in planner.inProgress} == {b.id for b in busy}
    visits = planner.visits
    registry.addFiles(full[0], [info("zz-new")])
    clock.advance(0)
    # The two other full secondaries are asked; the busy ones are not visited.
    assert planner.visits - visits == 2
    asked = {sid for sid, name in planner.inProgress if name == "zz-new"}
    assert asked == {full[1].id, full[2].id}
