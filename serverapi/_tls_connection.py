"""The server's side of a TLS connection, on the standard library's C{ssl} memory BIOs.

Twisted's own TLS layer (L{twisted.protocols.tls.TLSMemoryBIOProtocol}, on pyOpenSSL) pays a
Python exception, raised through pyOpenSSL's error-queue handling, each time it reads its BIOs
dry: two or three per request.  This layer asks the BIOs how many bytes they hold instead, so a
request costs one C{write} into the incoming BIO, one C{read} of plaintext and one C{read} of the
response's ciphertext.  What it does not do, the server does not need: renegotiation (refused),
client mode, and buffering writes (serverapi writes each response whole, as one record).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from OpenSSL import crypto
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IPushProducer, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from ._internals import send_now
from ._tls import TLS12_CIPHERS, TLSFiles

# Plaintext read per call: larger than one TLS record (16 KiB), so a record is one read.
_READ_BYTES = 65536


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The context every connection uses: TLS 1.2+, no compression or renegotiation, the
    forward-secret AEAD suites, and client certificates from C{files.cafile} when it is set.

    The files were checked (with messages naming them) by L{TLSFiles.from_params}.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_NO_RENEGOTIATION)
    context.set_ciphers(TLS12_CIPHERS.decode("ascii"))
    context.load_cert_chain(files.certfile, files.keyfile)
    if files.cafile is not None:
        context.load_verify_locations(files.cafile)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@implementer(ISSLTransport, IPushProducer)
class TLSServerConnection(Protocol):
    """TLS between the TCP transport below and the HTTP channel above.

    To the channel it is the transport (writes are encrypted and sent at once); to the TCP
    transport it is the protocol (what arrives is decrypted and handed up).  Producing is the
    TCP transport's: the channel registers with it through this object, so a full send buffer
    pauses the channel and the channel's pause stops reading the socket, as over plain TCP.
    """

    _handshaken = False
    #: Whether the connection is closing or gone (Twisted's line receiver stops reading then).
    disconnecting = False
    _failure: Failure | None = None

    def __init__(self, context: ssl.SSLContext, wrapped: IProtocol) -> None:
        self._context = context
        self.wrappedProtocol = wrapped
        self._early: list[bytes] = []

    # The TCP side ------------------------------------------------------------------------

    def connectionMade(self) -> None:
        """Set up the TLS state; the channel is connected now (its timeouts run during the
        handshake, so a client that never says hello is closed by them)."""
        transport: Any = self.transport
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = self._context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._decrypt, self._encrypt = _record_calls(self._tls)
        # The channel pauses and resumes reading once per request: straight to the TCP
        # transport's own methods, with no call through this layer in between.
        for name in ("pauseProducing", "resumeProducing"):
            method = getattr(transport, name, None)
            if method is not None:
                setattr(self, name, method)
        setNoDelay = getattr(transport, "setTcpNoDelay", None)
        if setNoDelay is not None:
            setNoDelay(True)  # responses are whole: send each at once
        self.wrappedProtocol.makeConnection(self)

    def dataReceived(self, data: bytes) -> None:
        """Decrypt what arrived and hand the plaintext up (after the handshake)."""
        if self.disconnecting:
            return
        if self._handshaken:
            self._incoming.write(data)
        elif not self._handshake(data):
            return
        decrypt = self._decrypt
        while True:
            try:
                plaintext = decrypt(_READ_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # the client's close_notify, if not read as b""
                self._closed_by_client()
                return
            except ssl.SSLError as error:
                self._fail(error)
                return
            if not plaintext:  # the client's close_notify (SSLObject reads it as b"")
                self._closed_by_client()
                return
            self.wrappedProtocol.dataReceived(plaintext)
            # A read takes a whole record (at most 16 KiB), so the TLS state holds no
            # plaintext now; more is left only if the BIO holds more bytes.  (Asking the BIO
            # does not release the interpreter lock, as asking the TLS state would.)  Once the
            # channel closes the connection, nothing more is handed to it.
            if self.disconnecting or not self._incoming.pending:
                break
        # What the TLS state wrote of its own accord: a key update's answer, the alert refusing
        # a renegotiation (rarely anything).  A client that asks for these over and over and
        # never reads them fills the send buffer, and the channel then stops reading the socket
        # (L{APIChannel.pauseProducing}), even with a request in hand.
        if self._outgoing.pending:
            self._send_pending()

    def _closed_by_client(self) -> None:
        """The client sent close_notify: let the channel handle what came before it (answers
        it gives inline are still sent), then close."""
        flush = getattr(self.wrappedProtocol, "flush_input", None)
        if flush is not None:
            flush()
        self.loseConnection()

    def _handshake(self, data: bytes) -> bool:
        """Go on with the handshake with C{data}; whether it is complete (and any records
        that came with its last message are waiting to be read)."""
        self._incoming.write(data)
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._send_pending()
            return False
        except ssl.SSLError as error:
            self._fail(error)
            return False
        self._handshaken = True
        self._send_pending()
        early, self._early = self._early, []
        for data in early:
            self.write(data)
        return True

    def _send_pending(self) -> None:
        """Send what the TLS state has produced (handshake messages, alerts)."""
        if self._outgoing.pending:
            self.transport.write(self._outgoing.read())  # type: ignore[union-attr]

    def _fail(self, error: ssl.SSLError) -> None:
        """The TLS state failed (a bad handshake, a bad record): send the alert, close, and
        tell the channel why when the connection is gone."""
        self._failure = Failure(error)
        self.disconnecting = True
        self._send_pending()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """The connection is gone: tell the channel (with the TLS error, if that was why)."""
        self.disconnecting = True
        self.wrappedProtocol.connectionLost(self._failure or reason)

    # The channel's transport -------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Encrypt C{data} and hand it to the TCP transport's buffer (before the handshake
        completes: once it does)."""
        if self.disconnecting:
            return
        if not self._handshaken:
            self._early.append(data)
            return
        records = self._encrypted(data)
        if records is not None:
            self.transport.write(records)  # type: ignore[union-attr]

    def write_now(self, data: bytes) -> None:
        """Encrypt C{data} and send it straight into the socket if nothing waits before it.

        (The channel's way to send a worker's answer: one call, encrypting in line.)
        """
        if self.disconnecting or not self._handshaken:
            self.write(data)
            return
        try:
            self._encrypt(data)
        except ssl.SSLError as error:
            self._fail(error)
            return
        send_now(self.transport, self._outgoing.read())

    def _encrypted(self, data: bytes) -> bytes | None:
        """C{data} as TLS records, or C{None} if the TLS state failed (the connection closes)."""
        try:
            self._encrypt(data)
        except ssl.SSLError as error:
            self._fail(error)
            return None
        return self._outgoing.read()

    def writeSequence(self, data: Any) -> None:
        """Encrypt and send the pieces as one."""
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """Send close_notify and close once everything written has been sent."""
        if self.disconnecting:
            return
        self.disconnecting = True
        if self._handshaken and self._failure is None:
            try:
                self._tls.unwrap()
            except ssl.SSLError:  # it waits for the client's close_notify: no need
                pass
            self._send_pending()
        self.transport.loseConnection()  # type: ignore[union-attr]

    def abortConnection(self) -> None:
        """Close at once, sending nothing more."""
        self.disconnecting = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def getPeer(self) -> Any:
        """The client's address."""
        return self.transport.getPeer()  # type: ignore[union-attr]

    def getHost(self) -> Any:
        """The server's address."""
        return self.transport.getHost()  # type: ignore[union-attr]

    def getHandle(self) -> Any:
        """The socket."""
        return self.transport.getHandle()  # type: ignore[union-attr]

    def getPeerCertificate(self) -> crypto.X509 | None:
        """The client's verified certificate (pyOpenSSL's type, as Twisted's TLS gives it),
        or C{None} without one."""
        der = self._tls.getpeercert(binary_form=True)
        return None if der is None else crypto.load_certificate(crypto.FILETYPE_ASN1, der)

    def setTcpNoDelay(self, enabled: bool) -> None:
        """As the TCP transport."""
        self.transport.setTcpNoDelay(enabled)  # type: ignore[union-attr]

    def getTcpNoDelay(self) -> bool:
        """As the TCP transport."""
        return bool(self.transport.getTcpNoDelay())  # type: ignore[union-attr]

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """As the TCP transport."""
        self.transport.setTcpKeepAlive(enabled)  # type: ignore[union-attr]

    def getTcpKeepAlive(self) -> bool:
        """As the TCP transport."""
        return bool(self.transport.getTcpKeepAlive())  # type: ignore[union-attr]

    def loseWriteConnection(self) -> None:
        """TLS has no half-close: close."""
        self.loseConnection()

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        """The channel produces into the TCP transport (each write goes straight through)."""
        self.transport.registerProducer(producer, streaming)  # type: ignore[union-attr]

    def unregisterProducer(self) -> None:
        """As the TCP transport."""
        self.transport.unregisterProducer()  # type: ignore[union-attr]

    def pauseProducing(self) -> None:
        """Stop reading the socket (the channel's backpressure).  Once connected, the TCP
        transport's own method stands in for this one."""
        self.transport.pauseProducing()  # type: ignore[union-attr]

    def resumeProducing(self) -> None:
        """Read the socket again (once connected, the TCP transport's own method)."""
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def stopProducing(self) -> None:
        """As the TCP transport."""
        self.transport.stopProducing()  # type: ignore[union-attr]


def _record_calls(tls: ssl.SSLObject) -> tuple[Callable[[int], bytes], Callable[[bytes], int]]:
    """C{tls}'s C{read} and C{write}, as the C methods of the object under it.

    C{ssl.SSLObject.read} and C{write} only pass their arguments on to the C{_ssl} object it
    wraps, as two more Python calls per request; that object, when the standard library has
    it where it always has (C{_sslobj}), is called directly, and C{tls} itself otherwise.
    """
    inner = getattr(tls, "_sslobj", None)
    read = getattr(inner, "read", None)
    write = getattr(inner, "write", None)
    if callable(read) and callable(write):
        return read, write
    return tls.read, tls.write


class TLSServerFactory(Factory):
    """Wraps each connection of C{wrapped} (the site) in L{TLSServerConnection}."""

    def __init__(self, tls: TLSFiles, wrapped: IProtocolFactory) -> None:
        self.context = server_context(tls)
        self.wrappedFactory = wrapped

    def doStart(self) -> None:
        """Start the site too."""
        self.wrappedFactory.doStart()

    def doStop(self) -> None:
        """Stop the site too."""
        self.wrappedFactory.doStop()

    def buildProtocol(self, addr: Any) -> TLSServerConnection | None:
        """The site's channel, behind TLS."""
        channel = self.wrappedFactory.buildProtocol(addr)
        if channel is None:
            return None
        connection = TLSServerConnection(self.context, channel)
        connection.factory = self
        return connection
