"""The session side of a server, chosen by its configuration: store, login throttle, sweep, and
how a replacement of the credentials ends the sessions of removed users."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import gatherResults

from ._config import ServerConfig
from ._credentials import Credentials
from ._logging import loggable_username
from ._passwords import CredentialStore
from ._redis_store import LeasedSweeper, RedisStore, RedisThrottle
from ._sessions import SessionRegistry
from ._store import Maybe, SessionStore, Throttle
from ._sweep import SessionSweeper
from ._throttle import LoginThrottle
from ._timing import TimedSweeper

_REMOVED_USER = "user removed from the credentials"
_NAMED_REMOVALS = 10  # removed usernames named in the log line


class NoSweep:
    """The sweep of a process that does not own the sessions (a worker: the main one sweeps)."""

    def start(self) -> None:
        """Nothing to sweep here."""

    def stop(self) -> None:
        """Nothing to stop."""


@dataclass(frozen=True, slots=True)
class SessionParts:
    """Where sessions live, who counts failed logins, and what sweeps the sessions."""

    sessions: SessionStore
    throttle: Throttle
    sweeper: SessionSweeper | LeasedSweeper | NoSweep

    @classmethod
    def for_config(cls, config: ServerConfig, reactor: Any, *,
                   sweep_histogram: Any = None) -> SessionParts:
        """In memory, or in the shared store the configuration names."""
        if config.session_store_address is None:
            registry = SessionRegistry(
                now=reactor.seconds, logger=config.log,
                validity_callback=config.session_validity_callback,
                max_sessions=config.max_sessions,
                max_sessions_per_user=config.max_sessions_per_user,
                idle_timeout=config.session_idle_timeout, max_age=config.session_max_age)
            sweeping = (registry, reactor, config.session_check_interval, config.log)
            return cls(registry,
                       LoginThrottle(now=reactor.seconds, attempts=config.login_attempts,
                                     window=config.login_window),
                       SessionSweeper(*sweeping) if sweep_histogram is None else
                       TimedSweeper(*sweeping, histogram=sweep_histogram))
        store = RedisStore(config, reactor)
        return cls(store,
                   RedisThrottle(store, attempts=config.login_attempts,
                                 window=config.login_window),
                   LeasedSweeper(store, reactor, config.session_check_interval, config.log,
                                 histogram=sweep_histogram))


def replace_credentials(config: ServerConfig, credentials: Credentials, sessions: SessionStore,
                        store: CredentialStore) -> Maybe[int]:
    """Make C{store} the current credentials, end every session of a user no longer in them,
    and log it; how many sessions ended (a Deferred of it with a shared store)."""
    removed = sorted(credentials.replace(store))
    endings = [sessions.end_user(username, _REMOVED_USER) for username in removed]
    if sessions.shared:
        return gatherResults(endings).addCallback(
            lambda counts: _replaced(config, store, removed, sum(counts)))
    return _replaced(config, store, removed, sum(endings))  # type: ignore[arg-type]


def _replaced(config: ServerConfig, store: CredentialStore, removed: list[str],
              ended: int) -> int:
    """Log a replacement of the credentials; return how many sessions it ended."""
    named = ", ".join(map(loggable_username, removed[:_NAMED_REMOVALS]))
    if len(removed) > _NAMED_REMOVALS:
        named += ", …"
    log = config.log
    log.audit("credentials_replaced", "Credentials replaced: %d user(s), %d removed%s, "
              "%d session(s) ended", len(store.usernames), len(removed),
              f" ({named})" if named else "", ended)
    warning = store.mixed_credentials_warning()
    if warning is not None:
        log.warning("%s", warning)
    return ended
