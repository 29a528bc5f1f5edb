"""A worker process's session store and login throttle: questions to the main process.

The main process owns the sessions (in memory, or in the shared store it connects to) and runs
the validity callback; a worker asks it over their local AMP channel.  When the main process
allows it (sessions in its memory, no validity callback, no idle timeout: nothing about a
session can change without the main process knowing), the worker keeps the sessions it learns
of, and serves their requests without asking; the main process tells every worker of every
session that ends, and a logout answers only once every worker has dropped it.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.protocols import amp
from twisted.python.failure import Failure

from . import _channel as channel
from ._logging import SafeLogger
from ._sessions import LoginSession, SessionTableFull, hash_token
from ._store import Maybe, SessionStoreUnavailable, end_invalidated


def _unavailable(failure: Failure) -> Failure:
    """The main process did not answer (the channel is gone): the store is unavailable."""
    if failure.check(SessionTableFull, SessionStoreUnavailable):
        return failure
    return Failure(SessionStoreUnavailable(f"the main process did not answer: "
                                           f"{failure.getErrorMessage()}"))


class RemoteStore:
    """The session store of a worker: every call goes to the main process."""

    shared = True  # the sessions live in the main process and outlive this one

    def __init__(self, main: amp.AMP, reactor: Any, log: SafeLogger, *,
                 max_age: float | None = None) -> None:
        self._main = main
        self._reactor = reactor
        self._log = log
        self._max_age = max_age
        self._cache: dict[str, LoginSession] = {}
        self._touched: set[str] = set()
        # Tokens to authenticate at the end of this reactor turn, with their requests.
        self._batch: list[tuple[str, Deferred[LoginSession | None]]] = []

    def forget(self, hashes: list[str]) -> None:
        """The main process says these sessions ended: drop them."""
        for hashed in hashes:
            session = self._cache.pop(hashed, None)
            if session is not None:
                session._on_invalidate = None
                session._valid = False
            self._touched.discard(hashed)

    def report_activity(self) -> None:
        """Tell the main process which cached sessions were used since the last report."""
        if self._touched and self.reachable():
            hashes, self._touched = ",".join(self._touched), set()
            self._main.callRemote(channel.Touched, hashes=hashes, at=self._reactor.seconds())

    def _keep(self, session: LoginSession, answer: dict[str, Any]) -> LoginSession:
        """Cache C{session} if the main process allows it."""
        if answer.get("cache"):
            self._cache[session.hashed_session_token] = session
        return session

    def _ask(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        """Call C{command} in the main process; a lost channel is L{SessionStoreUnavailable}.

        The answer comes on a Deferred of its own: AMP drops the whole channel when the
        Deferred of a call still holds a failure once the answer is delivered, and a caller's
        failure must cost that caller only.
        """
        if not self.reachable():
            return fail(SessionStoreUnavailable("the channel to the main process is closed"))
        answer: Deferred[Any] = Deferred()
        self._main.callRemote(command, **arguments).addCallbacks(
            answer.callback, lambda failure: answer.errback(_unavailable(failure)))
        return answer

    def connect(self) -> Deferred[None]:
        """The channel is open from the start."""
        return succeed(None)

    def reachable(self) -> bool:
        """Whether the channel to the main process is open (AMP lets go of its transport when
        the connection is lost)."""
        return self._main.transport is not None

    def registered(self, token: str) -> bool | None:
        """Whether a token names a cached session; otherwise unknown without asking the main
        process: C{None} (the endpoints then read the body)."""
        return True if self._cache and hash_token(token) in self._cache else None

    def create(self, username: str, peer_address: str | None = None,
               client_certificate_subject: str | None = None) -> Deferred[LoginSession]:
        """Start a session in the main process."""
        def created(answer: dict[str, Any]) -> LoginSession:
            """The session, with the token the main process made."""
            session = LoginSession(username, answer["token"], answer["created"], peer_address,
                                   client_certificate_subject)
            session._on_invalidate = self._invalidated
            return self._keep(session, answer)

        return self._ask(channel.Create, username=username, peer=peer_address,
                         subject=client_certificate_subject).addCallback(created)

    def _cached(self, token: str, *, touch: bool) -> LoginSession | None:
        """The cached session of C{token} (activity recorded when C{touch}), or C{None}.  One
        past its maximum age (or invalidated) is dropped: the main process decides, and ends
        it."""
        if not self._cache:
            return None
        hashed = hash_token(token)
        cached = self._cache.get(hashed)
        if cached is None:
            return None
        now = self._reactor.seconds()
        expired = self._max_age is not None and now - cached.created_at >= self._max_age
        if cached._valid and not expired:
            if touch:
                cached.last_active_at = now
                self._touched.add(hashed)
            return cached
        del self._cache[hashed]
        return None

    def find(self, token: str, *, touch: bool = False) -> Maybe[LoginSession | None]:
        """The live session a presented token names: from the cache (at once), else as the
        main process judges it."""
        cached = self._cached(token, touch=touch)
        if cached is not None:
            return cached

        def found(answer: dict[str, Any]) -> LoginSession | None:
            """The session, or None."""
            if not answer["found"]:
                return None
            return self._keep(LoginSession.restored(
                answer["username"], answer["hashed"], answer["created"], answer["active"],
                answer["peer"], answer["subject"], session_token=token,
                on_invalidate=self._invalidated), answer)

        return self._ask(channel.Authenticate, token=token, touch=touch).addCallback(found)

    def authenticate(self, token: str) -> Maybe[LoginSession | None]:
        """L{find}, recording activity on the session found.  Tokens not in the cache are
        asked about together: every request of one reactor turn in one message."""
        cached = self._cached(token, touch=True)
        if cached is not None:
            return cached
        waiting: Deferred[LoginSession | None] = Deferred()
        self._batch.append((token, waiting))
        if len(self._batch) == 1:
            self._reactor.callLater(0, self._send_batch)
        return waiting

    def _send_batch(self) -> None:
        """Ask the main process about the tokens gathered in this reactor turn."""
        batch, self._batch = self._batch, []

        def answered(answer: dict[str, Any]) -> None:
            """Hand each request its session (or None)."""
            for (token, waiting), fields in zip(batch, json.loads(answer["sessions"])):
                session = None
                if fields is not None:
                    session = self._keep(LoginSession.restored(
                        *fields, session_token=token, on_invalidate=self._invalidated), answer)
                waiting.callback(session)

        def failed(failure: Failure) -> None:
            """Every request of the batch gets the failure (503)."""
            for _, waiting in batch:
                waiting.errback(failure)

        self._ask(channel.AuthenticateMany, tokens=[token for token, _ in batch]).addCallbacks(
            answered, failed)

    def end(self, session: LoginSession, reason: str, *,
            event: str = "session_ended") -> Deferred[bool]:
        """End C{session} in the main process; whether it was still there."""
        session._on_invalidate = None
        session._valid = False
        self.forget([session.hashed_session_token])
        ended = self._ask(channel.End, username=session.username,
                          hashed=session.hashed_session_token, created=session.created_at,
                          active=session.last_active_at, peer=session.peer_address,
                          subject=session.client_certificate_subject, reason=reason,
                          event=event)
        return ended.addCallback(lambda answer: bool(answer["ended"]))

    def _invalidated(self, session: LoginSession) -> None:
        """C{session.invalidate()} was called (in any thread): end it everywhere."""
        self._reactor.callFromThread(end_invalidated, self, session, self._log)

    def stop(self) -> None:
        """The worker stops; the sessions stay in the main process."""


class RemoteThrottle:
    """The login throttle of a worker: its counts are the main process's, shared by all."""

    def __init__(self, store: RemoteStore) -> None:
        self._store = store

    def retry_after(self, username: str, address: str) -> Deferred[float]:
        """Seconds the attempt must wait (0 to go ahead)."""
        return self._store._ask(channel.RetryAfter, username=username, address=address
                                ).addCallback(lambda answer: float(answer["seconds"]))

    def failed(self, username: str, address: str) -> Deferred[Any]:
        """Count a failed login."""
        return self._store._ask(channel.LoginFailed, username=username, address=address)

    def succeeded(self, username: str, address: str) -> Deferred[Any]:
        """Clear the pair's failures after a successful login."""
        return self._store._ask(channel.LoginSucceeded, username=username, address=address)
