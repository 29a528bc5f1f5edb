"""ProcessAPIServer (SPEC section 10): worker processes on one socket, sessions in the main
process; real processes in a child process (see process_scenarios), arguments in memory."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from serverapi import ProcessAPIServer
from serverapi._callback_reference import WORKER_ENVIRONMENT, CallbackReference

from .process_callbacks import who
from .scenarios import outcome

CREDENTIALS = {"alice": "password123"}


class ProcessScenarioTests(SynchronousTestCase):
    """Each test checks one scenario's outcome."""

    def outcome(self, name: str) -> Any:
        return outcome(self, "tests.process_scenarios", name)

    def test_sessions_across_workers(self) -> None:
        """Two workers (neither the main process) serve one session; logout, force_logout,
        invalidateUserSessions() and a credentials change on one hold on the other at once."""
        self.assertEqual(self.outcome("sessions_across_workers"), {
            "workers": True, "main_serves_none": True, "b_serves_a_login": 200,
            "logout_on_b": 200, "a_after_logout": 401, "force_logout_on_b": 200,
            "a_after_force_logout": 401, "before_invalidate": [200, 200], "invalidated": 1,
            "after_invalidate": [401, 401], "listed": [["bob", True]],
            "after_removal": [401, 401], "removed_login": 401})

    def test_validity_callback_in_main_process(self) -> None:
        """The validity callback runs only in the main process, and its verdict holds on
        every worker."""
        self.assertEqual(self.outcome("validity_in_main_process"), {
            "served": [200, 200], "rejected": [401, 401], "pids_are_main": True,
            "calls": True})

    def test_crashed_worker_is_replaced(self) -> None:
        """os._exit(1) in a callback loses that connection only: another worker starts within
        a second, the other keeps serving, and the session works on the new one."""
        result = self.outcome("worker_crash_is_replaced")
        result.pop("replaced_after")
        self.assertEqual(result, {"crash_answer": "connection lost", "survivor": 200,
                                  "replaced_within_1s": True,
                                  "new_worker_serves_old_session": True})

    def test_credentials_outlive_a_crash(self) -> None:
        """A worker that replaces a crashed one uses the credentials set since the start."""
        self.assertEqual(self.outcome("credentials_outlive_a_crash"), {
            "replaced": True,
            "logins": {"alice/password123": [401, 401], "alice/rotated": [200, 200],
                       "bob/securepassword": [401, 401], "carol/added": [200, 200]}})

    def test_worker_cannot_serve(self) -> None:
        """A worker that cannot open the access log is a clear error at start."""
        self.assertEqual(self.outcome("worker_cannot_serve"), {
            "error": "a worker process cannot serve: FileNotFoundError: [Errno 2] No such file "
                     "or directory: '/nonexistent-folder/access.log'",
            "quick": True, "running": []})

    def test_stop_within_grace(self) -> None:
        """stopAPIServer() returns within shutdown_grace with a callback still running, and
        no worker process is left."""
        result = self.outcome("stop_within_grace")
        result.pop("took")
        self.assertEqual(result, {"within_grace": True, "workers_left": [],
                                  "stuck_client": ["ConnectionResetError"], "port_closed": True,
                                  "had_workers": 2})

    def test_unimportable_callback(self) -> None:
        """A callback the workers cannot import is a clear error at start, not a hang."""
        self.assertEqual(self.outcome("unimportable_callback"), {
            "error": "cannot import request_callback vanishing_module:handle in a worker "
                     "process: cannot import 'vanishing_module': ModuleNotFoundError: No "
                     "module named 'vanishing_module'",
            "quick": True, "running": []})

    def test_tls_in_workers(self) -> None:
        """TLS with client certificates works in the workers; the session has the subject;
        the workers' log lines reach the user's logger in the main process."""
        self.assertEqual(self.outcome("tls_in_workers"), {
            "without_certificate": "refused", "workers": 2, "subject": True,
            "login_logged_in_main": True})


def _nested() -> Any:
    """A function the workers could not import."""
    def inner(username: str, token: str, data: Any) -> Any:
        return False, False, {}
    return inner


class ArgumentTests(SynchronousTestCase):
    """Bad arguments are clear errors when the server is made, before any process starts."""

    def test_not_importable(self) -> None:
        """A lambda or a nested function cannot be imported by a worker: TypeError."""
        for callback in (lambda username, token, data: None, _nested()):
            with self.assertRaises(TypeError) as raised:
                ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, callback)
            self.assertIn("importable", str(raised.exception))

    def test_reference_strings(self) -> None:
        """A "module:name" string is imported now: a bad one is ValueError or ImportError."""
        server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, "tests.process_callbacks:who")
        self.assertEqual(server._callback, CallbackReference("tests.process_callbacks", "who"))
        with self.assertRaises(ValueError):
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, "no colon")
        with self.assertRaises(ImportError) as raised:
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, "no_such_module_here:f")
        self.assertIn("no_such_module_here", str(raised.exception))
        with self.assertRaises(ImportError):
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, "tests.process_callbacks:missing")

    def test_workers(self) -> None:
        """workers: at least 1 (default: the CPU count); not a number is TypeError."""
        self.assertEqual(ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who).workers,
                         os.cpu_count() or 1)
        self.assertEqual(ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=3).workers,
                         3)
        with self.assertRaises(ValueError):
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=0)
        for bad in ("2", 2.0, True):
            with self.assertRaises(TypeError):
                ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=bad)

    def test_options_checked_as_threaded(self) -> None:
        """The ThreadedAPIServer options and their checks apply; an unknown one names the
        class; a metrics endpoint is refused (not available with workers yet)."""
        with self.assertRaises(TypeError) as raised:
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, max_thread=4)
        self.assertIn("ProcessAPIServer got unexpected keyword argument(s) 'max_thread'",
                      str(raised.exception))
        with self.assertRaises(ValueError):
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, max_threads=0)
        with self.assertRaises(ValueError) as raised:
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who,
                             metrics_endpoint="tcp:0:interface=127.0.0.1")
        self.assertIn("not available with worker processes", str(raised.exception))

    def test_inside_a_worker(self) -> None:
        """Made inside one of its own workers (a script without a __main__ guard, run again to
        find its callback), it refuses instead of starting workers of its own."""
        os.environ[WORKER_ENVIRONMENT] = "1"
        self.addCleanup(os.environ.pop, WORKER_ENVIRONMENT)
        with self.assertRaises(RuntimeError) as raised:
            ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who)
        self.assertIn("if __name__ == \"__main__\":", str(raised.exception))

    def test_not_running(self) -> None:
        """A server that is not running has no workers."""
        self.assertEqual(ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who).worker_pids(), [])


class ExampleTests(SynchronousTestCase):
    """examples/process_server.py, run as a user runs it."""

    def test_example_script(self) -> None:
        """The script serves from its workers (which import its callback by running it again
        under its __main__ guard), and Ctrl-C stops it with every worker."""
        import json
        import signal
        import subprocess
        import sys
        import urllib.request

        from .helpers import ROOT, child_env
        from .redis_server import free_port

        port = free_port()
        process = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "process_server.py"), str(port),
             "2"], env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.addCleanup(process.kill)
        line = process.stdout.readline() if process.stdout else ""
        self.assertIn(f"serving on http://127.0.0.1:{port} with 2 workers", line)

        def post(path: str, body: Any, cookie: str = "") -> tuple[Any, str]:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Cookie": cookie})
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read()), response.headers.get("Set-Cookie", "")

        _, cookie = post("/login", {"username": "alice", "password": "password123"})
        answer, _ = post("/communicate", {"n": 15}, cookie.split(";")[0])
        self.assertEqual((answer["fibonacci"], answer["n"]), (610, 15))
        self.assertNotEqual(answer["worker"], process.pid)
        process.send_signal(signal.SIGINT)
        self.assertEqual(process.wait(30), 0)
        with self.assertRaises(ProcessLookupError):
            os.kill(answer["worker"], 0)
