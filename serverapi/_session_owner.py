"""The main process's end of a worker's channel: it answers from the sessions it owns.

The sessions live here (in memory, or in the shared store this process connects to), and so
the validity callback runs here, on this process's reactor thread, as the seed promises.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults, maybeDeferred
from twisted.protocols import amp
from twisted.python.failure import Failure

from . import _channel as channel
from ._logging import SafeLogger
from ._sessions import LoginSession, SessionRegistry
from ._store import SessionStore, SessionStoreUnavailable, Throttle

_NOT_FOUND = {"found": False}


def _then(result: Any, function: Callable[[Any], Any]) -> Any:
    """C{function(result)} now, or once the Deferred C{result} fires."""
    if isinstance(result, Deferred):
        return result.addCallback(function)
    return function(result)


def _session_answer(session: LoginSession | None, cache: bool) -> dict[str, Any]:
    """A session as the Authenticate command answers it."""
    if session is None:
        return _NOT_FOUND
    return {"found": True, "cache": cache, "username": session.username,
            "hashed": session.hashed_session_token, "created": session.created_at,
            "active": session.last_active_at, "peer": session.peer_address,
            "subject": session.client_certificate_subject}


def _first_error(failure: Failure) -> Failure:
    """The error of a batch: the store's own (unavailable), passed on as AMP knows it."""
    inner = failure.value.subFailure if failure.check(FirstError) else failure
    if inner.check(SessionStoreUnavailable):
        return inner
    return Failure(SessionStoreUnavailable(inner.getErrorMessage()))


class WorkerEvents:
    """What the supervisor hears about one worker through its channel."""

    def ready(self, pid: int) -> None:
        """The worker serves."""

    def start_failed(self, reason: str) -> None:
        """The worker cannot serve."""

    def channel_lost(self) -> None:
        """The channel closed: the worker is gone or going."""


class SessionOwner(amp.AMP):
    """Answers one worker's questions about sessions and failed logins, and hears how it is."""

    def __init__(self, sessions: SessionStore, throttle: Throttle, log: SafeLogger,
                 events: WorkerEvents, *, knows: Callable[[str], bool], reactor: Any,
                 cache: bool, forgotten: Callable[[], Deferred[None]]) -> None:
        """C{knows}: whether a username is in the current credentials.  C{cache}: whether
        workers may keep the sessions they are told of (see L{ProcessService}); then
        C{forgotten} waits until every worker has dropped the sessions that ended so far."""
        super().__init__()
        self._knows = knows
        self._reactor = reactor
        self._cache = cache
        self._forgotten = forgotten
        self._sessions = sessions
        self._throttle = throttle
        self._log = log
        self._events = events

    @channel.Authenticate.responder
    def authenticate(self, token: str, touch: bool) -> Any:
        """The live session a token names, after expiry and the validity callback."""
        found = self._sessions.authenticate(token) if touch else self._sessions.find(token)
        return _then(found, lambda session: _session_answer(session, self._cache))

    @channel.AuthenticateMany.responder
    def authenticate_many(self, tokens: list[str]) -> Any:
        """Authenticate several tokens, in the order given (as as many Authenticates would)."""
        found = [self._sessions.authenticate(token) for token in tokens]
        if any(isinstance(result, Deferred) for result in found):
            gathered = gatherResults([maybeDeferred(lambda result=result: result)
                                      for result in found], consumeErrors=True)
            return gathered.addCallbacks(self._sessions_answer, _first_error)
        return self._sessions_answer(found)

    def _sessions_answer(self, sessions: list[LoginSession | None]) -> dict[str, Any]:
        """The AuthenticateMany answer."""
        return {"cache": self._cache, "sessions": json.dumps([
            None if session is None else
            [session.username, session.hashed_session_token, session.created_at,
             session.last_active_at, session.peer_address, session.client_certificate_subject]
            for session in sessions])}

    @channel.Create.responder
    def create(self, username: str, peer: str | None, subject: str | None) -> Any:
        """Start a session (for a user still in the credentials: a worker may have checked the
        password just before they were replaced)."""
        if not self._knows(username):
            raise SessionStoreUnavailable("the user was removed during the login")
        return _then(self._sessions.create(username, peer, subject), self._created)

    def _created(self, session: LoginSession) -> dict[str, Any]:
        """Answer with the new session (watching it for invalidate(), when workers cache)."""
        if self._cache:
            session._on_invalidate = self._invalidated
        return {"token": session.session_token, "created": session.created_at,
                "cache": self._cache}

    def _invalidated(self, session: LoginSession) -> None:
        """C{invalidate()} on this process's copy (any thread): end it, which tells the
        workers."""
        self._reactor.callFromThread(self._sessions.end, session, "invalidated")

    @channel.End.responder
    def end(self, username: str, hashed: str, created: float, active: float,
            peer: str | None, subject: str | None, reason: str, event: str) -> Any:
        """End a session a worker ended (logout, force_logout, invalidate())."""
        session: LoginSession | None
        if isinstance(self._sessions, SessionRegistry):
            session = self._sessions.with_hash(hashed)
            if session is None or session.username != username:
                return {"ended": False}
        else:  # a shared store ends it by its hash
            session = LoginSession.restored(username, hashed, created, active, peer, subject)
        return _then(self._sessions.end(session, reason, event=event), self._ended)

    def _ended(self, ended: bool) -> Any:
        """Answer once every worker has dropped the session (when they cache), so that after
        a logout no worker serves its token."""
        answer = {"ended": bool(ended)}
        if not self._cache:
            return answer
        return self._forgotten().addCallback(lambda _: answer)

    @channel.Touched.responder
    def touched(self, hashes: str, at: float) -> dict[str, Any]:
        """Record the activity a worker saw on sessions it served from its cache."""
        if isinstance(self._sessions, SessionRegistry):
            for hashed in hashes.split(","):
                session = self._sessions.with_hash(hashed)
                if session is not None and session.last_active_at < at:
                    session.last_active_at = at
        return {}

    @channel.RetryAfter.responder
    def retry_after(self, username: str, address: str) -> Any:
        """Seconds a login attempt must wait."""
        return _then(self._throttle.retry_after(username, address),
                     lambda seconds: {"seconds": float(seconds)})

    @channel.LoginFailed.responder
    def login_failed(self, username: str, address: str) -> Any:
        """Count a failed login."""
        return _then(self._throttle.failed(username, address), lambda _: {})

    @channel.LoginSucceeded.responder
    def login_succeeded(self, username: str, address: str) -> Any:
        """Clear a pair's failures."""
        return _then(self._throttle.succeeded(username, address), lambda _: {})

    @channel.Ready.responder
    def ready(self, pid: int) -> dict[str, Any]:
        """The worker serves."""
        self._events.ready(pid)
        return {}

    @channel.StartFailed.responder
    def start_failed(self, reason: str) -> dict[str, Any]:
        """The worker cannot serve."""
        self._events.start_failed(reason)
        return {}

    @channel.Log.responder
    def log(self, level: int, text: str, event: str | None, user: str | None,
            peer: str | None, token_sha256: str | None, reason: str | None) -> dict[str, Any]:
        """Write a worker's log line (or audit event) to the user's logger."""
        if event is None:
            self._log.log(level, "%s", text)
        else:
            self._log.audit(event, "%s", text, user=user, peer=peer, token_sha256=token_sha256,
                            reason=reason, level=level)
        return {}

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """The worker's end closed."""
        super().connectionLost(reason)
        self._events.channel_lost()
