"""What the TLS layer sends of its own accord (key updates' answers) stays bounded when the
client asks for it over and over and never reads."""

from __future__ import annotations

import os

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase


from .helpers import HeldPool, MemoryServer, SlowReaderTransport, request_bytes
from .tls_memory import tls_server
from .tls_raw_client import LIBRARIES, RawTLSClient

HIGH_WATER = 16 * 1024
# One read's worth of key updates can be answered after the buffer is full, no more.
BOUND = HIGH_WATER + 64 * 1024


class UnaskedOutputTests(SynchronousTestCase):
    """A client that floods key updates while its request is in a callback."""

    def setUp(self) -> None:
        if LIBRARIES is None:
            if os.environ.get("CI"):
                self.fail("CI is set but libssl cannot be loaded through ctypes")
            raise self.skipTest("this test drives the system's libssl, which is missing")
        self.server = MemoryServer(pool=HeldPool())
        self.token = self.server.login()
        channel = self.server.service.site.buildProtocol(IPv4Address("TCP", "10.0.0.7", 50000))
        self.transport = SlowReaderTransport(high_water=HIGH_WATER)
        self.tls = tls_server(channel)
        self.tls.makeConnection(self.transport)
        self.client = RawTLSClient()
        self.addCleanup(self.client.close)
        for _ in range(10):
            done = self.client.handshake()
            self.send()
            self.client.incoming(self.transport.drain())
            if done:
                break
        self.assertTrue(self.tls._handshaken)

    def send(self) -> None:
        """Hand the server what the client has written."""
        data = self.client.outgoing()
        if data:
            self.tls.dataReceived(data)

    def test_key_updates_while_a_request_is_in_a_callback(self) -> None:
        """Once the answers to key updates fill the send buffer, the socket is read no further
        (a real client's flood then waits in its own kernel buffers); reading resumes once the
        client has read and the request is answered, and the connection goes on serving."""
        self.client.write(request_bytes(cookie=self.token))
        self.send()
        self.assertEqual(len(self.server.pool.jobs), 1)
        updates = 0
        while self.transport.producerState == "producing" and updates < 20_000:
            self.client.key_update()
            self.send()
            updates += 1
        self.assertEqual(self.transport.producerState, "paused")
        self.assertLess(len(self.transport.value()), BOUND)
        self.client.incoming(self.transport.drain())
        self.assertEqual(self.transport.producerState, "paused")  # the request is in hand
        self.server.pool.release()
        self.assertEqual(self.transport.producerState, "producing")
        self.client.incoming(self.transport.drain())
        self.assertTrue(self.client.read().startswith(b"HTTP/1.1 200 OK"))
        self.client.write(request_bytes(cookie=self.token))
        self.send()
        self.server.pool.release()
        self.client.incoming(self.transport.drain())
        self.assertTrue(self.client.read().startswith(b"HTTP/1.1 200 OK"))
