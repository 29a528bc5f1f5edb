"""send_now: a response goes straight into the socket, and nothing overtakes buffered bytes;
which responses go that way and which through the transport's buffer."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.interfaces import IOpenSSLContextFactory, IPushProducer
from twisted.internet.protocol import ClientCreator, ClientFactory, Factory, Protocol
from OpenSSL import SSL
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http import HTTPChannel
from zope.interface import implementer

from serverapi._internals import send_now
from serverapi._responses import sender
from serverapi._tls import TLSFiles
from serverapi._tls_connection import TLSServerConnection, server_context

from .certificates import Certificates
from .helpers import HeldPool, MemoryServer, request_bytes, status_of

CERTS = Certificates(tempfile.mkdtemp())

BIG = 4 * 1024 * 1024  # far more than a socket's buffers hold


class Held(Protocol):
    """The server side: hands its transport to the test once connected."""

    def __init__(self, accepted: defer.Deferred[Any]) -> None:
        self.accepted = accepted

    def connectionMade(self) -> None:
        self.accepted.callback(self.transport)


@implementer(IPushProducer)
class Producer:
    """Records whether the transport asked it to pause."""

    paused = False

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False

    def stopProducing(self) -> None:
        pass


class Reader(Protocol):
    """The client side: collects what arrives; fires C{done} once C{expected} bytes came, or
    the connection closed."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(bytes(self.received))


@implementer(IOpenSSLContextFactory)
class ServerContext:
    """The server's pyOpenSSL context for Twisted's own TLS layer: the chain and its key."""

    def getContext(self) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.use_certificate_chain_file(CERTS.server_cert)
        context.use_privatekey_file(CERTS.server_key)
        return context


class SendNowSocketTests(TestCase):
    """Against a real TCP connection: the server's transport and a client that reads when told."""

    def connect(self, expected: int) -> defer.Deferred[Reader]:
        """Connect a paused reader (it reads nothing until resumed) to a fresh server."""
        accepted: defer.Deferred[Any] = defer.Deferred()
        port = reactor.listenTCP(  # type: ignore[attr-defined]
            0, Factory.forProtocol(lambda: Held(accepted)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reader = Reader(expected)
        creator = ClientCreator(reactor, lambda: reader)
        connecting = creator.connectTCP("127.0.0.1", port.getHost().port)

        def both(results: list[Any]) -> Reader:
            self.transport = results[0]
            client = results[1]
            client.transport.pauseProducing()
            self.addCleanup(client.transport.abortConnection)
            self.addCleanup(self.transport.abortConnection)
            return reader

        return defer.gatherResults([accepted, connecting]).addCallback(both)

    @defer.inlineCallbacks
    def test_sent_at_once(self) -> Any:
        """With nothing buffered, the bytes are in the socket before send_now returns: the
        transport buffers nothing and does not ask the reactor to watch for writing."""
        reader = yield self.connect(6)
        send_now(self.transport, b"answer")
        self.assertEqual(self.transport._tempDataLen, 0)
        self.assertNotIn(self.transport, reactor.getWriters())  # type: ignore[attr-defined]
        reader.transport.resumeProducing()
        self.assertEqual((yield reader.done), b"answer")

    @defer.inlineCallbacks
    def test_behind_buffered_bytes(self) -> Any:
        """Bytes the transport already holds go first: send_now queues behind them."""
        reader = yield self.connect(12)
        self.transport.write(b"first ")
        send_now(self.transport, b"second")
        reader.transport.resumeProducing()
        self.assertEqual((yield reader.done), b"first second")

    @defer.inlineCallbacks
    def test_what_the_socket_refuses_is_buffered_in_order(self) -> Any:
        """A client that reads nothing: the socket takes a part, the transport keeps the rest
        (pausing its producer, as its own write does), and later bytes come after all of it."""
        first = bytes(range(256)) * (BIG // 256)
        reader = yield self.connect(len(first) + 5)
        producer = Producer()
        self.transport.registerProducer(producer, True)
        send_now(self.transport, first)
        held = self.transport._tempDataLen + len(self.transport.dataBuffer)
        self.assertGreater(held, 0)
        self.assertLess(held, len(first))
        self.assertTrue(producer.paused)
        send_now(self.transport, b"after")
        reader.transport.resumeProducing()
        received = yield reader.done
        self.assertEqual(len(received), len(first) + 5)
        self.assertTrue(received == first + b"after")

    @defer.inlineCallbacks
    def test_closing_transport_sends_then_closes(self) -> Any:
        """Once the transport is closing, send_now leaves the bytes to it: sent, then closed."""
        reader = yield self.connect(1000)
        self.transport.loseConnection()
        send_now(self.transport, b"last words")
        self.assertEqual(self.transport._tempDataLen, len(b"last words"))
        reader.transport.resumeProducing()
        self.assertEqual((yield reader.done), b"last words")

    @defer.inlineCallbacks
    def test_aborted_transport_sends_nothing(self) -> Any:
        """An answer that comes after its connection was aborted (in the same reactor turn,
        before Twisted calls it lost) never reaches the socket."""
        reader = yield self.connect(1000)
        self.transport.abortConnection()
        send_now(self.transport, b"too late")
        reader.transport.resumeProducing()
        self.assertEqual((yield reader.done), b"")

    def tls_server(self, serving: Callable[[defer.Deferred[Any]], Factory]
                   ) -> tuple[defer.Deferred[Any], Reader]:
        """Listen with C{serving(accepted)}, whose protocol fires C{accepted} with its
        transport, and connect a TLS client that trusts the test root; return C{accepted}
        (the transport is aborted when the test ends) and the client's reader."""
        accepted: defer.Deferred[Any] = defer.Deferred()
        port = reactor.listenTCP(  # type: ignore[attr-defined]
            0, serving(accepted), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        reader = Reader(6)
        with open(CERTS.root_cert, "rb") as root:
            trust = Certificate.loadPEM(root.read())
        client_side = TLSMemoryBIOFactory(optionsForClientTLS("localhost", trustRoot=trust),
                                          True, ClientFactory.forProtocol(lambda: reader))
        connector = reactor.connectTCP(  # type: ignore[attr-defined]
            "127.0.0.1", port.getHost().port, client_side)
        self.addCleanup(connector.disconnect)

        def abort_at_cleanup(transport: Any) -> Any:
            self.addCleanup(transport.abortConnection)
            return transport

        return accepted.addCallback(abort_at_cleanup), reader

    @defer.inlineCallbacks
    def test_twisted_tls_layer_is_not_bypassed(self) -> Any:
        """Over Twisted's own TLS layer (an C{ssl:} endpoint), whose unknown attributes lead to
        the TCP connection below it, the answer still goes through the layer: the client
        decrypts it."""
        accepted, reader = self.tls_server(lambda accepted: TLSMemoryBIOFactory(
            ServerContext(), False, Factory.forProtocol(lambda: Held(accepted))))
        transport = yield accepted
        self.assertIsNotNone(getattr(transport, "socket", None))  # what the layer passes on
        send_now(transport, b"answer")
        self.assertEqual((yield reader.done), b"answer")

    @defer.inlineCallbacks
    def test_start_tls_connection_is_not_bypassed(self) -> Any:
        """A Twisted TCP connection that switched to TLS (C{startTLS}) is still a TCP
        connection, but its socket must only see the TLS layer's records: the answer goes
        through the layer, and the client decrypts it."""

        class StartsTLS(Held):
            """Switches its connection to TLS at once, then hands it to the test."""

            def connectionMade(self) -> None:
                self.transport.startTLS(ServerContext())  # type: ignore[union-attr]
                super().connectionMade()

        accepted, reader = self.tls_server(
            lambda accepted: Factory.forProtocol(lambda: StartsTLS(accepted)))
        transport = yield accepted
        self.assertTrue(transport.TLS)
        send_now(transport, b"answer")
        self.assertEqual((yield reader.done), b"answer")


class SendNowOtherTransportsTests(SynchronousTestCase):
    """Transports without a socket of their own get a plain write."""

    def test_no_socket(self) -> None:
        """An in-memory transport (or a TLS layer) receives the bytes through write()."""
        transport = StringTransport()
        send_now(transport, b"answer")
        self.assertEqual(transport.value(), b"answer")


class RecordingTransport(StringTransport):
    """An in-memory transport that records each write."""

    def __init__(self) -> None:
        super().__init__()
        self.ways: list[str] = []

    def write(self, data: bytes) -> None:
        self.ways.append("write")
        super().write(data)


class WriteNowTransport(RecordingTransport):
    """An in-memory transport that also offers write_now, recording which one was used."""

    def write_now(self, data: bytes) -> None:
        self.ways.append("write_now")
        StringTransport.write(self, data)


class TCPStringTransport(StringTransport):
    """An in-memory transport with a TCP connection's no-delay switch (the channel sets it)."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.noDelay = enabled


class ResponseRouteTests(SynchronousTestCase):
    """Which way a whole response leaves: buffered when answered inline, at once when later."""

    def setUp(self) -> None:
        self.pool = HeldPool()
        self.server = MemoryServer(pool=self.pool)
        self.token = self.server.login()
        self.transport = WriteNowTransport()
        self.channel, _ = self.server.connect(transport=self.transport)

    def test_transport_with_its_own_write_now(self) -> None:
        """A transport's own write_now (serverapi's TLS layer) is how its connection sends at
        once."""
        transport = WriteNowTransport()
        sender(transport)(b"answer")
        self.assertEqual((transport.ways, transport.value()), (["write_now"], b"answer"))

    def test_transport_without_write_now(self) -> None:
        """Any other transport sends at once through send_now (an in-memory one: its write)."""
        transport = RecordingTransport()
        sender(transport)(b"answer")
        self.assertEqual((transport.ways, transport.value()), (["write"], b"answer"))

    def test_each_channel_sends_through_its_transport(self) -> None:
        """A channel on a plain connection sends a worker's answer through send_now; one
        behind serverapi's TLS layer through the layer's write_now (encrypted, then sent)."""
        plain, transport = self.server.connect()
        self.assertEqual((plain.send_at_once.func, plain.send_at_once.args),  # type: ignore
                         (send_now, (transport,)))
        behind_tls = self.server.service.site.buildProtocol(None)
        layer = TLSServerConnection(
            server_context(TLSFiles(CERTS.server_cert, CERTS.server_key)), behind_tls)
        layer.makeConnection(TCPStringTransport())
        self.assertEqual(behind_tls.send_at_once, layer.write_now)

    def test_inline_answer_is_buffered(self) -> None:
        """A login checked while its request is read is written through the transport's
        buffer (sent with the turn's other answers once the reads are done)."""
        body = b'{"username": "alice", "password": "password123"}'
        self.channel.dataReceived(request_bytes("/login", body))
        self.assertEqual(status_of(self.transport.value()), 200)
        self.assertEqual(self.transport.ways, ["write"])
        self.assertFalse(self.channel.reading)

    def test_later_answer_is_sent_at_once(self) -> None:
        """A worker's result, delivered after the reads, goes out through write_now."""
        self.channel.dataReceived(request_bytes(cookie=self.token))
        self.assertEqual((self.transport.ways, self.transport.value()), ([], b""))
        self.pool.release()
        self.assertEqual(status_of(self.transport.value()), 200)
        self.assertEqual(self.transport.ways, ["write_now"])

    def test_reading_flag_cleared_after_an_error(self) -> None:
        """The channel stops saying it is reading even if handling the bytes raised."""
        def fail(channel: HTTPChannel, data: bytes) -> None:
            raise RuntimeError("parse failed")

        self.patch(HTTPChannel, "dataReceived", fail)
        self.assertRaises(RuntimeError, self.channel.dataReceived, b"x")
        self.assertFalse(self.channel.reading)
