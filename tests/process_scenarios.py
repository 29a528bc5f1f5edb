"""ProcessAPIServer with real worker processes, run in a child process by test_process_server."""

from __future__ import annotations

import http.client
import json
import logging
import os
import ssl
import sys
import tempfile
import threading
import time
from typing import Any

from serverapi import ProcessAPIServer

from .certificates import Certificates
from .helpers import RecordingHandler, wait_until
from .process_callbacks import VALIDITY_RECORD, recorded_validity, who
from .scenarios import ScenarioSet

scenario = ScenarioSet()
CREDENTIALS = {"alice": "password123", "bob": "securepassword"}
logging.basicConfig(level=logging.CRITICAL)


class Client:
    """One keep-alive connection (so every request on it reaches the same worker)."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        self.connection: http.client.HTTPConnection = (
            http.client.HTTPConnection("127.0.0.1", port, timeout=30) if context is None else
            http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context))

    def post(self, path: str, body: Any, token: str | None = None) -> tuple[int, Any, str | None]:
        """The status, the decoded body and the new session token (if any)."""
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Cookie"] = f"sessionToken={token}"
        self.connection.request("POST", path, json.dumps(body), headers)
        response = self.connection.getresponse()
        data = json.loads(response.read() or b"null")
        cookie = response.getheader("Set-Cookie") or ""
        new = cookie.split(";")[0].partition("=")[2] if cookie.startswith("session") else None
        return response.status, data, new

    def login(self, username: str = "alice") -> str:
        """Log in on this connection; the token."""
        status, _, token = self.post("/login", {"username": username,
                                                "password": CREDENTIALS[username]})
        assert status == 200 and token, status
        return token

    def pid(self, token: str) -> int:
        """The process id of the worker this connection reaches."""
        status, data, _ = self.post("/communicate", {}, token)
        assert status == 200, (status, data)
        return int(data["pid"])

    def close(self) -> None:
        self.connection.close()


def clients_on_each_worker(port: int, token: str, workers: int = 2,
                           context: ssl.SSLContext | None = None) -> dict[int, Client]:
    """A connection on each worker.  Once one worker has a connection, it is kept busy
    spinning a callback (which holds its interpreter's lock), so an idle worker accepts the
    next connections: which worker accepts is otherwise up to the kernel's scheduler."""
    found: dict[int, Client] = {}
    deadline = time.monotonic() + 30
    while len(found) < workers and time.monotonic() < deadline:
        spinners = []
        for busy in found.values():
            spinner = Client(port, context)
            if spinner.pid(token) in found:
                thread = threading.Thread(target=spinner.post,
                                          args=("/communicate", {"spin": 1.0}, token))
                thread.start()
                spinners.append((thread, spinner))
        for _ in range(20):
            client = Client(port, context)
            pid = client.pid(token)
            if pid not in found:
                found[pid] = client
                break
            client.close()
        for thread, spinner in spinners:
            thread.join()
            spinner.close()
    assert len(found) == workers, f"reached {len(found)} of {workers} workers"
    return found


def start_error(server: ProcessAPIServer) -> tuple[str | None, float]:
    """Start C{server}; the RuntimeError's message it raised (or None) and the seconds taken."""
    started = time.monotonic()
    try:
        server.startAPIServer(block=False)
        error = None
    except RuntimeError as raised:
        error = str(raised)
    return error, time.monotonic() - started


@scenario
def sessions_across_workers() -> Any:
    """A session made on one worker is served by the other; logout, force_logout and
    invalidateUserSessions() on one hold on every worker before the next request."""
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2)
    server.startAPIServer(block=False)
    try:
        pids = sorted(server.worker_pids())
        first = Client(server.port)
        token = first.login()
        clients = clients_on_each_worker(server.port, token)
        a, b = (clients[pid] for pid in sorted(clients))
        results: dict[str, Any] = {"workers": sorted(clients) == pids,
                                   "main_serves_none": os.getpid() not in clients}
        results["b_serves_a_login"] = b.post("/communicate", {}, token)[0]
        results["logout_on_b"] = b.post("/logout", {}, token)[0]
        results["a_after_logout"] = a.post("/communicate", {}, token)[0]
        token = a.login()
        results["force_logout_on_b"] = b.post("/communicate", {"logout": True}, token)[0]
        results["a_after_force_logout"] = a.post("/communicate", {}, token)[0]
        token = a.login()
        results["before_invalidate"] = [a.post("/communicate", {}, token)[0],
                                        b.post("/communicate", {}, token)[0]]
        results["invalidated"] = server.invalidateUserSessions("alice")
        results["after_invalidate"] = [a.post("/communicate", {}, token)[0],
                                       b.post("/communicate", {}, token)[0]]
        token = a.login("bob")
        results["listed"] = [(session.get_username(), session.get_session_token() == token)
                             for session in server.getSessions()]
        server.setCredentials({"alice": "password123"})
        results["after_removal"] = [a.post("/communicate", {}, token)[0],
                                    b.post("/communicate", {}, token)[0]]
        results["removed_login"] = b.post("/login", {"username": "bob",
                                                     "password": "securepassword"})[0]
        return results
    finally:
        server.stopAPIServer()


def recorded_pids(record: str) -> list[int]:
    """The process ids the validity callback wrote, one per call."""
    with open(record, encoding="utf-8") as handle:
        return [int(line) for line in handle]


@scenario
def validity_in_main_process() -> Any:
    """The validity callback runs in the main process only, before each request and in the
    sweep; its rejection holds on every worker."""
    record = os.path.join(tempfile.mkdtemp(), "validity")
    os.environ[VALIDITY_RECORD] = record
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, recorded_validity, workers=2,
                              session_check_interval=0.2)
    server.startAPIServer(block=False)
    try:
        token = Client(server.port).login()
        clients = clients_on_each_worker(server.port, token)
        calls = len(recorded_pids(record))
        wait_until(lambda: len(recorded_pids(record)) >= calls + 2)  # two sweeps
        served = [client.post("/communicate", {}, token)[0] for client in clients.values()]
        open(record + ".reject", "w").close()
        rejected = [client.post("/communicate", {}, token)[0] for client in clients.values()]
        pids = set(recorded_pids(record))
        return {"served": served, "rejected": rejected, "pids_are_main": pids == {os.getpid()},
                "calls": len(pids) > 0}
    finally:
        server.stopAPIServer()


@scenario
def worker_crash_is_replaced() -> Any:
    """A callback that calls os._exit(1) kills its worker: another starts within a second,
    the other worker keeps serving, and no session is lost."""
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2)
    server.startAPIServer(block=False)
    try:
        token = Client(server.port).login()
        clients = clients_on_each_worker(server.port, token)
        (doomed, victim), (survivor_pid, survivor) = sorted(clients.items())
        started = time.monotonic()
        try:
            victim.post("/communicate", {"crash": True}, token)
            crash_answer = "answered"
        except (http.client.HTTPException, OSError):
            crash_answer = "connection lost"
        survivor_status = survivor.post("/communicate", {}, token)[0]
        replaced_after = None
        while time.monotonic() - started < 10:
            pids = server.worker_pids()
            if len(pids) == 2 and doomed not in pids:
                replaced_after = time.monotonic() - started
                break
            time.sleep(0.01)
        fresh = clients_on_each_worker(server.port, token)
        return {"crash_answer": crash_answer, "survivor": survivor_status,
                "replaced_within_1s": replaced_after is not None and replaced_after < 1.0,
                "replaced_after": replaced_after,
                "new_worker_serves_old_session": sorted(fresh) == sorted(server.worker_pids())
                and doomed not in fresh and survivor_pid in fresh}
    finally:
        server.stopAPIServer()


@scenario
def credentials_outlive_a_crash() -> Any:
    """A worker started after setCredentials() (in place of one that crashed) checks logins
    against the new credentials, as the others do."""
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2)
    server.startAPIServer(block=False)
    try:
        server.setCredentials({"alice": "rotated", "carol": "added"})
        token = Client(server.port).post("/login", {"username": "alice",
                                                    "password": "rotated"})[2]
        (doomed, victim), _ = sorted(clients_on_each_worker(server.port, token).items())
        try:
            victim.post("/communicate", {"crash": True}, token)
        except (http.client.HTTPException, OSError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (doomed in server.worker_pids()
                                               or len(server.worker_pids()) < 2):
            time.sleep(0.01)
        clients = clients_on_each_worker(server.port, token)
        logins = {}
        for name, password in [("alice", "password123"), ("alice", "rotated"),
                               ("bob", "securepassword"), ("carol", "added")]:
            logins[f"{name}/{password}"] = [
                client.post("/login", {"username": name, "password": password})[0]
                for client in clients.values()]
        return {"replaced": doomed not in clients and len(clients) == 2, "logins": logins}
    finally:
        server.stopAPIServer()


@scenario
def worker_cannot_serve() -> Any:
    """Workers that import the callback but cannot serve (an access log they cannot open)
    make startAPIServer() raise the reason, quickly, with nothing left running."""
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2,
                              access_log="/nonexistent-folder/access.log")
    error, took = start_error(server)
    return {"error": error, "quick": took < 15, "running": server.worker_pids()}


@scenario
def stop_within_grace() -> Any:
    """stopAPIServer() returns within shutdown_grace, though a callback would run for 30 s,
    and leaves no worker process behind."""
    grace = 1.5
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2,
                              shutdown_grace=grace)
    server.startAPIServer(block=False)
    token = Client(server.port).login()
    answers: list[Any] = []

    def stuck() -> None:
        try:
            answers.append(Client(server.port).post("/communicate", {"sleep": 30}, token)[0])
        except (http.client.HTTPException, OSError) as error:
            answers.append(type(error).__name__)

    thread = threading.Thread(target=stuck, daemon=True)
    thread.start()
    time.sleep(0.5)
    pids = server.worker_pids()
    started = time.monotonic()
    server.stopAPIServer()
    took = time.monotonic() - started
    thread.join(5)
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    refused = False
    try:
        Client(server.port).post("/communicate", {}, token)
    except OSError:
        refused = True
    return {"within_grace": took <= grace + 0.25, "took": took, "workers_left": alive,
            "stuck_client": answers, "port_closed": refused, "had_workers": len(pids)}


@scenario
def unimportable_callback() -> Any:
    """A request_callback a worker cannot import is a clear error from startAPIServer(),
    quickly, and nothing is left listening or running."""
    folder = tempfile.mkdtemp()
    path = os.path.join(folder, "vanishing_module.py")
    with open(path, "w", encoding="utf-8") as module:
        module.write("def handle(username, token, data):\n    return False, False, {}\n")
    sys.path.insert(0, folder)
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, "vanishing_module:handle",
                              workers=2)
    os.remove(path)
    error, took = start_error(server)
    return {"error": error, "quick": took < 15, "running": server.worker_pids()}


@scenario
def tls_in_workers() -> Any:
    """TLS with client certificates is served by the workers; the session carries the
    client's certificate subject."""
    certs = Certificates(tempfile.mkdtemp())
    handler = RecordingHandler()
    logger = logging.getLogger("process-tls")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    server = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, who, workers=2, logger=logger)
    server.setConnectionSecurityParams(certs.server_cert, certs.server_key, certs.ca_cert)
    server.startAPIServer(block=False)
    try:
        def context(cert: tuple[str, str] | None) -> ssl.SSLContext:
            made = ssl.create_default_context(cafile=certs.root_cert)
            if cert is not None:
                made.load_cert_chain(*cert)
            return made

        try:
            Client(server.port, context(None)).login()
            without = "served"
        except (ssl.SSLError, OSError, http.client.HTTPException):
            without = "refused"
        good = context(certs.client)
        token = Client(server.port, good).login()
        clients = clients_on_each_worker(server.port, token, context=good)
        subjects = [session.client_certificate_subject for session in server.getSessions()]
        deadline = time.monotonic() + 5
        while "Login: user='alice'" not in handler.text and time.monotonic() < deadline:
            time.sleep(0.05)
        return {"without_certificate": without, "workers": len(clients),
                "subject": bool(subjects) and "CN=" in (subjects[0] or ""),
                "login_logged_in_main": "Login: user='alice'" in handler.text}
    finally:
        server.stopAPIServer()


if __name__ == "__main__":
    scenario.main(sys.argv[1:])
