"""Real-socket scenarios for ThreadedAPIServer, run in a child process by test_threaded.

Each scenario returns a JSON-able value; the parent asserts on it.  Running them in a child keeps
the process-wide reactor thread away from the test runner's own reactor.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from serverapi import ThreadedAPIServer, hashPassword

from .scenarios import ScenarioSet

CREDENTIALS = {"alice": "password123"}
JSON_HEADERS = {"Content-Type": "application/json"}
scenario = ScenarioSet()


def echo(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
    """Echo the body back with the worker thread's name."""
    if data.get("sleep"):
        time.sleep(data["sleep"])
    return bool(data.get("close")), False, {
        "echo": data, "user": username, "thread": threading.current_thread().name}


def new_server(**options: Any) -> ThreadedAPIServer:
    """A server on a free port of 127.0.0.1."""
    return ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, **options)


def post(connection: http.client.HTTPConnection, path: str, body: Any,
         cookie: str | None = None) -> tuple[int, dict[str, str], Any]:
    """POST JSON and return status, headers and decoded body."""
    headers = dict(JSON_HEADERS)
    if cookie:
        headers["Cookie"] = f"sessionToken={cookie}"
    connection.request("POST", path, json.dumps(body), headers)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), json.loads(response.read())


def session(port: int) -> tuple[http.client.HTTPConnection, str]:
    """Connect and log in; return the connection and the token."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    status, headers, _ = post(connection, "/login", {"username": "alice",
                                                     "password": "password123"})
    assert status == 200, status
    return connection, headers["Set-Cookie"].split(";")[0].split("=", 1)[1]


def round_trip(port: int) -> Any:
    """Log in and communicate once; return the callback's answer."""
    connection, token = session(port)
    status, _, body = post(connection, "/communicate", {"n": 1}, token)
    connection.close()
    return status, body


def wait_for(predicate: Callable[[], bool], timeout: float = 10) -> bool:
    """Poll until C{predicate} holds (thread hand-offs only), at most C{timeout} seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@scenario
def non_blocking_start() -> Any:
    """startAPIServer(block=False) with port 0 listens on a real port and serves."""
    server = new_server()
    server.startAPIServer(block=False)
    port = server.port
    status, body = round_trip(port)
    server.stopAPIServer()
    return {"port_nonzero": port != 0, "status": status, "thread": body["thread"],
            "user": body["user"]}


@scenario
def keep_alive() -> Any:
    """Many requests on one real connection."""
    with new_server() as server:
        connection, token = session(server.port)
        statuses = [post(connection, "/communicate", {"i": i}, token)[0] for i in range(20)]
        connection.close()
    return statuses


@scenario
def blocking_start_returns_on_stop() -> Any:
    """A blocking start returns once another thread calls stopAPIServer."""
    server = new_server()
    returned = threading.Event()

    def run() -> None:
        server.startAPIServer()
        returned.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    listening = wait_for(lambda: server.port != 0)
    served = round_trip(server.port)[0] if listening else None
    early = returned.is_set()
    server.stopAPIServer()
    return {"listening": listening, "served": served, "returned_early": early,
            "returned": returned.wait(10)}


@scenario
def keyboard_interrupt() -> Any:
    """The seed's pattern: Ctrl-C interrupts a blocking start, then stopAPIServer works."""
    server = new_server()
    threading.Thread(
        target=lambda: wait_for(lambda: server.port != 0) and signal.pthread_kill(
            threading.main_thread().ident, signal.SIGINT), daemon=True).start()
    try:
        server.startAPIServer()
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    served = round_trip(server.port)[0]
    server.stopAPIServer()
    return {"interrupted": interrupted, "served_after": served}


@scenario
def bind_errors() -> Any:
    """Port in use and a bad host raise in the caller; the failed server can still start later."""
    first = new_server()
    first.startAPIServer(block=False)
    second = ThreadedAPIServer("127.0.0.1", first.port, CREDENTIALS, echo)
    errors = []
    try:
        second.startAPIServer(block=False)
    except Exception as error:
        errors.append(type(error).__name__)
    bad_host = ThreadedAPIServer("256.0.0.999", 0, CREDENTIALS, echo)
    try:
        bad_host.startAPIServer(block=False)
    except Exception as error:
        errors.append(type(error).__name__)
    first_still = round_trip(first.port)[0]
    first.stopAPIServer()
    second.startAPIServer(block=False)
    second_now = round_trip(second.port)[0]
    second.stopAPIServer()
    return {"errors": errors, "first_still": first_still, "second_now": second_now}


@scenario
def restart() -> Any:
    """One server object started, stopped and started again; the old port is closed."""
    server = new_server()
    results = []
    ports = []
    for _ in range(3):
        server.startAPIServer(block=False)
        ports.append(server.port)
        results.append(round_trip(server.port)[0])
        server.stopAPIServer()
    refused = False
    try:
        socket.create_connection(("127.0.0.1", ports[-1]), timeout=5).close()
    except ConnectionRefusedError:
        refused = True
    return {"results": results, "refused_after_stop": refused}


@scenario
def two_servers() -> Any:
    """Two servers run at once in one process, each with its own sessions."""
    with new_server() as first, new_server() as second:
        first_result = round_trip(first.port)[0]
        second_result = round_trip(second.port)[0]
        counts = (len(first.getSessions()), len(second.getSessions()))
    return {"results": [first_result, second_result], "counts": list(counts)}


@scenario
def stop_twice() -> Any:
    """Stopping a stopped server is a RuntimeError; starting a running one too."""
    server = new_server()
    server.startAPIServer(block=False)
    try:
        server.startAPIServer(block=False)
        double_start = None
    except RuntimeError:
        double_start = "RuntimeError"
    server.stopAPIServer()
    try:
        server.stopAPIServer()
        double_stop = None
    except RuntimeError:
        double_stop = "RuntimeError"
    return {"double_start": double_start, "double_stop": double_stop}


@scenario
def threads_used() -> Any:
    """Callbacks run in worker threads; validity checks on the reactor thread."""
    seen: list[str] = []
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo,
                               lambda s: seen.append(threading.current_thread().name) or True)
    with server:
        status, body = round_trip(server.port)
    return {"callback_thread": body["thread"], "validity_threads": sorted(set(seen)),
            "main": threading.current_thread().name}


@scenario
def force_close() -> Any:
    """force_close closes the real connection after the response."""
    with new_server() as server:
        connection, token = session(server.port)
        status, headers, _ = post(connection, "/communicate", {"close": True}, token)
        sock = connection.sock
        closed = sock is None or sock.recv(1) == b""
    return {"status": status, "connection": headers.get("Connection"), "closed": closed}


@scenario
def stop_waits_for_callback() -> Any:
    """stopAPIServer lets a running callback finish and deliver its answer."""
    server = new_server(shutdown_grace=10)
    server.startAPIServer(block=False)
    connection, token = session(server.port)
    answer: list[Any] = []
    worker = threading.Thread(
        target=lambda: answer.append(post(connection, "/communicate", {"sleep": 0.5}, token)[0]))
    worker.start()
    # Running, not merely queued: a worker has claimed it (queued ones are dropped at stop).
    wait_for(lambda: bool(server.getSessions()) and server._service is not None
             and server._service.callbacks.in_flight == 1
             and not server._service.callbacks.waiting)
    started = time.monotonic()
    server.stopAPIServer()
    took = time.monotonic() - started
    worker.join(10)
    return {"answer": answer, "waited": took > 0.1}


@scenario
def stuck_callback_does_not_hang_stop() -> Any:
    """A callback stuck past shutdown_grace: stop returns after the grace period."""
    gate = threading.Event()

    def stuck(username: str, token: str, data: dict[str, Any]) -> Any:
        gate.wait(60)
        return False, False, {}

    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, stuck, shutdown_grace=0.5)
    server.startAPIServer(block=False)
    connection, token = session(server.port)
    connection.request("POST", "/communicate", "{}",
                       {"Cookie": f"sessionToken={token}", **JSON_HEADERS})
    wait_for(lambda: server._service is not None and server._service.callbacks.in_flight == 1
             and not server._service.callbacks.waiting)  # claimed by a worker: running
    started = time.monotonic()
    server.stopAPIServer()
    took = time.monotonic() - started
    gate.set()
    return {"took_under_5s": took < 5, "took_at_least_grace": took >= 0.45}


@scenario
def stop_from_reactor_thread_refused() -> Any:
    """Blocking calls from the reactor thread are refused, not deadlocked."""
    holder: dict[str, Any] = {}

    def valid(session: Any) -> bool:
        try:
            holder["server"].stopAPIServer()
        except RuntimeError as error:
            holder["error"] = str(error)
        holder["sessions"] = len(holder["server"].getSessions())
        return True

    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, valid)
    holder["server"] = server
    with server:
        round_trip(server.port)
    return {"error": "reactor thread" in holder.get("error", ""),
            "sessions": holder.get("sessions")}


@scenario
def login_timing() -> Any:
    """With hashed credentials, unknown-user and wrong-password logins take about as long."""
    server = ThreadedAPIServer("127.0.0.1", 0, {"alice": hashPassword("password123")}, echo,
                               login_attempts=1000)

    def timed(username: str) -> float:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        started = time.perf_counter()
        status = post(connection, "/login", {"username": username, "password": "wrong"})[0]
        took = time.perf_counter() - started
        connection.close()
        assert status == 401, status
        return took

    with server:
        wrong = sorted(timed("alice") for _ in range(5))[2]
        unknown = sorted(timed(f"ghost{index}") for index in range(5))[2]
    return {"ratio": unknown / wrong, "wrong": wrong, "unknown": unknown}


@scenario
def input_across_turns() -> Any:
    """A request that arrives in three pieces, then three pipelined in one, on a real socket
    whose input the reactor hands over at the end of each turn."""
    from twisted.internet.threads import blockingCallFromThread

    def request(number: int, token: str) -> bytes:
        body = json.dumps({"n": number}).encode()
        return (b"POST /communicate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n"
                b"Cookie: sessionToken=%s\r\n\r\n" % (len(body), token.encode()) + body)

    with new_server() as server:
        _, token = session(server.port)
        client = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        first = request(1, token)
        for piece in (first[:10], first[10:60], first[60:]):
            client.sendall(piece)
            time.sleep(0.05)  # each piece in a reactor turn of its own
        client.sendall(request(2, token) + request(3, token) + request(4, token))
        received = b""
        while received.count(b"HTTP/1.1 200 ") < 4 or not received.endswith(b"}"):
            chunk = client.recv(65536)
            if not chunk:
                break
            received += chunk
        site = server._service.site  # type: ignore[union-attr]
        batched = blockingCallFromThread(
            server._reactor, lambda: [(channel.input_batch is site.input_batch,
                                       channel.waiting_input) for channel in site.channels])
        client.close()
    echoes = [json.loads(part.split(b"\r\n\r\n", 1)[1])["echo"]["n"]
              for part in received.split(b"HTTP/1.1 ")[1:]]
    return {"echoes": echoes, "channels": batched}


if __name__ == "__main__":
    scenario.main(sys.argv[1:])
