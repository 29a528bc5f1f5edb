"""The one immutable, validated configuration object both front doors build the server from."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._credentials import check_credentials
from ._logging import SafeLogger
from ._origins import parse_cors_origins
from ._passwords import CredentialStore
from ._proxies import parse_trusted_proxies
from ._store_address import DEFAULT_PREFIX, StoreAddress, check_prefix, parse_store_url

if TYPE_CHECKING:
    from ._sessions import LoginSession
    from ._tls import TLSFiles

RequestCallback = Callable[[str, str, dict[str, Any]], tuple[Any, ...]]
ValidityCallback = Callable[["LoginSession"], bool]

COOKIE_LEVELS = ("None", "Lax", "Strict")
RECV_CHUNK_BYTES = 4096
DEFAULT_ENDPOINT = "tcp:8000:interface=127.0.0.1"


def _number(default: float | None, kind: type, help: str, *, flag: str | None = None,
            zero: bool = False, keyword: bool = True) -> Any:
    """A numeric option, defined once: its default, its type and its daemon flag and help.

    C{ThreadedAPIServer} takes it by keyword (unless it is one of the seed's positional ones)
    and C{twistd serverapi} as C{--flag}; both read everything from here.
    """
    return field(default=default, metadata={"kind": kind, "help": help, "flag": flag,
                                            "zero": zero, "keyword": keyword})


def _keyword(default: Any) -> Any:
    """A keyword option of C{ThreadedAPIServer} that is not a number (its own daemon flag)."""
    return field(default=default, metadata={"keyword": True})


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


def redis_available() -> bool:
    """Whether the optional C{txredisapi} (the C{serverapi[redis]} extra) is installed."""
    try:
        return importlib.util.find_spec("txredisapi") is not None
    except (ImportError, ValueError):
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
    timeout: float = _number(5.0, float, "Seconds a connection may stay silent; a request "
                                         "must arrive within 3x this.", keyword=False)
    max_recv_calls_per_request: int = _number(1024, int, "Body cap in units of 4096 bytes "
                                                         "(1024 = 4 MiB).",
                                              flag="max-recv-calls", keyword=False)
    endpoint: str = DEFAULT_ENDPOINT
    tls: TLSFiles | None = None
    session_check_interval: float = _number(1.0, float, "Seconds between session validity "
                                                        "sweeps.")
    callback_timeout: float = _number(30.0, float, "Seconds a callback may run before the "
                                                   "client gets 503.")
    max_threads: int = _number(10, int, "Callback worker threads.")
    max_queued_requests: int = _number(100, int, "Callbacks waiting for a worker before "
                                                 "connections are read no further "
                                                 "(backpressure).", zero=True)
    shutdown_grace: float = _number(10.0, float, "Seconds a stop waits for running callbacks.")
    login_attempts: int = _number(5, int, "Failed logins per (username, address) within the "
                                          "window before 429.")
    login_window: float = _number(60.0, float, "Seconds of the failed-login window.")
    max_sessions_per_user: int = _number(64, int, "Sessions per user; the oldest ends beyond "
                                                  "this.")
    max_sessions: int = _number(100_000, int, "Sessions in all; logins beyond this get 503.")
    session_idle_timeout: float | None = _number(None, float, "End sessions idle this many "
                                                              "seconds (default: never).")
    session_max_age: float | None = _number(None, float, "End sessions this many seconds old "
                                                         "(default: never).")
    queue_timeout: float | None = _number(None, float, "Seconds a request may wait for a "
                                                       "worker before 503 (default: "
                                                       "--timeout).")
    cors_origins: Sequence[str] = _keyword(())
    trusted_proxies: Sequence[str] = _keyword(())
    access_log: str | None = _keyword(None)
    metrics_endpoint: str | None = _keyword(None)
    session_store: str | None = _keyword(None)
    session_store_prefix: str = _keyword(DEFAULT_PREFIX)
    # The store of C{credentials}, the start-up credentials.  A running server checks logins
    # against its own current store (APIService.credentials), which setCredentials replaces.
    credential_store: CredentialStore = field(init=False, repr=False, compare=False)
    log: SafeLogger = field(init=False, repr=False, compare=False)
    # Where the shared session store is (from session_store), or None for memory.
    session_store_address: StoreAddress | None = field(init=False, repr=False, compare=False)

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
        for option in NUMBERS:
            meta = option.metadata
            _check_number(option.name, getattr(self, option.name), integer=meta["kind"] is int,
                          optional=option.default is None, zero=meta["zero"])
        for name in ("access_log", "metrics_endpoint"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"{name} must be a non-empty str or None, "
                                f"not {type(value).__name__}")
        if self.metrics_endpoint is not None and not metrics_available():
            raise ValueError("metrics_endpoint needs prometheus_client: install "
                             "'serverapi[metrics]'")
        address = None if self.session_store is None else parse_store_url(self.session_store)
        object.__setattr__(self, "session_store_address", address)
        check_prefix(self.session_store_prefix)
        if address is not None and not redis_available():
            raise ValueError("session_store needs txredisapi: install 'serverapi[redis]'")

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


NUMBERS: tuple[Field[Any], ...] = tuple(option for option in fields(ServerConfig)
                                        if "kind" in option.metadata)
KEYWORD_OPTIONS: tuple[str, ...] = tuple(option.name for option in fields(ServerConfig)
                                         if option.metadata.get("keyword"))
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {option.name: option.default for option in fields(ServerConfig) if option.init
     and option.default is not MISSING})


def daemon_flag(option: Field[Any]) -> str:
    """The C{twistd serverapi} option name of a numeric option (without the dashes)."""
    return str(option.metadata["flag"] or option.name.replace("_", "-"))
