"""A worker process of ProcessAPIServer: the HTTP layer and a callback pool on the shared socket.

The main process starts it with the listening socket as file descriptor 3, one end of their
channel as 4, and its set-up (pickled) on standard input.  The worker serves with the same
core as ThreadedAPIServer; only its session store is the main process (L{RemoteStore}) and
its log lines go to the main process's logger.  It exits when told to drain, and at once when
the main process is gone.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import pickle
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IProtocolFactory
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.protocols import amp
from twisted.python import threadable
from twisted.python.failure import Failure

from . import _channel as channel
from ._callback_reference import WORKER_ENVIRONMENT, CallbackReference
from ._logging import SafeLogger, _traceback_text
from ._remote_store import RemoteStore, RemoteThrottle

LISTEN_FD = 3
CHANNEL_FD = 4
# Exit status of a worker that could not start (the main process does not replace it at once).
START_FAILED_EXIT = 3
# How often a worker tells the main process which cached sessions it served (their last
# activity, as getSessions() shows it).
ACTIVITY_REPORT_INTERVAL = 0.25
FAMILIES = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What a worker needs to know: the server's options (callbacks aside), where its request
    callback is, the main process's import path and log level, and the socket's family."""

    options: dict[str, Any]
    callback: CallbackReference
    sys_path: list[str]
    log_level: int
    family: str
    credential_store: Any  # the main process's current CredentialStore


class ForwardingLogger(SafeLogger):
    """The worker's log: every line and audit event goes to the main process's logger."""

    def __init__(self, logger: logging.Logger, main: amp.AMP, reactor: Any) -> None:
        super().__init__(logger)
        self._main = main
        self._reactor = reactor

    def log(self, level: int, msg: Any, *args: Any, exc_info: Any = None,
            **kwargs: Any) -> None:
        """Send one line (with its traceback, if any) when the main logger takes its level."""
        if self.logger.isEnabledFor(level):
            self._send(level, msg, args, exc_info)

    def audit(self, event: str, msg: str, *args: Any, user: str | None = None,
              peer: str | None = None, token_sha256: str | None = None,
              reason: str | None = None, level: int = logging.INFO,
              exc_info: BaseException | bool | None = None) -> None:
        """Send one audit event with its fields (the main process logs and emits it)."""
        self._send(level, msg, args, exc_info, event=event, user=user, peer=peer,
                   token_sha256=token_sha256, reason=reason)

    def _send(self, level: int, msg: Any, args: tuple[Any, ...], exc_info: Any,
              **fields: str | None) -> None:
        """Format now (in this thread), send on the reactor thread; never raise."""
        try:
            text = str(msg) % args if args else str(msg)
            if exc_info:
                text += "\n" + _traceback_text(exc_info)
        except Exception:
            text = f"{msg!r} {args!r}"

        def send() -> None:
            if self._main.transport is not None:
                try:
                    self._main.callRemote(channel.Log, level=level, text=text, **fields)
                except Exception:  # a line that cannot be sent costs that line only
                    pass

        if threadable.isInIOThread():
            send()
        else:
            self._reactor.callFromThread(send)


class _ForwardingHandler(logging.Handler):
    """Sends records of the worker's stdlib logger (direct uses of C{config.logger})."""

    def __init__(self, log: ForwardingLogger) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        """Forward the record's message and traceback."""
        self._log.log(record.levelno, "%s", record.getMessage(), exc_info=record.exc_info and
                      record.exc_info[1])


class AdoptedPort:
    """A listening endpoint for a socket inherited from the main process."""

    def __init__(self, reactor: Any, fd: int, family: int) -> None:
        self._reactor = reactor
        self._fd = fd
        self._family = family

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        """Accept on the inherited socket, one connection per readiness (this process's copy
        of the descriptor is closed once the reactor holds its own).

        Every worker is woken when a client connects, and the first to call accept() gets it.
        Twisted's port accepts up to a hundred at a time, so one worker would take a whole
        burst of connections; accepting one at a time, a busy worker (whose loop turns more
        slowly) leaves the next connections to an idle one.
        """
        port = self._reactor.adoptStreamPort(self._fd, self._family, factory)
        os.close(self._fd)
        accept = port.doRead

        def accept_one() -> Any:
            port.numberAccepts = 1
            return accept()

        port.doRead = accept_one
        return succeed(port)


class WorkerChannel(amp.AMP):
    """The worker's end of the channel: asks the main process, and does what it says."""

    worker: Worker

    @channel.Drain.responder
    def drain(self) -> Deferred[dict[str, Any]]:
        """Stop serving gracefully, answer, then exit."""
        return self.worker.drain().addCallback(lambda _: {})

    @channel.Forget.responder
    def forget(self, hashes: str) -> dict[str, Any]:
        """Sessions that ended: drop them from the cache."""
        self.worker.store.forget(hashes.split(","))
        return {}

    @channel.ReplaceCredentials.responder
    def replace_credentials(self, store: bytes) -> dict[str, Any]:
        """Check logins against new credentials from now on (the main process ends the
        sessions of removed users)."""
        self.worker.replace_credentials(pickle.loads(store))
        return {}

    @channel.ReopenAccessLog.responder
    def reopen_access_log(self) -> dict[str, Any]:
        """Reopen the access log; say why not, if it cannot be opened."""
        if self.worker.service is None:
            return {"error": None}
        try:
            self.worker.service.reopenAccessLog()
        except OSError as error:
            return {"error": str(error)}
        return {"error": None}

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """The main process is gone: stop at once (no session can be checked any more)."""
        super().connectionLost(reason)
        self.worker.main_gone()


class Worker:
    """One worker process's server."""

    service: Any = None
    store: RemoteStore
    _reporting: LoopingCall | None = None

    def __init__(self, setup: WorkerSetup, reactor: Any) -> None:
        self.setup = setup
        self.reactor = reactor
        self.exit_code = 0
        self._stopping: Deferred[None] | None = None
        self.main = WorkerChannel()
        self.main.worker = self
        self._credentials = setup.credential_store

    def start(self) -> None:
        """Open the channel, import the callback, build the server and listen; tell the main
        process that this worker serves, or why it cannot."""
        from ._config import ServerConfig

        self.reactor.adoptStreamConnection(CHANNEL_FD, socket.AF_UNIX,
                                           Factory.forProtocol(lambda: self.main))
        os.close(CHANNEL_FD)
        logger = logging.getLogger("serverapi.worker")
        logger.setLevel(self.setup.log_level)
        logger.propagate = False
        try:
            callback = self.setup.callback.load()
            config = ServerConfig(request_callback=callback, logger=logger,
                                  **self.setup.options)
        except (Exception, SystemExit) as error:
            self._failed(f"cannot import request_callback {self.setup.callback} in a worker "
                         f"process: {error}")
            return
        try:
            self._serve(config, logger)
        except Exception as error:  # a TLS file or the access log it cannot open, ...
            self._failed(f"a worker process cannot serve: {type(error).__name__}: {error}")

    def _serve(self, config: Any, logger: logging.Logger) -> None:
        """Build the server on the inherited socket and start it."""
        from ._service import makeAPIService
        from ._session_parts import NoSweep, SessionParts

        log = ForwardingLogger(logger, self.main, self.reactor)
        logger.addHandler(_ForwardingHandler(log))
        object.__setattr__(config, "log", log)  # the core logs through config.log
        store = self.store = RemoteStore(self.main, self.reactor, log,
                                         max_age=config.session_max_age)
        parts = SessionParts(store, RemoteThrottle(store), NoSweep())
        endpoint = AdoptedPort(self.reactor, LISTEN_FD, FAMILIES[self.setup.family])
        service = makeAPIService(config, self.reactor, parts=parts, endpoint=endpoint)
        service.credentials.replace(self._credentials)
        self.service = service
        self._reporting = LoopingCall(store.report_activity)
        self._reporting.clock = self.reactor
        self._reporting.start(ACTIVITY_REPORT_INTERVAL, now=False)
        service.startService()
        service.whenListening().addCallbacks(
            lambda _: self.main.callRemote(channel.Ready, pid=os.getpid()),
            lambda failure: self._failed(f"cannot listen: {failure.getErrorMessage()}"))

    def replace_credentials(self, store: Any) -> None:
        """Check logins against C{store} from now on (also if it comes before the server is
        built)."""
        self._credentials = store
        if self.service is not None:
            self.service.credentials.replace(store)

    def _failed(self, reason: str) -> None:
        """Tell the main process why this worker cannot serve, then exit."""
        self.exit_code = START_FAILED_EXIT
        told = self.main.callRemote(channel.StartFailed, reason=reason)
        told.addBoth(lambda _: self.reactor.stop())

    def drain(self) -> Deferred[None]:
        """Stop accepting, let callbacks finish within the grace period, close connections,
        then stop the reactor (the process exits)."""
        if self._stopping is None:
            if self._reporting is not None and self._reporting.running:
                self._reporting.stop()
            if self.service is None:
                self._stopping = succeed(None)
            else:
                service = self.service
                self._stopping = service.stopService().addCallback(lambda _: service.closed())
            self._stopping.addBoth(lambda _: self.reactor.callLater(0, self.reactor.stop))
        return self._stopping

    def main_gone(self) -> None:
        """The channel closed: drain (every session check now fails) and exit."""
        if self.reactor.running:
            self.drain()


def main() -> None:
    """Run one worker process (its set-up is on standard input)."""
    os.environ[WORKER_ENVIRONMENT] = "1"
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        # The main process decides when workers stop (a terminal's Ctrl-C and systemd's
        # SIGTERM reach the whole process group); a worker whose main process is gone exits.
        signal.signal(number, signal.SIG_IGN)
    faulthandler.enable()
    setup: WorkerSetup = pickle.load(sys.stdin.buffer)
    sys.stdin.close()
    sys.path[:] = setup.sys_path
    from twisted.internet import reactor

    worker = Worker(setup, reactor)
    reactor.callWhenRunning(worker.start)
    reactor.run(installSignalHandlers=False)  # type: ignore[attr-defined]
    sys.exit(worker.exit_code)


if __name__ == "__main__":
    main()
