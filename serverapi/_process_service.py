"""The main process of a server with worker processes: it listens, owns the sessions, runs the
validity callback, and keeps the workers serving on its socket."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, DeferredList, gatherResults, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure

from . import _channel as channel
from ._callback_reference import CallbackReference
from ._config import ServerConfig
from ._credentials import Credentials, check_credentials
from ._passwords import CredentialStore
from ._service import ListeningService, _Failed
from ._session_owner import SessionOwner, WorkerEvents
from ._session_parts import SessionParts, replace_credentials
from ._sessions import LoginSession
from ._store import Maybe
from ._supervisor import WorkerSupervisor
from ._worker_process import WorkerSetup

# Options a worker does not take from the main process's configuration: the callbacks (it
# imports its own; the validity callback runs here), the logger (its lines come here), the
# session store and the metrics endpoint (this process has them), and the derived fields.
_NOT_FOR_WORKERS = {"request_callback", "session_validity_callback", "logger",
                    "session_store", "session_store_prefix", "metrics_endpoint"}
# A worker drains within this share of the grace period, so that it exits by itself before
# the main process kills what is left at the end of the grace period.
_WORKER_GRACE_SHARE = 0.8


def _family(port: IListeningPort) -> str:
    """The address family of a listening port, by the name the worker adopts it with."""
    host = port.getHost()
    if isinstance(host, IPv6Address):
        return "INET6"
    if isinstance(host, IPv4Address):
        return "INET"
    if isinstance(host, UNIXAddress):
        return "UNIX"
    raise ValueError(f"worker processes cannot share a {type(host).__name__} port")


def worker_setup(config: ServerConfig, callback: CallbackReference, family: str,
                 credentials: CredentialStore) -> WorkerSetup:
    """What the main process tells a worker it starts (C{credentials}: the current ones)."""
    options = {option.name: getattr(config, option.name) for option in fields(config)
               if option.init and option.name not in _NOT_FOR_WORKERS}
    options["credentials"] = dict(config.credentials)
    options["shutdown_grace"] = config.shutdown_grace * _WORKER_GRACE_SHARE
    return WorkerSetup(options=options, callback=callback, sys_path=list(sys.path),
                       log_level=config.logger.getEffectiveLevel(), family=family,
                       credential_store=credentials)


class _Refuse(Factory):
    """The main process's own factory on the shared socket: it never accepts (the workers
    do), and would close a connection if it ever did."""

    def buildProtocol(self, addr: Any) -> None:
        """No connection is served here."""
        return None


class ProcessService(ListeningService):
    """The main process: listens, owns the sessions, and supervises the workers."""

    name = "serverapi"
    metrics = None  # not served with worker processes (see the README)
    _stop_requested = False

    def __init__(self, config: ServerConfig, reactor: Any, *, workers: int,
                 callback: CallbackReference) -> None:
        self.config = config
        self.reactor = reactor
        self.workers = workers
        self._callback = callback
        self.credentials = Credentials(config.credential_store)
        parts = SessionParts.for_config(config, reactor)
        self.sessions = parts.sessions
        self._throttle = parts.throttle
        self.sweeper = parts.sweeper
        # Workers may keep the sessions they see when nothing about a session can change
        # without this process knowing: sessions in memory here, no validity callback (it runs
        # before every request) and no idle timeout (activity on any worker counts).  Every
        # session that ends is then dropped from every worker's cache before a logout (or
        # invalidateUserSessions, or setCredentials) answers.
        self.cache = (not self.sessions.shared and config.session_validity_callback is None
                      and config.session_idle_timeout is None)
        if self.cache:
            self.sessions.on_end = self._forget  # type: ignore[attr-defined]
        self.port: IListeningPort | None = None
        self.supervisor: WorkerSupervisor | None = None
        # Fired by startService when the port was had before it (privilegedStartService).
        self._until_started: Deferred[None] | None = None
        # Waiting for the end of a stop in progress (None: no stop in progress).
        self._closed_waiters: list[Deferred[None]] | None = None

    def _owner(self, events: WorkerEvents) -> SessionOwner:
        """The channel's end for one more worker."""
        return SessionOwner(self.sessions, self._throttle, self.config.log, events,
                            knows=lambda username: self.credentials.store.knows(username),
                            reactor=self.reactor, cache=self.cache, forgotten=self._forgotten)

    def _forget(self, hashed: str) -> None:
        """A session ended: every worker drops it from its cache."""
        if self.supervisor is not None:
            self.supervisor.forget(hashed)

    def _forgotten(self) -> Deferred[None]:
        """Fires once every worker has dropped every session that ended so far."""
        return self.supervisor.forgotten() if self.supervisor is not None else succeed(None)

    def _after_forgetting(self, result: Any) -> Any:
        """C{result} (a value or Deferred), once the workers dropped what ended with it."""
        if not self.cache:
            return result
        done = result if isinstance(result, Deferred) else succeed(result)
        return done.addCallback(lambda value: self._forgotten().addCallback(lambda _: value))

    def privilegedStartService(self) -> None:
        """Listen now (the daemon's case: before privileges are dropped), raising at once
        when the endpoint fails synchronously."""
        super().privilegedStartService()
        self._listen_or_raise(self._listen)

    def startService(self) -> None:
        """Start the sweep and listen (unless done already); the workers start from there."""
        super().startService()
        for warning in self.config.startup_warnings():
            self.config.log.warning("%s", warning)
        if not self.sessions.shared:
            self.sweeper.start()
        if self._listening is None:
            self._listen()
        waiting, self._until_started = self._until_started, None
        if waiting is not None:
            waiting.callback(None)

    def _listen(self) -> None:
        """Listen without accepting (the workers accept), connect to a shared store, then
        start the workers on the socket."""
        endpoint = serverFromString(self.reactor, self.config.endpoint)
        listening: Deferred[Any] = endpoint.listen(_Refuse())
        listening.addCallback(self._hold)
        if self.sessions.shared:
            listening.addCallback(lambda port: self.sessions.connect().addCallback(  # type: ignore[attr-defined]
                lambda _: port))
        listening.addCallback(self._start_workers)
        self._listening = listening.addCallbacks(self._listened, self._not_listening)

    def _hold(self, port: IListeningPort) -> IListeningPort:
        """Keep the socket, but let only the workers accept on it."""
        port.stopReading()  # type: ignore[attr-defined]
        self.port = port
        return port

    def _start_workers(self, port: IListeningPort) -> Deferred[IListeningPort]:
        """Start the workers once the service starts (the daemon listens before it drops its
        privileges; the workers are started after, so they run as the daemon's user); the port
        counts as listening once every one serves."""
        if not self.running:
            self._until_started = Deferred()
            return self._until_started.addCallback(lambda _: self._start_workers(port))
        family = _family(port)
        self.supervisor = WorkerSupervisor(
            self.reactor, self.workers,
            lambda: worker_setup(self.config, self._callback, family, self.credentials.store),
            self._owner, self.config.log, self.config.shutdown_grace,
            answer_timeout=self.config.timeout)
        return self.supervisor.start(port).addCallback(lambda _: port)

    def _listened(self, port: IListeningPort) -> IListeningPort | _Failed:
        """Every worker serves: say so (or undo it all, if a stop came first)."""
        if self._stop_requested:
            return port
        if self.sessions.shared:
            self.sweeper.start()
        self.config.log.info("serverapi listening on %s%s with %d worker processes",
                             port.getHost(), " with TLS" if self.config.tls else "",
                             self.workers)
        return port

    def _not_listening(self, failure: Failure) -> _Failed:
        """Listening or starting the workers failed: undo what started; keep the reason."""
        self.running = False
        self.sweeper.stop()
        if self.port is not None:
            self.port.stopListening()
            self.port = None
        if self.sessions.shared:
            self.sessions.stop()
        return _Failed(failure)

    def stopService(self) -> Deferred[Any]:
        """Drain every worker (within the grace period), close the socket, end the sweep and
        let the sessions go."""
        super().stopService()
        self._stop_requested = True
        swept = self.sweeper.stop()
        workers = self.supervisor.stop() if self.supervisor is not None else succeed(None)
        closed: Deferred[Any] = succeed(None)
        if self.port is not None:
            closed = self.port.stopListening() or succeed(None)
            self.port = None
        done = DeferredList([workers, closed, swept or succeed(None)], consumeErrors=True)
        done.addCallback(lambda _: self.sessions.stop())
        self._closed_waiters = []
        return done.addBoth(self._all_closed)

    def closed(self) -> Deferred[Any]:
        """Fires once every worker has ended (their connections with them)."""
        if self._closed_waiters is None:
            return succeed(None)
        ended: Deferred[None] = Deferred()
        self._closed_waiters.append(ended)
        return ended

    def _all_closed(self, result: object) -> object:
        """The stop is complete: tell whoever waits in L{closed}."""
        waiters, self._closed_waiters = self._closed_waiters or [], None
        for waiter in waiters:
            waiter.callback(None)
        return result

    def serving(self) -> bool:
        """Whether the server serves: started, listening, a worker serving, the store there."""
        return (bool(self.running) and self.port is not None and self.supervisor is not None
                and self.supervisor.serving() > 0 and self.sessions.reachable())

    def setCredentials(self, credentials: Mapping[str, str] | CredentialStore) -> Maybe[int]:
        """Replace the credentials (see L{serverapi.APIService.setCredentials}); every worker
        checks logins against the new ones before this answers."""
        store = (credentials if isinstance(credentials, CredentialStore)
                 else CredentialStore(check_credentials(credentials)))
        ended = self._after_forgetting(
            replace_credentials(self.config, self.credentials, self.sessions, store))
        if self.supervisor is None:
            return ended
        told = self.supervisor.broadcast(channel.ReplaceCredentials, store=pickle.dumps(store))
        return gatherResults([told, succeed(ended) if not isinstance(ended, Deferred)
                              else ended]).addCallback(lambda results: results[1])

    def reopenAccessLog(self) -> None:
        """Every worker reopens the access log (errors are logged)."""
        if self.supervisor is None:
            return

        def answered(results: list[tuple[bool, Any]]) -> None:
            for ok, answer in results:
                error = answer.get("error") if ok else answer.getErrorMessage()
                if error:
                    self.config.log.error("Cannot reopen the access log %s: %s",
                                          self.config.access_log, error)
                    return

        self.supervisor.broadcast(channel.ReopenAccessLog).addCallback(answered)

    def getSessions(self) -> Maybe[list[LoginSession]]:
        """A snapshot of the live sessions (they live in this process, or its store)."""
        return self.sessions.snapshot()

    def invalidateUserSessions(self, username: str) -> Maybe[int]:
        """End every session of C{username}; how many (once no worker serves them)."""
        return self._after_forgetting(self.sessions.end_user(username))

    def worker_pids(self) -> list[int]:
        """The worker processes' ids."""
        return [] if self.supervisor is None else self.supervisor.pids


def check_for_workers(config: ServerConfig, workers: object) -> int:
    """Raise C{TypeError}/C{ValueError} unless C{workers} and C{config} suit worker processes;
    return the number of workers."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an int, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if config.metrics_endpoint is not None:
        raise ValueError("metrics_endpoint is not available with worker processes yet")
    if config.endpoint.split(":", 1)[0] == "ssl":
        raise ValueError("an ssl: endpoint cannot be shared with worker processes: serve TLS "
                         "with the certificate options instead")
    return workers

