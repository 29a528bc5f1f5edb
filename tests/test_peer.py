"""Asking a socket the reactor is not reading whether its client is still there."""

from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Any
from unittest.mock import Mock

from twisted.trial.unittest import SynchronousTestCase

from serverapi import _peer
from serverapi._peer import still_connected


class SocketTransport:
    """The one method of a Twisted transport that the check uses."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def getHandle(self) -> Any:
        return self.handle


class StillConnectedTests(SynchronousTestCase):
    """still_connected on real loopback TCP connections, by each of its three ways."""

    def connection(self) -> tuple[socket.socket, socket.socket]:
        """A connected (server side, client side) pair of non-blocking TCP sockets."""
        listener = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(listener.close)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        server.setblocking(False)  # as Twisted's sockets are
        for handle in (client, server):
            self.addCleanup(handle.close)
        return server, client

    def wait_for_close(self, server: socket.socket) -> None:
        """Wait (at most 5 s) until what the client did has reached the server's socket."""
        readable, _, _ = select.select([server], [], [], 5)
        self.assertEqual(readable, [server])

    def assertChecks(self, connected: bool, server: socket.socket) -> None:
        """The check says C{connected}, asking the TCP state, the poll event and a peek alike."""
        self.assertEqual(still_connected(SocketTransport(server)), connected)
        self.patch(_peer, "_TCP_INFO", None)
        self.assertEqual(still_connected(SocketTransport(server)), connected)
        self.patch(_peer, "_PEER_CLOSED", 0)
        self.assertEqual(still_connected(SocketTransport(server)), connected)

    def test_connected(self) -> None:
        """A client that waits is there."""
        server, _ = self.connection()
        self.assertChecks(True, server)

    def test_connected_with_bytes_waiting(self) -> None:
        """A client that sent more (pipelined) and waits is there; nothing is taken."""
        server, client = self.connection()
        client.sendall(b"GET / HTTP/1.1\r\n")
        self.assertChecks(True, server)
        self.assertEqual(server.recv(100), b"GET / HTTP/1.1\r\n")

    def test_closed(self) -> None:
        """A client that closed is gone."""
        server, client = self.connection()
        client.close()
        self.wait_for_close(server)
        self.assertChecks(False, server)

    def test_reset(self) -> None:
        """A client that reset the connection is gone."""
        server, client = self.connection()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        self.wait_for_close(server)
        self.assertChecks(False, server)

    def test_closed_after_sending(self) -> None:
        """A client that sent bytes (a TLS close_notify, another request) and then closed is
        gone, by the TCP state or the poll event (a peek would see only the bytes)."""
        server, client = self.connection()
        if not _peer._PEER_CLOSED:
            raise self.skipTest("this system's poll has no event for a closed peer")
        client.sendall(b"\x15\x03\x03\x00\x02\x01\x00")
        client.close()
        poller = select.poll()
        poller.register(server, _peer._PEER_CLOSED)
        self.assertTrue(poller.poll(5000))  # the close has arrived behind the bytes
        self.assertFalse(still_connected(SocketTransport(server)))
        self.patch(_peer, "_TCP_INFO", None)
        self.assertFalse(still_connected(SocketTransport(server)))

    def test_socket_closed_here(self) -> None:
        """A socket the server closed meanwhile is gone."""
        server, _ = self.connection()
        server.close()
        self.assertChecks(False, server)

    def test_socket_being_torn_down(self) -> None:
        """A transport whose socket is already gone (Twisted deletes it before the protocol
        hears of the loss) is gone, not an error."""

        class TornDown:
            def getHandle(self) -> Any:
                raise AttributeError("'Server' object has no attribute 'socket'")

        self.assertFalse(still_connected(TornDown()))

    def test_under_a_tls_layer(self) -> None:
        """Twisted's TLS layer answers C{getHandle} with its OpenSSL connection: the socket is
        its transport's, and that is the one asked."""

        class TwistedTLSLayer:
            def __init__(self, transport: SocketTransport) -> None:
                self.transport = transport

            def getHandle(self) -> Any:
                return object()  # an OpenSSL.SSL.Connection, in Twisted's layer

        server, client = self.connection()
        self.assertTrue(still_connected(TwistedTLSLayer(SocketTransport(server))))
        client.close()
        self.wait_for_close(server)
        self.assertFalse(still_connected(TwistedTLSLayer(SocketTransport(server))))

    def test_transports_that_go_on(self) -> None:
        """A chain of transports that never ends (a test's mock, a transport that names
        itself) is looked down only a few layers: no socket, so taken as there."""

        class NamesItself:
            def getHandle(self) -> Any:
                return None

        itself = NamesItself()
        itself.transport = itself  # type: ignore[attr-defined]
        answers: list[bool] = []
        check = threading.Thread(target=lambda: answers.extend(
            [still_connected(itself), still_connected(Mock())]), daemon=True)
        check.start()
        check.join(10)  # (a walk without an end would never return)
        self.assertEqual(answers, [True, True])

    def test_no_socket(self) -> None:
        """A transport without a socket (in memory), or none at all, is taken as there."""
        self.assertTrue(still_connected(object()))
        self.assertTrue(still_connected(None))
