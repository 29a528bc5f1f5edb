"""A real `twistd serverapi` run as an operator runs it: SIGHUP reloads, JSON logs with fields,
the access log and SIGUSR1, metrics and health, the pidfile, and one-line start errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from .helpers import child_env

HANDLER = "tests.test_tap:handler"
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
WAIT = 30.0  # seconds any one thing may take before the test fails


def wait_for(predicate: Callable[[], Any], what: str) -> Any:
    """Poll a child process's observable state until C{predicate} returns something true."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def post(base: str, path: str, body: Any, cookie: str | None = None) -> tuple[int, Any, str]:
    """POST JSON; the status, the decoded body and the Set-Cookie header."""
    headers = {"Content-Type": "application/json", "User-Agent": "daemon-test/1"}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(base + path, method="POST", headers=headers,
                                     data=json.dumps(body).encode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), \
                response.headers.get("Set-Cookie", "")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), ""


def login(base: str, username: str, password: str) -> str:
    """Log in and return the C{sessionToken=...} cookie."""
    status, _, cookie = post(base, "/login", {"username": username, "password": password})
    assert status == 200, (username, status)
    return cookie.split(";")[0]


def get(url: str) -> tuple[int, str]:
    """GET; the status and the body."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class Folder:
    """A temporary folder with helpers to write and read its files."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.path = tempfile.mkdtemp()
        case.addCleanup(shutil.rmtree, self.path)

    def __call__(self, name: str) -> str:
        """The path of a file in the folder."""
        return os.path.join(self.path, name)

    def write(self, name: str, text: str) -> str:
        """Write a file (replacing it whole, as an operator's editor would) with mode 600."""
        path = self(name)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path + ".tmp", 0o600)
        os.replace(path + ".tmp", path)
        return path

    def read(self, name: str) -> str:
        """A file's text, or empty if it does not exist (yet)."""
        try:
            with open(self(name), encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""


class JSONLog:
    """The daemon's JSON-lines log (written by serverapi.jsonlog.observer)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def events(self) -> list[dict[str, Any]]:
        """Every complete line, parsed (each must be one JSON object)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.split("\n")[:-1]]

    def audit(self, name: str | None = None) -> list[dict[str, Any]]:
        """serverapi's audit events (those with an C{event} field), or those called C{name}."""
        return [event for event in self.events()
                if event.get("log_namespace") == "serverapi" and "event" in event
                and (name is None or event["event"] == name)]

    def port(self, kind: str) -> int | None:
        """The port from the line C{serverapi <kind> ... port=N}, once it is logged."""
        for event in self.events():
            found = re.search(rf"serverapi {kind} .*port=(\d+)", str(event.get("text")))
            if found:
                return int(found.group(1))
        return None


def start_daemon(case: SynchronousTestCase, files: Folder, log: JSONLog, *args: str
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """Start C{twistd -n serverapi} with a JSON log and C{args}; the process and its API port
    (failing C{case} with the daemon's output if it does not listen)."""
    process = subprocess.Popen(
        [*TWISTD, "--nodaemon", "--pidfile", files("twistd.pid"),
         "--logger", "serverapi.jsonlog.observer", "serverapi",
         "--listen", "tcp:0:interface=127.0.0.1", *args],
        cwd=files.path, env={**child_env(), "SERVERAPI_JSON_LOG": log.path},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    case.addCleanup(lambda: process.poll() is None and process.kill())
    try:
        port = wait_for(lambda: process.poll() is None and log.port("listening on"),
                        "the API port")
    except AssertionError:
        process.kill()
        raise AssertionError(process.communicate()[0].decode()) from None
    return process, port


class OperatorTests(SynchronousTestCase):
    """One daemon, driven through what an operator does to it."""

    def test_reload_logs_metrics(self) -> None:
        """SIGHUP reloads (good file: removed user's session ends; bad file: kept, one error
        line); JSON log events carry fields, once each; the access log is reopened on
        SIGUSR1; /metrics counts the traffic; /healthz is 200; SIGTERM exits 0 and removes
        the pidfile."""
        files = Folder(self)
        creds = files.write("creds.json", json.dumps(
            {"alice": "password123", "bob": "securepassword"}))
        log = JSONLog(files("log.json"))
        process, port = start_daemon(
            self, files, log, "--credentials", creds, "--callback", HANDLER,
            "--access-log", files("access.log"), "--metrics", "tcp:0:interface=127.0.0.1")
        metrics_port = wait_for(lambda: log.port("metrics on"), "the metrics port")
        base = f"http://127.0.0.1:{port}"
        self.assertTrue(os.path.exists(files("twistd.pid")))

        alice, bob = login(base, "alice", "password123"), login(base, "bob", "securepassword")
        self.assertEqual(post(base, "/login", {"username": "eve", "password": "x"})[0], 401)
        files.write("creds.json", json.dumps({"alice": "password123", "carol": "pw"}))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.audit("credentials_replaced"), "the reload")
        self.assertEqual(post(base, "/communicate", {"message": "hi"}, bob)[0], 401)
        self.assertEqual(post(base, "/communicate", {"message": "hi"}, alice)[:2],
                         (200, {"echo": "hi", "user": "alice"}))
        login(base, "carol", "pw")
        self.assertEqual(post(base, "/login", {"username": "bob",
                                               "password": "securepassword"})[0], 401)

        files.write("creds.json", '{"alice": ')
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.audit("credentials_reload_failed"), "the failed reload")
        self.assertIsNone(process.poll())
        self.assertEqual(post(base, "/communicate", {"message": "again"}, alice)[0], 200)
        login(base, "carol", "pw")

        wait_for(lambda: files.read("access.log").count("\n") >= 9, "the access log")
        os.rename(files("access.log"), files("access.log.1"))
        process.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(files("access.log")), "the reopened access log")
        post(base, "/logout", {}, alice)
        wait_for(lambda: "/logout" in files.read("access.log"), "a line in the new file")

        self.assertEqual(get(f"http://127.0.0.1:{metrics_port}/healthz"),
                         (200, '{"status": "serving"}'))
        status, text = get(f"http://127.0.0.1:{metrics_port}/metrics")
        self.assertEqual(status, 200)
        samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                   for family in text_string_to_metric_families(text)
                   for sample in family.samples}
        requests = {(dict(labels)["endpoint"], dict(labels)["code"]): value
                    for (name, labels), value in samples.items()
                    if name == "serverapi_requests_total"}
        self.assertEqual(requests, {("login", "200"): 4, ("login", "401"): 2,
                                    ("communicate", "200"): 2, ("communicate", "401"): 1,
                                    ("logout", "200"): 1})
        self.assertEqual(samples[("serverapi_logins_total", (("outcome", "success"),))], 4)
        self.assertEqual(samples[("serverapi_sessions", ())], 2)  # carol's two
        self.assertEqual(samples[("serverapi_callback_duration_seconds_count", ())], 2)
        self.assertEqual(get(f"{base}/metrics")[0], 404)

        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=WAIT)[0].decode()
        self.assertEqual(process.returncode, 0, output)
        self.assertFalse(os.path.exists(files("twistd.pid")))

        logins = [(e["user"], e["peer"]) for e in log.audit("login")]
        self.assertEqual(logins, [("alice", "127.0.0.1"), ("bob", "127.0.0.1"),
                                  ("carol", "127.0.0.1"), ("carol", "127.0.0.1")])
        for event in log.audit("login"):
            self.assertRegex(event["token_sha256"], "^[0-9a-f]{64}$")
        self.assertEqual([(e["user"], e["reason"]) for e in log.audit("login_failed")],
                         [("eve", "invalid credentials"), ("bob", "invalid credentials")])
        self.assertEqual([e["user"] for e in log.audit("session_ended")
                          if e["reason"] == "user removed from the credentials"], ["bob"])
        self.assertEqual([e["user"] for e in log.audit("logout")], ["alice"])
        errors = [e for e in log.events() if e.get("log_namespace") == "serverapi"
                  and e["log_level"]["name"] in ("error", "critical")]
        self.assertEqual([e.get("event") for e in errors], ["credentials_reload_failed"])
        self.assertIn("is not valid JSON", errors[0]["reason"])
        texts = [str(e.get("text")) for e in log.events()]
        self.assertEqual(len([t for t in texts if t.startswith("Login: user='alice'")]), 1)
        everything = json.dumps(log.events()) + files.read("access.log.1")
        for secret in ("password123", "securepassword", alice.split("=", 1)[1]):
            self.assertNotIn(secret, everything)
        self.assertRegex(files.read("access.log.1").splitlines()[0],
                         r'^127\.0\.0\.1 - - \[.*\] "POST /login HTTP/1\.1" 200 32 "-" '
                         r'"daemon-test/1"$')


class StartErrorTests(SynchronousTestCase):
    """What an operator sees when the daemon cannot start: one line, no traceback."""

    def run_twistd(self, *args: str, daemon: bool = False) -> tuple[int, str, Folder]:
        """Run twistd to its (failed) end; its exit status and everything it printed."""
        files = Folder(self)
        creds = files.write("creds.json", '{"alice": "password123"}')
        mode = ["--logfile", files("twistd.log")] if daemon else ["--nodaemon"]
        completed = subprocess.run(
            [*TWISTD, *mode, "--pidfile", files("twistd.pid"), "serverapi",
             "--credentials", creds, "--callback", HANDLER, *args],
            cwd=files.path, env=child_env(), capture_output=True, text=True, timeout=WAIT)
        return completed.returncode, completed.stdout + completed.stderr, files

    def busy_port(self) -> int:
        """A port something else listens on for the rest of the test."""
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        return int(taken.getsockname()[1])

    def test_busy_port(self) -> None:
        """A busy port is one line naming the address and the reason."""
        port = self.busy_port()
        status, output, files = self.run_twistd("--listen", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(status, 1, output)
        self.assertIn(f"serverapi: cannot listen on 127.0.0.1:{port}: Address already in use",
                      output)
        self.assertNotIn("Traceback", output)
        self.assertFalse(os.path.exists(files("twistd.pid")))

    def test_workers_cannot_serve(self) -> None:
        """Worker processes that cannot serve (their callback does not import there) end the
        daemon with one line and status 1, leaving no pidfile and no worker."""
        status, output, files = self.run_twistd(
            "--listen", "tcp:0:interface=127.0.0.1", "--workers", "2",
            "--callback", "tests.fails_in_workers:handle")
        self.assertEqual(status, 1, output)
        self.assertIn("serverapi: cannot import request_callback tests.fails_in_workers:handle "
                      "in a worker process: cannot import 'tests.fails_in_workers': "
                      "ImportError: this module needs the main process", output)
        self.assertFalse(os.path.exists(files("twistd.pid")))

    def test_busy_metrics_port(self) -> None:
        """A busy metrics port stops the start too."""
        port = self.busy_port()
        status, output, _ = self.run_twistd("--listen", "tcp:0:interface=127.0.0.1",
                                            "--metrics", f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(status, 1, output)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", output)
        self.assertNotIn("Traceback", output)

    def test_busy_port_daemonized(self) -> None:
        """Daemonized, the parent prints the one line and no pidfile is left behind."""
        port = self.busy_port()
        status, output, files = self.run_twistd("--listen", f"tcp:{port}:interface=127.0.0.1",
                                                daemon=True)
        self.assertEqual(status, 1, output)
        self.assertIn(f"cannot listen on 127.0.0.1:{port}: Address already in use", output)
        self.assertFalse(os.path.exists(files("twistd.pid")))
        log = files.read("twistd.log")
        self.assertIn("serverapi: cannot listen on", log)
        self.assertNotIn("Traceback", log)

    def test_unreachable_session_store(self) -> None:
        """A session store nobody answers at is one line, exit status 1, daemonized or not."""
        port = self.busy_port()  # listening, but it never speaks Redis: closed below
        store = f"redis://:hidden@127.0.0.1:{port}/0"
        for daemon in (False, True):
            status, output, files = self.run_twistd(
                "--listen", "tcp:0:interface=127.0.0.1", "--session-store", store,
                "--timeout", "1", daemon=daemon)
            self.assertEqual(status, 1, output)
            self.assertIn(f"cannot reach the session store redis://:***@127.0.0.1:{port}/0",
                          output)
            self.assertNotIn("hidden", output)
            self.assertNotIn("Traceback", output)
            self.assertFalse(os.path.exists(files("twistd.pid")))

    def test_refused_options(self) -> None:
        """ssl: with --tls-cert, and an access log that cannot be opened, stop at once."""
        for args, message in [
            (["--listen", "ssl:0", "--tls-cert", "c.pem", "--tls-key", "k.pem"],
             "it would be wrapped twice"),
            (["--access-log", "/"], "--access-log: cannot open '/'"),
        ]:
            status, output, _ = self.run_twistd(*args)
            self.assertEqual(status, 1, output)
            self.assertIn(message, output.strip().splitlines()[-1])
            self.assertNotIn("Traceback", output)


class WorkerDaemonTests(SynchronousTestCase):
    """twistd serverapi --workers N: the daemon's main process and its workers."""

    def test_workers(self) -> None:
        """Workers (not the daemon's process) serve one session; SIGHUP's reload holds on
        every worker; SIGUSR1 has the workers reopen the access log; the workers' audit events
        reach the JSON log with their fields; SIGTERM exits 0 and ends every worker."""
        from .process_scenarios import Client, clients_on_each_worker

        files = Folder(self)
        creds = files.write("creds.json", json.dumps(
            {"alice": "password123", "bob": "securepassword"}))
        log = JSONLog(files("log.json"))
        process, port = start_daemon(
            self, files, log, "--credentials", creds, "--callback",
            "tests.process_callbacks:who", "--access-log", files("access.log"), "--workers", "2")
        token = Client(port).login()
        bob = Client(port).login("bob")
        clients = clients_on_each_worker(port, token)
        self.assertNotIn(process.pid, clients)
        workers = sorted(clients)

        files.write("creds.json", json.dumps({"alice": "password123"}))
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: log.audit("credentials_replaced"), "the reload")
        self.assertEqual([client.post("/communicate", {}, bob)[0]
                          for client in clients.values()], [401, 401])
        self.assertEqual([client.post("/login", {"username": "bob",
                                                 "password": "securepassword"})[0]
                          for client in clients.values()], [401, 401])

        wait_for(lambda: files.read("access.log").count("\n") >= 6, "the access log")
        os.rename(files("access.log"), files("access.log.1"))
        process.send_signal(signal.SIGUSR1)
        wait_for(lambda: os.path.exists(files("access.log")), "the reopened access log")
        for client in clients.values():
            client.post("/logout", {}, token)
        wait_for(lambda: "/logout" in files.read("access.log"), "a line in the new file")

        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=WAIT)[0].decode()
        self.assertEqual(process.returncode, 0, output)
        for pid in workers:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
        self.assertEqual([(e["user"], e["peer"]) for e in log.audit("login")],
                         [("alice", "127.0.0.1"), ("bob", "127.0.0.1")])
        self.assertEqual([e["user"] for e in log.audit("login_failed")], ["bob", "bob"])
        self.assertEqual([e["user"] for e in log.audit("logout")], ["alice"])
