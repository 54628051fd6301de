"""The choice of each stage's way to disk, from what each way has cost."""

from __future__ import annotations

import threading

from redesdl.transfer.writeroute import (
    CACHED_ADVANTAGE,
    HALF_LIFE_BYTES,
    PROBE_EVERY,
    Route,
    WriteRouter,
)

MIB = 1024 * 1024


def measured(direct: float, cached: float, **options: float) -> WriteRouter:
    """A router whose two routes cost C{direct} and C{cached} s per MiB."""
    router = WriteRouter(**options)  # type: ignore[arg-type]
    router.record(Route.DIRECT, MIB, direct)
    router.record(Route.CACHED, MIB, cached)
    return router


def routes(router: WriteRouter, count: int) -> list[Route]:
    return [router.choose() for _ in range(count)]


def test_the_first_stages_measure_direct_writes_then_cached_ones() -> None:
    router = WriteRouter()
    # Nothing measured: every stage begun now goes around the cache.
    assert routes(router, 3) == [Route.DIRECT] * 3
    router.record(Route.DIRECT, MIB, 0.001)
    # One direct write measured: the next goes through the cache, to compare.
    assert router.choose() is Route.CACHED
    assert router.cost(Route.CACHED) is None


def test_direct_writes_are_kept_unless_the_cache_is_much_cheaper() -> None:
    # Three times cheaper is not enough: the cache's writeback is still to come.
    router = measured(direct=0.003, cached=0.001)
    assert set(routes(router, PROBE_EVERY - 1)) == {Route.DIRECT}
    router = measured(direct=0.001 * CACHED_ADVANTAGE * 1.1, cached=0.001)
    assert set(routes(router, PROBE_EVERY - 1)) == {Route.CACHED}


def test_every_probe_th_stage_takes_the_other_way() -> None:
    router = measured(direct=0.001, cached=0.01, probe_every=4)
    assert routes(router, 8) == [Route.DIRECT] * 3 + [Route.CACHED] + [
        Route.DIRECT
    ] * 3 + [Route.CACHED]
    router = measured(direct=0.1, cached=0.001, probe_every=4)
    assert routes(router, 4) == [Route.CACHED] * 3 + [Route.DIRECT]


def test_a_cache_that_turns_expensive_is_left_within_a_few_probes() -> None:
    # Cheap cache at first (the memory is still the guest's)...
    router = measured(direct=0.008, cached=0.0005, probe_every=4)
    assert router.choose() is Route.CACHED
    # ...then each write through it is faulted in again by the host.
    for _ in range(3):
        router.record(Route.CACHED, MIB, 0.005)
    assert router.choose() is Route.DIRECT


def test_old_writes_count_half_after_the_half_life() -> None:
    router = WriteRouter()
    router.record(Route.DIRECT, HALF_LIFE_BYTES, 1.0)
    router.record(Route.DIRECT, HALF_LIFE_BYTES, 3.0)
    # (1 * 0.5 + 3) seconds over (0.5 + 1) half-lives of bytes.
    cost = router.cost(Route.DIRECT)
    assert cost is not None
    assert abs(cost - 3.5 / (1.5 * HALF_LIFE_BYTES)) < 1e-15
    assert router.written(Route.DIRECT) == 2 * HALF_LIFE_BYTES


def test_empty_writes_and_a_clock_that_went_back_change_nothing() -> None:
    router = WriteRouter()
    router.record(Route.CACHED, 0, 5.0)
    assert router.cost(Route.CACHED) is None
    router.record(Route.CACHED, MIB, -1.0)
    assert router.cost(Route.CACHED) == 0.0


def test_writer_threads_report_and_choose_at_once() -> None:
    router = WriteRouter()

    def writer() -> None:
        for _ in range(1000):
            route = router.choose()
            router.record(route, 4096, 0.0001)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert router.written(Route.DIRECT) + router.written(Route.CACHED) == (
        4 * 1000 * 4096
    )


def test_the_summary_says_what_went_each_way() -> None:
    router = WriteRouter()
    assert router.summary() == "nothing written"
    router.record(Route.DIRECT, 768 * MIB, 0.6)
    router.record(Route.CACHED, 256 * MIB, 0.5)
    assert router.summary() == (
        "768.0 MiB around the page cache (0.80 s per GiB lately), "
        "256.0 MiB through the page cache (2.00 s per GiB lately)"
    )
