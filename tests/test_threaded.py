"""ThreadedAPIServer over real sockets, run in a child process (see facade_scenarios)."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .scenarios import outcome


class FacadeTests(SynchronousTestCase):
    """Each test checks one scenario's outcome."""

    def outcome(self, name: str) -> Any:
        return outcome(self, "tests.facade_scenarios", name)

    def test_non_blocking_start(self) -> None:
        """block=False returns once listening on a real port; callbacks run in a worker."""
        result = self.outcome("non_blocking_start")
        self.assertEqual((result["port_nonzero"], result["status"], result["user"]),
                         (True, 200, "alice"))
        self.assertTrue(result["thread"].startswith("serverapi-worker-"), result["thread"])

    def test_keep_alive(self) -> None:
        """Twenty requests on one connection all succeed."""
        self.assertEqual(self.outcome("keep_alive"), [200] * 20)

    def test_blocking_start(self) -> None:
        """A blocking start serves, and returns when another thread stops the server."""
        self.assertEqual(self.outcome("blocking_start_returns_on_stop"),
                         {"listening": True, "served": 200, "returned_early": False,
                          "returned": True})

    def test_keyboard_interrupt(self) -> None:
        """Ctrl-C interrupts the blocked start; the server still serves until stopped."""
        self.assertEqual(self.outcome("keyboard_interrupt"),
                         {"interrupted": True, "served_after": 200})

    def test_bind_errors(self) -> None:
        """Port in use and a bad host raise in the caller's thread."""
        result = self.outcome("bind_errors")
        self.assertEqual(result["errors"], ["CannotListenError", "CannotListenError"])
        self.assertEqual((result["first_still"], result["second_now"]), (200, 200))

    def test_restart(self) -> None:
        """Start, stop, start again, three times; the port is closed after stop."""
        self.assertEqual(self.outcome("restart"),
                         {"results": [200, 200, 200], "refused_after_stop": True})

    def test_two_servers(self) -> None:
        """Two servers at once, each with its own session table."""
        self.assertEqual(self.outcome("two_servers"), {"results": [200, 200],
                                                       "counts": [1, 1]})

    def test_double_start_and_stop(self) -> None:
        """Starting a running server or stopping a stopped one is a RuntimeError."""
        self.assertEqual(self.outcome("stop_twice"),
                         {"double_start": "RuntimeError", "double_stop": "RuntimeError"})

    def test_threads(self) -> None:
        """Callbacks run in workers, validity checks on the reactor thread, neither in main."""
        result = self.outcome("threads_used")
        self.assertTrue(result["callback_thread"].startswith("serverapi-worker-"))
        self.assertEqual(result["validity_threads"], ["serverapi-reactor"])

    def test_force_close(self) -> None:
        """force_close sends Connection: close and closes the socket."""
        self.assertEqual(self.outcome("force_close"),
                         {"status": 200, "connection": "close", "closed": True})

    def test_stop_waits(self) -> None:
        """stopAPIServer waits for a running callback, whose answer is delivered."""
        self.assertEqual(self.outcome("stop_waits_for_callback"),
                         {"answer": [200], "waited": True})

    def test_stuck_callback(self) -> None:
        """A stuck callback holds the stop only for shutdown_grace."""
        self.assertEqual(self.outcome("stuck_callback_does_not_hang_stop"),
                         {"took_under_5s": True, "took_at_least_grace": True})

    def test_reactor_thread_guard(self) -> None:
        """stopAPIServer from the reactor thread is refused; getSessions works there."""
        self.assertEqual(self.outcome("stop_from_reactor_thread_refused"),
                         {"error": True, "sessions": 1})

    def test_login_timing(self) -> None:
        """Unknown-user and wrong-password logins cost the same order of time (no enumeration)."""
        result = self.outcome("login_timing")
        self.assertGreater(result["wrong"], 0.01)  # a real hash check happened
        self.assertTrue(0.5 < result["ratio"] < 2.0, result)


class OperatingTests(SynchronousTestCase):
    """setCredentials and metrics of a live embedded server (see operating_scenarios)."""

    def outcome(self, name: str) -> Any:
        """The result of one scenario of operating_scenarios."""
        return outcome(self, "tests.operating_scenarios", name)

    def test_set_credentials_while_running(self) -> None:
        """Bad input raises and keeps the old; from another thread, the swap ends the
        removed user's session before returning, and a restart keeps the new credentials."""
        self.assertEqual(self.outcome("set_credentials_while_running"), {
            "errors": ["TypeError", "TypeError", "ValueError"], "bob_before": 200,
            "returned": [None],
            "after": {"alice": 200, "bob": 401, "carol_login": True, "bob_login": False},
            "sessions": ["alice", "carol"], "carol_after_restart": True})

    def test_set_credentials_before_start(self) -> None:
        """Credentials set before starting are the ones served."""
        self.assertEqual(self.outcome("set_credentials_before_start"),
                         {"dave": True, "alice": False})

    def test_metrics_scrape(self) -> None:
        """After real traffic, /metrics (parsed with prometheus_client.parser) has the counts;
        /healthz is 200; the API port has no /metrics."""
        result = self.outcome("metrics_scrape")
        self.assertEqual((result["health"], result["api_metrics"], result["process_metrics"]),
                         ([200, {"status": "serving"}], 404, True))
        counts = result["serverapi"]
        self.assertEqual({name: value for name, value in counts.items()
                          if "_sum" not in name}, {
            "serverapi_requests_total{code=200,endpoint=login}": 1,
            "serverapi_requests_total{code=401,endpoint=login}": 2,
            "serverapi_requests_total{code=429,endpoint=login}": 1,
            "serverapi_requests_total{code=200,endpoint=communicate}": 5,
            "serverapi_requests_total{code=401,endpoint=communicate}": 1,
            "serverapi_requests_total{code=200,endpoint=logout}": 1,
            "serverapi_logins_total{outcome=success}": 1,
            "serverapi_logins_total{outcome=failure}": 2,
            "serverapi_logins_total{outcome=throttled}": 1,
            "serverapi_logins_total{outcome=invalid}": 0,
            "serverapi_logins_total{outcome=unavailable}": 0,
            "serverapi_logins_total{outcome=refused}": 0,
            "serverapi_sessions{}": 0, "serverapi_callbacks_running{}": 0,
            "serverapi_callbacks_waiting{}": 0, "serverapi_password_checks{}": 0,
            "serverapi_callback_duration_seconds_count{}": 5,
            "serverapi_session_sweep_duration_seconds_count{}": counts[
                "serverapi_session_sweep_duration_seconds_count{}"],
            "serverapi_serving{}": 1})
        self.assertGreater(counts["serverapi_callback_duration_seconds_sum{}"], 0)
