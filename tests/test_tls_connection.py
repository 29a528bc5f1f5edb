"""The TLS layer on the standard library's memory BIOs, in memory against a client SSLObject."""

from __future__ import annotations

import ssl
import warnings
from typing import Any

from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from serverapi import _tls_connection as tls_connection

from .tls_memory import MemoryTLSExchange, Recorder


@implementer(IPushProducer)
class Producer:
    """Counts pauses."""

    paused = 0

    def pauseProducing(self) -> None:
        self.paused += 1

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


class TLSConnectionTests(MemoryTLSExchange, SynchronousTestCase):
    """A TLSServerConnection on a StringTransport, talking to a client SSLObject."""

    def setUp(self) -> None:
        self.channel: Any = Recorder()
        self.start_tls(self.channel, StringTransport())

    def test_data_both_ways(self) -> None:
        """After the handshake, requests are decrypted for the channel and its writes come back
        encrypted; a write before the handshake completes is sent once it does."""
        self.assertTrue(ISSLTransport.providedBy(self.server))
        self.server.write(b"early ")
        self.handshake()
        self.client.write(b"GET / HTTP/1.1\r\n\r\n")
        self.exchange()
        self.assertEqual(b"".join(self.channel.data), b"GET / HTTP/1.1\r\n\r\n")
        self.server.writeSequence([b"HTTP/1.1 200 OK", b"\r\n"])
        self.exchange()
        self.assertEqual(self.client.read(1000) + self.client.read(1000),
                         b"early HTTP/1.1 200 OK\r\n")
        self.assertIsNone(self.server.getPeerCertificate())

    def test_early_writes_wait_for_the_handshake(self) -> None:
        """Writes before the handshake completes, through write() or write_now(), are kept
        and sent in order once it does."""
        self.server.write_now(b"first ")
        self.server.write(b"second ")
        self.server.write_now(b"third")
        self.handshake()
        self.exchange()
        received = b""
        for _ in range(5):
            try:
                received += self.client.read(1000)
            except ssl.SSLWantReadError:
                break
        self.assertEqual(received, b"first second third")

    def test_nothing_after_the_channel_aborts(self) -> None:
        """Once the channel aborts the connection, records that arrived with the one it was
        handling are not handed up."""
        self.handshake()
        self.channel.dataReceived = lambda data: (self.channel.data.append(data),
                                                  self.server.abortConnection())
        self.client.write(b"first")
        self.client.write(b"second")
        self.server.dataReceived(self.outgoing.read())
        self.assertEqual(self.channel.data, [b"first"])

    def test_write_buffers_and_write_now_sends_at_once(self) -> None:
        """write() hands the record to the TCP transport's buffer; write_now() sends it
        through send_now (straight into the socket when nothing waits); both arrive."""
        sent_now: list[bytes] = []

        def record(transport: Any, data: bytes) -> None:
            sent_now.append(data)
            transport.write(data)

        self.patch(tls_connection, "send_now", record)
        self.handshake()
        self.server.write(b"buffered ")
        self.assertEqual(sent_now, [])
        self.server.write_now(b"at once")
        self.assertEqual(len(sent_now), 1)
        self.exchange()
        self.assertEqual(self.client.read(1000) + self.client.read(1000), b"buffered at once")

    def test_many_records_in_one_read(self) -> None:
        """Several records arriving together are all handed up."""
        self.handshake()
        for index in range(5):
            self.client.write(b"record %d;" % index)
        self.exchange()
        self.assertEqual(b"".join(self.channel.data),
                         b"record 0;record 1;record 2;record 3;record 4;")

    def test_nothing_after_the_channel_closes(self) -> None:
        """Once the channel closes the connection (a refused request), records that arrived
        with it are not handed up."""
        self.handshake()
        self.channel.dataReceived = lambda data: (self.channel.data.append(data),
                                                  self.server.loseConnection())
        self.client.write(b"first")
        self.client.write(b"second")
        self.exchange()
        self.assertEqual(self.channel.data, [b"first"])
        self.server.write(b"dropped")
        self.assertTrue(self.transport.disconnecting)

    def test_close_notify(self) -> None:
        """loseConnection sends close_notify, then closes the TCP connection; a client's
        close_notify closes it too."""
        self.handshake()
        self.server.loseConnection()
        self.assertTrue(self.server.disconnecting)
        self.assertTrue(self.transport.disconnecting)
        self.incoming.write(self.transport.value())
        try:
            closed = self.client.read(10) == b""
        except ssl.SSLZeroReturnError:
            closed = True
        self.assertTrue(closed)
        other = TLSConnectionTests("test_close_notify")
        other.setUp()
        other.handshake()
        try:
            other.client.unwrap()
        except ssl.SSLWantReadError:
            pass
        other.exchange()
        self.assertTrue(other.transport.disconnecting)

    def test_bad_record(self) -> None:
        """A record that does not decrypt closes the connection, and the channel hears the
        TLS error as the reason (which the site logs as a failed handshake or record)."""
        self.handshake()
        self.server.dataReceived(b"\x17\x03\x03\x00\x05hello")
        self.assertTrue(self.transport.disconnecting)
        self.server.connectionLost(Failure(Exception("closed")))
        self.assertIsInstance(self.channel.lost.value, ssl.SSLError)
        self.server.write(b"ignored")
        self.server.dataReceived(b"ignored")

    def test_failed_handshake(self) -> None:
        """A client hello the server refuses (TLS 1.1 only) closes with the error."""
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.check_hostname = False
        old.verify_mode = ssl.CERT_NONE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
        client = old.wrap_bio(self.incoming, self.outgoing)
        try:
            client.do_handshake()
        except ssl.SSLError:
            pass
        self.server.dataReceived(self.outgoing.read())
        self.assertTrue(self.transport.disconnecting)
        self.server.connectionLost(Failure(Exception("closed")))
        self.assertIsInstance(self.channel.lost.value, ssl.SSLError)

    def test_producing_is_the_tcp_transport(self) -> None:
        """The channel's producer registration and pauses reach the TCP transport, so
        backpressure works as over plain TCP."""
        producer = Producer()
        self.server.registerProducer(producer, True)
        self.assertIs(self.transport.producer, producer)
        self.server.pauseProducing()
        self.assertEqual(self.transport.producerState, "paused")
        self.server.resumeProducing()
        self.assertEqual(self.transport.producerState, "producing")
        self.server.unregisterProducer()
        self.assertIsNone(self.transport.producer)
        self.assertEqual((self.server.getPeer(), self.server.getHost()),
                         (self.transport.getPeer(), self.transport.getHost()))

    def test_abort(self) -> None:
        """abortConnection closes at once."""
        self.handshake()
        self.server.abortConnection()
        self.assertTrue(self.server.disconnecting)

    def test_records_go_through_the_c_object(self) -> None:
        """Records are read and written by the C object under the standard library's
        SSLObject (its Python methods only pass arguments on), or by the SSLObject itself
        where the standard library has no such object."""
        inner = getattr(self.server._tls, "_sslobj", None)
        if inner is not None:
            self.assertEqual((self.server._decrypt, self.server._encrypt),
                             (inner.read, inner.write))

        class Bare:
            """An SSLObject without the C object under it."""

            def read(self, size: int) -> bytes:
                return b""

            def write(self, data: bytes) -> int:
                return 0

        bare = Bare()
        self.assertEqual(tls_connection._record_calls(bare),  # type: ignore[arg-type]
                         (bare.read, bare.write))

    def test_nothing_after_the_connection_is_lost(self) -> None:
        """Once the TCP connection is gone, records and writes are dropped."""
        self.handshake()
        self.server.connectionLost(Failure(Exception("closed")))
        self.assertTrue(self.server.disconnecting)
        self.client.write(b"late")
        self.server.dataReceived(self.outgoing.read())
        self.server.write_now(b"late answer")
        self.server.write(b"late answer")
        self.assertEqual((self.channel.data, self.transport.value()), ([], b""))

    def fail_encryption(self) -> None:
        """Complete the handshake, then make every encryption fail."""
        self.handshake()

        def refuse(data: bytes) -> int:
            raise ssl.SSLError("cannot encrypt")

        self.server._encrypt = refuse

    def assertClosedWithTLSError(self) -> None:
        """Nothing was sent, the connection closes, and the channel hears the TLS error."""
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.server.connectionLost(Failure(Exception("closed")))
        self.assertIsInstance(self.channel.lost.value, ssl.SSLError)

    def test_failed_encryption(self) -> None:
        """A write the TLS state cannot encrypt sends nothing and closes the connection; the
        channel hears the TLS error as the reason."""
        self.fail_encryption()
        self.server.write_now(b"answer")
        self.assertEqual(self.transport.value(), b"")
        self.assertTrue(self.transport.disconnecting)
        self.server.write(b"another")
        self.assertClosedWithTLSError()

    def test_failed_encryption_of_a_buffered_write(self) -> None:
        """write() (an answer given inline) fails the same way as write_now(): nothing is
        buffered, the connection closes, and the channel hears the TLS error."""
        self.fail_encryption()
        self.server.write(b"answer")
        self.assertClosedWithTLSError()
