"""A client SSLObject and a server-side TLS protocol exchanging records in memory."""

from __future__ import annotations

import ssl
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure


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
