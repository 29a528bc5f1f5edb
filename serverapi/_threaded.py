"""ThreadedAPIServer: the embedded front door, running the core in a shared reactor thread."""

from __future__ import annotations

import atexit
import dataclasses
import logging
import queue
import threading
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from twisted.internet.defer import maybeDeferred
from twisted.python import threadable
from twisted.python.failure import Failure

from ._config import (DEFAULTS, KEYWORD_OPTIONS, RequestCallback, ServerConfig, ValidityCallback,
                      endpoint_for)
from ._credentials import check_credentials
from ._passwords import CredentialStore
from ._service import APIService, makeAPIService
from ._sessions import LoginSession
from ._tls import TLSFiles

T = TypeVar("T")
_START_TIMEOUT = 30.0
_reactor_lock = threading.Lock()
_reactor_thread: threading.Thread | None = None


def _running_reactor() -> Any:
    """Return the global reactor, running it in a daemon thread if nothing runs it yet.

    The reactor is started once per process (with C{installSignalHandlers=False}, since it is not
    in the main thread) and never stopped, because a Twisted reactor cannot be restarted:
    servers start and stop inside it.
    """
    global _reactor_thread
    from twisted.internet import reactor

    with _reactor_lock:
        if reactor.running or _reactor_thread is not None:
            return reactor
        started = threading.Event()
        reactor.callWhenRunning(started.set)
        thread = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                                  name="serverapi-reactor", daemon=True)
        thread.start()
        if not started.wait(_START_TIMEOUT):
            raise RuntimeError("the Twisted reactor did not start")
        _reactor_thread = thread
        return reactor


# Servers running now: stopped gracefully when the interpreter exits (see _stop_at_exit).
_RUNNING: weakref.WeakSet[ThreadedAPIServer] = weakref.WeakSet()


def _stop_at_exit() -> None:
    """At interpreter exit, stop every running server as stopAPIServer() would.

    The reactor runs in a daemon thread, which the interpreter would otherwise end in the
    middle of whatever it does: responses in flight cut off, no log of it.  This lets running
    callbacks finish (within each server's grace period) and answers them first, as crochet
    does for its reactor.
    """
    for server in list(_RUNNING):
        try:
            server.stopAPIServer()
        except Exception:  # at exit, one server failing to stop must not keep others running
            logging.getLogger("serverapi").exception("stopping a server at exit failed")


atexit.register(_stop_at_exit)


def _refuse_on_reactor_thread() -> None:
    """Raise rather than deadlock when a call that waits for the reactor is made on it."""
    if threadable.isInIOThread():
        raise RuntimeError("this call waits for the reactor, so it cannot be made from the "
                           "reactor thread (for example from a validity callback)")


def _call_in_reactor(reactor: Any, timeout: float, function: Callable[..., Any],
                     *args: Any) -> Any:
    """Run C{function} on the reactor thread and wait (up to C{timeout}) for its result."""
    _refuse_on_reactor_thread()
    box: queue.Queue[Any] = queue.Queue(maxsize=1)
    reactor.callFromThread(lambda: maybeDeferred(function, *args).addBoth(box.put))
    try:
        result = box.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"the reactor did not answer within {timeout}s") from None
    if isinstance(result, Failure):
        result.raiseException()
    return result


def _check_address(host: object, port: object) -> None:
    """Validate C{host} and C{port} with clear exceptions."""
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not host:
        raise ValueError("host must not be empty")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")


class ThreadedAPIServer:
    """A login-protected JSON API server whose reactor runs in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        credentials: Mapping[str, str],
        request_callback: RequestCallback,
        session_validity_callback: ValidityCallback | None = None,
        login_cookie_level: str = DEFAULTS["login_cookie_level"],
        logger: logging.Logger | None = None,
        timeout: float = DEFAULTS["timeout"],
        max_recv_calls_per_request: int = DEFAULTS["max_recv_calls_per_request"],
        **options: Any,
    ) -> None:
        """The seed's nine positional arguments, then the keyword options of L{ServerConfig}
        (C{max_threads=}, C{cors_origins=}, ...: the README's table), whose defaults and
        checks are ServerConfig's own."""
        _check_address(host, port)
        unknown = sorted(set(options) - set(KEYWORD_OPTIONS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword argument(s) "
                            f"{', '.join(map(repr, unknown))}; the options are "
                            f"{', '.join(KEYWORD_OPTIONS)}")
        self.host = host
        self._configured_port = port
        self._config = ServerConfig(
            endpoint=endpoint_for(host, port), credentials=credentials,
            request_callback=request_callback,
            session_validity_callback=session_validity_callback,
            login_cookie_level=login_cookie_level,
            logger=logging.getLogger("serverapi") if logger is None else logger,
            timeout=timeout, max_recv_calls_per_request=max_recv_calls_per_request, **options)
        self._lock = threading.Lock()
        self._reactor: Any = None
        self._service: APIService | None = None
        self._stopped = threading.Event()

    @property
    def port(self) -> int:
        """The bound port while listening (useful with port 0), else the configured one."""
        service = self._service
        if service is not None and service.port is not None:
            return int(service.port.getHost().port)
        return self._configured_port

    @property
    def metrics_port(self) -> int | None:
        """The metrics endpoint's bound port while listening (with C{metrics_endpoint}), else
        C{None}."""
        service = self._service
        metrics = service.metrics if service is not None else None
        if metrics is None or metrics.port is None:
            return None
        return int(metrics.port.getHost().port)

    def setConnectionSecurityParams(self, certfile: str | None = None,
                                    keyfile: str | None = None,
                                    cafile: str | None = None) -> None:
        """Serve TLS from these PEM files (C{cafile}: require client certificates it signed)."""
        with self._lock:
            if self._service is not None:
                raise RuntimeError("stop the server before changing its TLS settings")
            tls = TLSFiles.from_params(certfile, keyfile, cafile)
            self._config = dataclasses.replace(self._config, tls=tls)

    def isUsingTLS(self) -> bool:
        """Whether the server serves (or will serve) TLS."""
        return self._config.tls is not None

    def startAPIServer(self, block: bool = True) -> None:
        """Start listening; block until L{stopAPIServer} unless C{block=False}.

        Errors in listening (port in use, bad host) are raised here, in the caller's thread.
        """
        with self._lock:
            if self._service is not None:
                raise RuntimeError("the server is already running")
            reactor = _running_reactor()
            service = self._make_service(self._config, reactor)
            try:
                _call_in_reactor(reactor, _START_TIMEOUT, self._start, service)
            except TimeoutError:
                # Cancel, so that a port that opens later is closed, not left to nobody.
                reactor.callFromThread(service.stopService)
                raise
            self._reactor = reactor
            self._service = service
            self._stopped = stopped = threading.Event()
            _RUNNING.add(self)
        if block:
            stopped.wait()

    def _make_service(self, config: ServerConfig, reactor: Any) -> Any:
        """The core service this front door runs."""
        return makeAPIService(config, reactor)

    @staticmethod
    def _stop(service: APIService) -> Any:
        """On the reactor: stop the service, then wait until its connections have sent what
        they hold (the program may end as soon as this returns)."""
        return service.stopService().addCallback(lambda _: service.closed())

    @staticmethod
    def _start(service: APIService) -> Any:
        """On the reactor: start the service and wait until it listens."""
        service.startService()
        return service.whenListening()

    def stopAPIServer(self) -> None:
        """Stop accepting, let running callbacks finish (within the grace period), then return."""
        with self._lock:
            service = self._service
            if service is None:
                raise RuntimeError("the server is not running")
            _refuse_on_reactor_thread()
            try:
                _call_in_reactor(self._reactor, self._config.shutdown_grace + _START_TIMEOUT,
                                 self._stop, service)
            finally:
                self._service = None
                _RUNNING.discard(self)
                self._stopped.set()

    def setCredentials(self, credentials: Mapping[str, str]) -> None:
        """Replace the credentials as a whole (from any thread), running or not.

        They are checked first, in the caller's thread: a wrong type is C{TypeError}, an empty
        username C{ValueError}, and then nothing changes.  While the server runs, logins from
        now on use the new credentials and the sessions of users no longer in them end before
        this returns; a later restart keeps the new credentials too.
        """
        frozen = check_credentials(credentials)
        store = CredentialStore(frozen)
        if threadable.isInIOThread():  # from a validity callback: the lock may be held by a
            self._replace_credentials(frozen, store)  # stop waiting for this very thread
            return
        with self._lock:
            self._replace_credentials(frozen, store)

    def _replace_credentials(self, frozen: Mapping[str, str], store: CredentialStore) -> None:
        """Keep the new credentials for later starts and give them to the running service."""
        self._config = dataclasses.replace(self._config, credentials=frozen)
        self._on_reactor(lambda service: service.setCredentials(store), 0)

    def reopenAccessLog(self) -> None:
        """Close and reopen the access log file (after log rotation moved it away)."""
        self._on_reactor(lambda service: service.reopenAccessLog(), None)

    def getSessions(self) -> list[LoginSession]:
        """A snapshot of the live sessions (from any thread)."""
        return self._on_reactor(lambda service: service.getSessions(), [])

    def invalidateUserSessions(self, username: str) -> int:
        """End every session of C{username} and return how many (from any thread)."""
        return self._on_reactor(lambda service: service.invalidateUserSessions(username), 0)

    def _on_reactor(self, function: Callable[[APIService], T], idle: T) -> T:
        """Run C{function(service)} on the reactor thread; C{idle} when not running."""
        service = self._service
        if service is None:
            return idle
        if threadable.isInIOThread():
            return function(service)
        result: T = _call_in_reactor(self._reactor, _START_TIMEOUT, function, service)
        return result

    def __enter__(self) -> ThreadedAPIServer:
        self.startAPIServer(block=False)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._service is not None:
            self.stopAPIServer()
