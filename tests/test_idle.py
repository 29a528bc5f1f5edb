"""The idle timeout of a connection: one timer per connection, however many requests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from serverapi._idle import IdleTimeout

from .helpers import HeldPool, MemoryServer, TCPStringTransport, request_bytes, status_of
from .tls_memory import MemoryTLSExchange

TIMEOUT = 5.0


def count_timers(channel: Any) -> list[float]:
    """Wrap C{channel.callLater}; the delays of the timers it makes from now on."""
    made: list[float] = []
    original: Callable[..., IDelayedCall] = channel.callLater

    def counting(delay: float, *args: Any, **kwargs: Any) -> IDelayedCall:
        made.append(delay)
        return original(delay, *args, **kwargs)

    channel.callLater = counting
    return made


def channel_timers(clock: Any, channel: Any) -> int:
    """How many of C{clock}'s pending calls belong to C{channel}."""
    return sum(getattr(call.func, "__self__", None) is channel
               for call in clock.getDelayedCalls())


def assert_closes_in(case: SynchronousTestCase, clock: Any, transport: StringTransport,
                     seconds: float) -> None:
    """C{transport} is still open just before C{seconds} from now and closing just after."""
    clock.advance(seconds - 0.1)
    case.assertFalse(transport.disconnecting)
    clock.advance(0.2)
    case.assertTrue(transport.disconnecting)


class IdleTimeoutTests(SynchronousTestCase):
    """C{timeout} seconds of silence close a connection, and keep-alive requests cost no timer."""

    def setUp(self) -> None:
        self.serve()

    def serve(self, **options: Any) -> None:
        """A server with C{timeout=TIMEOUT}, C{options} and a held pool; logged in to."""
        self.pool = HeldPool()
        self.server = MemoryServer(pool=self.pool, timeout=TIMEOUT, **options)
        self.token = self.server.login()
        self.clock = self.server.reactor

    def answer_all(self) -> None:
        """Run every held callback."""
        while self.pool.jobs:
            self.pool.release()

    def test_many_requests_make_no_new_timer(self) -> None:
        """A hundred requests on one connection inside the timeout make no timer of its own."""
        channel, transport = self.server.connect()
        made = count_timers(channel)
        for _ in range(100):
            channel.dataReceived(request_bytes(cookie=self.token))
            self.answer_all()
            self.clock.advance(0.01)
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 100)
        self.assertEqual(made, [])

    def test_idle_counts_from_the_last_answer(self) -> None:
        """The timer set at connect fires early, sleeps again, and closes `timeout` after the
        last answer."""
        channel, transport = self.server.connect()
        self.clock.advance(4)
        channel.dataReceived(request_bytes(cookie=self.token))
        self.answer_all()
        assert_closes_in(self, self.clock, transport, TIMEOUT)  # past the first timer's time

    def test_no_idle_timeout_while_a_callback_runs(self) -> None:
        """A request whose callback runs past the idle time is answered, and the connection
        closes `timeout` seconds after that answer."""
        channel, transport = self.server.connect()
        self.clock.advance(3)
        channel.dataReceived(request_bytes(cookie=self.token))
        self.clock.advance(4.9)  # the timer set at connect fired meanwhile
        self.assertFalse(transport.disconnecting)
        self.answer_all()
        self.assertEqual(status_of(transport.value()), 200)
        assert_closes_in(self, self.clock, transport, TIMEOUT)

    def test_bytes_arriving_push_the_timeout_back(self) -> None:
        """Part of a request arriving counts as activity."""
        channel, transport = self.server.connect()
        raw = request_bytes(cookie=self.token)
        self.clock.advance(4)
        channel.dataReceived(raw[:10])
        self.clock.advance(4)
        self.assertFalse(transport.disconnecting)
        channel.dataReceived(raw[10:])
        self.answer_all()
        self.assertEqual(status_of(transport.value()), 200)

    def test_a_shorter_timeout_moves_the_timer(self) -> None:
        """Setting a timeout shorter than the one pending closes the connection on time."""
        channel, transport = self.server.connect()
        self.assertEqual(channel.setTimeout(1.0), TIMEOUT)
        self.clock.advance(1.1)
        self.assertTrue(transport.disconnecting)

    def test_timeout_off_then_on(self) -> None:
        """With the timeout off the connection stays open; switched on, it counts from then."""
        channel, transport = self.server.connect()
        channel.setTimeout(None)
        self.clock.advance(60)
        self.assertFalse(transport.disconnecting)
        channel.setTimeout(2.0)
        assert_closes_in(self, self.clock, transport, 2.0)

    def test_a_closed_connection_leaves_no_timer(self) -> None:
        """Once the connection is gone, the reactor holds no timer for it."""
        channel, transport = self.server.connect()
        channel.dataReceived(request_bytes(cookie=self.token))
        self.answer_all()
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(channel_timers(self.clock, channel), 0)

    def test_a_clock_set_back_moves_the_timer(self) -> None:
        """After the clock is set back, activity counts from the new time, not the old."""
        channel, transport = self.server.connect()
        self.clock.rightNow -= 100
        channel.dataReceived(b"P")  # part of a request: activity
        self.clock.advance(TIMEOUT + 0.1)
        self.assertTrue(transport.disconnecting)

    def test_a_refused_connection_times_out_once(self) -> None:
        """A connection closed for a bad request is not timed out again by the idle timer."""
        channel, transport = self.server.connect()
        calls: list[None] = []
        time_out = channel.timeoutConnection

        def counting() -> None:
            calls.append(None)
            time_out()

        channel.timeoutConnection = counting  # type: ignore[method-assign]
        channel.dataReceived(b"NOT HTTP AT ALL\r\n\r\n")
        self.assertEqual(status_of(transport.value()), 400)
        self.clock.advance(TIMEOUT * 3)
        self.assertEqual(len(calls), 1)

    def test_pipelined_requests_hold_the_connection_open(self) -> None:
        """Two requests sent together: the idle time passes while each is in hand, and the
        connection closes `timeout` seconds after the second answer, one timer at a time."""
        self.serve(queue_timeout=TIMEOUT * 10)  # the second request may wait that long
        channel, transport = self.server.connect()
        channel.dataReceived(request_bytes(cookie=self.token) * 2)
        self.clock.advance(TIMEOUT * 2)  # the first request is in hand, the second waits
        self.assertFalse(transport.disconnecting)
        self.pool.release()
        self.assertLessEqual(channel_timers(self.clock, channel), 1)
        self.clock.advance(TIMEOUT * 2)  # the second is in hand now
        self.assertFalse(transport.disconnecting)
        self.answer_all()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 2)
        self.assertEqual(channel_timers(self.clock, channel), 1)
        assert_closes_in(self, self.clock, transport, TIMEOUT)

    def test_a_peer_that_does_not_let_go_is_aborted(self) -> None:
        """`abortTimeout` seconds after the idle timeout, a connection still open is aborted."""
        channel, transport = self.server.connect()
        self.clock.advance(TIMEOUT + 0.1)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.clock.advance(channel.abortTimeout)
        self.assertTrue(transport.disconnected)


class IdleTimeoutOverTLSTests(MemoryTLSExchange, SynchronousTestCase):
    """Behind serverapi's TLS layer the channel keeps its one timer and times out the same."""

    def setUp(self) -> None:
        self.pool = HeldPool()
        self.api = MemoryServer(pool=self.pool, timeout=TIMEOUT)
        self.token = self.api.login()
        self.clock = self.api.reactor
        self.channel: Any = self.api.service.site.buildProtocol(
            IPv4Address("TCP", "10.0.0.7", 50000))
        self.start_tls(self.channel, TCPStringTransport())
        self.handshake()

    def ask(self) -> int | None:
        """One request through TLS, answered; the status the client reads."""
        self.client.write(request_bytes(cookie=self.token))
        self.exchange()
        while self.pool.jobs:
            self.pool.release()
        self.exchange()
        return status_of(self.client.read(65536))

    def test_requests_over_tls_make_no_new_timer(self) -> None:
        """Twenty requests through the TLS layer are answered and make no timer."""
        made = count_timers(self.channel)
        for _ in range(20):
            self.assertEqual(self.ask(), 200)
            self.clock.advance(0.01)
        self.assertEqual(made, [])

    def test_idle_tls_connection_closes_with_close_notify(self) -> None:
        """`timeout` seconds after the last answer the TLS connection closes, sending
        close_notify first."""
        self.clock.advance(3)
        self.assertEqual(self.ask(), 200)
        assert_closes_in(self, self.clock, self.transport, TIMEOUT)
        self.incoming.write(self.transport.value())
        self.assertEqual(self.client.read(100), b"")  # the server's close_notify


class DefaultClockTests(SynchronousTestCase):
    """Without a clock of its own, the idle timeout reads the global reactor's."""

    def test_global_reactor_clock(self) -> None:
        """C{seconds()} is the global reactor's time."""
        self.assertLess(abs(IdleTimeout().seconds() - reactor.seconds()), 1.0)
