"""The core: configuration + reactor + thread pool in, one startable, stoppable Service out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (IListeningPort, IProtocolFactory,
                                         IStreamServerEndpoint)
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from ._accesslog import AccessLog
from ._config import ServerConfig
from ._counters import Counts
from ._credentials import Credentials, check_credentials
from ._dispatch import Dispatcher
from ._http import APISite
from ._metricsweb import MetricsEndpoint
from ._observe import ObservedSite
from ._origins import OriginPolicy
from ._passwords import CredentialStore
from ._proxies import ProxyPolicy
from ._resource import APIContext, RootResource
from ._session_parts import SessionParts, replace_credentials
from ._sessions import LoginSession
from ._store import Maybe, SessionStore
from ._timing import TimedDispatcher
from ._tls_connection import TLSServerFactory
from ._workers import CallbackPool, ThreadedCallbackPool

HASH_THREADS = 2


class _Failed:
    """Why listening failed, kept as a value so the listening Deferred never holds an error
    nobody handles."""

    def __init__(self, failure: Failure) -> None:
        self.failure = failure


def when_listened(listening: Deferred[IListeningPort | _Failed] | None
                  ) -> Deferred[IListeningPort]:
    """A Deferred for the outcome of C{listening} (the port, or why not), leaving that outcome
    in place for the next caller."""
    if listening is None:
        return fail(RuntimeError("the server has not been started"))
    waiter: Deferred[IListeningPort] = Deferred()

    def tell(outcome: IListeningPort | _Failed) -> IListeningPort | _Failed:
        """Pass the outcome on to this waiter, and keep it for the next."""
        if isinstance(outcome, _Failed):
            waiter.errback(outcome.failure)
        else:
            waiter.callback(outcome)
        return outcome

    listening.addCallback(tell)
    return waiter


class ListeningService(Service):
    """What both services share about listening: its outcome, kept in C{_listening} once
    started (a Deferred whose result is the port, or a L{_Failed}), and waiting for it."""

    _listening: Deferred[IListeningPort | _Failed] | None = None

    def whenListening(self) -> Deferred[IListeningPort]:
        """A Deferred for the listening port once the server serves, failing if it cannot."""
        return when_listened(self._listening)

    def _listen_or_raise(self, listen: Callable[[], None]) -> None:
        """Begin listening with C{listen}, raising at once when the endpoint fails
        synchronously (twistd's case); the service may then try again in startService."""
        listen()
        failures: list[Failure] = []
        self.whenListening().addErrback(failures.append)  # fires now if listening failed now
        if failures:
            self._listening = None
            failures[0].raiseException()


class APIService(ListeningService):
    """One serverapi server: listens, serves, sweeps sessions, and stops gracefully."""

    name = "serverapi"
    _stop_requested = False

    def __init__(self, config: ServerConfig, reactor: Any, pool: CallbackPool,
                 hash_pool: CallbackPool, others: IResource | None = None, *,
                 parts: SessionParts | None = None,
                 endpoint: IStreamServerEndpoint | None = None) -> None:
        """C{parts}: the session side (default: as the configuration says); C{endpoint}: where
        to listen (default: the configuration's endpoint description)."""
        self.config = config
        self.reactor = reactor
        self._pools = (pool, hash_pool)
        self.credentials = Credentials(config.credential_store)
        # Counted only with metrics: a server without them runs the plain parts below.
        self.counts = Counts() if config.metrics_endpoint is not None else None
        histogram = None if self.counts is None else self.counts.sweep_seconds
        if parts is None:
            parts = SessionParts.for_config(config, reactor, sweep_histogram=histogram)
        self.sessions: SessionStore = parts.sessions
        self.sweeper = parts.sweeper
        self._endpoint = endpoint
        dispatching: dict[str, Any] = dict(
            queue_timeout=config.effective_queue_timeout, run_timeout=config.callback_timeout,
            hold_after=config.max_threads + config.max_queued_requests)
        self.callbacks = (
            Dispatcher(pool, reactor, **dispatching) if self.counts is None else
            TimedDispatcher(pool, reactor, histogram=self.counts.callback_seconds, **dispatching))
        self.hashing = Dispatcher(hash_pool, reactor,
                                  queue_timeout=config.effective_queue_timeout,
                                  run_timeout=config.callback_timeout,
                                  capacity=HASH_THREADS + config.max_queued_requests)
        context = APIContext(config, self.sessions, parts.throttle, self.callbacks, self.hashing,
                             OriginPolicy(config.cors_origins), self.credentials)
        self.root = RootResource(context, others)
        self.access_log = (AccessLog(config.access_log, reactor)
                           if config.access_log is not None else None)
        site_options: dict[str, Any] = dict(
            timeout=config.timeout, max_body_bytes=config.max_body_bytes, logger=config.log,
            reactor=reactor, proxies=ProxyPolicy(config.trusted_proxies))
        if self.counts is None and self.access_log is None:
            self.site = APISite(self.root, **site_options)
        else:
            self.site = ObservedSite(self.root, counts=self.counts, access_log=self.access_log,
                                     **site_options)
        self.factory: IProtocolFactory = self.site
        if config.tls is not None:
            self.factory = TLSServerFactory(config.tls, self.site)
        self.metrics: MetricsEndpoint | None = None
        if config.metrics_endpoint is not None and self.counts is not None:
            from ._metrics import ServerCollector, server_registry

            registry = server_registry(ServerCollector(self, self.counts, self.serving))
            self.metrics = MetricsEndpoint(config.metrics_endpoint, reactor, self.serving,
                                           registry)
        self.port: IListeningPort | None = None

    def privilegedStartService(self) -> None:
        """Listen now, raising at once when the endpoint fails synchronously (twistd's case).

        With a shared session store, the connection to it is made once the reactor runs (the
        daemon checks that the store answers before this, see L{serverapi.tap}).
        """
        super().privilegedStartService()
        self._listen_or_raise(lambda: self._listen(store_first=False))

    def startService(self) -> None:
        """Open the access log, start the pools and the sweep, then listen unless that has
        happened already."""
        if self.access_log is not None:
            self.access_log.open()
        super().startService()
        for warning in self.config.startup_warnings():
            self.config.log.warning("%s", warning)
        for pool in self._pools:
            pool.start()
        if not self.sessions.shared:  # a shared store's sweep starts once it is connected
            self.sweeper.start()
        if self._listening is None:
            self._listen(store_first=True)

    def _listen(self, *, store_first: bool) -> None:
        """Begin listening on the configured endpoint; with a shared session store, connect to
        it too (first, unless the port must be bound now), failing if it cannot be reached."""
        endpoint = self._endpoint or serverFromString(self.reactor, self.config.endpoint)
        listening: Deferred[Any]
        if not self.sessions.shared:
            listening = endpoint.listen(self.factory)
        elif store_first:
            listening = self.sessions.connect()  # type: ignore[attr-defined]
            listening.addCallback(lambda _: endpoint.listen(self.factory))
        else:
            connecting: Deferred[Any] = self.sessions.connect()  # type: ignore[attr-defined]
            listening = endpoint.listen(self.factory)
            listening.addCallback(self._when_connected, connecting)
        if self.metrics is not None:
            listening.addCallback(self._listen_for_metrics)
        self._listening = listening.addCallbacks(self._listened, self._not_listening)

    @staticmethod
    def _when_connected(port: IListeningPort, connecting: Deferred[Any]
                        ) -> Deferred[IListeningPort]:
        """The port listens: wait for the store's connection too (closing the port if the
        store cannot be reached)."""
        def failed(failure: Failure) -> Failure:
            """The store is unreachable: close the port, pass the failure on."""
            port.stopListening()
            return failure

        return connecting.addCallbacks(lambda _: port, failed)

    def _listen_for_metrics(self, port: IListeningPort) -> Deferred[IListeningPort]:
        """The API port listens: listen on the metrics endpoint too (or close the API port)."""
        assert self.metrics is not None

        def failed(failure: Failure) -> Failure:
            """The metrics port failed: close the API port, pass the failure on."""
            port.stopListening()
            return failure

        return self.metrics.listen().addCallbacks(lambda _: port, failed)

    def _listened(self, port: IListeningPort) -> IListeningPort:
        """The port listens: keep it (or close it, if a stop came first) and say so."""
        if self._stop_requested:  # a start that timed out was cancelled before this
            port.stopListening()
            return port
        self.port = port
        if self.sessions.shared:
            self.sweeper.start()
        self.config.log.info("serverapi listening on %s%s", port.getHost(),
                             " with TLS" if self.config.tls else "")
        if self.metrics is not None and self.metrics.port is not None:
            self.config.log.info("serverapi metrics on %s", self.metrics.port.getHost())
        return port

    def _not_listening(self, failure: Failure) -> _Failed:
        """Listening failed: stop what started, and keep the reason for whoever asks."""
        self.running = False
        self._stop_background()
        self.sweeper.stop()
        if self.sessions.shared:
            self.sessions.stop()
        return _Failed(failure)

    def closed(self) -> Deferred[None]:
        """A Deferred that fires once every connection has sent what it holds and closed."""
        return self.site.when_closed()

    def stopService(self) -> Deferred[Any]:
        """Stop accepting, let callbacks finish within the grace period, then close everything.

        Jobs no worker has started are dropped at once (their clients get 503 and the connection
        closes) and none starts later: only callbacks already running get the grace period.
        """
        super().stopService()
        self._stop_requested = True
        sweep_stopped = self.sweeper.stop()
        for pool in self._pools:
            pool.stop()
        stopped: Deferred[Any] = succeed(None)
        if self.port is not None:
            stopped = self.port.stopListening() or succeed(None)
            self.port = None
        self.site.drain()
        drained: Deferred[Any] = DeferredList([self.callbacks.idle(), self.hashing.idle()],
                                              consumeErrors=True)
        drained.addTimeout(self.config.shutdown_grace, self.reactor,
                           onTimeoutCancel=self._grace_over)
        lease_given_up = succeed(None) if sweep_stopped is None else sweep_stopped
        done: Deferred[Any] = DeferredList([stopped, drained, lease_given_up], consumeErrors=True)
        return done.addCallback(lambda _: self._finish_stop())

    def _grace_over(self, result: object, timeout: float) -> None:
        """Callbacks still running after the grace period: stop waiting for them."""
        self.config.logger.warning(
            "Stopping with %d request callback(s) and %d password check(s) still running after "
            "%ss", self.callbacks.in_flight, self.hashing.in_flight, timeout)

    def _finish_stop(self) -> Deferred[Any]:
        """Close what is left (cutting requests still in a callback), let the workers go, and
        stop the metrics port last (so /healthz says 503 until the very end)."""
        self.site.close_all()
        self._stop_background()
        closed = DeferredList([maybeDeferred(self.sessions.stop),
                               self.metrics.stop() if self.metrics is not None else succeed(None)],
                              consumeErrors=True)
        return closed

    def _stop_background(self) -> None:
        """Stop the sweep, the workers (a second stop is harmless) and the deadline timers."""
        self.sweeper.stop()
        for pool in self._pools:
            pool.stop()
        self.callbacks.clear()
        self.hashing.clear()
        self.site.deadlines.clear()
        if self.access_log is not None:
            self.access_log.close()

    def serving(self) -> bool:
        """Whether the server is serving: started, listening, and not stopping."""
        return bool(self.running) and self.port is not None and self.sessions.reachable()

    def setCredentials(self, credentials: Mapping[str, str] | CredentialStore) -> Maybe[int]:
        """Replace the credentials as a whole (call on the reactor thread).

        Logins from now on are checked against the new ones; every session of a user who is no
        longer in them ends.  Bad credentials raise C{TypeError}/C{ValueError} and change
        nothing.  Returns how many sessions ended (with a shared store, a Deferred of it).
        """
        store = (credentials if isinstance(credentials, CredentialStore)
                 else CredentialStore(check_credentials(credentials)))
        return replace_credentials(self.config, self.credentials, self.sessions, store)

    def reopenAccessLog(self) -> None:
        """Close and reopen the access log file (after log rotation moved it away)."""
        if self.access_log is not None:
            self.access_log.reopen()

    def getSessions(self) -> Maybe[list[LoginSession]]:
        """A snapshot of the live sessions (call on the reactor thread); with a shared store,
        every session in it, as a Deferred."""
        return self.sessions.snapshot()

    def invalidateUserSessions(self, username: str) -> Maybe[int]:
        """End every session of C{username}; return how many (call on the reactor thread;
        with a shared store, a Deferred of it)."""
        return self.sessions.end_user(username)


def makeAPIService(config: ServerConfig, reactor: Any, pool: CallbackPool | None = None,
                   hash_pool: CallbackPool | None = None, *,
                   others: IResource | None = None, parts: SessionParts | None = None,
                   endpoint: IStreamServerEndpoint | None = None) -> APIService:
    """Build the server's Service from its configuration, a reactor and a callback pool.

    C{others}: a twisted.web resource tree to serve on every path that is not one of the
    API's three (a web page, static files), on the same port and origin; the API's rules
    still apply on its own paths.  C{parts} and C{endpoint}: see L{APIService}.
    """
    if pool is None:
        pool = ThreadedCallbackPool(reactor, config.max_threads)
    if hash_pool is None:
        hash_pool = ThreadedCallbackPool(reactor, HASH_THREADS, name="serverapi-hash")
    return APIService(config, reactor, pool, hash_pool, others, parts=parts, endpoint=endpoint)
