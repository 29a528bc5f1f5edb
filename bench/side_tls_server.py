"""serverapi over plain HTTP, doing beside each request the record work a TLS connection does.

    python bench/side_tls_server.py PORT CERT KEY

For bench/tls_floor.py.  Each connection gets an in-memory TLS connection of its own (the
standard library's C{ssl.SSLObject} over two C{ssl.MemoryBIO}s, as serverapi's TLS layer uses).
When a request arrives the server decrypts one record with it, and when the request's answer is
sent the server encrypts the answer (the record the next request's read decrypts): the two
OpenSSL record calls per request that TLS costs, at the same points of the request, while the
wire stays plain HTTP and wrk does no TLS.  It wraps two of serverapi's internal functions (the
channel's C{dataReceived} and the sending of a whole answer) to do so; nothing else changes.
"""

from __future__ import annotations

import os
import ssl
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serverapi import _http, _responses  # noqa: E402

import serverapi_server  # noqa: E402

_READ_BYTES = 65536


class SideTLS:
    """One connection's in-memory TLS pair: one end encrypts the answers, the other decrypts."""

    def __init__(self, server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
        self._sender_in, self._sender_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._sender = server_context.wrap_bio(self._sender_in, self._sender_out,
                                               server_side=True)
        self._receiver_in, self._receiver_out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._receiver = client_context.wrap_bio(self._receiver_in, self._receiver_out)
        while not self._handshake_step():
            pass
        try:  # the session tickets that follow a TLS 1.3 handshake, read once here
            self._receiver.read(_READ_BYTES)
        except ssl.SSLWantReadError:
            pass

    def _handshake_step(self) -> bool:
        """One round of the handshake between the two ends; whether both are done."""
        done = True
        for end in (self._receiver, self._sender):
            try:
                end.do_handshake()
            except ssl.SSLWantReadError:
                done = False
        self._sender_in.write(self._receiver_out.read())
        self._receiver_in.write(self._sender_out.read())
        return done

    def decrypt(self) -> None:
        """Decrypt the record the last answer left, if any (a request's read)."""
        if self._receiver_in.pending:
            self._receiver.read(_READ_BYTES)

    def encrypt(self, data: bytes) -> None:
        """Encrypt an answer into one record, kept for the next request's read."""
        self._sender.write(data)
        self._receiver_in.write(self._sender_out.read())


def install(certfile: str, keyfile: str) -> None:
    """Give every channel a L{SideTLS} and do its record work as requests come and go."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(certfile, keyfile)
    client_context = ssl.create_default_context(cafile=certfile)
    client_context.check_hostname = False
    channel_class: Any = _http.APIChannel
    connection_made = channel_class.connectionMade
    data_received = channel_class.dataReceived
    send_now = _responses.send_now

    def connectionMade(self: Any) -> None:
        self.side_tls = SideTLS(server_context, client_context)
        connection_made(self)

    def dataReceived(self: Any, data: bytes) -> None:
        self.side_tls.decrypt()
        data_received(self, data)

    def send_answer(transport: Any, data: bytes) -> None:
        transport.protocol.side_tls.encrypt(data)
        send_now(transport, data)

    channel_class.connectionMade = connectionMade
    channel_class.dataReceived = dataReceived
    _responses.send_now = send_answer


def main() -> None:
    """Serve as bench/serverapi_server.py does, with the side work installed."""
    port, certfile, keyfile = sys.argv[1:4]
    install(certfile, keyfile)
    sys.argv[1:] = [port]
    serverapi_server.main()


if __name__ == "__main__":
    main()
