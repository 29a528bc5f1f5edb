"""The one immutable, validated configuration object both front doors build the server from."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._credentials import check_credentials
from ._logging import SafeLogger
from ._origins import parse_cors_origins
from ._passwords import CredentialStore
from ._proxies import parse_trusted_proxies

if TYPE_CHECKING:
    from ._sessions import LoginSession
    from ._tls import TLSFiles

RequestCallback = Callable[[str, str, dict[str, Any]], tuple[Any, ...]]
ValidityCallback = Callable[["LoginSession"], bool]

COOKIE_LEVELS = ("None", "Lax", "Strict")
RECV_CHUNK_BYTES = 4096
DEFAULT_ENDPOINT = "tcp:8000:interface=127.0.0.1"


def _check_number(name: str, value: object, *, integer: bool = False,
                  optional: bool = False, zero: bool = False) -> None:
    """Raise C{TypeError}/C{ValueError} unless C{value} is a positive (or zero) finite number."""
    if value is None and optional:
        return
    kinds: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        extra = " or None" if optional else ""
        raise TypeError(f"{name} must be {kind}{extra}, not {type(value).__name__}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ValueError(f"{name} must be {'zero or more' if zero else 'positive'}, "
                         f"got {value!r}")


def check_callable(name: str, value: object, arity: int) -> None:
    """Raise C{TypeError} unless C{value} can be called with C{arity} positional arguments."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    try:
        signature = inspect.signature(value)
    except (TypeError, ValueError):
        return  # Some builtins have no signature; they are given the benefit of the doubt.
    try:
        signature.bind(*([None] * arity))
    except TypeError:
        raise TypeError(
            f"{name} must accept {arity} positional argument{'s' if arity > 1 else ''}; "
            f"its signature is {signature}"
        ) from None


LISTEN_BACKLOG = 1024


def metrics_available() -> bool:
    """Whether the optional C{prometheus_client} (the C{serverapi[metrics]} extra) is installed."""
    try:
        return importlib.util.find_spec("prometheus_client") is not None
    except (ImportError, ValueError):  # e.g. a module entry of None in sys.modules
        return False


def endpoint_for(host: str, port: int) -> str:
    """Return the Twisted endpoint description that listens on C{host}:C{port} over TCP.

    The accept backlog is 1024 rather than Twisted's 50, so a burst of a thousand connecting
    clients is queued by the kernel instead of dropped and retried a second later.
    """
    escaped = host.replace("\\", "\\\\").replace(":", "\\:").replace("=", "\\=")
    return f"tcp:port={port}:interface={escaped}:backlog={LISTEN_BACKLOG}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerConfig:
    """Everything a serverapi server needs to know, checked once when it is made."""

    credentials: Mapping[str, str]
    request_callback: RequestCallback
    session_validity_callback: ValidityCallback | None = None
    login_cookie_level: str = "Strict"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("serverapi"))
    timeout: float = 5.0
    max_recv_calls_per_request: int = 1024
    endpoint: str = DEFAULT_ENDPOINT
    tls: TLSFiles | None = None
    session_check_interval: float = 1.0
    callback_timeout: float = 30.0
    max_threads: int = 10
    max_queued_requests: int = 100
    shutdown_grace: float = 10.0
    login_attempts: int = 5
    login_window: float = 60.0
    max_sessions_per_user: int = 64
    max_sessions: int = 100_000
    session_idle_timeout: float | None = None
    session_max_age: float | None = None
    queue_timeout: float | None = None
    cors_origins: Sequence[str] = ()
    trusted_proxies: Sequence[str] = ()
    access_log: str | None = None
    metrics_endpoint: str | None = None
    # The store of C{credentials}, the start-up credentials.  A running server checks logins
    # against its own current store (APIService.credentials), which setCredentials replaces.
    credential_store: CredentialStore = field(init=False, repr=False, compare=False)
    log: SafeLogger = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        frozen = check_credentials(self.credentials)
        object.__setattr__(self, "credentials", frozen)
        object.__setattr__(self, "credential_store", CredentialStore(frozen))
        check_callable("request_callback", self.request_callback, 3)
        if self.session_validity_callback is not None:
            check_callable("session_validity_callback", self.session_validity_callback, 1)
        if not isinstance(self.login_cookie_level, str):
            raise TypeError("login_cookie_level must be a str")
        if self.login_cookie_level not in COOKIE_LEVELS:
            raise ValueError(
                f"login_cookie_level must be one of {', '.join(COOKIE_LEVELS)}; "
                f"got {self.login_cookie_level!r}"
            )
        if not isinstance(self.logger, logging.Logger):
            raise TypeError(f"logger must be a logging.Logger, not {type(self.logger).__name__}")
        object.__setattr__(self, "log", SafeLogger(self.logger))
        object.__setattr__(self, "cors_origins", parse_cors_origins(self.cors_origins))
        object.__setattr__(self, "trusted_proxies", parse_trusted_proxies(self.trusted_proxies))
        if not isinstance(self.endpoint, str) or not self.endpoint:
            raise TypeError("endpoint must be a non-empty endpoint description string")
        for name in ("timeout", "session_check_interval", "callback_timeout",
                     "shutdown_grace", "login_window"):
            _check_number(name, getattr(self, name))
        for name in ("max_recv_calls_per_request", "max_threads", "login_attempts",
                     "max_sessions_per_user", "max_sessions"):
            _check_number(name, getattr(self, name), integer=True)
        _check_number("max_queued_requests", self.max_queued_requests, integer=True, zero=True)
        for name in ("session_idle_timeout", "session_max_age", "queue_timeout"):
            _check_number(name, getattr(self, name), optional=True)
        for name in ("access_log", "metrics_endpoint"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty str or None, "
                                f"not {type(value).__name__}")
        if self.metrics_endpoint is not None and not metrics_available():
            raise ValueError("metrics_endpoint needs prometheus_client: install "
                             "'serverapi[metrics]'")

    @property
    def max_body_bytes(self) -> int:
        """The largest request body accepted, in bytes."""
        return self.max_recv_calls_per_request * RECV_CHUNK_BYTES

    @property
    def effective_queue_timeout(self) -> float:
        """Seconds a request may wait for a worker before 503: C{queue_timeout}, else
        C{timeout}."""
        return self.timeout if self.queue_timeout is None else self.queue_timeout

    @property
    def request_deadline(self) -> float:
        """Seconds from a request's first byte until its headers and body must have arrived."""
        return 3 * self.timeout

    def startup_warnings(self) -> list[str]:
        """Warnings about this configuration, logged once when the server starts."""
        warnings = []
        mixed = self.credential_store.mixed_credentials_warning()
        if mixed is not None:
            warnings.append(mixed)
        if self.login_cookie_level == "None" and self.tls is None:
            warnings.append(
                "login_cookie_level='None' over plain HTTP: the cookie is sent without a "
                "SameSite attribute (SameSite=None needs Secure), so browsers treat it as Lax; "
                "serve TLS (or a trusted proxy's https) for SameSite=None")
        return warnings
