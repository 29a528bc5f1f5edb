"""What a server counts for its metrics: plain ints, written on the reactor thread only.

Counting is on the hot path, so it is a dict or list increment with no lock: only the reactor
thread writes, and a scrape (in another thread) reads copies.  Copying a dict or list of
ints holds the GIL throughout, so a copy is consistent, if a moment old.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

ENDPOINTS = {b"/login": "login", b"/logout": "logout", b"/communicate": "communicate"}
OTHER_ENDPOINT = "other"
LOGIN_OUTCOMES = {200: "success", 401: "failure", 429: "throttled", 400: "invalid",
                  503: "unavailable"}
REFUSED_LOGIN = "refused"  # 403, 405, 413, 415: refused before any credential was read
# Seconds: callbacks range from a millisecond to the 30 s default timeout.
CALLBACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
# Seconds: a sweep of 100,000 sessions takes a few tenths of a second in all.
SWEEP_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 5.0)


class Histogram:
    """Observations counted into fixed buckets (Prometheus semantics: C{le} is inclusive)."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of C{value}."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> tuple[list[tuple[str, int]], float]:
        """The buckets as Prometheus wants them (C{le} label, cumulative count) and the sum."""
        counts, total = list(self.counts), self.total
        buckets: list[tuple[str, int]] = []
        running = 0
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), counts):
            running += count
            buckets.append((bound, running))
        return buckets, total


class Counts:
    """One server's request, login, callback and sweep counts."""

    __slots__ = ("requests", "logins", "callback_seconds", "sweep_seconds")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.logins: dict[str, int] = {}
        self.callback_seconds = Histogram(CALLBACK_BUCKETS)
        self.sweep_seconds = Histogram(SWEEP_BUCKETS)

    def request(self, path: bytes | None, method: bytes | None, code: int) -> None:
        """Count one answered request (and, for C{POST /login}, its outcome)."""
        endpoint = ENDPOINTS.get(path or b"", OTHER_ENDPOINT)
        key = (endpoint, code)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        if endpoint == "login" and method == b"POST":
            outcome = LOGIN_OUTCOMES.get(code, REFUSED_LOGIN)
            self.logins[outcome] = self.logins.get(outcome, 0) + 1
