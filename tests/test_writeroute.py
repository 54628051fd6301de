"""A download leaves the page cache once writing through it proves dear."""

from __future__ import annotations

import threading
import time

from redesdl.transfer.writeroute import (
    CACHED_LIMIT,
    HALF_LIFE_BYTES,
    MIN_MEASURED,
    Route,
    WriteRouter,
)

MIB = 1024 * 1024
GIB = 1024 * MIB

#: CPU seconds one MiB costs through a cache with memory to spare (0.15 s per
#: GiB), and once the host takes its memory back (3 s per GiB).
CHEAP = 0.15 / 1024
DEAR = 3.0 / 1024


def written(router: WriteRouter, mib: int, seconds_per_mib: float) -> None:
    for _ in range(mib):
        router.record(Route.CACHED, MIB, seconds_per_mib)


def test_a_cheap_cache_is_kept_for_the_whole_download() -> None:
    router = WriteRouter()
    assert router.chunk_route() is Route.CACHED
    written(router, 4096, CHEAP)
    assert router.chunk_route() is Route.CACHED
    assert router.left_cache_at is None


def test_a_dear_cache_is_left_once_enough_was_measured() -> None:
    router = WriteRouter()
    written(router, MIN_MEASURED // MIB - 1, DEAR)
    # One slow start is not judged yet.
    assert router.chunk_route() is Route.CACHED
    written(router, 1, DEAR)
    assert router.chunk_route() is Route.DIRECT
    assert router.left_cache_at is not None
    assert abs(router.left_cache_at * GIB - 3.0) < 1e-9


def test_the_limit_is_a_cost_per_byte() -> None:
    just_under = CACHED_LIMIT * MIB * 0.99
    router = WriteRouter()
    written(router, 64, just_under)
    assert router.chunk_route() is Route.CACHED
    written(router, 64, CACHED_LIMIT * MIB * 1.01)
    assert router.chunk_route() is Route.DIRECT


def test_a_cache_that_turns_dear_mid_download_is_left_within_a_few_half_lives() -> None:
    router = WriteRouter()
    written(router, 512, CHEAP)
    assert router.chunk_route() is Route.CACHED
    written(router, HALF_LIFE_BYTES // MIB, DEAR)
    assert router.chunk_route() is Route.DIRECT


def test_leaving_is_for_good() -> None:
    router = WriteRouter()
    written(router, 16, DEAR)
    written(router, 1024, CHEAP)
    assert router.chunk_route() is Route.DIRECT


def test_direct_writes_do_not_decide() -> None:
    router = WriteRouter()
    for _ in range(64):
        router.record(Route.DIRECT, MIB, 1.0)
    assert router.chunk_route() is Route.CACHED
    assert router.written(Route.DIRECT) == 64 * MIB


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


def test_writer_threads_report_while_the_reactor_asks() -> None:
    router = WriteRouter()
    routes: list[Route] = []

    def writer() -> None:
        for _ in range(1000):
            router.record(Route.CACHED, 64 * 1024, DEAR / 16)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        routes.append(router.chunk_route())
    for thread in threads:
        thread.join()
    assert router.written(Route.CACHED) == 4 * 1000 * 64 * 1024
    assert router.chunk_route() is Route.DIRECT
    # Once left, never back.
    if Route.DIRECT in routes:
        assert Route.CACHED not in routes[routes.index(Route.DIRECT) :]


def test_the_summary_says_what_went_each_way() -> None:
    router = WriteRouter()
    assert router.summary() == "nothing written"
    router.record(Route.CACHED, 256 * MIB, 0.5)
    router.record(Route.DIRECT, 768 * MIB, 0.6)
    assert router.summary() == (
        "256.0 MiB through the page cache (2.00 CPU-s per GiB lately), "
        "768.0 MiB around the page cache (0.80 s per GiB lately)"
    )


def test_a_cached_write_is_measured_in_cpu_time_a_direct_one_in_wall_time() -> None:
    assert Route.CACHED.clock is time.thread_time
    assert Route.DIRECT.clock is time.perf_counter
