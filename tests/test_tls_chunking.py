"""The TLS layer whatever pieces TCP cuts the client's bytes into: handshake, records, close."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from itertools import cycle

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase


from .tls_memory import MemoryTLSExchange, Recorder

MESSAGES = st.lists(st.binary(min_size=1, max_size=20_000), min_size=1, max_size=5)
# The sizes of the pieces the client's bytes arrive in, used in turn (1 byte is the worst case).
PIECES = st.lists(st.integers(min_value=1, max_value=3_000), min_size=1, max_size=8)
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "60"))


def pieces(data: bytes, sizes: list[int]) -> Iterator[bytes]:
    """C{data} cut into pieces of the given sizes, used in turn."""
    start = 0
    for size in cycle(sizes):
        if start >= len(data):
            return
        yield data[start:start + size]
        start += size


class ChunkedTLSConnection(MemoryTLSExchange):
    """A server-side TLS layer on a StringTransport and a client SSLObject; the client's bytes
    reach the server cut into pieces, the server's reach the client whole."""

    def __init__(self, sizes: list[int]) -> None:
        self.sizes = sizes
        self.channel = Recorder()
        self.start_tls(self.channel, StringTransport())

    def deliver(self, data: bytes) -> None:
        """Hand the server the client's bytes piece by piece."""
        for piece in pieces(data, self.sizes):
            self.server.dataReceived(piece)

    def client_reads(self) -> bytes:
        """Everything the client can decrypt now."""
        received = b""
        while True:
            try:
                data = self.client.read(65536)
            except ssl.SSLWantReadError:
                return received
            if not data:
                return received
            received += data


class ChunkingTests(SynchronousTestCase):
    """Property: TCP may cut a TLS stream anywhere; the channel sees exactly what was sent."""

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
    @given(messages=MESSAGES, sizes=PIECES)
    def test_any_pieces(self, messages: list[bytes], sizes: list[int]) -> None:
        """The handshake and every record arrive in pieces of any size: the channel receives
        the plaintext whole and in order, answers reach the client, and a close_notify cut in
        pieces closes the connection."""
        connection = ChunkedTLSConnection(sizes)
        connection.handshake()
        for message in messages:
            connection.client.write(message)
        connection.exchange()
        self.assertEqual(b"".join(connection.channel.data), b"".join(messages))
        self.assertFalse(connection.transport.disconnecting)
        connection.server.write_now(b"answer")
        connection.exchange()
        self.assertEqual(connection.client_reads(), b"answer")
        try:
            connection.client.unwrap()
        except ssl.SSLWantReadError:  # it waits for the server's close_notify
            pass
        connection.exchange()
        self.assertTrue(connection.transport.disconnecting)
        self.assertIsNone(connection.channel.lost)
