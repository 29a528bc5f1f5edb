"""The channel between a worker and the main process, in memory: the main process's sessions
answered to a worker's RemoteStore, and what a worker may cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.protocols import amp
from twisted.test.iosim import connect, makeFakeClient, makeFakeServer
from twisted.trial.unittest import SynchronousTestCase

from serverapi import _channel as channel
from serverapi._remote_store import RemoteStore, RemoteThrottle
from serverapi._session_owner import SessionOwner, WorkerEvents
from serverapi._sessions import SessionRegistry, SessionTableFull
from serverapi._store import SessionStoreUnavailable
from serverapi._throttle import LoginThrottle

from .helpers import recording_logger


class _Reactor(Clock):
    """A clock that runs calls from other threads at once (the tests have one thread)."""

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        function(*args)


class _Worker(amp.AMP):
    """The worker's end: answers Forget into its store, as the worker process does."""

    store: RemoteStore

    @channel.Forget.responder
    def forget(self, hashes: str) -> dict[str, Any]:
        self.store.forget(hashes.split(","))
        return {}


class _ChannelCase(SynchronousTestCase):
    """A RemoteStore talking to a SessionOwner over an in-memory connection (no tests)."""

    def make(self, *, cache: bool, validity: Callable[[Any], bool] | None = None,
             max_age: float | None = None, known: set[str] = frozenset({"alice", "bob"}),
             max_sessions: int = 100) -> None:
        """Connect a worker's store to a main process's registry."""
        self.reactor = _Reactor()
        logger, self.logged = recording_logger()
        self.registry = SessionRegistry(now=self.reactor.seconds, logger=logger,
                                        validity_callback=validity, max_sessions=max_sessions,
                                        max_age=max_age)
        self.throttle = LoginThrottle(now=self.reactor.seconds, attempts=2, window=60)
        self.forget_waits: list[Deferred[None]] = []
        self.worker = _Worker()
        self.owner = SessionOwner(self.registry, self.throttle, self.registry._log,
                                  WorkerEvents(), knows=lambda user: user in known,
                                  reactor=self.reactor, cache=cache, forgotten=self.forgotten)
        if cache:
            self.registry.on_end = self.tell_worker
        self.pump = connect(self.owner, makeFakeServer(self.owner), self.worker,
                            makeFakeClient(self.worker))
        self.store = self.worker.store = RemoteStore(self.worker, self.reactor,
                                                     self.registry._log, max_age=max_age)

    def tell_worker(self, hashed: str) -> None:
        """The main process's side of a session's end: tell the worker (as the supervisor)."""
        self.forget_waits.append(self.owner.callRemote(channel.Forget, hashes=hashed)
                                 .addCallback(lambda _: None))

    def forgotten(self) -> Deferred[None]:
        """Every Forget sent so far is answered."""
        waits, self.forget_waits = self.forget_waits, []
        done: Deferred[None] = succeed(None)
        for wait in waits:
            done.addCallback(lambda _, wait=wait: wait)
        return done

    def result(self, value: Any) -> Any:
        """Deliver what is in flight (a worker sends the tokens it gathered at the end of a
        reactor turn); the value or the Deferred's result."""
        self.reactor.advance(0)
        self.pump.flush()
        if isinstance(value, Deferred):
            return self.successResultOf(value)
        return value


class ChannelTests(_ChannelCase):
    """The main process's sessions, answered to a worker's store."""

    def test_create_and_authenticate(self) -> None:
        """A session created through the channel lives in the main process's registry, and a
        worker finds it with its fields."""
        self.make(cache=False)
        session = self.result(self.store.create("alice", "10.0.0.1", "CN=alice"))
        self.assertEqual(self.registry.live_count(), 1)
        self.reactor.advance(5)
        found = self.result(self.store.authenticate(session.session_token))
        self.assertEqual((found.username, found.peer_address, found.client_certificate_subject,
                          found.hashed_session_token, found.session_token),
                         ("alice", "10.0.0.1", "CN=alice", session.hashed_session_token,
                          session.session_token))
        mine = self.registry.with_hash(session.hashed_session_token)
        self.assertEqual(mine.last_active_at, 5.0)
        self.assertIsNone(self.result(self.store.authenticate("not-a-token")))

    def test_without_cache_every_request_asks(self) -> None:
        """Without the cache (a validity callback is set), every request asks the main
        process, whose validity callback runs each time and can end the session."""
        verdicts = [True, False]
        self.make(cache=False, validity=lambda session: verdicts.pop(0))
        session = self.result(self.store.create("alice"))
        first = self.store.authenticate(session.session_token)
        self.assertIsInstance(first, Deferred)
        self.assertIsNotNone(self.result(first))
        self.assertIsNone(self.result(self.store.authenticate(session.session_token)))
        self.assertEqual(self.registry.live_count(), 0)

    def test_cache_serves_without_asking(self) -> None:
        """With the cache, a created session is found at once (no Deferred, no message), and
        its activity reaches the main process's record with the next report."""
        self.make(cache=True)
        session = self.result(self.store.create("alice"))
        self.reactor.advance(3)
        found = self.store.authenticate(session.session_token)
        self.assertIs(found, session)
        self.assertTrue(self.store.registered(session.session_token))
        self.assertEqual(self.registry.with_hash(session.hashed_session_token).last_active_at, 0)
        self.store.report_activity()
        self.pump.flush()
        self.assertEqual(self.registry.with_hash(session.hashed_session_token).last_active_at, 3)

    def test_end_in_main_reaches_the_cache(self) -> None:
        """A session ended in the main process (invalidateUserSessions) is dropped from the
        worker's cache: the worker asks again and gets nothing."""
        self.make(cache=True)
        session = self.result(self.store.create("alice"))
        self.registry.end_user("alice")
        self.pump.flush()
        self.assertIsNone(self.store.registered(session.session_token))
        self.assertIsNone(self.result(self.store.authenticate(session.session_token)))

    def test_logout_answers_after_every_worker_forgot(self) -> None:
        """A worker's end of a session is answered only once the workers' caches dropped it."""
        self.make(cache=True)
        session = self.result(self.store.create("alice"))
        ended = self.store.end(session, "logout", event="logout")
        self.assertEqual(self.result(ended), True)
        self.assertEqual(self.registry.live_count(), 0)
        self.assertEqual(self.forget_waits, [])  # waited for and answered

    def test_invalidate_in_main_reaches_the_cache(self) -> None:
        """invalidate() on the main process's copy (from getSessions()) ends the session, and
        the worker's cache drops it."""
        self.make(cache=True)
        session = self.result(self.store.create("alice"))
        self.registry.snapshot()[0].invalidate()
        self.pump.flush()
        self.assertIsNone(self.result(self.store.authenticate(session.session_token)))

    def test_invalidate_in_worker(self) -> None:
        """invalidate() in a worker's callback ends the session in the main process."""
        self.make(cache=True)
        session = self.result(self.store.create("alice"))
        session.invalidate()
        self.pump.flush()
        self.assertEqual(self.registry.live_count(), 0)
        self.assertIsNone(self.result(self.store.authenticate(session.session_token)))

    def test_max_age_in_the_cache(self) -> None:
        """A cached session past its maximum age is not served from the cache: the main process
        ends it."""
        self.make(cache=True, max_age=10)
        session = self.result(self.store.create("alice"))
        self.reactor.advance(11)
        self.assertIsNone(self.result(self.store.authenticate(session.session_token)))
        self.assertEqual(self.registry.live_count(), 0)

    def test_one_message_per_turn(self) -> None:
        """Tokens authenticated in one reactor turn go to the main process in one message,
        and each request gets its own answer, in order."""
        self.make(cache=False)
        alice = self.result(self.store.create("alice", "10.0.0.1"))
        bob = self.result(self.store.create("bob"))
        sent: list[Any] = []
        original = self.worker.callRemote
        self.worker.callRemote = lambda command, **kw: (sent.append(command),  # type: ignore
                                                        original(command, **kw))[1]
        asked = [self.store.authenticate(token) for token in
                 (alice.session_token, "unknown", bob.session_token, "")]
        found = [self.result(each) for each in asked]
        self.assertEqual(sent, [channel.AuthenticateMany])
        self.assertEqual([None if session is None else (session.username, session.peer_address)
                          for session in found],
                         [("alice", "10.0.0.1"), None, ("bob", None), None])

    def test_table_full_and_removed_user(self) -> None:
        """The main process's refusals reach the worker as its own exceptions: a full table is
        SessionTableFull; a user removed while logging in is SessionStoreUnavailable (503)."""
        self.make(cache=False, max_sessions=1, known={"alice"})
        self.result(self.store.create("alice"))
        full = self.store.create("carol")
        self.pump.flush()
        self.failureResultOf(full, SessionStoreUnavailable)
        self.registry._max_per_user = 5
        again = self.store.create("alice")
        self.pump.flush()
        self.failureResultOf(again, SessionTableFull)

    def test_throttle(self) -> None:
        """The throttle's counts are the main process's."""
        self.make(cache=False)
        throttle = RemoteThrottle(self.store)
        for _ in range(2):
            self.result(throttle.failed("alice", "10.0.0.1"))
        self.assertGreater(self.result(throttle.retry_after("alice", "10.0.0.1")), 0)
        self.assertEqual(self.result(throttle.retry_after("alice", "10.0.0.2")), 0)
        self.result(throttle.succeeded("alice", "10.0.0.1"))
        self.assertEqual(self.result(throttle.retry_after("alice", "10.0.0.1")), 0)

    def test_long_and_odd_usernames(self) -> None:
        """A username longer than one AMP value, or with a lone surrogate, crosses intact."""
        long_name = "x" * 200_000
        odd = "al\udcffice"
        self.make(cache=False, known={long_name, odd})
        for name in (long_name, odd):
            session = self.result(self.store.create(name))
            self.assertEqual(self.result(self.store.authenticate(session.session_token))
                             .username, name)

    def test_channel_lost(self) -> None:
        """Once the channel is gone, the store is unavailable (503), not an error."""
        self.make(cache=False)
        self.worker.transport.loseConnection()
        self.pump.flush()
        self.assertFalse(self.store.reachable())
        asked = self.store.authenticate("token")
        self.reactor.advance(0)
        self.failureResultOf(asked, SessionStoreUnavailable)


class ForwardedLogTests(_ChannelCase):
    """A worker's log lines and audit events reach the main process's logger."""

    def test_lines_and_long_audit_fields(self) -> None:
        """A plain line and an audit event whose reason is longer than one AMP value arrive
        whole; the main process logs them."""
        import logging

        from serverapi._worker_process import ForwardingLogger

        self.make(cache=False)
        worker_logger = logging.getLogger("test-forwarding")
        worker_logger.setLevel(logging.INFO)
        log = ForwardingLogger(worker_logger, self.worker, self.reactor)
        log.warning("plain %s", "line")
        reason = "x" * 100_000
        log.audit("callback_failed", "callback raised for user=%s", "alice", user="alice",
                  reason=reason, level=logging.ERROR)
        log.debug("not sent: below the level")
        self.pump.flush()
        self.assertIn("plain line", self.logged.text)
        self.assertIn("callback raised for user=alice", self.logged.text)
        self.assertNotIn("not sent", self.logged.text)
