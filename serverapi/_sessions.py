"""LoginSession and the in-memory session registry (the default session store): who is logged
in, with no reactor and no threads."""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
from collections.abc import Callable, Iterable
from typing import Optional

from ._logging import SafeLogger, as_safe_logger, describe_exception

TOKEN_BYTES = 32  # 256 random bits, well above the 128 the contract asks for


def hash_token(token: str) -> str:
    """Return the SHA-256 hex digest of a session token: what the registry keys and logs."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SessionTableFull(Exception):
    """Raised when a login would take the registry past C{max_sessions}."""


class LoginSession:
    """One logged-in user's session: who, since when, from where, and whether it still holds."""

    __slots__ = ("username", "session_token", "hashed_session_token", "created_at",
                 "last_active_at", "peer_address", "client_certificate_subject", "_valid",
                 "_on_invalidate")

    def __init__(self, username: str, session_token: str, created_at: float,
                 peer_address: str | None = None,
                 client_certificate_subject: str | None = None) -> None:
        self.username = username
        self.session_token = session_token
        self.hashed_session_token = hash_token(session_token)
        self.created_at = created_at
        self.last_active_at = created_at
        self.peer_address = peer_address
        self.client_certificate_subject = client_certificate_subject
        self._valid = True
        self._on_invalidate: Callable[[LoginSession], object] | None = None

    @classmethod
    def restored(cls, username: str, hashed_session_token: str, created_at: float,
                 last_active_at: float, peer_address: str | None,
                 client_certificate_subject: str | None, *, session_token: str | None = None,
                 on_invalidate: Callable[[LoginSession], object] | None = None
                 ) -> LoginSession:
        """A session read back from a shared store, which keeps only the token's hash: the raw
        token is known only when a request presented it (else C{None}).  C{on_invalidate} is
        told when L{invalidate} is called, so the store can end the session everywhere."""
        session = cls.__new__(cls)
        session.username = username
        session.session_token = session_token  # type: ignore[assignment]
        session.hashed_session_token = hashed_session_token
        session.created_at = created_at
        session.last_active_at = last_active_at
        session.peer_address = peer_address
        session.client_certificate_subject = client_certificate_subject
        session._valid = True
        session._on_invalidate = on_invalidate
        return session

    def get_username(self) -> str:
        """Return the username this session belongs to."""
        return self.username

    def get_session_token(self) -> str:
        """Return the raw session token (a secret: never log it).

        With a shared session store, a session listed by C{getSessions()} or checked by the
        periodic sweep has no raw token (the store keeps only its hash) and this is C{None}.
        """
        return self.session_token

    def get_hashed_session_token(self) -> str:
        """Return the SHA-256 hex digest of the token, safe to log."""
        return self.hashed_session_token

    def invalidate(self) -> None:
        """Mark the session ended; the server forgets it before its next use (any thread)."""
        self._valid = False
        hook, self._on_invalidate = self._on_invalidate, None
        if hook is not None:
            hook(self)

    def is_valid(self) -> bool:
        """Tell whether the session has not been invalidated."""
        return self._valid

    def __repr__(self) -> str:
        return (f"<LoginSession username={self.username!r} "
                f"token_sha256={self.hashed_session_token[:16]}… valid={self._valid}>")


def audit_session_ended(log: SafeLogger, session: LoginSession, reason: str, *,
                        event: str = "session_ended") -> None:
    """The audit line of a session that ended (C{event} C{"logout"} for a logout)."""
    key = session.hashed_session_token
    log.audit(event, "Session ended (%s): user=%r peer=%s token_sha256=%s", reason,
              session.username, session.peer_address, key, user=session.username,
              peer=session.peer_address, token_sha256=key, reason=reason)


def validity_holds(callback: Callable[[LoginSession], bool], session: LoginSession,
                   log: SafeLogger) -> bool:
    """Ask the validity callback about C{session}: whether it keeps the session.

    Any failure of the callback (whatever it raises, or a result whose truth value raises)
    is logged with its traceback and counts as a rejection of this session only.
    """
    try:
        keep = bool(callback(session))
    except BaseException:  # even SystemExit or a result whose truth raises ends one session
        log.audit("validity_callback_failed",
                  "session_validity_callback raised; ending session token_sha256=%s",
                  session.hashed_session_token, user=session.username,
                  peer=session.peer_address, token_sha256=session.hashed_session_token,
                  reason=describe_exception(sys.exc_info()[1]), level=logging.ERROR,
                  exc_info=True)
        keep = False
    return keep and session._valid


class SessionRegistry:
    """The table of live sessions, keyed by hashed token; every method runs on one thread.

    This is the default session store: everything it does is synchronous, so the endpoints'
    hot path gains no Deferred.  (The shared store, L{serverapi._redis_store.RedisStore},
    answers the same methods with Deferreds.)
    """

    shared = False

    def __init__(self, *, now: Callable[[], float], logger: logging.Logger | SafeLogger,
                 validity_callback: Optional[Callable[[LoginSession], bool]] = None,
                 max_sessions: int = 100_000, max_sessions_per_user: int = 64,
                 idle_timeout: float | None = None, max_age: float | None = None) -> None:
        self._now = now
        self._log = as_safe_logger(logger)
        self._validity_callback = validity_callback
        self._max_sessions = max_sessions
        self._max_per_user = max_sessions_per_user
        self._idle_timeout = idle_timeout
        self._max_age = max_age
        self._by_hash: dict[str, LoginSession] = {}
        self._by_user: dict[str, dict[str, LoginSession]] = {}
        # Told the hashed token of every session that ends (the main process of worker
        # processes tells the workers that cache sessions).
        self.on_end: Callable[[str], object] | None = None

    def __len__(self) -> int:
        return len(self._by_hash)

    def create(self, username: str, peer_address: str | None = None,
               client_certificate_subject: str | None = None) -> LoginSession:
        """Start a session with a fresh token, ending the user's oldest one past the cap."""
        mine = self._by_user.get(username)
        at_user_cap = mine is not None and len(mine) >= self._max_per_user
        if not at_user_cap and len(self._by_hash) >= self._max_sessions:
            raise SessionTableFull()
        session = LoginSession(username, secrets.token_urlsafe(TOKEN_BYTES), self._now(),
                               peer_address, client_certificate_subject)
        if mine is None:
            mine = self._by_user[username] = {}
        while len(mine) >= self._max_per_user:
            oldest = next(iter(mine.values()))
            self.end(oldest, "evicted: too many sessions for this user")
        mine[session.hashed_session_token] = session
        self._by_hash[session.hashed_session_token] = session
        return session

    def end(self, session: LoginSession, reason: str, *, event: str = "session_ended") -> bool:
        """Forget C{session}; return whether it was still registered.

        The audit event is C{event} (C{"logout"} for a logout) with C{reason} as its reason.
        """
        session._on_invalidate = None  # ending it here is all an invalidate() hook would do
        session.invalidate()
        key = session.hashed_session_token
        if self._by_hash.pop(key, None) is None:
            return False
        mine = self._by_user.get(session.username)
        if mine is not None:
            mine.pop(key, None)
            if not mine:
                del self._by_user[session.username]
        audit_session_ended(self._log, session, reason, event=event)
        if self.on_end is not None:
            self.on_end(key)
        return True

    def find(self, token: str) -> LoginSession | None:
        """Return the live session for a presented token, ending it first if it no longer holds."""
        session = self._by_hash.get(hash_token(token))
        if session is None or not self.check(session):
            return None
        return session

    def with_hash(self, hashed: str) -> LoginSession | None:
        """The registered session whose token has this hash (no checks run)."""
        return self._by_hash.get(hashed)

    def authenticate(self, token: str) -> LoginSession | None:
        """L{find}, recording activity on the session found."""
        session = self.find(token)
        if session is not None:
            self.touch(session)
        return session

    def touch(self, session: LoginSession) -> None:
        """Record activity on C{session} now."""
        session.last_active_at = self._now()

    def registered(self, token: str) -> bool | None:
        """Whether a presented token names a live session (no checks run, nothing ends); a
        store that cannot tell without asking a server says C{None}."""
        session = self._by_hash.get(hash_token(token))
        return session is not None and session._valid

    def reachable(self) -> bool:
        """Whether the store can answer: always, in memory."""
        return True

    def live_count(self) -> int:
        """How many sessions are live."""
        return len(self._by_hash)

    def check(self, session: LoginSession) -> bool:
        """Apply invalidation, expiry and the validity callback; end the session if it fails
        (see L{validity_holds})."""
        if not session._valid:
            self.end(session, "invalidated")
            return False
        if self._idle_timeout is not None or self._max_age is not None:
            now = self._now()
            idle = now - session.last_active_at
            if self._idle_timeout is not None and idle >= self._idle_timeout:
                self.end(session, "expired: idle")
                return False
            if self._max_age is not None and now - session.created_at >= self._max_age:
                self.end(session, "expired: maximum age")
                return False
        callback = self._validity_callback
        if callback is None or validity_holds(callback, session, self._log):
            return True
        self.end(session, "rejected by session_validity_callback")
        return False

    def sweep(self, sessions: Iterable[LoginSession]) -> None:
        """Check each of C{sessions} that is still registered (one chunk of a sweep)."""
        by_hash = self._by_hash
        for session in sessions:
            if by_hash.get(session.hashed_session_token) is session:
                self.check(session)

    def snapshot(self) -> list[LoginSession]:
        """Return the live sessions, oldest first."""
        return list(self._by_hash.values())

    def end_user(self, username: str, reason: str = "all sessions of the user ended") -> int:
        """End every session of C{username} (for C{reason}); return how many there were."""
        sessions = list(self._by_user.get(username, {}).values())
        for session in sessions:
            self.end(session, reason)
        return len(sessions)

    def stop(self) -> None:
        """The server stops: every session ends with it."""
        self.end_all("server stopped")

    def end_all(self, reason: str) -> None:
        """End every session at once (the server is stopping), with one log line for all."""
        sessions = self.snapshot()
        for session in sessions:
            session.invalidate()
        self._by_hash.clear()
        self._by_user.clear()
        if sessions:
            self._log.audit("sessions_ended", "%d session(s) ended: %s", len(sessions), reason,
                            reason=reason)
