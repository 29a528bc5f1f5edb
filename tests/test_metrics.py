"""Metrics and health on their own endpoint, in memory: counts after traffic, gauges, probes."""

from __future__ import annotations

import json
import re
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig
from serverapi._counters import Counts, Histogram

from .helpers import CREDENTIALS, HeldPool, MemoryServer, echo, request_bytes, status_of

METRICS = "tcp:9100:interface=127.0.0.1"


def scrape(server: MemoryServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The server's metrics, exposed and parsed back: (sample name, labels) -> value."""
    assert server.service.metrics is not None
    text = generate_latest(server.service.metrics.registry).decode("utf-8")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def exchange(server: MemoryServer, path: str, body: bytes = b"{}", *,
             cookie: str | None = None, method: str = "POST") -> tuple[int | None, bytes]:
    """One request through the server's real site; its status and the raw answer."""
    answer, _ = server.raw(request_bytes(path, body, cookie=cookie, method=method))
    return status_of(answer), answer


def login(server: MemoryServer, username: str = "alice",
          password: str = "password123") -> str:
    """Log in through the real site and return the token."""
    status, answer = exchange(server, "/login", json.dumps(
        {"username": username, "password": password}).encode())
    assert status == 200, answer
    found = re.search(rb"sessionToken=([^;]+);", answer)
    assert found is not None
    return found.group(1).decode()


def requests(samples: dict[Any, float]) -> dict[tuple[str, str], float]:
    """serverapi_requests_total as {(endpoint, code): count}."""
    return {(dict(labels)["endpoint"], dict(labels)["code"]): value
            for (name, labels), value in samples.items() if name == "serverapi_requests_total"}


class CountsTests(SynchronousTestCase):
    """The plain-int counters."""

    def test_histogram(self) -> None:
        """Buckets are cumulative and inclusive at their bound; the sum is kept."""
        histogram = Histogram((0.1, 1.0))
        for value in (0.05, 0.1, 0.5, 3.0):
            histogram.observe(value)
        self.assertEqual(histogram.cumulative(),
                         ([("0.1", 2), ("1.0", 3), ("+Inf", 4)], 3.65))

    def test_requests_and_logins(self) -> None:
        """Unknown paths count as 'other'; only POST /login counts as a login outcome."""
        counts = Counts()
        counts.request(b"/login", b"POST", 200)
        counts.request(b"/login", b"POST", 415)
        counts.request(b"/login", b"OPTIONS", 204)
        counts.request(b"/nope", b"GET", 404)
        counts.request(None, None, 400)
        self.assertEqual(counts.requests, {("login", 200): 1, ("login", 415): 1,
                                           ("login", 204): 1, ("other", 404): 1,
                                           ("other", 400): 1})
        self.assertEqual(counts.logins, {"success": 1, "refused": 1})


class ScrapeTests(SynchronousTestCase):
    """A scrape after real traffic through the server's own site."""

    def test_counts_after_traffic(self) -> None:
        """Requests by endpoint and status, logins by outcome, sessions, latency, sweeps."""

        def slow_echo(username: str, token: str, data: dict[str, Any]) -> Any:
            """Echo, after moving the clock on by data["seconds"]."""
            server.reactor.advance(data.get("seconds", 0))  # the callback "takes" this long
            return echo(username, token, data)

        server = MemoryServer(metrics_endpoint=METRICS, login_attempts=2,
                              request_callback=slow_echo)
        alice = login(server)
        login(server, "bob", "securepassword")
        for seconds in (0.003, 0.3, 2.0):
            self.assertEqual(exchange(server, "/communicate",
                                      b'{"seconds": %r}' % seconds, cookie=alice)[0], 200)
        self.assertEqual(exchange(server, "/communicate", b"[1]", cookie=alice)[0], 400)
        self.assertEqual(exchange(server, "/communicate", cookie="nope")[0], 401)
        for _ in range(3):
            exchange(server, "/login", b'{"username": "eve", "password": "x"}')
        self.assertEqual(exchange(server, "/login", b'{"username": 1}')[0], 400)
        self.assertEqual(exchange(server, "/logout", cookie=alice)[0], 200)
        self.assertEqual(exchange(server, "/metrics", method="GET")[0], 404)
        self.assertEqual(exchange(server, "/login", method="GET")[0], 405)
        big, _ = server.raw(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
                            b"Content-Type: application/json\r\n\r\n")
        self.assertEqual(status_of(big), 413)
        server.reactor.advance(1)  # a validity sweep (others ran while callbacks "took" time)
        samples = scrape(server)
        self.assertEqual(requests(samples), {
            ("login", "200"): 2, ("login", "401"): 2, ("login", "429"): 1, ("login", "400"): 1,
            ("login", "405"): 1, ("login", "413"): 1, ("communicate", "200"): 3,
            ("communicate", "400"): 1, ("communicate", "401"): 1, ("logout", "200"): 1,
            ("other", "404"): 1})
        logins = {dict(labels)["outcome"]: value for (name, labels), value in samples.items()
                  if name == "serverapi_logins_total"}
        self.assertEqual(logins, {"success": 2, "failure": 2, "throttled": 1, "invalid": 1,
                                  "unavailable": 0, "refused": 1})
        self.assertEqual(samples[("serverapi_sessions", ())], 1)
        self.assertEqual(samples[("serverapi_serving", ())], 1)
        self.assertEqual(samples[("serverapi_callback_duration_seconds_count", ())], 3)
        self.assertAlmostEqual(samples[("serverapi_callback_duration_seconds_sum", ())], 2.303)
        buckets = {dict(labels)["le"]: value for (name, labels), value in samples.items()
                   if name == "serverapi_callback_duration_seconds_bucket"}
        self.assertEqual((buckets["0.0025"], buckets["0.005"], buckets["0.25"],
                          buckets["0.5"], buckets["2.5"], buckets["+Inf"]),
                         (0, 1, 1, 2, 3, 3))
        self.assertGreaterEqual(
            samples[("serverapi_session_sweep_duration_seconds_count", ())], 1)
        self.assertIn(("process_cpu_seconds_total", ()), samples)

    def test_callbacks_running_and_waiting(self) -> None:
        """Held jobs are waiting; a job a worker took is running; password checks counted."""
        pool = HeldPool()
        server = MemoryServer(metrics_endpoint=METRICS, pool=pool)
        token = login(server)
        for _ in range(3):
            server.connect()[0].dataReceived(request_bytes("/communicate", cookie=token))
        pool.jobs[0].start()  # a worker has taken it
        samples = scrape(server)
        self.assertEqual((samples[("serverapi_callbacks_running", ())],
                          samples[("serverapi_callbacks_waiting", ())],
                          samples[("serverapi_password_checks", ())]), (1, 2, 0))

    def test_registries_are_separate(self) -> None:
        """Two servers in one process keep their own registries and counts."""
        first, second = (MemoryServer(metrics_endpoint=METRICS) for _ in range(2))
        login(first)
        self.assertIsNot(first.service.metrics.registry,  # type: ignore[union-attr]
                         second.service.metrics.registry)  # type: ignore[union-attr]
        self.assertEqual(requests(scrape(first)), {("login", "200"): 1})
        self.assertEqual(requests(scrape(second)), {})

    def test_no_metrics_no_counting(self) -> None:
        """Without a metrics endpoint the plain parts run: nothing is counted or listened."""
        server = MemoryServer()
        self.assertIsNone(server.service.counts)
        self.assertIsNone(server.service.metrics)
        self.assertEqual(type(server.service.site).__name__, "APISite")
        self.assertEqual(len(server.reactor.tcpServers), 1)


class EndpointTests(SynchronousTestCase):
    """The metrics endpoint's listening and its resource tree."""

    def test_listens_on_its_own_endpoint(self) -> None:
        """The metrics site listens on the metrics endpoint beside the API port."""
        server = MemoryServer(metrics_endpoint=METRICS, endpoint="tcp:8000")
        ports = [(port, interface) for port, _, _, interface in server.reactor.tcpServers]
        self.assertEqual(ports, [(8000, ""), (9100, "127.0.0.1")])
        self.assertIn("serverapi metrics on", server.log.text)

    def test_healthz(self) -> None:
        """200 while serving, 503 from the moment a stop begins."""
        pool = HeldPool()
        server = MemoryServer(metrics_endpoint=METRICS, pool=pool)
        probe = StubTreq(server.service.metrics.root)  # type: ignore[union-attr]

        def health() -> tuple[int, Any]:
            """Probe /healthz: status and body."""
            response = self.successResultOf(probe.get("http://metrics.test/healthz"))
            return response.code, json.loads(self.successResultOf(response.content()))

        self.assertEqual(health(), (200, {"status": "serving"}))
        token = login(server)
        server.connect()[0].dataReceived(request_bytes("/communicate", cookie=token))
        pool.jobs[0].start()
        stopping = server.service.stopService()  # waits for the running callback
        self.assertNoResult(stopping)
        self.assertEqual(health(), (503, {"status": "not serving"}))
        pool.release()
        self.successResultOf(stopping)
        self.assertEqual(health()[0], 503)

    def test_other_paths_are_404(self) -> None:
        """Only /healthz and /metrics exist on the metrics port."""
        server = MemoryServer(metrics_endpoint=METRICS)
        probe = StubTreq(server.service.metrics.root)  # type: ignore[union-attr]
        for path in ("/", "/nope", "/healthz/x", "/login"):
            response = self.successResultOf(probe.get("http://metrics.test" + path))
            self.assertEqual(response.code, 404, path)

    def test_needs_prometheus_client(self) -> None:
        """Without prometheus_client, asking for metrics is a ValueError naming the extra."""
        import serverapi._config

        self.patch(serverapi._config, "metrics_available", lambda: False)
        with self.assertRaises(ValueError) as caught:
            ServerConfig(credentials=CREDENTIALS, request_callback=echo,
                         metrics_endpoint=METRICS)
        self.assertIn("serverapi[metrics]", str(caught.exception))
        ServerConfig(credentials=CREDENTIALS, request_callback=echo)

    def test_bad_option_types(self) -> None:
        """access_log and metrics_endpoint must be non-empty strings (or None)."""
        for name in ("access_log", "metrics_endpoint"):
            for bad in ("", 5):
                with self.assertRaises(TypeError, msg=(name, bad)):
                    ServerConfig(credentials=CREDENTIALS, request_callback=echo,
                                 **{name: bad})  # type: ignore[arg-type]
