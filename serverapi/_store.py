"""What the endpoints need from a session store and a login throttle, whichever is configured.

The in-memory ones answer at once; the shared (Redis) ones answer with Deferreds.  A method's
result is therefore a value or a Deferred of it (L{Maybe}), and the endpoints go on at once
when it is a value: the default store's hot path gains no Deferred.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, Union

from twisted.internet.defer import Deferred

from ._sessions import LoginSession

T = TypeVar("T")
Maybe = Union[T, Deferred[T]]


def end_invalidated(store: SessionStore, session: LoginSession, log: Any) -> None:
    """End a session whose C{invalidate()} was called, in a store that answers with Deferreds
    (run on the reactor thread); a store that cannot is logged, once."""
    ended: Deferred[bool] = store.end(session, "invalidated")  # type: ignore[assignment]
    ended.addErrback(lambda failure: log.error(
        "Could not end an invalidated session token_sha256=%s: %s",
        session.hashed_session_token, " ".join(failure.getErrorMessage().split())))


class SessionStoreUnavailable(Exception):
    """The session store could not answer (unreachable, too slow, or it refused)."""


class SessionStore(Protocol):
    """Where sessions live: in this process (L{SessionRegistry}) or shared (L{RedisStore})."""

    #: Whether sessions outlive this process (a stop keeps them).
    shared: bool

    def create(self, username: str, peer_address: str | None = None,
               client_certificate_subject: str | None = None) -> Maybe[LoginSession]:
        """Start a session; L{SessionTableFull} when the store is full."""

    def find(self, token: str) -> Maybe[LoginSession | None]:
        """The live session a token names, after expiry and the validity callback."""

    def authenticate(self, token: str) -> Maybe[LoginSession | None]:
        """L{find}, recording activity on the session."""

    def registered(self, token: str) -> bool | None:
        """Whether a token names a session, without asking a server (C{None}: cannot tell)."""

    def end(self, session: LoginSession, reason: str, *,
            event: str = "session_ended") -> Maybe[bool]:
        """End a session; whether it was still there."""

    def end_user(self, username: str, reason: str = ...) -> Maybe[int]:
        """End every session of a user; how many."""

    def snapshot(self) -> Maybe[list[LoginSession]]:
        """Every live session, oldest first."""

    def live_count(self) -> int:
        """How many sessions are live (as last known)."""

    def reachable(self) -> bool:
        """Whether the store can answer now."""

    def stop(self) -> Any:
        """The server stops (in memory every session ends; a shared store keeps them)."""


class Throttle(Protocol):
    """Failed-login counts: L{LoginThrottle} in memory, L{RedisThrottle} shared."""

    def retry_after(self, username: str, address: str) -> Maybe[float]:
        """Seconds the attempt must wait (0 to go ahead)."""

    def failed(self, username: str, address: str) -> Maybe[Any]:
        """Record a failed login."""

    def succeeded(self, username: str, address: str) -> Maybe[Any]:
        """Record a successful login."""
