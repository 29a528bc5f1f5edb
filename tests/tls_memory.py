"""A client SSLObject and a server-side TLS protocol exchanging records in memory."""

from __future__ import annotations

import functools
import ssl
import tempfile
from typing import Any

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from serverapi._tls import TLSFiles
from serverapi._tls_connection import TLSServerConnection, server_context

from .certificates import Certificates


@functools.cache
def certificates() -> Certificates:
    """The test CA and server certificate every in-memory TLS test uses (made once)."""
    return Certificates(tempfile.mkdtemp())


@functools.cache
def _contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """The server's context for the test certificate, and a client's that trusts its CA."""
    certs = certificates()
    return (server_context(TLSFiles(certs.server_cert, certs.server_key)),
            ssl.create_default_context(cafile=certs.root_cert))


def tls_server(channel: IProtocol) -> TLSServerConnection:
    """serverapi's TLS layer in front of C{channel}, with the test certificate."""
    return TLSServerConnection(_contexts()[0], channel)


class Recorder(Protocol):
    """The channel's place above a TLS layer: records what reaches it."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.lost: Failure | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


class MemoryTLSExchange:
    """For a test case with C{server} (the TLS protocol), its C{transport} (a StringTransport)
    and a client SSLObject C{client} on the BIOs C{incoming} and C{outgoing}."""

    server: Any
    transport: StringTransport
    client: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO

    def start_tls(self, channel: IProtocol, transport: StringTransport) -> None:
        """Serve C{channel} through the TLS layer on C{transport}, and make the client (not
        yet handshaken) on fresh memory BIOs."""
        self.server = tls_server(channel)
        self.transport = transport
        self.server.makeConnection(transport)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.client = _contexts()[1].wrap_bio(self.incoming, self.outgoing,
                                              server_hostname="localhost")

    def exchange(self) -> None:
        """Deliver what each side has sent to the other until neither has more."""
        for _ in range(10):
            sent = self.outgoing.read()
            if sent:
                self.deliver(sent)
            answer = self.transport.value()
            self.transport.clear()
            if answer:
                self.incoming.write(answer)
            if not sent and not answer:
                return

    def deliver(self, data: bytes) -> None:
        """Hand the server bytes the client sent (at once, as one read)."""
        self.server.dataReceived(data)

    def handshake(self) -> None:
        """Complete the handshake."""
        for _ in range(10):
            try:
                self.client.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.exchange()
        self.exchange()
