"""The dashboard's JSON answers, read from the central's live state.

Each method answers one ``/api/*`` path (docs/operations.md shows every
reply). None walks the catalog or a secondary's files: catalog pages start
at a cursor in the sorted index, a search examines a bounded slice of it,
counts are the ones the index, admission queue and planner keep, and every
list is cut to a fixed length. Input errors raise L{BadQueryError}.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from redesdl.central.catalog_index import NameEntry
from redesdl.central.web.series import SeriesSampler

#: Most names one search request examines.
SEARCH_SCAN = 10_000
#: Most entries of a paged list (secondaries, files).
MAX_LIMIT = 1000
#: Most entries of the fixed lists (queue, copies, top statistics).
LISTED = 100
#: Seconds a statistics answer is reused (it ranks every file and client).
STATS_CACHE = 5.0
#: A line that waits this long with no slot given or freed is stuck.
STUCK_AFTER = 60.0
#: Failed copies in a row of one file that make an alert.
FAILING_AFTER = 3
#: Alerts of each kind, at most.
ALERTS_EACH = 10
#: Copies set aside this recently are shown as alerts.
SET_ASIDE_SHOWN = 600.0


class BadQueryError(ValueError):
    """A query parameter the API cannot use (a 400 answer)."""


class DashboardApi:
    """Answers for the dashboard, from a running C{CentralFactory}."""

    def __init__(self, factory: Any, sampler: SeriesSampler, clock: Any) -> None:
        self._factory = factory
        self._sampler = sampler
        self._clock = clock
        self._stats_cache: tuple[float, dict[str, Any]] | None = None

    # -- /api/summary -------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        factory = self._factory
        registry, admission, planner = (
            factory.registry,
            factory.admission,
            factory.planner,
        )
        return {
            "time": self._clock.seconds(),
            "secondaries": {
                "up": len(registry.secondaries),
                "down": len(factory.observed.departed),
            },
            "files": registry.file_count(),
            "bytes": registry.index.listed_bytes,
            "downloads": {
                "active": len(admission.active),
                "queued": len(admission.waiting),
            },
            "replication": {
                "backlog": planner.backlog(),
                "copying": len(planner.inProgress),
            },
            "totals": dict(factory.stats.totals),
            "alerts": self.alerts(),
        }

    def alerts(self) -> list[dict[str, str]]:
        """What an operator should look at, in plain words, worst first."""
        factory, now = self._factory, self._clock.seconds()
        alerts: list[dict[str, str]] = []
        admission = factory.admission
        stuck = now - admission.last_moved
        if len(admission.waiting) and stuck > STUCK_AFTER:
            alerts.append(
                _alert(
                    "error",
                    f"the download queue is stuck: {len(admission.waiting)} "
                    f"waiting, no slot given or freed for {stuck:.0f} s",
                )
            )
        departed = list(factory.observed.departed.values())
        for gone in reversed(departed[-ALERTS_EACH:]):
            heard = gone["last_heartbeat"] or gone["gone"]
            alerts.append(
                _alert(
                    "warning",
                    f"secondary {gone['name']} is down "
                    f"(last heard {now - heard:.0f} s ago)",
                )
            )
        suspect = sum(len(r.suspect) for r in factory.registry.secondaries.values())
        if suspect:
            alerts.append(
                _alert(
                    "warning",
                    f"{suspect} copies reported corrupt are set aside until "
                    "their secondary checks them",
                )
            )
        aside = [
            a for a in factory.observed.set_aside if now - a["time"] <= SET_ASIDE_SHOWN
        ]
        for a in reversed(aside[-ALERTS_EACH:]):
            alerts.append(
                _alert(
                    "warning",
                    f"{a['secondary']}'s copy of {a['file']} was set aside as "
                    f"corrupt: {a['why']} ({now - a['time']:.0f} s ago)",
                )
            )
        alerts.extend(islice(self._failing_alerts(), ALERTS_EACH))
        return alerts

    def _failing_alerts(self) -> Iterator[dict[str, str]]:
        secondaries = self._factory.registry.secondaries
        for rid, names in self._factory.planner.failures.items():
            record = secondaries.get(rid)
            for name, failed in names.items():
                if failed >= FAILING_AFTER and record is not None:
                    yield _alert(
                        "warning",
                        f"replication of {name} to {record.name} failed "
                        f"{failed} times in a row",
                    )

    # -- /api/secondaries ---------------------------------------------------

    def secondaries(self, after: str | None, limit: int) -> dict[str, Any]:
        factory = self._factory
        live = {r.name: r for r in factory.registry.secondaries.values()}
        departed = factory.observed.departed
        names = (
            name
            for name in (*live, *(n for n in departed if n not in live))
            if after is None or name > after
        )
        page = heapq.nsmallest(limit + 1, names)
        rows = []
        for name in page[:limit]:
            record = live.get(name)
            rows.append(
                self._secondary(record) if record else self._departed(departed[name])
            )
        return {"secondaries": rows, "more": len(page) > limit}

    def _secondary(self, record: Any) -> dict[str, Any]:
        served = self._factory.observed.served
        return {
            "name": record.name,
            "address": f"{record.host}:{record.port}",
            "up": True,
            "files": len(record.files),
            "served_bytes": served.totals.get(record.name, 0),
            "rate": served.rate(record.name),
            "last_heartbeat": record.lastHeard,
            "boot": record.boot,
            "link": "registered" if record.catalogComplete else "reporting",
        }

    def _departed(self, gone: dict[str, Any]) -> dict[str, Any]:
        served = self._factory.observed.served
        return {
            "name": gone["name"],
            "address": gone["address"],
            "up": False,
            "files": gone["files"],
            "served_bytes": served.totals.get(gone["name"], 0),
            "rate": 0.0,
            "last_heartbeat": gone["last_heartbeat"],
            "boot": gone["boot"],
            "link": "down",
        }

    # -- /api/files ---------------------------------------------------------

    def files(self, after: str | None, limit: int, query: str | None) -> dict[str, Any]:
        registry = self._factory.registry
        complete = [
            r for r in registry.secondaries.values() if r.catalogComplete and not r.gone
        ]
        entries = registry.names_after(after)
        budget = SEARCH_SCAN if query else limit + 1
        wanted = query.casefold() if query else None
        rows: list[dict[str, Any]] = []
        scanned, last, more = 0, None, False
        for entry in entries:
            if len(rows) == limit or scanned == budget:
                more = True
                break
            scanned += 1
            last = entry.name
            if wanted is None or wanted in entry.name.casefold():
                rows.append(self._file(entry, complete))
        return {
            "files": rows,
            "more": more,
            "next_after": last if query else (rows[-1]["name"] if rows else None),
            "total": registry.file_count(),
            "scanned": scanned,
        }

    def _file(self, entry: NameEntry, complete: list[Any]) -> dict[str, Any]:
        info = entry.info
        served = entry.served
        assert served is not None
        tally = self._factory.stats.data["files"].get(entry.name, {})
        return {
            "name": entry.name,
            "size": info.size,
            "sha256": info.sha256,
            "sources": entry.sources,
            "replicated": bool(complete)
            and all(
                served.holders.get(r.id) is r and entry.name not in r.suspect
                for r in complete
            ),
            "downloads": {
                "completed": tally.get("completed", 0),
                "failed": tally.get("failed", 0),
            },
        }

    # -- /api/downloads -----------------------------------------------------

    def downloads(self) -> dict[str, Any]:
        factory = self._factory
        admission, index = factory.admission, factory.registry.index
        active = []
        for request in admission.active:
            entry = index.get(request.file)
            progress = request.progress
            active.append(
                {
                    "client": request.client,
                    "file": request.file,
                    "size": entry.info.size if entry and entry.served else None,
                    "done": progress[0] if progress else None,
                    "rate": progress[1] if progress else None,
                    "sources": progress[2] if progress else None,
                    "since": request.since,
                }
            )
        queued = [
            {
                "client": request.client,
                "file": request.file,
                "position": position,
                "since": request.asked,
            }
            for position, request in enumerate(islice(admission.waiting, LISTED), 1)
        ]
        return {
            "active": active,
            "queued": queued,
            "queued_total": len(admission.waiting),
            "recent": list(reversed(factory.observed.recent)),
        }

    # -- /api/replication ---------------------------------------------------

    def replication(self) -> dict[str, Any]:
        planner = self._factory.planner
        secondaries = self._factory.registry.secondaries

        def name_of(rid: str) -> str:
            record = secondaries.get(rid)
            return record.name if record is not None else rid

        copies = [
            {"secondary": name_of(rid), "file": name, "since": since}
            for (rid, name), since in islice(planner.since.items(), LISTED)
        ]
        failing = [
            {"secondary": name_of(rid), "file": name, "retry_at": retry_at}
            for rid, name, retry_at in islice(_retries(planner.retrying()), LISTED)
        ]
        return {"backlog": planner.backlog(), "copies": copies, "failing": failing}

    # -- /api/stats ---------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        now = self._clock.seconds()
        if self._stats_cache is not None and now - self._stats_cache[0] < STATS_CACHE:
            return self._stats_cache[1]
        stats = self._factory.stats
        data = stats.data
        per_file = [
            {"file": name, **_tally(tally)}
            for name, tally in _top(data["files"].items())
        ]
        per_client = [
            {"client": name, **_tally(tally), "files": _files_of(tally)}
            for name, tally in _top(data["clients"].items())
        ]
        answer = {
            "totals": dict(stats.totals),
            "per_file": per_file,
            "per_client": per_client,
        }
        self._stats_cache = (now, answer)
        return answer

    # -- /api/series --------------------------------------------------------

    def series(self, seconds: float) -> dict[str, Any]:
        return self._sampler.series(seconds)


def _alert(level: str, text: str) -> dict[str, str]:
    return {"level": level, "text": text}


def _retries(retrying: dict[str, dict[str, float]]) -> Iterator[tuple[str, str, float]]:
    for rid, names in retrying.items():
        for name, retry_at in names.items():
            yield rid, name, retry_at


def _top(
    items: Iterable[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    return heapq.nlargest(LISTED, items, key=lambda item: item[1].get("completed", 0))


def _tally(tally: dict[str, Any]) -> dict[str, int]:
    return {key: tally.get(key, 0) for key in ("completed", "failed", "bytes")}


def _files_of(tally: dict[str, Any]) -> list[str]:
    """The files a client downloaded, if the statistics keep them (capped)."""
    files = tally.get("files")
    if not isinstance(files, dict | list):
        return []
    return [str(name) for name in islice(files, LISTED)]
