"""A file's many holders: each downloader gets a few, stable for it, spread over all."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

from redesdl.central.sampling import some_holders

HOLDERS = [SimpleNamespace(id=f"s{i}") for i in range(1000)]


def test_few_holders_are_all_given_in_order() -> None:
    assert some_holders(HOLDERS[:5], "alice", 64) == HOLDERS[:5]


def test_one_requester_gets_the_same_bounded_sample_every_time() -> None:
    first = some_holders(HOLDERS, "alice", 64)
    assert len(first) == 64
    assert some_holders(list(reversed(HOLDERS)), "alice", 64) == first


def test_requesters_spread_over_every_holder() -> None:
    chosen = Counter(
        holder.id
        for client in range(500)
        for holder in some_holders(HOLDERS, f"client{client}", 64)
    )
    # 500 x 64 picks over 1,000 holders: 32 each on average.
    assert len(chosen) == 1000
    assert max(chosen.values()) < 3 * 32


def test_a_holder_that_leaves_changes_one_place_of_a_sample() -> None:
    before = some_holders(HOLDERS, "alice", 64)
    after = some_holders([h for h in HOLDERS if h is not before[0]], "alice", 64)
    assert len(set(map(id, before)) & set(map(id, after))) == 63
