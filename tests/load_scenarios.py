"""Real-socket load scenarios against ThreadedAPIServer with default options, run by test_load."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

from serverapi import ThreadedAPIServer
from serverapi._peer import still_connected

from .helpers import wait_until
from .scenarios import ScenarioSet

scenario = ScenarioSet()
CREDENTIALS = {"alice": "password123"}
BIG = "x" * (128 * 1024)


def echo(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """The seed's echo."""
    return False, False, {"echo": data.get("message", "")}


def login(port: int) -> str:
    """Log in over a plain socket and return the session token."""
    body = json.dumps({"username": "alice", "password": "password123"}).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        answer = sock.recv(65536)
    cookie = answer.split(b"sessionToken=", 1)[1].split(b";", 1)[0]
    return cookie.decode()


def communicate_bytes(token: str, message: str = "hello") -> bytes:
    """One keep-alive /communicate request."""
    body = json.dumps({"message": message}).encode()
    return (b"POST /communicate HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Cookie: sessionToken=" + token.encode() + b"\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


async def _client(port: int, request: bytes, count: int, statuses: list[int],
                  errors: list[str]) -> None:
    """One keep-alive client sending C{count} requests one after another."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), 30)
        for _ in range(count):
            writer.write(request)
            status_line = await asyncio.wait_for(reader.readline(), 30)
            length = 0
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if line in (b"\r\n", b""):
                    break
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), 30)
            statuses.append(int(status_line.split()[1]))
        writer.close()
    except Exception as error:  # a reset or a time-out is what this scenario counts
        errors.append(f"{type(error).__name__}: {error}")


def _many(clients: int, requests_each: int) -> dict[str, Any]:
    """C{clients} concurrent keep-alive clients against a server with default options."""
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo)
    server.startAPIServer(block=False)
    try:
        request = communicate_bytes(login(server.port))
        statuses: list[int] = []
        errors: list[str] = []

        async def main() -> None:
            await asyncio.gather(*(_client(server.port, request, requests_each, statuses,
                                           errors) for _ in range(clients)))

        started = time.monotonic()
        asyncio.run(main())
        return {"statuses": {str(code): statuses.count(code) for code in set(statuses)},
                "errors": errors[:5], "error_count": len(errors),
                "seconds": time.monotonic() - started}
    finally:
        server.stopAPIServer()


@scenario
def clients_32() -> dict[str, Any]:
    """32 clients, 20 requests each."""
    return _many(32, 20)


@scenario
def clients_256() -> dict[str, Any]:
    """256 clients, 8 requests each."""
    return _many(256, 8)


@scenario
def clients_1000() -> dict[str, Any]:
    """1,000 clients, 3 requests each."""
    return _many(1000, 3)


def _rss_kib() -> int:
    """This process's resident memory in KiB."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@scenario
def pipelining_reader_that_never_reads() -> dict[str, Any]:
    """2 connections x 400 pipelined requests for 128 KiB answers, never read for 3 s."""
    calls: list[int] = []

    def big(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
        calls.append(1)
        return False, False, {"data": BIG}

    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, big)
    server.startAPIServer(block=False)
    try:
        request = communicate_bytes(login(server.port))
        before = _rss_kib()
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10)
                   for _ in range(2)]
        for sock in sockets:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            threading.Thread(target=sock.sendall, args=(request * 400,), daemon=True).start()
        time.sleep(3)
        held = {"calls": len(calls), "rss_growth_kib": _rss_kib() - before}
        for sock in sockets:
            sock.close()
        time.sleep(0.5)
        held["calls_after_close"] = len(calls)
        return held
    finally:
        server.stopAPIServer()


@scenario
def held_client_that_leaves() -> dict[str, Any]:
    """One worker and no queue: a second request is held (its connection is not read), and
    its client closes before the worker is free."""
    ran: list[str] = []
    started, release = threading.Event(), threading.Event()

    def callback(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
        ran.append(data["message"])
        if data["message"] == "first":
            started.set()
            release.wait(10)
        return False, False, {}

    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, callback, max_threads=1,
                               max_queued_requests=0)
    server.startAPIServer(block=False)
    try:
        token = login(server.port)
        first = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        first.sendall(communicate_bytes(token, "first"))
        started.wait(10)
        second = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        second.sendall(communicate_bytes(token, "second"))
        callbacks = server._service.callbacks  # type: ignore[union-attr]
        wait_until(lambda: callbacks.in_flight == 2)
        second.close()
        site = server._service.site  # type: ignore[union-attr]
        wait_until(lambda: not all(still_connected(channel.transport)
                              for channel in list(site.channels)))  # the close has arrived
        release.set()
        answer = first.recv(65536)
        wait_until(lambda: callbacks.in_flight == 0)
        first.close()
        wait_until(lambda: not site.channels)  # the held connection is closed too, not leaked
        return {"ran": ran, "first_status": int(answer.split()[1])}
    finally:
        server.stopAPIServer()


if __name__ == "__main__":
    import sys
    scenario.main(sys.argv[1:])
