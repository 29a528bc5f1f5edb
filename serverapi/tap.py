"""The twistd front door: C{twistd serverapi} options and the service they make."""

from __future__ import annotations

import atexit
import gc
import os
import logging
import signal
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import serverFromString
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger, LoggingFile
from twisted.python import usage

from ._callback_reference import CallbackReference, import_reference
from ._config import (COOKIE_LEVELS, DEFAULT_ENDPOINT, DEFAULTS, NUMBERS, ServerConfig,
                      check_callable, daemon_flag)
from ._credentials import CredentialsFileError, read_credentials_file, \
    readable_plaintext_warning
from ._logging import AUDIT_MARK, BRIDGED_TO_TWISTED
from ._process_service import ProcessService, check_for_workers
from ._service import APIService, makeAPIService
from ._store import SessionStoreUnavailable
from ._store_probe import probe_store
from ._tls import TLSFiles

# Every numeric option, its default and its help come from ServerConfig (one source of truth).
_NUMBERS: list[tuple[str, type, str]] = [(daemon_flag(option), option.metadata["kind"],
                                          option.metadata["help"]) for option in NUMBERS]


def load_credentials(path: str) -> dict[str, str]:
    """Read a credentials JSON file, raising C{UsageError} that says what is wrong."""
    try:
        return read_credentials_file(path)
    except CredentialsFileError as error:
        raise usage.UsageError(f"--credentials: {error}") from None


def import_callable(option: str, path: str, arity: int) -> Callable[..., Any]:
    """Import C{MODULE:NAME}, raising C{UsageError} unless it is a callable of C{arity} args."""
    try:
        target = import_reference(path)
    except (ValueError, ImportError) as error:
        raise usage.UsageError(f"--{option}: {error}") from None
    try:
        check_callable(f"--{option} {path}", target, arity)
    except TypeError as error:
        raise usage.UsageError(str(error)) from None
    return target  # type: ignore[no-any-return]


class Options(usage.Options):
    """Options of C{twistd serverapi}."""

    synopsis = "--credentials FILE --callback MODULE:NAME [options]"
    longdesc = ("Serve POST /login, /logout and /communicate, handing logged-in users' JSON to "
                "the callback.  Every option below has a keyword of the same name (with "
                "underscores) in serverapi.ThreadedAPIServer.")
    optParameters = [
        ["listen", None, DEFAULT_ENDPOINT, "Endpoint to listen on (a Twisted endpoint "
                                           "description)."],
        ["credentials", None, None, "JSON file {\"username\": \"password or hash\", ...}."],
        ["callback", None, None, "Request callback, as package.module:function, called with "
                                 "(username, session_token, data)."],
        ["validity-callback", None, None, "Session validity callback, as "
                                          "package.module:function, called with (session)."],
        ["tls-cert", None, None, "PEM certificate (chain) file: serve TLS."],
        ["tls-key", None, None, "PEM private key file for --tls-cert."],
        ["tls-ca", None, None, "PEM CA file: require client certificates it signed."],
        ["cookie-level", None, DEFAULTS["login_cookie_level"],
         f"SameSite level: {', '.join(COOKIE_LEVELS)}."],
        ["access-log", None, None, "File to append one combined-log-format line per request "
                                   "to (reopened on SIGUSR1)."],
        ["metrics", None, None, "Endpoint for GET /healthz and GET /metrics (Prometheus), "
                                "e.g. tcp:9100:interface=127.0.0.1; needs serverapi[metrics]."],
        ["session-store", None, None, "Keep sessions in Redis or Valkey, shared by every server "
                                      "on it: redis://[:password@]host[:port][/db] or "
                                      "rediss://...; needs serverapi[redis]."],
        ["session-store-prefix", None, DEFAULTS["session_store_prefix"],
         "Prefix of every key serverapi uses in the session store."],
        ["workers", None, None, "Serve from N worker processes on the one socket (as "
                                "serverapi.ProcessAPIServer); the callback runs in them."],
    ] + [[daemon_flag(option), None,
          None if option.default is None else str(option.default), option.metadata["help"]]
         for option in NUMBERS]

    config: ServerConfig
    warnings: list[str]
    credentials_path: str

    def __init__(self) -> None:
        super().__init__()
        self["cors-origins"] = []
        self["trusted-proxies"] = []

    def opt_cors_origin(self, origin: str) -> None:
        """An origin whose pages may call the API with cookies (CORS); repeatable."""
        self["cors-origins"].append(origin)

    def opt_trusted_proxy(self, proxy: str) -> None:
        """An address, CIDR network or 'unix' whose X-Forwarded-For/Forwarded is believed;
        repeatable."""
        self["trusted-proxies"].append(proxy)

    def postOptions(self) -> None:
        """Check every option and build the server configuration."""
        self.warnings = []
        for required in ("credentials", "callback"):
            if self[required] is None:
                raise usage.UsageError(f"--{required} is required")
        if self["tls-cert"] is not None and _endpoint_kind(self["listen"]) == "ssl":
            raise usage.UsageError("--listen ssl:... and --tls-cert both set up TLS (it would be "
                                   "wrapped twice): use --listen tcp:... with --tls-cert, or "
                                   "ssl: alone")
        for option in ("listen", "metrics"):
            self._endpoint(option)
        self.credentials_path = self["credentials"]
        self["credentials"] = self._credentials(self["credentials"])
        path = self["callback"]
        self["callback"] = import_callable("callback", path, 3)
        self.callback_reference = CallbackReference.of(path)[1]  # for worker processes
        if self["validity-callback"] is not None:
            self["validity-callback"] = import_callable("validity-callback",
                                                        self["validity-callback"], 1)
        if self["cookie-level"] not in COOKIE_LEVELS:
            raise usage.UsageError(f"--cookie-level must be one of {', '.join(COOKIE_LEVELS)}"
                                   f", not {self['cookie-level']!r}")
        for name, kind, _ in _NUMBERS:
            self[name] = self._number(name, kind)
        self["tls"] = self._tls()
        if self["access-log"] is not None:
            self._check_writable("access-log", self["access-log"])
        try:
            self.config = ServerConfig(
                endpoint=self["listen"], credentials=self["credentials"],
                request_callback=self["callback"],
                session_validity_callback=self["validity-callback"],
                login_cookie_level=self["cookie-level"], logger=daemon_logger(),
                tls=self["tls"], cors_origins=self["cors-origins"],
                trusted_proxies=self["trusted-proxies"], access_log=self["access-log"],
                metrics_endpoint=self["metrics"], session_store=self["session-store"],
                session_store_prefix=self["session-store-prefix"],
                **{option.name: self[daemon_flag(option)] for option in NUMBERS})
        except (TypeError, ValueError) as error:
            raise usage.UsageError(_daemon_words(str(error))) from None
        if self["workers"] is not None:
            self._workers()

    def _workers(self) -> None:
        """Check --workers and what worker processes need."""
        text = self["workers"]
        try:
            self["workers"] = check_for_workers(self.config, int(text))
        except ValueError as error:
            if not text.strip().lstrip("-").isdigit():
                raise usage.UsageError(f"--workers must be an integer, not {text!r}") from None
            raise usage.UsageError(_daemon_words(str(error))) from None

    def _credentials(self, path: str) -> dict[str, str]:
        """Load the credentials, noting a warning if plaintext passwords are world-readable."""
        credentials = load_credentials(path)
        warning = readable_plaintext_warning(path, credentials)
        if warning is not None:
            self.warnings.append(warning)
        return credentials

    def _endpoint(self, option: str) -> None:
        """Check that an endpoint option (if given) parses as an endpoint description."""
        description = self[option]
        if description is None:
            return
        try:
            serverFromString(None, description)
        except Exception as error:
            raise usage.UsageError(f"--{option}: {description!r} is not a valid endpoint: "
                                   f"{error}") from None

    @staticmethod
    def _check_writable(option: str, path: str) -> None:
        """Check now that a log file can be opened for appending (it is opened again later)."""
        try:
            with open(path, "ab"):
                pass
        except OSError as error:
            raise usage.UsageError(f"--{option}: cannot open {path!r}: "
                                   f"{error.strerror or error}") from None

    def _number(self, name: str, kind: type) -> Any:
        """Parse a numeric option: positive (zero allowed for the queue), or None if unset."""
        text = self[name]
        if text is None:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise usage.UsageError(f"--{name} must be {'an integer' if kind is int else 'a number'}"
                                   f", not {text!r}") from None
        if not value > 0 and not (value == 0 and name == "max-queued-requests"):
            raise usage.UsageError(f"--{name} must be positive, not {text!r}")
        return value

    def _tls(self) -> TLSFiles | None:
        """Check the TLS files and their combination."""
        try:
            return TLSFiles.from_params(self["tls-cert"], self["tls-key"], self["tls-ca"],
                                        names=_TLS_OPTIONS)
        except (ValueError, OSError) as error:
            raise usage.UsageError(str(error)) from None


_TLS_OPTIONS = {"certfile": "--tls-cert", "keyfile": "--tls-key", "cafile": "--tls-ca"}
# How the daemon names the configuration's fields, for its error messages.
_OPTION_NAMES = {"cors_origins": "--cors-origin", "trusted_proxies": "--trusted-proxy",
                 "metrics_endpoint": "--metrics", "login_cookie_level": "--cookie-level",
                 "endpoint": "--listen",
                 **{option.name: "--" + daemon_flag(option) for option in NUMBERS}}


def _endpoint_kind(description: str) -> str:
    """The kind of an endpoint description (C{tcp}, C{ssl}, C{unix}, ...), lower case."""
    return description.strip().split(":", 1)[0].lower()


def _daemon_words(message: str) -> str:
    """A configuration error as the daemon's options name things (C{--cors-origin}, ...).

    Only a leading option name is replaced, so paths and values inside the message are kept.
    """
    name, space, rest = message.partition(" ")
    name = name.rstrip(":")
    option = _OPTION_NAMES.get(name, "--" + name.replace("_", "-"))
    if name.isidentifier() and name.islower():
        return option + message[len(name):]
    return message


class _TwistedLogHandler(logging.Handler):
    """Forwards the core's stdlib log records into twisted.logger (twistd's log)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._log = Logger(namespace="serverapi")

    def emit(self, record: logging.LogRecord) -> None:
        """Forward one record, unless it is an audit event (already a twisted.logger event)."""
        if getattr(record, AUDIT_MARK, False):
            return
        text = self.format(record)
        if record.levelno >= logging.ERROR:
            self._log.error("{text}", text=text)
        elif record.levelno >= logging.WARNING:
            self._log.warn("{text}", text=text)
        else:
            self._log.info("{text}", text=text)


def daemon_logger() -> logging.Logger:
    """The logger the daemon's core writes to: it ends up in twistd's log."""
    logger = logging.getLogger("serverapi.daemon")
    if not any(isinstance(handler, _TwistedLogHandler) for handler in logger.handlers):
        logger.addHandler(_TwistedLogHandler())
        logger.setLevel(logging.INFO)
        logger.propagate = False
        setattr(logger, BRIDGED_TO_TWISTED, True)  # audit events reach twistd's log directly
    return logger


class DaemonProcess(Service):
    """What the daemon may do to its own process once the reactor runs.

    - SIGTERM becomes an ordinary stop: services stop gracefully and twistd exits with 0.
      (twistd's own handler stops the reactor too, but then re-raises the signal at exit, so
      the process ends "killed by SIGTERM" and unflushed log lines are lost.)
    - SIGHUP (systemd's ExecReload, logrotate's postrotate) re-reads the credentials file;
      a bad file keeps the old credentials and logs one error line.  (Its default action
      would end the process and leave the pidfile behind.)
    - SIGUSR1 reopens the access log (if any), then does whatever twistd does with the
      signal (it rotates twistd's own --logfile); it never ends the process.
    - C{gc.freeze()}: the objects of start-up (modules, classes, configuration) are left out
      of later garbage-collection passes, so full collections stay short under load.  The
      embedded ThreadedAPIServer does not do this: there the process is the user's.
    """

    def __init__(self, reactor: Any, api: APIService | ProcessService | None = None,
                 credentials_path: str | None = None) -> None:
        self._reactor = reactor
        self._api = api
        self._credentials_path = credentials_path
        self._log = Logger(namespace="serverapi")

    def startService(self) -> None:
        """Arrange for the process set-up once the reactor runs."""
        super().startService()
        self._reactor.callWhenRunning(self._running)

    def _running(self) -> None:
        """Install the signal handlers (the reactor's are installed by now) and freeze
        start-up objects."""
        signal.signal(signal.SIGTERM, self._received)
        signal.signal(signal.SIGHUP, self._hangup)
        previous = signal.getsignal(signal.SIGUSR1)
        signal.signal(signal.SIGUSR1, lambda number, frame: self._user1(previous, number, frame))
        gc.freeze()

    def _received(self, number: int, frame: Any) -> None:
        """SIGTERM: stop on the reactor thread."""
        self._reactor.callFromThread(self._stop)

    def _stop(self) -> None:
        """Stop the reactor (services stop gracefully on the way)."""
        self._log.info("Received SIGTERM, stopping gracefully.")
        if self._reactor.running:
            self._reactor.stop()

    def _hangup(self, number: int, frame: Any) -> None:
        """SIGHUP: reload on the reactor thread."""
        self._reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """Re-read the credentials file and hand it to the server, or keep the old ones."""
        api, path = self._api, self._credentials_path
        if api is None or path is None:
            return
        self._log.info("Received SIGHUP, reloading credentials from {path}", path=path)
        try:
            credentials = read_credentials_file(path)
            ended = api.setCredentials(credentials)
            if isinstance(ended, Deferred):  # a shared store, which may be unreachable
                ended.addErrback(lambda failure: api.config.log.error(
                    "Credentials reloaded, but the sessions of removed users could not be "
                    "ended: %s", failure.getErrorMessage()))
        except (ValueError, TypeError) as error:  # CredentialsFileError is a ValueError
            message = f"--credentials: {error}"
            api.config.log.audit("credentials_reload_failed",
                                 "Credentials not reloaded, keeping the old ones: %s", message,
                                 reason=message, level=logging.ERROR)
            return
        warning = readable_plaintext_warning(path, credentials)
        if warning is not None:
            api.config.log.warning("%s", warning)

    def _user1(self, previous: Any, number: int, frame: Any) -> None:
        """SIGUSR1: reopen the access log, then let twistd's handler (if any) run too."""
        self._reactor.callFromThread(self.reopen_access_log)
        if callable(previous):
            previous(number, frame)

    def reopen_access_log(self) -> None:
        """Reopen the access log file, logging one error line if it cannot be opened."""
        if self._api is None or self._api.config.access_log is None:
            return
        try:
            self._api.reopenAccessLog()
        except OSError as error:
            self._api.config.log.error("Cannot reopen the access log %s: %s",
                                       self._api.config.access_log, error)


class StartError(Exception):
    """The daemon could not start; its message is the one line an operator sees."""


class DaemonServices(MultiService):
    """The daemon's services; a failure to listen becomes a one-line L{StartError}."""

    def stopService(self) -> Any:
        """Stop every service, then wait for the API's connections to send what they hold:
        twistd stops the reactor next, which would drop answers still in a send buffer."""
        stopping = super().stopService()
        for child in self:
            if isinstance(child, (APIService, ProcessService)):
                stopping.addCallback(lambda _, api=child: api.closed())
        return stopping

    def startService(self) -> None:
        """Start every service; a server whose worker processes cannot serve (found out once
        the reactor runs) ends the daemon with one line and status 1."""
        super().startService()
        for child in self:
            if isinstance(child, ProcessService):
                child.whenListening().addErrback(self._workers_failed)

    @staticmethod
    def _workers_failed(failure: Any) -> None:
        """Log why, stop, and make the process exit with status 1 (twistd itself would exit
        with 0 once the reactor stops)."""
        from twisted.internet import reactor

        message = " ".join(failure.getErrorMessage().split())
        Logger(namespace="serverapi").critical("serverapi: {message}", message=message)
        atexit.register(_exit_failed)
        if reactor.running:
            reactor.stop()

    def privilegedStartService(self) -> None:
        """Check that the session store answers, then listen (as twistd does before dropping
        privileges), turning errors into one line."""
        for child in self:
            address = (child.config.session_store_address
                       if isinstance(child, (APIService, ProcessService)) else None)
            if address is not None:
                try:
                    probe_store(address, child.config.timeout)
                except SessionStoreUnavailable as error:
                    raise _start_error(str(error)) from None
        try:
            super().privilegedStartService()
        except CannotListenError as error:
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
            where = f"{error.interface or '*'}:{error.port}"
            raise _start_error(f"cannot listen on {where}: {reason}") from None
        except Exception as error:
            raise _start_error(" ".join(str(error).split()) or type(error).__name__) from None


def _exit_failed() -> None:
    """At the very end (twistd has removed its pidfile and closed its log), exit with 1."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


def _start_error(message: str) -> StartError:
    """A L{StartError} whose message the process prints as one line, without a traceback.

    twistd lets an error of C{privilegedStartService} propagate (after reporting it to the
    parent in daemon mode and removing the pidfile), so in C{--nodaemon} mode Python would
    print a traceback of some forty lines for a busy port: an exception hook prints the line
    instead.  Daemonized, standard error is twistd's log and the parent exits as soon as the
    child reports the failure, so the line is logged now, before that report.  Set only when
    the daemon is about to fail: the process is the daemon's.
    """
    line = f"serverapi: {message}\n"
    printed_to_log = isinstance(sys.stderr, LoggingFile)
    if printed_to_log:
        sys.stderr.write(line)
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException,
             traceback: TracebackType | None) -> None:
        """Print a StartError as one line; anything else as before."""
        if isinstance(value, StartError):
            if not printed_to_log:
                sys.stderr.write(line)
            return
        previous(kind, value, traceback)

    sys.excepthook = hook
    return StartError(message)


def makeService(options: Options, reactor: Any = None) -> IService:
    """Assemble the daemon's service from the same core factory the library uses."""
    if reactor is None:  # twistd's call: the process is the daemon's
        from twisted.internet import reactor as global_reactor
        reactor = global_reactor
        # Until DaemonProcess installs the reload handler (once the reactor runs), a SIGHUP is
        # ignored rather than fatal.  (SIGUSR1 is left alone: twistd installs its own handler
        # only over the default one.)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for warning in options.warnings:
        options.config.logger.warning("%s", warning)
    parent = DaemonServices()
    api: APIService | ProcessService
    if options["workers"] is None:
        api = makeAPIService(options.config, reactor)
    else:
        api = ProcessService(options.config, reactor, workers=options["workers"],
                             callback=options.callback_reference)
    api.setServiceParent(parent)
    DaemonProcess(reactor, api, getattr(options, "credentials_path", None)).setServiceParent(
        parent)
    return parent
