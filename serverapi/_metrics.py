"""Prometheus metrics of one server: a collector that reads its counts and state at scrape
time, in a registry of its own (several servers in one process never clash).

C{prometheus_client} is imported only here and only when metrics are configured (it is the
optional C{serverapi[metrics]} extra).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._counters import LOGIN_OUTCOMES, REFUSED_LOGIN, Counts, Histogram

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from ._service import APIService

_OUTCOMES = (*LOGIN_OUTCOMES.values(), REFUSED_LOGIN)


class ServerCollector:
    """Turns a server's plain-int counts and its live state into metric families.

    C{collect} runs in the thread that serves the scrape, not on the reactor: it only reads
    (copies of dicts and lists, lengths, ints), which the GIL keeps consistent.
    """

    def __init__(self, service: APIService, counts: Counts,
                 serving: Callable[[], bool]) -> None:
        self._service = service
        self._counts = counts
        self._serving = serving

    def describe(self) -> list[Any]:
        """Nothing to check at registration: the registry is this server's alone."""
        return []

    def collect(self) -> Iterator[Any]:
        """The metric families, read now."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
        )

        service, counts = self._service, self._counts
        requests = CounterMetricFamily(
            "serverapi_requests", "Requests answered, by endpoint (login, logout, communicate, "
            "other) and status code.", labels=["endpoint", "code"])
        for (endpoint, code), count in sorted(dict(counts.requests).items()):
            requests.add_metric([endpoint, str(code)], count)
        yield requests
        logins = CounterMetricFamily(
            "serverapi_logins", "POST /login by outcome: success (200), failure (401), "
            "throttled (429), invalid (400), unavailable (503), refused (403, 405, 413, 415).",
            labels=["outcome"])
        seen = dict(counts.logins)
        for outcome in _OUTCOMES:
            logins.add_metric([outcome], seen.get(outcome, 0))
        yield logins
        yield GaugeMetricFamily("serverapi_sessions", "Live sessions.",
                                value=service.sessions.live_count())
        waiting = len(service.callbacks.waiting)
        yield GaugeMetricFamily(
            "serverapi_callbacks_running", "Request callbacks a worker has taken and not yet "
            "returned (timed-out ones included, until they return).",
            value=max(0, service.callbacks.in_flight - waiting))
        yield GaugeMetricFamily("serverapi_callbacks_waiting",
                                "Request callbacks waiting for a worker.", value=waiting)
        yield GaugeMetricFamily("serverapi_password_checks",
                                "Password checks in the hash pool, running or waiting.",
                                value=service.hashing.in_flight)
        yield _histogram("serverapi_callback_duration_seconds",
                         "Request callback run time, from a worker taking it to its result "
                         "being back on the reactor.", counts.callback_seconds)
        yield _histogram("serverapi_session_sweep_duration_seconds",
                         "Duration of each periodic session validity sweep.",
                         counts.sweep_seconds)
        yield GaugeMetricFamily("serverapi_serving", "1 while the server serves, else 0.",
                                value=1 if self._serving() else 0)


def _histogram(name: str, documentation: str, histogram: Histogram) -> Any:
    """A histogram family from a L{Histogram}."""
    from prometheus_client.core import HistogramMetricFamily

    buckets, total = histogram.cumulative()
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=total)


def server_registry(collector: ServerCollector) -> CollectorRegistry:
    """A registry of this server's metrics plus the process's (CPU, memory, GC, Python)."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, \
        ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    registry.register(collector)  # type: ignore[arg-type]
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
