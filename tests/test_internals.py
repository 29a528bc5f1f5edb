"""The Twisted internals serverapi relies on exist, and mean what serverapi takes them to."""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import HTTPChannel, Request

from serverapi import _internals


class InternalsTests(SynchronousTestCase):
    """One test per internal, against a real HTTPChannel; a Twisted that changes fails here."""

    def test_check_passes(self) -> None:
        """This Twisted has every internal serverapi relies on."""
        self.assertEqual(_internals._missing(), [])
        _internals.check()

    def test_check_names_what_is_missing(self) -> None:
        """A Twisted without one of them fails the import with its name."""
        self.patch(Request, "_disconnected", None)
        del Request._disconnected
        with self.assertRaises(ImportError) as caught:
            _internals.check()
        self.assertIn("Request._disconnected", str(caught.exception))

    def test_check_names_a_missing_transport_buffer(self) -> None:
        """A Twisted whose transports keep their unsent bytes elsewhere fails the import too."""
        self.patch(FileDescriptor, "dataBuffer", b"")
        del FileDescriptor.dataBuffer
        with self.assertRaises(ImportError) as caught:
            _internals.check()
        self.assertIn("FileDescriptor.dataBuffer", str(caught.exception))

    def test_request_line_and_states(self) -> None:
        """While headers arrive the channel holds the request line and version; while a request
        is in hand it says so; a transport's pause shows; a lost connection flags the request."""
        seen: list[tuple[object, ...]] = []

        class Probe(Request):
            """Records the internals when the body's length is known (headers complete)."""

            def gotLength(self, length: int | None) -> None:
                seen.append((_internals.request_line_so_far(self.channel)[:2],
                             _internals.request_line(self.channel),
                             _internals.request_version(self.channel),
                             _internals.handling_request(self.channel)))
                super().gotLength(length)

            def process(self) -> None:
                seen.append(("processing", _internals.handling_request(self.channel)))

        channel = HTTPChannel()
        channel.requestFactory = Probe
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(b"POST /communicate?x=1 HTTP/1.1\r\nHost: h\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
        self.assertEqual(seen, [((b"POST", b"/communicate?x=1"), (b"POST", b"/communicate?x=1"),
                                 b"HTTP/1.1", False),
                                ("processing", True)])
        self.assertEqual(_internals.request_line_so_far(channel), (None, None, None))
        self.assertFalse(_internals.waiting_for_transport(channel))
        channel.pauseProducing()
        self.assertTrue(_internals.waiting_for_transport(channel))
        request = channel.requests[0]
        self.assertFalse(_internals.client_gone(request))
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(_internals.client_gone(request))

    def test_collected_input(self) -> None:
        """Bytes that arrive while a request is in hand are collected in a list that
        requestDone joins and replaces; collect_into puts the emptied older list back, but
        only while nothing has gone into the new one."""

        class Holding(Request):
            """Keeps the request in hand until the test finishes it."""

            def process(self) -> None:
                pass

        channel = HTTPChannel()
        channel.requestFactory = Holding
        channel.makeConnection(StringTransport())
        channel.dataReceived(b"GET /first HTTP/1.1\r\nHost: h\r\n\r\n")
        older = _internals.collected_input(channel)
        channel.dataReceived(b"GET /next HTTP/1.1\r\n")
        self.assertEqual(b"".join(older), b"GET /next HTTP/1.1\r\n")
        channel.requests[0].finish()
        newer = _internals.collected_input(channel)
        self.assertIsNot(newer, older)
        self.assertEqual(newer, [])
        _internals.collect_into(channel, older)
        self.assertIs(_internals.collected_input(channel), older)
        self.assertEqual(older, [])
        older.append(b"arrived")
        _internals.collect_into(channel, [])
        self.assertEqual(_internals.collected_input(channel), [b"arrived"])
