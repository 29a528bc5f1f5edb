"""Backpressure per connection: a client that does not read its answers gets no more served."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import HIGH_WATER, HeldPool, MemoryServer, SlowReaderTransport, request_bytes

BIG = "x" * (128 * 1024)


class PipelineTests(SynchronousTestCase):
    """Pipelined requests from a client that never reads."""

    def setUp(self) -> None:
        self.calls = 0
        self.server = MemoryServer(request_callback=self.big_answer)
        self.token = self.server.login()

    def big_answer(self, username: str, token: str, data: dict[str, Any]) -> tuple:
        """Count the call and answer 128 KiB."""
        self.calls += 1
        return False, False, {"data": BIG}

    def connect(self) -> tuple[Any, SlowReaderTransport]:
        """A connection on the slow-reader transport."""
        channel = self.server.service.site.buildProtocol(None)
        transport = SlowReaderTransport()
        channel.makeConnection(transport)
        return channel, transport

    def test_callbacks_stop_while_output_is_full(self) -> None:
        """400 pipelined requests run only the callbacks whose answers fit the window; the
        rest run as the client reads, and every answer arrives in order."""
        channel, transport = self.connect()
        channel.dataReceived(request_bytes(cookie=self.token) * 400)
        self.assertLessEqual(self.calls, 3)
        self.assertEqual(transport.producerState, "paused")
        received = transport.drain()
        for _ in range(1000):
            if self.calls == 400 and not transport.value():
                break
            received += transport.drain()
        self.assertEqual(self.calls, 400)
        self.assertEqual(received.count(b"HTTP/1.1 200 OK\r\n"), 400)

    def test_unauthenticated_404s_held_too(self) -> None:
        """Pipelined 404s stop being answered while the client does not read."""
        channel, transport = self.connect()
        channel.dataReceived(request_bytes("/nowhere", body=b"") * 5_000)
        self.assertEqual(transport.producerState, "paused")
        self.assertLess(len(transport.value()), HIGH_WATER + 1024)
        self.assertLess(transport.value().count(b"HTTP/1.1 404 "), 5_000)
        answered = 0
        for _ in range(1000):
            data = transport.drain()
            if not data:
                break
            answered += data.count(b"HTTP/1.1 404 ")
        self.assertEqual(answered, 5_000)


class InHandTests(SynchronousTestCase):
    """A connection whose send buffer fills while its request is in a callback."""

    def setUp(self) -> None:
        self.server = MemoryServer(pool=HeldPool(), max_threads=1, max_queued_requests=0)
        self.token = self.server.login()

    def connect(self) -> tuple[Any, SlowReaderTransport]:
        """A connection whose request waits in the pool."""
        channel = self.server.service.site.buildProtocol(None)
        transport = SlowReaderTransport()
        channel.makeConnection(transport)
        channel.dataReceived(request_bytes(cookie=self.token))
        return channel, transport

    def test_reading_stops_and_resumes(self) -> None:
        """The socket is read no further while the buffer is full, and again once it drains,
        before the request is answered."""
        channel, transport = self.connect()
        self.assertEqual(transport.producerState, "producing")
        transport.write(b"x" * (HIGH_WATER + 1))  # what a TLS layer writes of its own accord
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(channel.send_buffer_full)
        transport.drain()
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(channel.send_buffer_full)
        self.server.pool.release()
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())
        self.assertEqual(transport.producerState, "producing")

    def test_held_request_stays_unread_after_a_drain(self) -> None:
        """A request held behind too many others is not read again when the buffer drains,
        only once it is answered."""
        self.connect()  # fills the one worker's place
        channel, transport = self.connect()
        self.assertTrue(channel.reading_held)
        self.assertEqual(transport.producerState, "paused")
        transport.write(b"x" * (HIGH_WATER + 1))
        transport.drain()
        self.assertEqual(transport.producerState, "paused")
        self.server.pool.release(1)
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(channel.reading_held)


class ForeignChannelTests(SynchronousTestCase):
    """The resource tree driven through Twisted's own channel (as StubTreq does)."""

    def test_requests_past_the_queue_are_answered(self) -> None:
        """Requests beyond the workers and the queue cannot hold a channel that is not
        serverapi's: each is still queued and answered, with no error."""
        server = MemoryServer(pool=HeldPool(), max_threads=1, max_queued_requests=0)
        token = server.login()
        cookie = [f"sessionToken={token}".encode()]
        headers = {b"Content-Type": [b"application/json"], b"Cookie": cookie}
        pending = [server.treq.request("POST", "http://example.test/communicate",
                                       data=b'{"message": "%d"}' % n, headers=headers)
                   for n in range(3)]
        server.treq.flush()
        self.assertEqual(len(server.pool.jobs), 3)
        while server.pool.jobs:
            server.pool.release()
        responses = [server.result(deferred) for deferred in pending]
        self.assertEqual([response.code for response in responses], [200, 200, 200])
        self.assertEqual([server.body(response)["echo"] for response in responses],
                         ["0", "1", "2"])
        self.assertNotIn("Traceback", server.log.text)
        self.assertEqual(self.flushLoggedErrors(), [])
