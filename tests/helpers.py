"""Shared test doubles: pools that run on demand, a recording logger, in-memory servers."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
import logging
from typing import Any

from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent
from twisted.internet.defer import succeed
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from serverapi import ServerConfig, makeAPIService
from serverapi._http import APIChannel
from serverapi._service import APIService
from serverapi._workers import PoolJob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CREDENTIALS = {"alice": "password123", "bob": "securepassword"}
JSON = {b"Content-Type": [b"application/json"]}


def echo(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
    """The seed's example callback: echo the message back."""
    return False, False, {"echo": data.get("message", ""), "user": username}


class SyncPool:
    """A pool that runs each job at once, on the calling thread."""

    def __init__(self) -> None:
        self.started = self.stopped = False
        self.ran = 0

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    def submit(self, job: PoolJob) -> None:
        if not job.start():
            job.dropped()
            return
        self.ran += 1
        try:
            value = job.run()
        except BaseException as error:
            job.done(False, error)
        else:
            job.done(True, value)


class HeldPool(SyncPool):
    """A pool that keeps jobs until the test releases them (a stand-in for busy workers)."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[PoolJob] = []

    def submit(self, job: PoolJob) -> None:
        self.jobs.append(job)

    def release(self, index: int = 0) -> None:
        """Run one held job and deliver its result."""
        SyncPool.submit(self, self.jobs.pop(index))


class RecordingHandler(logging.Handler):
    """Keeps every log record, with its formatted text and traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        """Everything logged, tracebacks included, as one string."""
        return "\n".join(self.format(record) for record in self.records)


_logger_count = 0


def recording_logger() -> tuple[logging.Logger, RecordingHandler]:
    """A fresh logger that records into a handler and does not propagate."""
    global _logger_count
    _logger_count += 1
    logger = logging.getLogger(f"serverapi.test.{_logger_count}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = RecordingHandler()
    logger.addHandler(handler)
    return logger, handler


@implementer(IBodyProducer)
class BytesProducer:
    """A request body given all at once, so that in-memory requests complete synchronously."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Any:
        """Write the whole body."""
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


class MemoryClient:
    """treq over the resource tree in memory (treq.testing's agent), keeping no cookies: tests
    send the session cookie by hand."""

    def __init__(self, resource: Any) -> None:
        agent = RequestTraversalAgent(resource)
        self._client = HTTPClient(agent, cookiejar=CookieJar(DefaultCookiePolicy(
            allowed_domains=[])), data_to_body_producer=BytesProducer)
        self.flush = agent.flush

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """Start a request; its Deferred fires once L{flush} has run."""
        return self._client.request(method, url, **kwargs)


class TCPStringTransport(StringTransport):
    """A StringTransport with the TCP options the HTTP channel sets through the TLS layer."""

    no_delay = False

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Record the option."""
        self.no_delay = enabled

    def getTcpNoDelay(self) -> bool:
        """The option as set."""
        return self.no_delay

    def getHandle(self) -> Any:
        """No socket: the connection is in memory (and its client taken as there)."""
        return None


#: Where L{SlowReaderTransport}'s send buffer counts as full.
HIGH_WATER = 256 * 1024


class SlowReaderTransport(TCPStringTransport):
    """A transport whose send buffer fills like a socket's when the peer stops reading.

    Past the high-water mark it pauses its producer and sets C{producerPaused}, as Twisted's
    TCP transport does; L{drain} empties it and resumes the producer.
    """

    producerPaused = False

    def __init__(self, high_water: int = HIGH_WATER, **options: Any) -> None:
        super().__init__(**options)
        self.high_water = high_water

    def write(self, data: bytes) -> None:
        """Buffer C{data}; past the high-water mark, tell the producer to pause."""
        super().write(data)
        if (len(self.value()) > self.high_water and self.producer is not None
                and not self.producerPaused):
            self.producerPaused = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        """The peer reads everything buffered; the producer may go on."""
        data = self.value()
        self.clear()
        if self.producerPaused:
            self.producerPaused = False
            self.producer.resumeProducing()
        return data


class MemoryServer:
    """A server on a memory reactor with a controllable pool, driven by StubTreq or raw bytes."""

    def __init__(self, pool: SyncPool | None = None, hash_pool: SyncPool | None = None,
                 others: Any = None, **options: Any) -> None:
        self.logger, self.log = recording_logger()
        options.setdefault("credentials", CREDENTIALS)
        options.setdefault("request_callback", echo)
        options.setdefault("logger", self.logger)
        self.config = ServerConfig(**options)
        self.reactor = MemoryReactorClock()
        self.pool = pool if pool is not None else SyncPool()
        self.hash_pool = hash_pool if hash_pool is not None else SyncPool()
        self.service: APIService = makeAPIService(self.config, self.reactor, self.pool,
                                                  self.hash_pool, others=others)
        self.service.startService()
        self.treq = MemoryClient(self.service.root)

    def post(self, path: str, body: Any = None, *, cookie: str | None = None,
             headers: dict[bytes, list[bytes]] | None = None, raw: bytes | None = None,
             method: str = "POST") -> Any:
        """Send one request through StubTreq and return the response (synchronously)."""
        all_headers = dict(JSON)
        if headers:
            all_headers.update(headers)
        if cookie is not None:
            all_headers[b"Cookie"] = [f"sessionToken={cookie}".encode()]
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        deferred = self.treq.request(method, "http://example.test" + path, data=data,
                                     headers=all_headers)
        self.treq.flush()
        return self.result(deferred)

    def result(self, deferred: Any) -> Any:
        """The value a Deferred already has (pumping StubTreq first)."""
        self.treq.flush()
        results: list[Any] = []
        deferred.addBoth(results.append)
        if not results:
            raise AssertionError("the response has not arrived")
        if hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]

    def body(self, response: Any) -> Any:
        """The JSON body of a response."""
        return json.loads(self.result(response.content()))

    def login(self, username: str = "alice", password: str = "password123") -> str:
        """Log in and return the session token."""
        response = self.post("/login", {"username": username, "password": password})
        assert response.code == 200, (response.code, self.body(response))
        cookie = response.headers.getRawHeaders(b"Set-Cookie")[0].decode()
        return cookie.split(";", 1)[0].split("=", 1)[1]

    def connect(self, address: Any = None, *, transport: StringTransport | None = None
                ) -> tuple[APIChannel, StringTransport]:
        """Open an in-memory connection to the real site (our channel and request classes),
        on C{transport} if given."""
        if address is None:
            address = IPv4Address("TCP", "10.0.0.7", 50000)
        channel = self.service.site.buildProtocol(address)
        if transport is None:
            transport = StringTransport(peerAddress=address)
        channel.makeConnection(transport)
        return channel, transport

    def raw(self, data: bytes, address: Any = None) -> tuple[bytes, StringTransport]:
        """Send raw bytes on a new connection; return what came back and the transport."""
        channel, transport = self.connect(address)
        channel.dataReceived(data)
        return transport.value(), transport


def status_of(raw: bytes) -> int | None:
    """The status code of the first response in C{raw}, or C{None} if there is none."""
    if not raw.startswith(b"HTTP/1.1 "):
        return None
    return int(raw[9:12])


def request_bytes(path: str = "/communicate", body: bytes = b"{}", *, method: str = "POST",
                  cookie: str | None = None, extra: bytes = b"",
                  content_type: bytes | None = b"application/json",
                  host: bytes = b"example.test") -> bytes:
    """A well-formed HTTP/1.1 request as bytes."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + host,
             b"Content-Length: %d" % len(body)]
    if content_type is not None:
        lines.append(b"Content-Type: " + content_type)
    if cookie is not None:
        lines.append(b"Cookie: sessionToken=" + cookie.encode())
    head = b"\r\n".join(lines) + b"\r\n" + extra
    return head + b"\r\n" + body


def child_env() -> dict[str, str]:
    """The environment for a child Python process that imports this checkout's serverapi."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))
    return env


def wait_until(predicate: Callable[[], Any], limit: float = 10.0, *,
               interval: float = 0.02) -> float:
    """Poll every C{interval} seconds until C{predicate()} is true; the seconds it took
    (raises after C{limit})."""
    began = time.monotonic()
    while not predicate():
        if time.monotonic() - began > limit:
            raise AssertionError("timed out")
        time.sleep(interval)
    return time.monotonic() - began
