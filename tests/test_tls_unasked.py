"""What a TLS layer sends of its own accord (key updates' answers) stays bounded when the
client asks for it over and over and never reads: serverapi's layer, and Twisted's (a daemon's
C{--listen ssl:...})."""

from __future__ import annotations

import os
import socket

from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocol
from twisted.internet.ssl import DefaultOpenSSLContextFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from .helpers import HeldPool, MemoryServer, SlowReaderTransport, request_bytes
from .tls_memory import certificates, tls_server
from .tls_raw_client import LIBRARIES, RawTLSClient

HIGH_WATER = 16 * 1024
# One read's worth of key updates can be answered after the buffer is full, no more.
BOUND = HIGH_WATER + 64 * 1024


class UnaskedOutputMixin:
    """A client that floods key updates while its request is in a callback."""

    def layer(self, channel: IProtocol) -> IProtocol:
        """The TLS layer under test, in front of C{channel}."""
        raise NotImplementedError

    def setUp(self) -> None:
        if LIBRARIES is None:
            if os.environ.get("CI"):
                self.fail("CI is set but libssl cannot be loaded through ctypes")
            raise self.skipTest("this test drives the system's libssl, which is missing")
        self.server = MemoryServer(pool=HeldPool())
        self.token = self.server.login()
        channel = self.server.service.site.buildProtocol(IPv4Address("TCP", "10.0.0.7", 50000))
        self.transport = SlowReaderTransport(high_water=HIGH_WATER)
        self.tls = self.layer(channel)
        self.tls.makeConnection(self.transport)
        self.client = RawTLSClient()
        self.addCleanup(self.client.close)
        for _ in range(10):
            done = self.client.handshake()
            self.send()
            self.client.incoming(self.transport.drain())
            if done:
                break
        self.assertTrue(done)

    def release(self) -> None:
        """Run the held job and deliver its result."""
        self.server.pool.release()

    def send(self) -> None:
        """Hand the server what the client has written."""
        data = self.client.outgoing()
        if data:
            self.tls.dataReceived(data)

    def flood(self) -> None:
        """Send key updates until the server stops reading (at most 20,000 of them)."""
        for _ in range(20_000):
            if self.transport.producerState != "producing":
                break
            self.client.key_update()
            self.send()
        self.assertEqual(self.transport.producerState, "paused")
        self.assertLess(len(self.transport.value()), BOUND)

    def test_key_updates_while_a_request_is_in_a_callback(self) -> None:
        """Once the answers to key updates fill the send buffer, the socket is read no further
        (a real client's flood then waits in its own kernel buffers); reading resumes once the
        client has read, with the request still in hand (so the reactor would see the client
        leave) and after it is answered, and the connection goes on serving."""
        self.client.write(request_bytes(cookie=self.token))
        self.send()
        self.assertEqual(len(self.server.pool.jobs), 1)
        self.flood()
        self.client.incoming(self.transport.drain())
        self.assertEqual(self.transport.producerState, "producing")  # the request in hand
        self.flood()  # and again
        self.client.incoming(self.transport.drain())
        self.release()
        self.assertEqual(self.transport.producerState, "producing")
        self.client.incoming(self.transport.drain())
        self.assertTrue(self.client.read().startswith(b"HTTP/1.1 200 OK"))
        self.client.write(request_bytes(cookie=self.token))
        self.send()
        self.release()
        self.client.incoming(self.transport.drain())
        self.assertTrue(self.client.read().startswith(b"HTTP/1.1 200 OK"))

    def test_answered_while_the_buffer_is_full(self) -> None:
        """Answered before the client reads, the next pipelined request is parsed only once the
        client has read; then it is served too."""
        self.client.write(request_bytes(cookie=self.token) * 2)
        self.send()
        self.flood()
        self.release()
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.server.pool.jobs, [])  # the second request is not parsed yet
        self.client.incoming(self.transport.drain())
        self.assertEqual(self.transport.producerState, "producing")
        self.release()
        self.client.incoming(self.transport.drain())
        answers = b"".join(iter(self.client.read, b""))
        self.assertEqual(answers.count(b"HTTP/1.1 200 OK"), 2)

    def test_client_that_leaves_while_reading_is_paused(self) -> None:
        """Reading paused by the flood, the reactor cannot see the client leave: the worker asks
        the socket, does not run the callback, and the connection is closed."""
        ours, theirs = socket.socketpair()
        self.addCleanup(ours.close)
        self.transport.getHandle = lambda: ours  # type: ignore[method-assign]
        self.client.write(request_bytes(cookie=self.token))
        self.send()
        self.flood()
        theirs.close()
        self.release()
        self.assertEqual(self.server.pool.ran, 0)
        self.assertTrue(self.transport.disconnected)


class ServerapiLayerTests(UnaskedOutputMixin, SynchronousTestCase):
    """serverapi's own TLS layer (C{setConnectionSecurityParams}, C{--tls-cert})."""

    def layer(self, channel: IProtocol) -> IProtocol:
        """serverapi's layer, with the test certificate."""
        return tls_server(channel)


class TwistedLayerTests(UnaskedOutputMixin, SynchronousTestCase):
    """Twisted's TLS layer, as an C{ssl:} endpoint wraps the site."""

    def layer(self, channel: IProtocol) -> IProtocol:
        """Twisted's layer, with the test certificate (as C{ssl:...:privateKey=...})."""
        certs = certificates()
        options = DefaultOpenSSLContextFactory(certs.server_key, certs.server_cert)
        factory = TLSMemoryBIOFactory(options, False, None, clock=self.server.reactor)
        return factory.protocol(factory, channel)

    def release(self) -> None:
        """Run the held job; the layer sends small writes on the reactor's next turn."""
        super().release()
        self.server.reactor.advance(0)
