"""ThreadedAPIServer over real sockets, run in a child process (see facade_scenarios)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import child_env
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

    def test_input_across_turns(self) -> None:
        """On a real socket, input waits for the end of the reactor's turn: a request in three
        pieces and three pipelined ones are all answered, in order, and nothing is left."""
        result = self.outcome("input_across_turns")
        self.assertEqual(result["echoes"], [1, 2, 3, 4])
        self.assertEqual(result["channels"], [[True, None], [True, None]])

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


EXIT_SCRIPT = r'''
import sys, threading, time
from serverapi import ThreadedAPIServer

started = threading.Event()

def slow(username, token, data):
    started.set()
    time.sleep(0.5)
    return False, False, {"finished": True}

server = ThreadedAPIServer("127.0.0.1", 0, {"alice": "password123"}, slow, shutdown_grace=5)
server.startAPIServer(block=False)
print(server.port, flush=True)
started.wait(30)
print("exiting", flush=True)
'''


class ExitTests(SynchronousTestCase):
    """The interpreter exiting with a server running (crochet's rule: stop gracefully)."""

    def test_in_flight_answered_at_exit(self) -> None:
        """A program that ends while a callback runs still answers that request first."""
        process = subprocess.Popen([sys.executable, "-c", EXIT_SCRIPT], env=child_env(),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        assert process.stdout is not None
        port = int(process.stdout.readline())
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/login", '{"username": "alice", "password": "password123"}',
                           {"Content-Type": "application/json"})
        cookie = connection.getresponse().getheader("Set-Cookie", "").split(";")[0]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/communicate", "{}",
                           {"Content-Type": "application/json", "Cookie": cookie})
        response = connection.getresponse()
        self.assertEqual((response.status, json.loads(response.read())),
                         (200, {"finished": True}))
        self.assertEqual(process.stdout.readline().strip(), "exiting")
        self.assertEqual(process.wait(30), 0, process.stderr.read() if process.stderr else "")


TIMEOUT_SCRIPT = r'''
import socket, time
import serverapi._threaded as threaded
from serverapi import ThreadedAPIServer

with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
server = ThreadedAPIServer("127.0.0.1", port, {"a": "b"}, lambda u, t, d: (False, False, {}))
threaded._running_reactor()
threaded._START_TIMEOUT = 0.0  # every start now times out before the reactor answers
try:
    server.startAPIServer(block=False)
    print("started")
except TimeoutError:
    print("timed out")
time.sleep(1.0)
try:
    socket.create_connection(("127.0.0.1", port), timeout=1).close()
    print("still listening")
except OSError:
    print("closed")
threaded._START_TIMEOUT = 30.0
server.startAPIServer(block=False)
print("restarted", server.port == port)
server.stopAPIServer()
'''


class StartTimeoutTests(SynchronousTestCase):
    """A start that times out is cancelled: no port is left that nobody can stop."""

    def test_cancelled(self) -> None:
        """The caller gets TimeoutError, the port is closed again, and a later start works."""
        result = subprocess.run([sys.executable, "-c", TIMEOUT_SCRIPT], env=child_env(),
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.stdout.split("\n")[:3], ["timed out", "closed", "restarted True"],
                         result.stderr)
