"""The core: configuration + reactor + thread pool in, one startable, stoppable Service out."""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from ._config import ServerConfig
from ._dispatch import Dispatcher
from ._http import APISite
from ._origins import OriginPolicy
from ._proxies import ProxyPolicy
from ._resource import APIContext, RootResource
from ._responses import close_after_response
from ._sessions import LoginSession, SessionRegistry
from ._sweep import SessionSweeper
from ._throttle import LoginThrottle
from ._tls import ServerContextFactory
from ._workers import CallbackPool, ThreadedCallbackPool

HASH_THREADS = 2
_PENDING = object()


class APIService(Service):
    """One serverapi server: listens, serves, sweeps sessions, and stops gracefully."""

    name = "serverapi"

    def __init__(self, config: ServerConfig, reactor: Any, pool: CallbackPool,
                 hash_pool: CallbackPool) -> None:
        self.config = config
        self.reactor = reactor
        self._pools = (pool, hash_pool)
        self.sessions = SessionRegistry(
            now=reactor.seconds, logger=config.log,
            validity_callback=config.session_validity_callback,
            max_sessions=config.max_sessions, max_sessions_per_user=config.max_sessions_per_user,
            idle_timeout=config.session_idle_timeout, max_age=config.session_max_age)
        self.callbacks = Dispatcher(pool, reactor, queue_timeout=config.effective_queue_timeout,
                                    run_timeout=config.callback_timeout,
                                    hold_after=config.max_threads + config.max_queued_requests)
        self.hashing = Dispatcher(hash_pool, reactor,
                                  queue_timeout=config.effective_queue_timeout,
                                  run_timeout=config.callback_timeout,
                                  capacity=HASH_THREADS + config.max_queued_requests)
        throttle = LoginThrottle(now=reactor.seconds, attempts=config.login_attempts,
                                 window=config.login_window)
        context = APIContext(config, self.sessions, throttle, self.callbacks, self.hashing,
                             OriginPolicy(config.cors_origins))
        self.root = RootResource(context)
        self.site = APISite(self.root, timeout=config.timeout,
                            max_body_bytes=config.max_body_bytes, logger=config.log,
                            reactor=reactor, proxies=ProxyPolicy(config.trusted_proxies))
        self.factory: IProtocolFactory = self.site
        if config.tls is not None:
            self.factory = TLSMemoryBIOFactory(ServerContextFactory(config.tls), False, self.site)
        self.sweeper = SessionSweeper(self.sessions, reactor, config.session_check_interval,
                                      config.log)
        self.port: IListeningPort | None = None
        self._outcome: object = None
        self._waiters: list[Deferred[IListeningPort]] = []

    def privilegedStartService(self) -> None:
        """Listen now, raising at once when the endpoint fails synchronously (twistd's case)."""
        super().privilegedStartService()
        self._listen()
        if isinstance(self._outcome, Failure):
            failure, self._outcome = self._outcome, None
            failure.raiseException()

    def startService(self) -> None:
        """Start the pools and the sweep, then listen unless that has happened already."""
        super().startService()
        for warning in self.config.startup_warnings():
            self.config.log.warning("%s", warning)
        for pool in self._pools:
            pool.start()
        self.sweeper.start()
        if self._outcome is None:
            self._listen()

    def _listen(self) -> None:
        """Begin listening on the configured endpoint."""
        self._outcome = _PENDING
        endpoint = serverFromString(self.reactor, self.config.endpoint)
        endpoint.listen(self.factory).addBoth(self._listened)

    def _listened(self, outcome: IListeningPort | Failure) -> None:
        """Record the listening port (or the failure) and tell whoever waits for it."""
        self._outcome = outcome
        if isinstance(outcome, Failure):
            self.running = False
            self._stop_background()
        else:
            self.port = outcome
            self.config.log.info("serverapi listening on %s%s", outcome.getHost(),
                                    " with TLS" if self.config.tls else "")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(outcome)

    def whenListening(self) -> Deferred[IListeningPort]:
        """A Deferred for the listening port, failing if the server cannot listen."""
        if self._outcome is _PENDING:
            waiter: Deferred[IListeningPort] = Deferred()
            self._waiters.append(waiter)
            return waiter
        if isinstance(self._outcome, Failure):
            return fail(self._outcome)
        return succeed(self._outcome)

    def stopService(self) -> Deferred[Any]:
        """Stop accepting, let callbacks finish within the grace period, then close everything.

        Jobs no worker has started are dropped at once (their clients get 503 and the connection
        closes) and none starts later: only callbacks already running get the grace period.
        """
        super().stopService()
        self.sweeper.stop()
        for pool in self._pools:
            pool.stop()
        stopped: Deferred[Any] = succeed(None)
        if self.port is not None:
            stopped = self.port.stopListening() or succeed(None)
            self.port = None
        for channel in list(self.site.channels):
            if channel.requests:
                for request in channel.requests:
                    if not request.startedWriting:
                        close_after_response(request)
            else:
                channel.transport.loseConnection()
        drained: Deferred[Any] = DeferredList([self.callbacks.idle(), self.hashing.idle()],
                                              consumeErrors=True)
        drained.addTimeout(self.config.shutdown_grace, self.reactor,
                           onTimeoutCancel=self._grace_over)
        done: Deferred[Any] = DeferredList([stopped, drained], consumeErrors=True)
        return done.addCallback(lambda _: self._finish_stop())

    def _grace_over(self, result: object, timeout: float) -> None:
        """Callbacks still running after the grace period: stop waiting for them."""
        self.config.logger.warning(
            "Stopping with %d request callback(s) and %d password check(s) still running after "
            "%ss", self.callbacks.in_flight, self.hashing.in_flight, timeout)

    def _finish_stop(self) -> None:
        """Close what is left (cutting requests still in a callback) and let the workers go."""
        for channel in list(self.site.channels):
            if channel.requests:
                channel.transport.abortConnection()
            else:
                channel.transport.loseConnection()
        self._stop_background()
        self.sessions.end_all("server stopped")

    def _stop_background(self) -> None:
        """Stop the sweep, the workers (a second stop is harmless) and the deadline timers."""
        self.sweeper.stop()
        for pool in self._pools:
            pool.stop()
        self.callbacks.clear()
        self.hashing.clear()
        self.site.deadlines.clear()

    def getSessions(self) -> list[LoginSession]:
        """A snapshot of the live sessions (call on the reactor thread)."""
        return self.sessions.snapshot()

    def invalidateUserSessions(self, username: str) -> int:
        """End every session of C{username}; return how many (call on the reactor thread)."""
        return self.sessions.end_user(username)


def makeAPIService(config: ServerConfig, reactor: Any, pool: CallbackPool | None = None,
                   hash_pool: CallbackPool | None = None) -> APIService:
    """Build the server's Service from its configuration, a reactor and a callback pool."""
    if pool is None:
        pool = ThreadedCallbackPool(reactor, config.max_threads)
    if hash_pool is None:
        hash_pool = ThreadedCallbackPool(reactor, HASH_THREADS, name="serverapi-hash")
    return APIService(config, reactor, pool, hash_pool)
