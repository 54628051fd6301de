"""Which endgame copies pay: judged by each source's usual time per chunk."""

from __future__ import annotations

import pytest

from redesdl.transfer.pace import OVERDUE, SMOOTHING, ChunkPace


def paced(**usual: float) -> ChunkPace:
    """A pace where each named source verified one chunk in the time given."""
    pace = ChunkPace()
    for number, (source, took) in enumerate(usual.items()):
        pace.claimed(1000 + number, source, 0.0)
        pace.verified(1000 + number, source, took)
    return pace


def test_a_source_with_no_verified_chunk_copies_as_before() -> None:
    pace = paced(owner=1.0)
    pace.claimed(0, "owner", 10.0)
    assert pace.usual("newcomer") is None
    assert pace.copy_pays(0, "owner", "newcomer", 10.0)
    # Still woken when the owner stalls: its copies stop counting then.
    assert pace.next_look([(0, "owner")], "newcomer", 10.0) == 10.0 + OVERDUE
    pace.claimed(1, "unknown", 10.0)
    assert pace.next_look([(1, "unknown")], "newcomer", 10.0) is None


def test_between_equally_quick_sources_no_copy_pays_until_overdue() -> None:
    pace = paced(owner=1.0, idle=1.0)
    pace.claimed(0, "owner", 10.0)
    for now in (10.0, 10.5, 11.0, 11.99):
        assert not pace.copy_pays(0, "owner", "idle", now), now
    assert pace.copy_pays(0, "owner", "idle", 10.0 + OVERDUE)
    assert pace.next_look([(0, "owner")], "idle", 10.0) == 10.0 + OVERDUE


def test_an_owner_twice_as_slow_is_copied_at_once_whatever_its_progress() -> None:
    pace = paced(slow=2.0, idle=1.0)
    pace.claimed(0, "slow", 10.0)
    for now in (10.0, 11.0, 11.99):
        assert pace.copy_pays(0, "slow", "idle", now), now


def test_an_owner_a_little_slower_is_copied_only_once_overdue() -> None:
    pace = paced(slower=1.99, idle=1.0)
    pace.claimed(0, "slower", 10.0)
    assert not pace.copy_pays(0, "slower", "idle", 10.0)
    assert not pace.copy_pays(0, "slower", "idle", 10.0 + OVERDUE * 1.99 - 0.01)
    assert pace.copy_pays(0, "slower", "idle", 10.0 + OVERDUE * 1.99)
    assert pace.next_look([(0, "slower")], "idle", 10.0) == 10.0 + OVERDUE * 1.99


def test_an_owner_with_no_history_is_taken_as_quick_as_the_idle_source() -> None:
    pace = paced(idle=2.0)
    pace.claimed(0, "unknown", 0.0)
    assert not pace.copy_pays(0, "unknown", "idle", 3.9)
    assert pace.copy_pays(0, "unknown", "idle", 4.0)
    assert pace.next_look([(0, "unknown")], "idle", 0.0) == 4.0


def test_the_usual_time_follows_new_chunks_smoothly() -> None:
    pace = ChunkPace()
    pace.claimed(0, "s", 0.0)
    pace.verified(0, "s", 2.0)
    assert pace.usual("s") == 2.0
    pace.claimed(1, "s", 2.0)
    pace.verified(1, "s", 6.0)
    assert pace.usual("s") == pytest.approx(2.0 + SMOOTHING * (4.0 - 2.0))


def test_dropped_claims_and_odd_times_teach_nothing() -> None:
    pace = ChunkPace()
    pace.claimed(0, "s", 5.0)
    pace.dropped(0, "s")
    pace.verified(0, "s", 6.0)
    pace.verified(1, "s", 6.0)
    pace.claimed(2, "s", 5.0)
    pace.verified(2, "s", 4.0)
    assert pace.usual("s") is None


def test_next_look_is_the_first_owner_to_become_overdue_after_now() -> None:
    pace = paced(a=1.0, b=3.0, idle=1.0)
    pace.claimed(0, "a", 10.0)
    pace.claimed(1, "b", 9.0)
    pace.claimed(2, "a", 5.0)
    in_flight = [(0, "a"), (1, "b"), (2, "a"), (3, "unclaimed")]
    # Chunk 2 is overdue already (at 7.0): only later times wake anyone.
    assert pace.next_look(in_flight, "idle", 10.0) == 12.0
    assert pace.next_look(in_flight, "idle", 12.0) == 15.0
    assert pace.next_look(in_flight, "idle", 15.0) is None


def test_a_chunk_whose_claim_is_unknown_is_copied_rather_than_left() -> None:
    pace = paced(owner=1.0, idle=1.0)
    assert pace.copy_pays(0, "owner", "idle", 10.0)
    assert pace.next_look([(0, "owner")], "idle", 10.0) is None


def test_a_source_is_never_woken_for_its_own_chunks() -> None:
    pace = paced(idle=1.0, other=1.0)
    pace.claimed(0, "idle", 10.0)
    pace.claimed(1, "other", 10.5)
    assert pace.next_look([(0, "idle"), (1, "other")], "idle", 10.0) == 12.5


def test_a_copy_is_stalled_once_overdue_by_its_own_pace_or_the_idle_ones() -> None:
    pace = paced(slow=4.0, idle=1.0)
    pace.claimed(0, "slow", 10.0)
    # Much slower, so a copy of its chunk pays at once, yet it is not stalled.
    assert pace.copy_pays(0, "slow", "idle", 10.0)
    assert not pace.stalled(0, "slow", "idle", 10.0 + OVERDUE * 4.0 - 0.01)
    assert pace.stalled(0, "slow", "idle", 10.0 + OVERDUE * 4.0)
    # Without a verified chunk of its own, judged by the idle source's pace.
    pace.claimed(0, "new", 10.0)
    assert not pace.stalled(0, "new", "idle", 10.0 + OVERDUE - 0.01)
    assert pace.stalled(0, "new", "idle", 10.0 + OVERDUE)


def test_nothing_to_judge_by_is_never_stalled() -> None:
    pace = paced(owner=1.0)
    assert not pace.stalled(0, "owner", "idle", 1e9)  # claim never told
    pace.claimed(0, "new", 0.0)
    assert not pace.stalled(0, "new", "newcomer", 1e9)  # no pace at all
