"""The HTTP layer fed raw bytes: body cap, deadlines, keep-alive, malformed and hostile input."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from .helpers import HeldPool, MemoryServer, SlowReaderTransport, request_bytes, status_of

CAP = 2 * 4096  # max_recv_calls_per_request=2


def responses(raw: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split a byte stream of Content-Length-framed responses into (status, headers, body)."""
    found = []
    while raw:
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        length = int(headers[b"content-length"])
        found.append((int(lines[0][9:12]), headers, rest[:length]))
        raw = rest[length:]
    return found


class ServedMixin:
    """Setup and checks shared by the raw-bytes tests."""

    def setUp(self) -> None:
        self.calls: list[dict[str, object]] = []
        self.server = MemoryServer(request_callback=self.callback, max_recv_calls_per_request=2,
                                   timeout=5)
        self.token = self.server.login()

    def callback(self, username: str, token: str, data: dict[str, object]) -> tuple:
        self.calls.append(data)
        return False, False, {"ok": True}

    def assertNextClientServed(self) -> None:
        """A fresh connection still gets a normal answer."""
        answer, _ = self.server.raw(request_bytes(cookie=self.token))
        self.assertEqual(status_of(answer), 200, answer)  # type: ignore[attr-defined]


class KeepAliveTests(ServedMixin, SynchronousTestCase):
    """Persistent connections and pipelining."""

    def test_many_requests_one_connection(self) -> None:
        """Requests sent one after another on one connection are all answered."""
        channel, transport = self.server.connect()
        for index in range(5):
            channel.dataReceived(request_bytes(body=json.dumps({"i": index}).encode(),
                                               cookie=self.token))
        answers = responses(transport.value())
        self.assertEqual([status for status, _, _ in answers], [200] * 5)
        self.assertEqual(self.calls, [{"i": index} for index in range(5)])
        self.assertFalse(transport.disconnecting)

    def test_pipelined(self) -> None:
        """Requests written in one go are answered in order."""
        answer, _ = self.server.raw(request_bytes(cookie=self.token) * 3
                                    + request_bytes("/logout", b"", cookie=self.token))
        self.assertEqual([status for status, _, _ in responses(answer)], [200, 200, 200, 200])

    def test_pipelined_while_callback_runs(self) -> None:
        """A request arriving while the previous one is in a worker waits its turn."""
        pool = HeldPool()
        server = MemoryServer(pool=pool)
        token = server.login()
        channel, transport = server.connect()
        channel.dataReceived(request_bytes(body=b'{"n": 1}', cookie=token)
                             + request_bytes(body=b'{"n": 2}', cookie=token))
        self.assertEqual(len(pool.jobs), 1)
        pool.release()
        self.assertEqual(len(pool.jobs), 1)
        pool.release()
        bodies = [json.loads(body) for _, _, body in responses(transport.value())]
        self.assertEqual([body["echo"] for body in bodies], ["", ""])
        self.assertEqual(len(bodies), 2)

    def test_headers_on_raw_responses(self) -> None:
        """Responses carry the standard headers, a Date, and no Server header."""
        answer, _ = self.server.raw(request_bytes(cookie=self.token))
        [(status, headers, _)] = responses(answer)
        self.assertEqual(headers[b"content-type"], b"application/json; charset=utf-8")
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertEqual(headers[b"cache-control"], b"no-store")
        self.assertIn(b"date", headers)
        self.assertNotIn(b"server", headers)
        self.assertNotIn(b"strict-transport-security", headers)


class BodyCapTests(ServedMixin, SynchronousTestCase):
    """413 for bodies past max_recv_calls_per_request x 4096 bytes."""

    def test_at_cap_accepted(self) -> None:
        """A body of exactly the cap is served."""
        body = json.dumps({"pad": "x" * (CAP - 11)}).encode()
        self.assertEqual(len(body), CAP)
        answer, _ = self.server.raw(request_bytes(body=body, cookie=self.token))
        self.assertEqual(status_of(answer), 200)

    def test_declared_too_large_refused_before_body(self) -> None:
        """A Content-Length past the cap gets 413 from the headers alone, then a close."""
        head = request_bytes(body=b"", cookie=self.token).replace(
            b"Content-Length: 0", b"Content-Length: %d" % (CAP + 1))
        answer, transport = self.server.raw(head)
        [(status, headers, body)] = responses(answer)
        self.assertEqual((status, json.loads(body)), (413, {"error": "Request body too large."}))
        self.assertEqual(headers[b"connection"], b"close")
        self.assertEqual(headers[b"content-type"], b"application/json; charset=utf-8")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.calls, [])
        self.assertNextClientServed()

    def test_404_and_405_outrank_413(self) -> None:
        """With an oversized declared body, an unknown path is 404 and a GET is 405."""
        big = b"Content-Length: %d" % (CAP + 1)
        for path, method, status in [("/nowhere", "POST", 404), ("/communicate", "GET", 405),
                                     ("/login", "POST", 413)]:
            raw = request_bytes(path, b"", method=method).replace(b"Content-Length: 0", big)
            answer, transport = self.server.raw(raw)
            self.assertEqual(status_of(answer), status, path)
            self.assertTrue(transport.disconnecting)

    def test_chunked_too_large_refused_while_reading(self) -> None:
        """A chunked body is cut off with 413 as soon as it passes the cap."""
        channel, transport = self.server.connect()
        channel.dataReceived(
            b"POST /communicate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\nCookie: sessionToken="
            + self.token.encode() + b"\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (4096, b" " * 4096)
        channel.dataReceived(chunk * 2)
        self.assertEqual(transport.value(), b"")
        channel.dataReceived(chunk)
        self.assertEqual(status_of(transport.value()), 413)
        self.assertTrue(transport.disconnecting)
        channel.dataReceived(chunk * 10 + b"0\r\n\r\n")
        self.assertEqual(len(responses(transport.value())), 1)
        self.assertEqual(self.calls, [])
        self.assertNextClientServed()

    def test_login_cap(self) -> None:
        """/login takes at most 64 KiB (or the general cap, if smaller), declared or chunked."""
        server = MemoryServer()
        padding = b"x" * (64 * 1024)
        body = b'{"username": "alice", "password": "password123", "p": "' + padding + b'"}'
        answer, transport = server.raw(request_bytes("/login", body))
        self.assertEqual(status_of(answer), 413)
        self.assertTrue(transport.disconnecting)
        small = b'{"username": "alice", "password": "password123", "p": "' + b"x" * 60000 + b'"}'
        self.assertEqual(status_of(server.raw(request_bytes("/login", small))[0]), 200)
        chunked = (b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n%s\r\n" % (len(body), body) + b"0\r\n\r\n")
        self.assertEqual(status_of(server.raw(chunked)[0]), 413)
        # /communicate keeps the general cap.
        token = server.login()
        big = b'{"p": "' + b"x" * 200000 + b'"}'
        self.assertEqual(status_of(server.raw(request_bytes(body=big, cookie=token))[0]), 200)

    def test_chunked_within_cap(self) -> None:
        """A chunked body under the cap is served."""
        body = b'{"chunked": true}'
        answer, _ = self.server.raw(
            b"POST /communicate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Cookie: sessionToken=" + self.token.encode() + b"\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        self.assertEqual(status_of(answer), 200)
        self.assertEqual(self.calls, [{"chunked": True}])


class DeadlineTests(ServedMixin, SynchronousTestCase):
    """The idle timeout and the whole-request deadline."""

    def test_idle_connection_closed(self) -> None:
        """A connection that sends nothing for `timeout` seconds is closed."""
        channel, transport = self.server.connect()
        self.server.reactor.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.server.reactor.advance(0.2)
        self.assertTrue(transport.disconnecting)

    def test_idle_after_keep_alive_response(self) -> None:
        """After a response, an idle keep-alive connection is closed after `timeout`."""
        channel, transport = self.server.connect()
        channel.dataReceived(request_bytes(cookie=self.token))
        self.server.reactor.advance(5.1)
        self.assertTrue(transport.disconnecting)

    def test_slowloris_closed_after_three_timeouts(self) -> None:
        """A request trickled a byte at a time is cut off 3 x timeout after its first byte."""
        channel, transport = self.server.connect()
        self.assertCutOffAfter15Seconds(channel, transport)
        self.assertEqual(self.calls, [])
        self.assertNextClientServed()

    def assertCutOffAfter15Seconds(self, channel: Any, transport: Any) -> None:
        """A request trickled a byte a second is answered 408 and closed once 15 seconds
        (3 x timeout) have passed since its first byte, not before."""
        raw = request_bytes(cookie=self.token)
        for index in range(14):
            channel.dataReceived(raw[index:index + 1])
            self.server.reactor.advance(1)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(raw[14:15])
        self.server.reactor.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(status_of(transport.value()), 408)

    def test_deadline_counts_from_the_first_byte_after_a_pause(self) -> None:
        """A client that read its answers late (the channel stopped reading meanwhile) gets
        the whole 3 x timeout for its next request from that request's first byte."""
        transport = SlowReaderTransport(high_water=64)
        channel, _ = self.server.connect(transport=transport)
        channel.dataReceived(request_bytes(cookie=self.token))
        self.assertTrue(channel.paused)  # the answer filled the send buffer
        transport.drain()  # the client reads it: reading resumes, nothing has arrived
        self.server.reactor.advance(4.5)
        self.assertCutOffAfter15Seconds(channel, transport)

    def test_closing_connection_cut_off_when_its_answer_is_not_read(self) -> None:
        """After an answer that closes the connection, a client that never reads it is cut off
        timeout + abortTimeout seconds later, as an idle keep-alive one would be."""
        channel, transport = self.server.connect()
        channel.dataReceived(request_bytes(cookie=self.token, extra=b"Connection: close\r\n"))
        self.assertEqual(status_of(transport.value()), 200)
        self.assertTrue(transport.disconnecting)
        self.server.reactor.advance(5 + channel.abortTimeout - 0.1)
        self.assertFalse(transport.disconnected)
        self.server.reactor.advance(0.2)
        self.assertTrue(transport.disconnected)
        # A client that reads its answer lets the connection close: the cut-off is cancelled.
        channel, transport = self.server.connect()
        channel.dataReceived(request_bytes(cookie=self.token, extra=b"Connection: close\r\n"))
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual([call for call in self.server.reactor.getDelayedCalls()
                          if call.func == channel.forceAbortClient], [])

    def test_deadline_resets_per_request(self) -> None:
        """Each request on a keep-alive connection gets its own deadline."""
        channel, transport = self.server.connect()
        for _ in range(4):
            channel.dataReceived(request_bytes(cookie=self.token))
            self.server.reactor.advance(4)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(len(responses(transport.value())), 4)


HOSTILE = [
    ("duplicate content-length",
     b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
     400),
    ("content-length with transfer-encoding",
     b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n{}", 400),
    ("signed length", b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: +2\r\n\r\n{}",
     400),
    ("negative length", b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: -2\r\n\r\n",
     400),
    ("hex length", b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 0x2\r\n\r\n{}",
     400),
    # Chunked rows go to /login: /communicate refuses an unknown token before any chunk.
    ("bad chunk size", b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
     b"\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    ("signed chunk size", b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
     b"\r\n\r\n+2\r\n{}\r\n0\r\n\r\n", 400),
    ("unknown transfer-encoding", b"POST /communicate HTTP/1.1\r\nHost: x\r\n"
     b"Transfer-Encoding: gzip\r\n\r\n", 400),
    ("bare CR in header value", b"POST /communicate HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n"
     b"Content-Length: 2\r\n\r\n{}", 400),
    ("bare LF in header value", b"POST /communicate HTTP/1.1\r\nHost: x\r\nX-A: a\nb\r\n"
     b"Content-Length: 2\r\n\r\n{}", 400),
    ("NUL in header value", b"POST /communicate HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    ("header without colon", b"POST /communicate HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    ("space in header name", b"POST /communicate HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", 400),
    ("bad request line", b"POST /communicate\r\n\r\n", 400),
    ("header flood", b"POST /communicate HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: v\r\n" % index for index in range(600)) + b"\r\n", 400),
    ("oversize header line", b"POST /communicate HTTP/1.1\r\nHost: x\r\nX-Big: "
     + b"a" * 20000 + b"\r\n\r\n", 431),
    ("oversize request line", b"POST /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", 431),
    ("multipart form", b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/"
     b"form-data; boundary=zz\r\nContent-Length: 9\r\n\r\n--zz\r\nbad", 415),
    ("urlencoded form", b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-"
     b"form-urlencoded\r\nContent-Length: 29\r\n\r\nusername=alice&password=secret", 415),
    ("no host", b"POST /communicate HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400),
    ("two hosts", b"POST /communicate HTTP/1.1\r\nHost: a\r\nHost: b\r\nContent-Length: 2"
     b"\r\n\r\n{}", 400),
    ("encoded slash", b"POST /communicate%2f HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
     404),
    ("double slash", b"POST //communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
     404),
    ("absolute form", b"POST http://evil/communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 2"
     b"\r\n\r\n{}", 404),
    ("dot segment", b"POST /x/../communicate HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
     404),
]


class HostileInputTests(ServedMixin, SynchronousTestCase):
    """Malformed and smuggling-shaped requests get a defined answer and run no callback."""

    def test_table(self) -> None:
        """Each hostile request gets its status (JSON, standard headers) and the next is served."""
        for name, raw, status in HOSTILE:
            answer, transport = self.server.raw(raw)
            self.assertEqual(status_of(answer), status, (name, answer[:200]))
            [(_, headers, body)] = responses(answer)
            self.assertEqual(headers[b"content-type"], b"application/json; charset=utf-8", name)
            self.assertIn("error", json.loads(body), name)
            self.assertNotIn(b"server", headers, name)
            if status in (400, 431):
                self.assertTrue(transport.disconnecting, name)
            self.assertEqual(self.calls, [], name)
            self.assertNextClientServed()
            self.calls.clear()
