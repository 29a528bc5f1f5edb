"""Shared-session-store scenarios against a real redis-server, run in a child process by
test_session_store: several ThreadedAPIServers (and a twistd serverapi) on one store."""

from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from serverapi import LoginSession, ProcessAPIServer, SessionStoreUnavailable, ThreadedAPIServer

from .helpers import ROOT, child_env, wait_until
from .redis_server import RedisServer, free_port
from .scenarios import ScenarioSet

CREDENTIALS = {"alice": "password123", "bob": "securepassword", "carol": "carolpass"}
scenario = ScenarioSet()
logging.basicConfig(level=logging.CRITICAL)


def shared_echo(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, Any]:
    """Echo the user; C{{"logout": true}} asks for force_logout."""
    return False, bool(data.get("logout")), {"user": username}


def post(port: int, path: str, body: Any = None, cookie: str | None = None,
         method: str = "POST") -> tuple[int, str | None]:
    """One request on a fresh connection: the status and the new session token, if any."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = f"sessionToken={cookie}"
    connection.request(method, path, json.dumps(body if body is not None else {}), headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    set_cookie = response.getheader("Set-Cookie") or ""
    token = set_cookie.split(";")[0].partition("=")[2] if set_cookie.startswith("session") else None
    return response.status, token


def login(port: int, username: str = "alice") -> str:
    """Log in; the token."""
    status, token = post(port, "/login", {"username": username,
                                          "password": CREDENTIALS[username]})
    assert status == 200 and token, (username, status)
    return token


def talk(port: int, token: str, **body: Any) -> int:
    """POST /communicate; the status."""
    return post(port, "/communicate", body, token)[0]


@contextmanager
def redis(**options: Any) -> Iterator[RedisServer]:
    """A real redis-server for the length of a scenario."""
    server = RedisServer(**options).start()
    try:
        yield server
    finally:
        server.cleanup()


@contextmanager
def servers(count: int, url: str, **options: Any) -> Iterator[list[ThreadedAPIServer]]:
    """C{count} servers on one store, started; stopped at the end."""
    started: list[ThreadedAPIServer] = []
    try:
        for _ in range(count):
            server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo,
                                       session_store=url, **options)
            server.startAPIServer(block=False)
            started.append(server)
        yield started
    finally:
        for server in started:
            if server._service is not None:
                server.stopAPIServer()


@scenario
def shared_logins() -> dict[str, Any]:
    """A login on one server works on the other; every way of ending a session holds on both."""
    with redis() as store, servers(2, store.url) as (a, b):
        result: dict[str, Any] = {}
        token = login(a.port)
        result["other_server"] = talk(b.port, token)
        result["logout_on_b"] = post(b.port, "/logout", {}, token)[0]
        result["after_logout_on_a"] = talk(a.port, token)
        token = login(a.port)
        result["force_logout_on_a"] = talk(a.port, token, logout=True)
        result["after_force_logout_on_b"] = talk(b.port, token)
        token, other = login(a.port), login(b.port, "bob")
        result["invalidated"] = b.invalidateUserSessions("alice")
        result["after_invalidate_on_a"] = talk(a.port, token)
        result["bob_still"] = talk(a.port, other)
        sessions = a.getSessions()
        result["listed"] = [(session.username, session.get_session_token() is None)
                            for session in sessions]
        result["invalidate_object"] = None
        sessions[0].invalidate()  # a session listed by one server, ended through the object
        result["invalidate_object"] = wait_until(lambda: talk(b.port, other) == 401) < 5
        result["keys_hold_no_token"] = not any(token in key or other in key
                                               for key in store.keys())
        return result


@scenario
def process_server_on_the_store() -> dict[str, Any]:
    """A ProcessAPIServer whose main process keeps the sessions in the store shares them with
    a ThreadedAPIServer on it, both ways (its workers import this module's callback)."""
    with redis() as store, servers(1, store.url) as (threaded,):
        process = ProcessAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo, workers=2,
                                   session_store=store.url)
        process.startAPIServer(block=False)
        try:
            token = login(process.port)
            on_threaded = talk(threaded.port, token)
            logout = post(threaded.port, "/logout", {}, token)[0]
            after_logout = talk(process.port, token)
            other = login(threaded.port, "bob")
            on_process = talk(process.port, other)
            listed = sorted(session.get_username() for session in process.getSessions())
        finally:
            process.stopAPIServer()
        return {"on_threaded": on_threaded, "logout": logout, "after_logout": after_logout,
                "on_process": on_process, "listed": listed,
                "kept_after_stop": talk(threaded.port, other)}


@scenario
def validity_rejection_on_one_ends_everywhere() -> dict[str, Any]:
    """A failing per-request validity check on one server ends the session on the other."""
    refused: set[str] = set()

    def check(session: LoginSession) -> bool:
        """Refuse users in C{refused}."""
        return session.username not in refused

    with redis() as store:
        with servers(1, store.url, session_validity_callback=check,
                     session_check_interval=60) as (a,), \
                servers(1, store.url, session_check_interval=60) as (b,):
            token = login(a.port)
            before = talk(b.port, token)
            refused.add("alice")
            on_a = talk(a.port, token)
            on_b = talk(b.port, token)
            return {"before": before, "on_a": on_a, "on_b": on_b}


@scenario
def credentials_reload_ends_removed_users() -> dict[str, Any]:
    """setCredentials() on one server ends, on every server, the sessions of users it removed."""
    with redis() as store, servers(2, store.url) as (a, b):
        carol, bob = login(b.port, "carol"), login(b.port, "bob")
        a.setCredentials({name: CREDENTIALS[name] for name in ("alice", "bob")})
        return {"removed": talk(b.port, carol), "kept": talk(b.port, bob)}


@scenario
def restart_keeps_sessions() -> dict[str, Any]:
    """Servers stopped and started again (new objects, new ports) keep every session."""
    with redis() as store:
        with servers(2, store.url) as (a, b):
            tokens = [login(a.port), login(b.port, "bob")]
        with servers(1, store.url) as (c,):
            return {"after_restart": [talk(c.port, token) for token in tokens]}


@scenario
def expiry_across_servers() -> dict[str, Any]:
    """Idle expiry counts activity on any server; maximum age and the per-user cap hold across
    servers."""
    result: dict[str, Any] = {}
    with redis() as store:
        with servers(2, store.url, session_idle_timeout=1.0,
                     session_check_interval=60) as (a, b):
            token = login(a.port)
            time.sleep(0.6)
            result["touched_on_b"] = talk(b.port, token)
            time.sleep(0.6)  # 1.2 s since login, 0.6 s since the last activity
            result["alive_on_a"] = talk(a.port, token)
            time.sleep(1.1)
            result["idle_on_b"] = talk(b.port, token)
        with servers(2, store.url, session_max_age=1.0, session_check_interval=60) as (a, b):
            token = login(a.port)
            time.sleep(0.5)
            result["young"] = talk(b.port, token)
            time.sleep(0.6)
            result["old"] = talk(a.port, token)
        with servers(2, store.url, max_sessions_per_user=2) as (a, b):
            first, second = login(a.port), login(b.port)
            third = login(a.port)
            result["per_user_cap"] = [talk(b.port, first), talk(a.port, second),
                                      talk(b.port, third)]
        with servers(2, store.url, max_sessions=2) as (a, b):
            store.command("FLUSHDB")
            login(a.port)
            login(b.port, "bob")
            result["store_full"] = post(b.port, "/login", {"username": "carol",
                                                           "password": "carolpass"})[0]
    return result


@scenario
def sweep_expires_without_requests() -> dict[str, Any]:
    """The sweep ends idle sessions nobody uses again (and removes their keys)."""
    with redis() as store, servers(2, store.url, session_idle_timeout=0.5,
                                   session_check_interval=0.2) as (a, _):
        login(a.port)
        login(a.port, "bob")
        took = wait_until(lambda: not [key for key in store.keys() if ":s:" in key])
        return {"swept_within": took < 3, "sessions": len(a.getSessions())}


@scenario
def one_sweeper() -> dict[str, Any]:
    """Exactly one server runs the validity sweep; when it stops another takes over within two
    intervals."""
    calls: Counter[str] = Counter()
    interval = 0.25

    def counting(name: str) -> Callable[[LoginSession], bool]:
        """A validity callback that counts its calls under C{name}."""
        def check(session: LoginSession) -> bool:
            calls[name] += 1
            return True
        return check

    with redis() as store:
        started = []
        for name in ("a", "b", "c"):
            server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo,
                                       session_validity_callback=counting(name),
                                       session_store=store.url,
                                       session_check_interval=interval)
            server.startAPIServer(block=False)
            started.append(server)
        for user in ("alice", "bob", "carol"):
            login(started[0].port, user)
        calls.clear()
        time.sleep(8 * interval)
        sweeping = sorted(name for name, count in calls.items() if count)
        first = dict(calls)
        holder = started["abc".index(sweeping[0])] if len(sweeping) == 1 else None
        took = None
        if holder is not None:
            holder.stopAPIServer()
            calls.clear()
            took = wait_until(lambda: sum(calls.values()) > 0) / interval
        for server in started:
            if server._service is not None:
                server.stopAPIServer()
        return {"sweeping": sweeping, "calls_are_whole_sweeps": all(
            count % 3 == 0 for count in first.values()), "takeover_intervals": took}


@scenario
def store_down_and_back() -> dict[str, Any]:
    """The store stopped: 503 within timeout for what needs it, other answers still come; the
    store back: the same session works again, with no restart of the server."""
    result: dict[str, Any] = {}
    with redis() as store, servers(1, store.url, timeout=2.0) as (a,):
        token = login(a.port)
        store.stop()
        began = time.monotonic()
        result["communicate"] = talk(a.port, token)
        result["login"] = post(a.port, "/login", {"username": "bob",
                                                  "password": "securepassword"})[0]
        result["logout"] = post(a.port, "/logout", {}, token)[0]
        result["answered_within"] = time.monotonic() - began < 2.0
        result["not_found"] = post(a.port, "/nothing", {})[0]
        result["get_login"] = post(a.port, "/login", method="GET")[0]
        result["no_cookie"] = post(a.port, "/communicate", {})[0]
        store.start()
        result["back_within"] = wait_until(lambda: talk(a.port, token) == 200) < 5
        store.pause()
        began = time.monotonic()
        result["hung_store"] = talk(a.port, token)
        result["hung_answered_within_timeout"] = time.monotonic() - began < 2.0
        store.resume()
        result["after_hang"] = wait_until(lambda: talk(a.port, token) == 200) < 5
        return result


@scenario
def unreachable_at_start() -> dict[str, Any]:
    """No store at the address: startAPIServer raises one clear line, and nothing listens."""
    port = free_port()
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo,
                               session_store=f"redis://127.0.0.1:{port}/0", timeout=2.0)
    try:
        server.startAPIServer(block=False)
    except SessionStoreUnavailable as error:
        return {"error": str(error), "running": server._service is not None}
    server.stopAPIServer()
    return {"error": None}


@scenario
def wrong_password() -> dict[str, Any]:
    """A wrong password, and none where one is needed, are clear errors at start."""
    messages = []
    with redis(password="s3cret") as store:
        for url in (store.url.replace("s3cret", "wrong"), f"redis://127.0.0.1:{store.port}/0"):
            server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo,
                                       session_store=url, timeout=2.0)
            try:
                server.startAPIServer(block=False)
                server.stopAPIServer()
                messages.append(None)
            except SessionStoreUnavailable as error:
                messages.append(str(error))
        with servers(1, store.url) as (a,):
            works = talk(a.port, login(a.port))
    return {"messages": messages, "right_password": works}


@scenario
def prefix_isolation() -> dict[str, Any]:
    """Keys outside the prefix are never read, changed or deleted; two prefixes on one store
    are two separate session tables."""
    with redis() as store:
        unrelated = {"app1": "bare", "app10:all": "lookalike", "other:s:x": "foreign",
                     "app2:counter": "7"}
        for key, value in unrelated.items():
            store.command("SET", key, value)
        store.command("HSET", "app1x:u:whatever", "field", "value")
        with servers(1, store.url, session_store_prefix="app1:", session_idle_timeout=0.3,
                     session_check_interval=0.1, login_attempts=1) as (a,), \
                servers(1, store.url, session_store_prefix="app2:") as (b,):
            token = login(a.port)
            crossed = talk(b.port, token)
            post(a.port, "/login", {"username": "bob", "password": "wrong"})
            a.invalidateUserSessions("alice")
            login(a.port, "carol")
            time.sleep(0.6)  # carol's session expires and is swept
            own_keys = sorted(key for key in store.keys() if key.startswith("app1:"))
        kept = {key: store.command("GET", key).decode() for key in unrelated}
        kept_hash = store.command("HGET", "app1x:u:whatever", "field").decode()
        return {"crossed": crossed, "kept": kept == unrelated, "kept_hash": kept_hash,
                "own_keys": [key.split(":")[1] for key in own_keys]}


@scenario
def tls_store() -> dict[str, Any]:
    """rediss:// with the store's CA (?ca=) shares logins; without it (the system's CAs do
    not know that CA) the start is one line about the certificate."""
    with redis(tls=True) as store:
        with servers(2, store.url) as (a, b):
            shared = talk(b.port, login(a.port))
        server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, shared_echo,
                                   session_store=store.url.split("?")[0], timeout=2.0)
        try:
            server.startAPIServer(block=False)
            server.stopAPIServer()
            refused = None
        except SessionStoreUnavailable as error:
            refused = str(error)
        return {"shared": shared, "untrusted": refused}


@scenario
def shared_sessions_example() -> dict[str, Any]:
    """examples/shared_sessions.py: a login on its first server works on its second."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "shared_sessions_example", os.path.join(ROOT, "examples", "shared_sessions.py"))
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    with redis() as store:
        first, second = example.make_servers(store.url, ports=(0, 0))
        for server in (first, second):
            server.startAPIServer(block=False)
        try:
            token = login(first.port)
            return {"other_server": talk(second.port, token),
                    "prefixed": all(key.startswith("example:") for key in store.keys())}
        finally:
            first.stopAPIServer()
            second.stopAPIServer()


@scenario
def shared_throttle() -> dict[str, Any]:
    """Failed logins on one server count on the other."""
    with redis() as store, servers(2, store.url, login_attempts=2) as (a, b):
        failures = [post(a.port, "/login", {"username": "alice", "password": "x"})[0]
                    for _ in range(2)]
        on_b = post(b.port, "/login", {"username": "alice", "password": "password123"})[0]
        other_user = post(b.port, "/login", {"username": "bob",
                                             "password": "securepassword"})[0]
        return {"failures": failures, "throttled_on_b": on_b, "other_user": other_user}


@scenario
def daemon_shares_and_hands_over_the_sweep() -> dict[str, Any]:
    """A twistd serverapi on the store shares logins with a ThreadedAPIServer; killed while it
    holds the sweep lease, the library server takes the sweep over within two intervals."""
    calls: list[float] = []
    interval = 0.5

    def check(session: LoginSession) -> bool:
        calls.append(time.monotonic())
        return True

    with redis() as store:
        folder = tempfile.mkdtemp()
        credentials = os.path.join(folder, "creds.json")
        with open(credentials, "w", encoding="utf-8") as handle:
            json.dump(CREDENTIALS, handle)
        os.chmod(credentials, 0o600)
        port = free_port()
        daemon = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "--nodaemon", "--pidfile", "", "serverapi", "--credentials", credentials,
             "--callback", "tests.test_tap:handler", "--listen",
             f"tcp:{port}:interface=127.0.0.1", "--session-store", store.url,
             "--session-check-interval", str(interval)],
            cwd=ROOT, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: store.command("GET", "serverapi:sweeper") is not None)
            with servers(1, store.url, session_validity_callback=check,
                         session_check_interval=interval) as (library,):
                token = login(port)
                result: dict[str, Any] = {"daemon_to_library": talk(library.port, token),
                                          "library_to_daemon": talk(port, login(library.port))}
                calls.clear()
                time.sleep(4 * interval)
                result["library_swept_while_daemon_held"] = len(calls)
                daemon.send_signal(signal.SIGKILL)
                killed = time.monotonic()
                wait_until(lambda: bool(calls))
                result["takeover_intervals"] = (calls[0] - killed) / interval
                return result
        finally:
            if daemon.poll() is None:
                daemon.kill()
            daemon.wait()


@scenario
def metrics_health_follows_store() -> dict[str, Any]:
    """/healthz is 503 while the store is down and 200 again once it is back."""
    import urllib.error
    import urllib.request

    def health(port: int) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as error:
            return int(error.code)

    with redis() as store, servers(1, store.url, timeout=1.0,
                                   metrics_endpoint="tcp:0:interface=127.0.0.1") as (a,):
        metrics = a.metrics_port
        assert metrics is not None
        result = {"up": health(metrics)}
        store.stop()
        result["down"] = 503 if wait_until(lambda: health(metrics) == 503) < 5 else 0
        store.start()
        result["back"] = 200 if wait_until(lambda: health(metrics) == 200) < 5 else 0
        return result


if __name__ == "__main__":
    threading.current_thread().name = "store-scenarios"
    scenario.main(sys.argv[1:])
