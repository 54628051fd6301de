"""The transfer plan: each chunk handed out once, failures retried, bans, endgame."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from redesdl.transfer.plan import MAX_DUPLICATES, Claim, TransferPlan


def test_each_chunk_is_handed_out_once() -> None:
    plan = TransferPlan(range(3), endgame=False)
    taken = [plan.take("a"), plan.take("b"), plan.take("a")]
    assert sorted(c.index for c in taken if c) == [0, 1, 2]
    assert all(c and c.direct for c in taken)
    assert plan.take("b") is None
    assert not plan.finished


def test_a_failed_chunk_goes_first_to_the_next_taker() -> None:
    plan = TransferPlan(range(3))
    first = plan.take("slow")
    assert first is not None
    assert plan.fail(first.index, "slow")
    assert plan.take("fast") == Claim(first.index, True)


def test_endgame_duplicates_in_flight_chunks_and_first_copy_wins() -> None:
    plan = TransferPlan(range(2))
    assert plan.take("slow") == Claim(0, True)
    assert plan.take("fast") == Claim(1, True)
    assert plan.complete(1, "fast")
    assert plan.take("fast") == Claim(0, False)
    assert plan.take("fast") is None
    assert plan.writer(0) == "slow"
    assert plan.complete(0, "fast")
    assert not plan.complete(0, "slow")
    assert plan.finished and plan.done == 2


def test_a_copy_is_offered_only_where_it_pays() -> None:
    plan = TransferPlan(range(3))
    for source in ("a", "b", "c"):
        plan.take(source)
    asked: list[tuple[int, str]] = []

    def pays_for_c(index: int, owner: str) -> bool:
        asked.append((index, owner))
        return owner == "c"

    assert plan.take("idle", pays_for_c) == Claim(2, False)
    # Longest in flight first; a chunk already copied is not offered again.
    assert asked == [(0, "a"), (1, "b"), (2, "c")]
    assert plan.in_flight() == [(0, "a"), (1, "b"), (2, "c"), (2, "idle")]
    assert plan.take("idle2", lambda index, owner: False) is None
    assert plan.take("idle2") == Claim(0, False)


def test_a_failing_writer_leaves_the_chunk_to_its_duplicate() -> None:
    plan = TransferPlan(range(1))
    plan.take("slow")
    assert plan.take("fast") == Claim(0, False)
    assert not plan.fail(0, "slow")
    assert plan.writer(0) is None
    assert plan.is_pending(0)
    assert plan.take("other") is None
    assert plan.fail(0, "fast")
    assert plan.take("other") == Claim(0, True)


def test_duplicates_are_bounded() -> None:
    plan = TransferPlan(range(MAX_DUPLICATES + 2))
    for index in range(MAX_DUPLICATES + 2):
        plan.take(f"s{index}")
    duplicates = [plan.take("idle"), plan.take("idle2"), plan.take("x")]
    assert sum(1 for d in duplicates if d is not None) == MAX_DUPLICATES


def test_a_banned_source_gets_nothing_and_its_chunks_go_back() -> None:
    plan = TransferPlan(range(3))
    plan.take("rogue")
    plan.take("rogue")
    assert plan.ban("rogue") == [0, 1]
    assert plan.take("rogue") is None
    assert plan.take("honest") == Claim(1, True)
    assert plan.take("honest") == Claim(0, True)
    assert not plan.complete(2, "rogue")


def test_a_source_cannot_complete_a_chunk_it_does_not_hold() -> None:
    plan = TransferPlan(range(2))
    plan.take("a")
    assert not plan.complete(0, "b")
    assert not plan.complete(1, "a")
    assert plan.complete(0, "a")


def test_empty_download_is_finished_at_once() -> None:
    assert TransferPlan([]).finished


SOURCES = st.sampled_from(["a", "b", "c", "d"])


class PlanMachine(RuleBasedStateMachine):
    """Random takes, completions, failures and bans from several sources."""

    claims = Bundle("claims")

    def __init__(self) -> None:
        super().__init__()
        self.chunks = 5
        self.plan = TransferPlan(range(self.chunks))
        self.completed: list[int] = []
        self.banned: set[str] = set()
        self.held: dict[tuple[str, int], bool] = {}
        #: Sources judged stalled (for good: a claim only grows older).
        self.stalled: set[str] = set()

    @rule(target=claims, source=SOURCES, pays=st.none() | st.booleans())
    def take(self, source: str, pays: bool | None) -> tuple[str, int] | None:
        judged: list[tuple[int, str]] = []

        def judge(index: int, owner: str) -> bool:
            judged.append((index, owner))
            assert pays is not None
            return pays

        claim = self.plan.take(
            source,
            None if pays is None else judge,
            lambda index, holder: holder in self.stalled,
        )
        assert all(owner != source for _, owner in judged)
        if claim is None:
            return None
        if not claim.direct and self.plan.writer(claim.index) is not None:
            assert pays is not False and (pays is None or judged[-1][0] == claim.index)
        assert source not in self.banned
        assert (source, claim.index) not in self.held
        assert claim.index not in self.completed
        self.held[source, claim.index] = claim.direct
        return source, claim.index

    @rule(claim=consumes(claims))
    def complete(self, claim: tuple[str, int] | None) -> None:
        if claim is None:
            return
        source, index = claim
        ok = self.plan.complete(index, source)
        self.held.pop(claim, None)
        if ok:
            assert source not in self.banned
            self.completed.append(index)
            for other in [k for k in self.held if k[1] == index]:
                del self.held[other]

    @rule(claim=consumes(claims))
    def fail(self, claim: tuple[str, int] | None) -> None:
        if claim is None:
            return
        self.plan.fail(claim[1], claim[0])
        self.held.pop(claim, None)

    @rule(source=SOURCES)
    def stall(self, source: str) -> None:
        self.stalled.add(source)

    @rule(source=SOURCES)
    def ban(self, source: str) -> None:
        self.banned.add(source)
        self.plan.ban(source)
        for key in [k for k in self.held if k[0] == source]:
            del self.held[key]

    @invariant()
    def each_chunk_completes_at_most_once(self) -> None:
        assert len(self.completed) == len(set(self.completed)) == self.plan.done

    @invariant()
    def finished_iff_every_chunk_complete(self) -> None:
        assert self.plan.finished == (len(self.completed) == self.chunks)

    @invariant()
    def live_copies_are_bounded(self) -> None:
        # Copies on a stalled source count for nothing; the others are at
        # most MAX_DUPLICATES in all, and one per chunk.
        live = [
            index
            for index in range(self.chunks)
            for holder in self.plan.holders(index)
            if holder != self.plan.writer(index) and holder not in self.stalled
        ]
        assert len(live) <= MAX_DUPLICATES
        assert len(live) == len(set(live))
        if not self.stalled:
            assert self.plan.duplicates() <= MAX_DUPLICATES

    @invariant()
    def the_plan_agrees_with_the_model(self) -> None:
        for index in range(self.chunks):
            held = {s for s, i in self.held if i == index}
            assert set(self.plan.holders(index)) == held

    @invariant()
    def banned_sources_hold_nothing(self) -> None:
        for index in range(self.chunks):
            assert not set(self.plan.holders(index)) & self.banned

    @invariant()
    def every_chunk_is_somewhere(self) -> None:
        pending = {i for i in range(self.chunks) if self.plan.is_pending(i)}
        assert not pending & set(self.completed)


PlanMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40)
test_plan_state_machine = PlanMachine.TestCase


def test_copies_on_stalled_sources_do_not_keep_an_idle_source_from_copying() -> None:
    plan = TransferPlan(range(2))
    plan.take("a"), plan.take("b")
    assert plan.take("c") == Claim(0, False)
    assert plan.take("d") == Claim(1, False)
    assert plan.take("idle") is None
    assert plan.take("idle", stalled=lambda index, holder: False) is None
    # "c" and "d" stalled: neither counts, and their chunks are offered again.
    stalled = {"c", "d"}
    claim = plan.take("idle", stalled=lambda index, holder: holder in stalled)
    assert claim == Claim(0, False)
    assert plan.holders(0) == ("a", "c", "idle")
    # The live copy of chunk 0 counts again; "d"'s still does not.
    assert plan.take("e", stalled=lambda index, holder: holder in stalled) == (
        Claim(1, False)
    )
    assert plan.take("f", stalled=lambda index, holder: holder in stalled) is None


def test_a_chunk_left_to_a_stalled_copy_by_its_failed_writer_is_offered_again() -> None:
    plan = TransferPlan(range(1))
    plan.take("writer")
    assert plan.take("copy") == Claim(0, False)
    assert not plan.fail(0, "writer")
    assert plan.take("idle") is None
    assert plan.take("idle", stalled=lambda index, holder: holder == "copy") == (
        Claim(0, False)
    )
