"""The core factory: what the service listens on, and how it starts and stops."""

from __future__ import annotations

import threading
from typing import Any

from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.python.failure import Failure
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig, hashPassword, makeAPIService
from serverapi._config import endpoint_for
from serverapi._http import APISite
from serverapi._workers import PoolJob, ThreadedCallbackPool

from .helpers import CREDENTIALS, HeldPool, MemoryServer, SyncPool, echo, request_bytes, status_of
from .test_workers import FakeReactor, wait_until


class RefusingReactor(MemoryReactorClock):
    """A memory reactor on which every listen fails, like a port already in use."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class WorkerPool(HeldPool):
    """A pool double with queued and running jobs: stop() drops the queued ones, as the real one.

    Held jobs wait for a worker until C{take()} starts the oldest; C{finish()} runs it then.
    """

    def __init__(self) -> None:
        super().__init__()
        self.running: list[PoolJob] = []

    def submit(self, job: PoolJob) -> None:
        if self.stopped:
            job.dropped()
        else:
            self.jobs.append(job)

    def take(self) -> None:
        """A worker starts the oldest queued job."""
        self.running.append(self.jobs.pop(0))

    def finish(self) -> None:
        """The oldest started job runs and returns."""
        SyncPool.submit(self, self.running.pop(0))

    def stop(self) -> None:
        super().stop()
        queued, self.jobs = self.jobs, []
        for job in queued:
            job.dropped()


class ServiceTests(SynchronousTestCase):
    """makeAPIService on a memory reactor."""

    def test_listens_on_endpoint(self) -> None:
        """The service listens where its endpoint says, serving the API site over plain TCP."""
        server = MemoryServer(endpoint="tcp:port=8123:interface=127.0.0.2")
        [(port, factory, _, interface)] = server.reactor.tcpServers
        self.assertEqual((port, interface), (8123, "127.0.0.2"))
        self.assertIsInstance(factory, APISite)
        self.assertIs(factory, server.service.site)
        self.assertEqual(server.reactor.sslServers, [])
        self.assertTrue(server.pool.started and server.hash_pool.started)
        self.assertEqual(factory.timeOut, 5.0)
        self.assertFalse(factory._parsePOSTFormSubmission)

    def test_threaded_endpoint_backlog(self) -> None:
        """ThreadedAPIServer's endpoint listens with a backlog of 1024, not Twisted's 50."""
        server = MemoryServer(endpoint=endpoint_for("127.0.0.1", 0))
        [(port, _, backlog, interface)] = server.reactor.tcpServers
        self.assertEqual((port, backlog, interface), (0, 1024, "127.0.0.1"))

    def test_listen_failure_raises_synchronously(self) -> None:
        """privilegedStartService raises the listen error (twistd exits with it)."""
        config = ServerConfig(credentials=CREDENTIALS, request_callback=echo)
        service = makeAPIService(config, RefusingReactor(), SyncPool(), SyncPool())
        self.assertRaises(CannotListenError, service.privilegedStartService)

    def test_listen_failure_in_when_listening(self) -> None:
        """startService + whenListening report the listen error and stop the pools."""
        config = ServerConfig(credentials=CREDENTIALS, request_callback=echo)
        pool = SyncPool()
        service = makeAPIService(config, RefusingReactor(), pool, SyncPool())
        service.startService()
        self.failureResultOf(service.whenListening(), CannotListenError)
        self.assertTrue(pool.stopped)
        self.assertFalse(service.running)

    def test_stop_waits_for_callbacks(self) -> None:
        """Stopping closes idle connections, waits for a running callback, then finishes."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, shutdown_grace=10)
        token = server.login()
        busy, busy_transport = server.connect()
        busy.dataReceived(request_bytes(cookie=token))
        idle, idle_transport = server.connect()
        stopped = server.service.stopService()
        self.assertNoResult(stopped)
        self.assertTrue(idle_transport.disconnecting)
        self.assertFalse(busy_transport.disconnecting)
        pool.release()
        self.successResultOf(stopped)
        self.assertEqual(status_of(busy_transport.value()), 200)
        self.assertIn(b"Connection: close", busy_transport.value())
        self.assertTrue(pool.stopped)
        self.assertEqual(server.service.getSessions(), [])

    def test_stop_drops_queued_jobs(self) -> None:
        """Stopping answers 503 and closes at once for jobs no worker started; none runs."""
        pool = WorkerPool()
        server = MemoryServer(pool=pool, shutdown_grace=10)
        token = server.login()
        transports = []
        for _ in range(4):
            channel, transport = server.connect()
            channel.dataReceived(request_bytes(cookie=token))
            transports.append(transport)
        pool.take()
        stopped = server.service.stopService()
        self.assertNoResult(stopped)
        for transport in transports[1:]:
            answer = transport.value()
            self.assertEqual(status_of(answer), 503)
            self.assertIn(b"Connection: close", answer)
            self.assertIn(b'{"error":', answer)
        self.assertEqual(transports[0].value(), b"")
        callbacks = server.service.callbacks
        self.assertEqual((callbacks.in_flight, len(callbacks.deadlines)), (1, 1))
        pool.finish()
        self.successResultOf(stopped)
        self.assertEqual(status_of(transports[0].value()), 200)
        self.assertEqual(pool.ran, 1)

    def test_stop_with_worker_threads(self) -> None:
        """With real workers, only callbacks already running when stop begins ever start."""
        gate = threading.Event()
        started: list[int] = []

        def slow(username: str, token: str,
                 data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
            started.append(data["n"])
            gate.wait(10)
            return False, False, {"n": data["n"]}

        bridge = FakeReactor()
        pool = ThreadedCallbackPool(bridge, 2, name="stop-test")
        server = MemoryServer(pool=pool, request_callback=slow, shutdown_grace=10)
        self.addCleanup(pool.join, 5)
        self.addCleanup(gate.set)
        token = server.login()
        transports = []
        for n in range(6):
            channel, transport = server.connect()
            channel.dataReceived(request_bytes(body=b'{"n": %d}' % n, cookie=token))
            transports.append(transport)
        self.assertTrue(wait_until(lambda: len(started) == 2))
        stopped = server.service.stopService()
        self.assertEqual([status_of(t.value()) for t in transports[2:]], [503] * 4)
        gate.set()
        self.assertTrue(wait_until(lambda: bridge.run_pending() >= 0
                                   and server.service.callbacks.in_flight == 0))
        self.successResultOf(stopped)
        pool.join(5)
        self.assertEqual(sorted(started), [0, 1])
        self.assertEqual([status_of(t.value()) for t in transports[:2]], [200, 200])

    def test_stop_grace_period(self) -> None:
        """A callback stuck past shutdown_grace does not hold the stop; its connection is cut."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, shutdown_grace=3)
        token = server.login()
        busy, busy_transport = server.connect()
        busy.dataReceived(request_bytes(cookie=token))
        stopped = server.service.stopService()
        server.reactor.advance(2.9)
        self.assertNoResult(stopped)
        server.reactor.advance(0.1)
        self.successResultOf(stopped)
        self.assertTrue(busy_transport.disconnected or busy_transport.disconnecting)
        self.assertIn("still running", server.log.text)
        busy.connectionLost(Failure(ConnectionDone()))  # what the reactor does after an abort
        pool.release()  # the late result is dropped without error
        self.assertEqual(busy_transport.value(), b"")

    def test_stop_waits_for_password_checks(self) -> None:
        """A login whose hash is being checked also finishes before the stop completes."""
        hash_pool = HeldPool()
        server = MemoryServer(credentials={"alice": hashPassword("password123")},
                              hash_pool=hash_pool)
        channel, transport = server.connect()
        channel.dataReceived(request_bytes(
            "/login", b'{"username": "alice", "password": "password123"}'))
        stopped = server.service.stopService()
        self.assertNoResult(stopped)
        hash_pool.release()
        self.successResultOf(stopped)
        self.assertEqual(status_of(transport.value()), 200)

    def test_stop_leaves_no_timers(self) -> None:
        """After a stop, no deadline timer of the server is left on the reactor."""
        pool = HeldPool()
        server = MemoryServer(pool=pool)
        token = server.login()
        channel, _ = server.connect()
        channel.dataReceived(request_bytes(cookie=token))
        pool.release()
        self.assertNotEqual(server.reactor.getDelayedCalls(), [])
        self.successResultOf(server.service.stopService())
        channel.connectionLost(Failure(ConnectionDone()))  # what the reactor does after a close
        self.assertEqual(server.reactor.getDelayedCalls(), [])

    def test_session_management(self) -> None:
        """getSessions and invalidateUserSessions see and end live sessions."""
        server = MemoryServer()
        tokens = [server.login(), server.login(), server.login("bob", "securepassword")]
        self.assertEqual(sorted(s.get_username() for s in server.service.getSessions()),
                         ["alice", "alice", "bob"])
        self.assertEqual(server.service.invalidateUserSessions("alice"), 2)
        self.assertEqual(server.post("/communicate", {}, cookie=tokens[0]).code, 401)
        self.assertEqual(server.post("/communicate", {}, cookie=tokens[2]).code, 200)


class WhenClosedTests(SynchronousTestCase):
    """APISite.when_closed: a stop can wait for connections to send what they hold."""

    def test_fires_when_the_last_connection_closes(self) -> None:
        """It fires once every connection has closed, not before."""
        server = MemoryServer()
        first, _ = server.connect()
        second, _ = server.connect()
        closed = server.service.site.when_closed()
        self.assertNoResult(closed)
        first.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(closed)
        second.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(closed)
        self.assertEqual([call for call in server.reactor.getDelayedCalls()
                          if "_abort_all" in repr(call)], [])  # the abort timer is gone

    def test_aborts_after_the_timeout(self) -> None:
        """Connections whose peer does not read are aborted after the timeout."""
        server = MemoryServer()
        _, transport = server.connect()
        closed = server.service.site.when_closed(2.0)
        server.reactor.advance(1.9)
        self.assertNoResult(closed)
        server.reactor.advance(0.1)
        self.successResultOf(closed)
        self.assertTrue(transport.disconnecting)

    def test_nothing_open(self) -> None:
        """With no connection it fires at once."""
        self.successResultOf(MemoryServer().service.site.when_closed())
