"""Input read during a reactor turn is handled at its end, connection by connection, in order."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import tcp
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from serverapi._input_batch import InputBatch, reads_socket

from .helpers import HeldPool, MemoryServer, request_bytes


class Receiver:
    """A connection double that records what it is handed, and can fail."""

    def __init__(self, name: str, handled: list[tuple[str, bytes]], fails: bool = False) -> None:
        self.name = name
        self.handled = handled
        self.fails = fails
        self.waiting_input: list[bytes] | None = None
        self.transport = StringTransport()

    def handle_input(self, data: bytes) -> None:
        """Record C{data}; raise if told to."""
        self.handled.append((self.name, data))
        if self.fails:
            raise ZeroDivisionError("handling failed")


class Interrupted(BaseException):
    """An exception that is not an C{Exception} (as C{KeyboardInterrupt} is not)."""


class InputBatchTests(SynchronousTestCase):
    """The batch itself, on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.batch = InputBatch(self.clock)
        self.handled: list[tuple[str, bytes]] = []

    def test_handled_together_at_the_end_of_the_turn(self) -> None:
        """Nothing is handled while the turn reads; then each connection gets its bytes, joined
        in the order read, connections in the order they first read, from one timed call."""
        first, second = Receiver("a", self.handled), Receiver("b", self.handled)
        self.batch.add(first, b"POST / HT")
        self.batch.add(second, b"GET /")
        self.batch.add(first, b"TP/1.1\r\n")
        self.assertEqual(self.handled, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.handled, [("a", b"POST / HTTP/1.1\r\n"), ("b", b"GET /")])
        self.assertEqual((first.waiting_input, second.waiting_input), (None, None))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_each_turn_has_its_own_hand_over(self) -> None:
        """Bytes read after a hand-over wait for the next one."""
        receiver = Receiver("a", self.handled)
        self.batch.add(receiver, b"one")
        self.clock.advance(0)
        self.batch.add(receiver, b"two")
        self.assertEqual(self.handled, [("a", b"one")])
        self.clock.advance(0)
        self.assertEqual(self.handled, [("a", b"one"), ("a", b"two")])

    def test_input_of_a_closed_connection_is_dropped(self) -> None:
        """A connection that lost its waiting input (it closed) is handed nothing."""
        gone, alive = Receiver("gone", self.handled), Receiver("alive", self.handled)
        self.batch.add(gone, b"request")
        self.batch.add(alive, b"request")
        gone.waiting_input = None
        self.clock.advance(0)
        self.assertEqual(self.handled, [("alive", b"request")])

    def test_one_failure_costs_no_other_its_input(self) -> None:
        """A connection whose handling raises is logged and aborted; the next still gets its
        bytes."""
        failing = Receiver("failing", self.handled, fails=True)
        other = Receiver("other", self.handled)
        self.batch.add(failing, b"x")
        self.batch.add(other, b"y")
        self.clock.advance(0)
        self.assertEqual(self.handled, [("failing", b"x"), ("other", b"y")])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(failing.transport.disconnecting)
        self.assertFalse(other.transport.disconnecting)


    def test_a_base_exception_strands_no_other_connection(self) -> None:
        """Even an exception that is not an C{Exception} costs the next connection neither this
        turn's bytes nor its later ones."""
        failing = Receiver("failing", self.handled)
        failing.handle_input = self.interrupt  # type: ignore[method-assign]
        other = Receiver("other", self.handled)
        self.batch.add(failing, b"x")
        self.batch.add(other, b"y")
        self.clock.advance(0)
        self.batch.add(other, b"z")
        self.clock.advance(0)
        self.assertEqual(self.handled, [("other", b"y"), ("other", b"z")])
        self.assertEqual(len(self.flushLoggedErrors(Interrupted)), 1)
        self.assertTrue(failing.transport.disconnecting)

    def interrupt(self, data: bytes) -> None:
        """Handle nothing: raise an exception that is not an C{Exception}."""
        raise Interrupted()


class ReadsSocketTests(SynchronousTestCase):
    """Which transports have their input batched."""

    def test_sockets_and_layers_on_them(self) -> None:
        """Twisted's TCP connection, and a layer over one (TLS), are sockets; memory is not."""
        connection = tcp.Server.__new__(tcp.Server)

        class Layer:
            transport = connection

        class MemoryLayer:
            transport = StringTransport()

        self.assertEqual([reads_socket(t) for t in (connection, Layer(), StringTransport(),
                                                    MemoryLayer())],
                         [True, True, False, False])


class ChannelTests(SynchronousTestCase):
    """An API channel whose input is batched, as on a socket."""

    def setUp(self) -> None:
        self.pool = HeldPool()
        self.server = MemoryServer(pool=self.pool)
        self.token = self.server.login()
        self.channel, self.transport = self.server.connect()
        self.assertIsNone(self.channel.input_batch)  # memory: handled as delivered
        self.channel.input_batch = self.server.service.site.input_batch

    def request(self, number: int) -> bytes:
        """A /communicate request whose echo says C{number}."""
        return request_bytes(body=json.dumps({"message": number}).encode(), cookie=self.token)

    def answers(self) -> list[Any]:
        """The numbers echoed in the answers written so far, in order."""
        found = []
        for part in self.transport.value().split(b"HTTP/1.1 ")[1:]:
            self.assertTrue(part.startswith(b"200 "), part[:40])
            found.append(json.loads(part.split(b"\r\n\r\n", 1)[1])["echo"])
        return found

    def test_handled_at_the_end_of_the_turn(self) -> None:
        """A request read from the socket reaches the pool once the reactor's turn ends."""
        self.channel.dataReceived(self.request(1))
        self.assertEqual(self.pool.jobs, [])
        self.server.reactor.advance(0)
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.release()
        self.assertEqual(self.answers(), [1])

    def test_held_requests_come_back_before_newer_input(self) -> None:
        """Requests pipelined behind one in hand are handled before bytes read after them, even
        when those are still waiting for the end of the turn as the first answer goes out."""
        self.channel.dataReceived(self.request(1) + self.request(2))
        self.server.reactor.advance(0)
        self.channel.dataReceived(self.request(3))  # read; waits for the end of the turn
        self.pool.release()  # answers 1; request 2 is handed back and dispatched at once
        self.assertEqual(len(self.pool.jobs), 1)
        self.server.reactor.advance(0)
        for _ in range(2):
            self.pool.release()
        self.assertEqual(self.answers(), [1, 2, 3])

    def test_input_waiting_when_the_connection_closes(self) -> None:
        """Bytes still waiting when the connection is lost are never handled."""
        self.channel.dataReceived(self.request(1))
        self.channel.connectionLost(Failure(ConnectionError("gone")))
        self.server.reactor.advance(0)
        self.assertEqual((self.pool.jobs, self.transport.value()), ([], b""))

    def test_a_stop_sees_the_bytes_already_read(self) -> None:
        """A stop that comes before the end of the turn still answers a request already read
        (with C{Connection: close}), rather than closing the connection under it."""
        self.channel.dataReceived(self.request(1))
        self.server.service.site.drain()
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.release()
        self.assertEqual(self.answers(), [1])
        self.assertIn(b"Connection: close", self.transport.value())

    def test_an_idle_timer_due_first_sees_the_bytes_already_read(self) -> None:
        """An idle timeout that fires before the end of the turn finds the request already read
        and does not close the connection."""
        self.channel.dataReceived(self.request(1))
        self.channel._idle_due = self.server.reactor.seconds()  # due now, before the turn ends
        self.channel._idle_check()
        self.assertFalse(self.transport.disconnecting)
        self.pool.release()
        self.assertEqual(self.answers(), [1])

    def test_a_deadline_due_first_sees_the_rest_of_the_request(self) -> None:
        """A request deadline that fires before the end of the turn in which the request's last
        bytes were read lets the request complete, rather than answering 408."""
        whole = self.request(1)
        self.channel.dataReceived(whole[:20])
        self.server.reactor.advance(0)  # the first bytes are handled: the deadline runs
        self.channel.dataReceived(whole[20:])  # the rest, read in a later turn
        self.channel._deadline_passed()
        self.assertFalse(self.transport.disconnecting)
        self.pool.release()
        self.assertEqual(self.answers(), [1])
