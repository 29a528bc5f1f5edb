"""The twisted.web resource tree: exact-match routing to /login, /logout and /communicate."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ._config import ServerConfig
from ._credentials import Credentials
from ._dispatch import Dispatcher, Job
from ._internals import client_gone
from ._json import BadJSON, encode, parse_object
from ._logging import describe_exception, loggable_username
from ._origins import OriginPolicy
from ._peer import still_connected
from ._responses import send, send_empty, send_error
from ._sessions import LoginSession, SessionTableFull
from ._store import Maybe, SessionStore, SessionStoreUnavailable, Throttle
from ._throttle import PasswordChecksUnderWay
from ._tls import peer_certificate_subject

COOKIE_NAME = b"sessionToken"
_ACCEPTED_TYPES = frozenset((b"application/json",))
_LOGIN_OK = encode({"message": "Login successful."})
_LOGOUT_OK = encode({"message": "Logout successful."})
RETRY_AFTER_BUSY = b"1"


# What a request waiting for a worker holds instead of its headers (nothing writes to it).
_RELEASED_HEADERS = Headers()


class _Duplicate:
    """Marker: the request carried more than one session cookie."""


DUPLICATE = _Duplicate()


@dataclass(frozen=True, eq=False)
class APIContext:
    """What the endpoints share: configuration, sessions, throttle, the pools and the current
    credentials (which a reload replaces)."""

    config: ServerConfig
    sessions: SessionStore
    throttle: Throttle
    callbacks: Dispatcher
    hashing: Dispatcher
    origins: OriginPolicy
    credentials: Credentials


def session_cookie(request: IRequest) -> str | _Duplicate | None:
    """Return the C{sessionToken} cookie's value, L{DUPLICATE}, or C{None} when absent or empty."""
    headers = request.requestHeaders.getRawHeaders(b"cookie")
    if not headers:
        return None
    found: bytes | None = None
    for header in headers:
        for part in header.split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE_NAME:
                if found is not None:
                    return DUPLICATE
                found = value.strip()
    if not found:
        return None
    return found.decode("latin-1")


def _content_type_allowed(request: IRequest) -> bool:
    """Whether the request's C{Content-Type} is JSON or absent (forms are refused)."""
    values = request.requestHeaders.getRawHeaders(b"content-type")
    if values is None:
        return True
    if len(values) != 1:
        return False
    media = values[0].split(b";", 1)[0].strip().lower()
    return media in _ACCEPTED_TYPES or (media.startswith(b"application/")
                                        and media.endswith(b"+json"))


def peer_host(request: IRequest) -> str:
    """The client's address as text (host only), for throttling and the audit log."""
    address = request.getClientAddress()
    return str(getattr(address, "host", address))


def _cookie_header(token: str, config: ServerConfig, secure: bool, *, expire: bool) -> bytes:
    """The C{Set-Cookie} value that sets (or expires) the session cookie."""
    parts = [f"sessionToken={'' if expire else token}", "Path=/"]
    if expire:
        parts += ["Max-Age=0", "Expires=Thu, 01 Jan 1970 00:00:00 GMT"]
    parts.append("HttpOnly")
    if secure:
        parts.append("Secure")
    level = config.login_cookie_level
    if level != "None" or secure:
        # Browsers drop SameSite=None without Secure, and read a missing SameSite as Lax.
        parts.append(f"SameSite={level}")
    return "; ".join(parts).encode("ascii")


Refusal = tuple[int, str, list[tuple[bytes, bytes]]]


def _refusal(code: int, message: str, origin: bytes | None) -> Refusal:
    """A refusal with the headers it needs: C{Allow} for 405, CORS for an allowed origin."""
    headers = [(b"Allow", b"POST")] if code == 405 else []
    if origin is not None:
        headers += OriginPolicy.cors_headers(origin)
    return code, message, headers


class _Endpoint(Resource):
    """A leaf that accepts only POST with a JSON (or unlabelled) body from its own origin."""

    isLeaf = True
    checks_token_early = False

    def __init__(self, context: APIContext) -> None:
        super().__init__()
        self._context = context

    def render(self, request: IRequest) -> Any:
        """Answer preflights, refuse what the contract refuses (405, 403, 415), else handle."""
        origins = self._context.origins
        origin = origins.allow(request)
        method = request.method
        if method == b"OPTIONS" and request.requestHeaders.hasHeader(b"origin"):
            return self._preflight(request, origin)
        refusal = self._refusal(request, method, oversized=False)
        if refusal is None:
            return self.handle(request)
        code, message, _ = refusal
        if code == 405:
            request.setHeader(b"Allow", b"POST")
        send_error(request, code, message)
        return NOT_DONE_YET

    def _refusal(self, request: IRequest, method: bytes, *, oversized: bool) -> Refusal | None:
        """The 405, 403, 413 or 415 a request earns from its method and headers, in order."""
        headers = request.requestHeaders
        origins = self._context.origins
        if method != b"POST":
            code, message = 405, "Method not allowed."
        elif origins.refuses(request):
            return _refusal(403, "Cross-origin request refused.", None)
        elif oversized:
            code, message = 413, "Request body too large."
        elif not _content_type_allowed(request):
            code, message = 415, "Content-Type must be application/json."
        else:
            return None
        return _refusal(code, message, origins.allowed_origin(headers))

    def early_refusal(self, request: IRequest, method: bytes, *,
                      oversized: bool) -> Refusal | None:
        """What to answer before reading a large body: the checks above, then the token."""
        refusal = self._refusal(request, method, oversized=oversized)
        if refusal is None and self.checks_token_early:
            token = session_cookie(request)
            # A shared store cannot tell without a round trip (None): the body is read.
            known = isinstance(token, str) and self._context.sessions.registered(token)
            if known is False:
                origin = self._context.origins.allowed_origin(request.requestHeaders)
                return _refusal(401, "Invalid session token.", origin)
        return refusal

    def _preflight(self, request: IRequest, origin: bytes | None) -> Any:
        """A CORS preflight: 204 for an allowed origin, 403 for any other."""
        if origin is None:
            send_error(request, 403, "Cross-origin request refused.")
            return NOT_DONE_YET
        for name, value in self._context.origins.preflight_headers():
            request.responseHeaders.setRawHeaders(name, [value])
        send_empty(request, 204)
        return NOT_DONE_YET

    def handle(self, request: IRequest) -> Any:
        """Answer a well-formed POST."""
        raise NotImplementedError()

    def _after(self, result: Maybe[Any], then: Any, request: IRequest, *args: Any) -> None:
        """Go on with C{then(result, request, *args)}: now, or once the store answers (if the
        client still waits); a store that cannot answer gets the client a 503."""
        if isinstance(result, Deferred):
            result.addCallback(self._resume, then, request, args)
            result.addErrback(self._store_failed, request)
        else:
            then(result, request, *args)

    @staticmethod
    def _resume(result: Any, then: Any, request: IRequest, args: tuple[Any, ...]) -> None:
        """The store answered: go on unless the client left."""
        if not client_gone(request):
            then(result, request, *args)

    def _store_failed(self, failure: Failure, request: IRequest) -> None:
        """The store could not answer (503), or what followed its answer failed (500)."""
        if client_gone(request) or getattr(request, "finished", False):
            return
        if failure.check(SessionStoreUnavailable):
            request.setHeader(b"Retry-After", RETRY_AFTER_BUSY)
            send_error(request, 503, "Session store unavailable. Try again later.")
            return
        send_error(request, 500, "Internal server error.", close=True)
        self._context.config.log.error("Answering a request failed",
                                       exc_info=(failure.type, failure.value,
                                                 failure.getTracebackObject()))

    def _expire_cookie(self, request: IRequest) -> None:
        """Tell the client to drop its session cookie."""
        config = self._context.config
        request.responseHeaders.addRawHeader(
            b"Set-Cookie", _cookie_header("", config, request.isSecure(), expire=True))


class LoginResource(_Endpoint):
    """C{POST /login}: check credentials and start a session."""

    def __init__(self, context: APIContext) -> None:
        super().__init__(context)
        self.checks_under_way = PasswordChecksUnderWay(context.config.login_attempts)

    def handle(self, request: IRequest) -> Any:
        """Validate the body, apply the throttle, then check the password (off-thread if hashed)."""
        context = self._context
        try:
            body = parse_object(request.content.read())
        except BadJSON as error:
            send_error(request, 400, str(error), close=True)
            return NOT_DONE_YET
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            send_error(request, 400, "Fields 'username' and 'password' must be strings.",
                       close=True)
            return NOT_DONE_YET
        peer = peer_host(request)
        self._after(context.throttle.retry_after(username, peer), self._throttle_checked,
                    request, username, password, peer)
        return NOT_DONE_YET

    def _throttle_checked(self, wait: float, request: IRequest, username: str, password: str,
                          peer: str) -> None:
        """Refuse a throttled attempt (429); else end the presented session and go on."""
        context = self._context
        if wait > 0:
            request.setHeader(b"Retry-After", b"%d" % max(1, math.ceil(wait)))
            send_error(request, 429, "Too many failed logins. Try again later.", close=True)
            context.config.log.audit("login_throttled", "Login throttled: user=%s peer=%s",
                                     loggable_username(username), peer, user=username,
                                     peer=peer, level=logging.WARNING)
            return
        self._after(self._end_presented_session(request), self._check_password, request,
                    username, password, peer)

    def _check_password(self, _: object, request: IRequest, username: str, password: str,
                        peer: str) -> None:
        """Check the password: here if it is cheap, else in the hash pool."""
        context = self._context
        store = context.credentials.store
        if not store.is_slow(username):
            self._finish(request, username, peer, store.verify(username, password))
            return
        if context.hashing.full():
            request.setHeader(b"Retry-After", RETRY_AFTER_BUSY)
            send_error(request, 503, "Server busy. Try again later.", close=True)
            return
        if not self.checks_under_way.start(username, peer):
            request.setHeader(b"Retry-After", RETRY_AFTER_BUSY)
            send_error(request, 429, "Too many logins at once. Try again later.", close=True)
            return
        context.hashing.run(_PasswordCheck(self, request, username, password, peer))

    def _end_presented_session(self, request: IRequest) -> Maybe[object]:
        """A login ends the session whose cookie it carries: tokens are never reused."""
        token = session_cookie(request)
        if not isinstance(token, str):
            return None
        found = self._context.sessions.find(token)
        if isinstance(found, Deferred):
            return found.addCallback(self._replace)
        return self._replace(found)

    def _replace(self, old: LoginSession | None) -> Maybe[object]:
        """End the session a new login replaces."""
        if old is None:
            return None
        return self._context.sessions.end(old, "replaced by a new login")

    def _hashed_result(self, request: IRequest, username: str, peer: str, ok: bool,
                       value: Any) -> None:
        """Finish a login whose hash was checked in a worker."""
        if not ok:
            send_error(request, 500, "Internal server error.", close=True)
            self._context.config.log.error("Password check failed", exc_info=value)
            return
        # Checked against the store current when it began: the user must still be configured.
        verified = bool(value) and self._context.credentials.store.knows(username)
        self._finish(request, username, peer, verified)

    def _finish(self, request: IRequest, username: str, peer: str, verified: bool) -> None:
        """Count a failure and answer 401, or start a session."""
        context = self._context
        if not verified:
            self._after(context.throttle.failed(username, peer), self._refuse, request,
                        username, peer)
            return
        try:
            created = context.sessions.create(
                username, peer, peer_certificate_subject(request) if request.isSecure() else None)
        except SessionTableFull:
            self._table_full(request, username, peer)
            return
        if isinstance(created, Deferred):
            created.addErrback(self._full_store, request, username, peer)
        self._after(created, self._logged_in, request, username, peer)

    def _refuse(self, _: object, request: IRequest, username: str, peer: str) -> None:
        """Answer 401 (the failure is counted); log once the answer is written."""
        send_error(request, 401, "Invalid credentials.", close=True)
        self._context.config.log.audit(
            "login_failed", "Login failed: user=%s peer=%s", loggable_username(username), peer,
            user=username, peer=peer, reason="invalid credentials", level=logging.WARNING)

    def _full_store(self, failure: Failure, request: IRequest, username: str,
                    peer: str) -> Failure | None:
        """A shared store at C{max_sessions}: answered here, as in memory."""
        if not failure.check(SessionTableFull):
            return failure
        if not client_gone(request):
            self._table_full(request, username, peer)
        return None

    def _table_full(self, request: IRequest, username: str, peer: str) -> None:
        """Answer 503: no room for another session."""
        send_error(request, 503, "Too many sessions. Try again later.", close=True)
        self._context.config.log.audit(
            "login_refused", "Login refused, session table full: user=%s peer=%s",
            loggable_username(username), peer, user=username, peer=peer,
            reason="session table full", level=logging.WARNING)

    def _logged_in(self, session: LoginSession | None, request: IRequest, username: str,
                   peer: str) -> None:
        """Answer 200 with the new session's cookie; log once the answer is written."""
        if session is None:  # the store was full, and that is answered
            return
        context = self._context
        cleared = context.throttle.succeeded(username, peer)
        if isinstance(cleared, Deferred):
            cleared.addErrback(lambda _: None)  # the failures age out of the window anyway
        request.responseHeaders.addRawHeader(
            b"Set-Cookie", _cookie_header(session.session_token, context.config,
                                          request.isSecure(), expire=False))
        send(request, 200, _LOGIN_OK)
        context.config.log.audit("login", "Login: user=%s peer=%s token_sha256=%s",
                                 loggable_username(username), peer,
                                 session.hashed_session_token, user=username, peer=peer,
                                 token_sha256=session.hashed_session_token)


class LogoutResource(_Endpoint):
    """C{POST /logout}: end the session the cookie names."""

    def handle(self, request: IRequest) -> Any:
        """End the session and expire the cookie."""
        token = session_cookie(request)
        if token is None:
            send_error(request, 400, "Session token required.")
            return NOT_DONE_YET
        if token is DUPLICATE:
            send_error(request, 401, "Invalid session token.")
            return NOT_DONE_YET
        self._after(self._context.sessions.find(str(token)), self._end, request)
        return NOT_DONE_YET

    def _end(self, session: LoginSession | None, request: IRequest) -> None:
        """End the session the cookie names (401 if there is none)."""
        if session is None:
            send_error(request, 401, "Invalid session token.")
            return
        self._after(self._context.sessions.end(session, "logout", event="logout"),
                    self._ended, request)

    def _ended(self, _: object, request: IRequest) -> None:
        """The session ended: expire the cookie and say so."""
        self._expire_cookie(request)
        send(request, 200, _LOGOUT_OK)


class CommunicateResource(_Endpoint):
    """C{POST /communicate}: hand a logged-in user's JSON to the request callback."""

    checks_token_early = True

    def handle(self, request: IRequest) -> Any:
        """Authenticate, parse, then run the callback in the pool."""
        token = session_cookie(request)
        if not isinstance(token, str):
            send_error(request, 401, "Invalid session token.")
            return NOT_DONE_YET
        self._after(self._context.sessions.authenticate(token), self._authenticated, request)
        return NOT_DONE_YET

    def _authenticated(self, session: LoginSession | None, request: IRequest) -> None:
        """Parse the body of an authenticated request and hand it to a worker."""
        if session is None:
            send_error(request, 401, "Invalid session token.")
            return
        try:
            data = parse_object(request.content.read())
        except BadJSON as error:
            send_error(request, 400, str(error))
            return
        _release_input(request)
        self._context.callbacks.run(_Exchange(self, request, session, data))

    def _answer(self, request: IRequest, session: LoginSession, ok: bool, value: Any) -> None:
        """Write the callback's answer (or a 500) and apply force_close / force_logout."""
        context = self._context
        if not ok:
            if not client_gone(request):
                send_error(request, 500, "Internal server error.")
            context.config.log.audit(
                "callback_failed", "request_callback failed for user=%s token_sha256=%s",
                loggable_username(session.username), session.hashed_session_token,
                user=session.username, peer=session.peer_address,
                token_sha256=session.hashed_session_token, reason=describe_exception(value),
                level=logging.ERROR, exc_info=value)
            return
        force_close, force_logout, body = value
        if not force_logout:
            if not client_gone(request):
                send(request, 200, body, close=force_close)
            return
        # The answer waits until the session has ended everywhere.
        self._after(context.sessions.end(session, "force_logout by request_callback"),
                    self._logged_out, request, body, force_close)

    def _logged_out(self, _: object, request: IRequest, body: bytes, force_close: bool) -> None:
        """The session the callback logged out has ended: answer, expiring the cookie."""
        if client_gone(request):
            return
        self._expire_cookie(request)
        send(request, 200, body, close=force_close)


def _release_input(request: IRequest) -> None:
    """Let go of what was read (body, request headers) before the request waits for a worker.

    Nothing reads them again, and a request that waits holds fewer objects for the garbage
    collector to track: under load, the collector's work grows with what requests hold while
    they wait.  (Twisted copes with C{content} being C{None} when it cleans up.)
    """
    request.content = None
    request.requestHeaders = _RELEASED_HEADERS


class _Exchange(Job):
    """One /communicate request: its callback runs in a worker, its answer on the reactor."""

    __slots__ = ("resource", "request", "session", "data", "left")

    def __init__(self, resource: CommunicateResource, request: IRequest,
                 session: LoginSession, data: dict[str, Any]) -> None:
        self.resource = resource
        self.request = request
        self.session = session
        self.data = data
        #: Whether its socket said the client left (so the connection is closed if dropped).
        self.left = False

    def run(self) -> tuple[bool, bool, bytes] | None:
        """The callback's encoded answer; C{None}, without calling it, if the session ended
        (a logout, an invalidation, the user removed) while the request waited for a worker."""
        session = self.session
        if not session.is_valid():
            return None
        return _call_and_encode(self.resource._context.config.request_callback,
                                session.username, session.session_token, self.data)

    def wanted(self) -> bool:
        """Whether the client still waits: a job whose client left is never run.

        The reactor does not read a connection that is held or whose send buffer is full, so it
        cannot have seen that client leave: its socket is asked instead (once: a client that
        left stays gone).
        """
        request = self.request
        if self.left or client_gone(request):
            return False
        if not self._unread() or still_connected(getattr(request.channel, "transport", None)):
            return True
        self.left = True
        return False

    def _unread(self) -> bool:
        """Whether the reactor has stopped reading this request's connection: it is held
        (L{APIChannel.hold_reading}), or its client is not reading its answers
        (L{APIChannel.pauseProducing}).  A channel that is not serverapi's (a test driving the
        resource tree directly) is never either."""
        channel = getattr(self.request, "channel", None)
        return getattr(channel, "reading_held", False) or getattr(channel, "send_buffer_full",
                                                                  False)

    def finished(self, ok: bool, value: Any) -> None:
        if ok and value is None:
            if not client_gone(self.request):
                send_error(self.request, 401, "Invalid session token.")
            return
        self.resource._answer(self.request, self.session, ok, value)

    def expired(self) -> None:
        if not client_gone(self.request):
            send_error(self.request, 503, "Request timed out.", close=True)

    def overloaded(self) -> None:
        """Waited too long for a worker: 503 with Retry-After; the connection stays open."""
        request = self.request
        if not client_gone(request):
            request.setHeader(b"Retry-After", RETRY_AFTER_BUSY)
            send_error(request, 503, "Server busy. Try again later.")

    def dropped(self) -> None:
        """The pool will not run it.  An unread connection whose client left is closed here:
        nothing else would see the client go, answer it or time it out."""
        super().dropped()
        request = self.request
        if self.left and not client_gone(request):
            transport = getattr(getattr(request, "channel", None), "transport", None)
            if transport is not None:
                transport.abortConnection()

    def hold(self) -> None:
        """Many requests wait: read nothing more from this connection until it is answered.

        (C{HTTPChannel} resumes reading by itself once the response is written.)  A channel
        that is not serverapi's (a test driving the resource tree directly) cannot be held: it
        goes on reading, as Twisted's own does.
        """
        channel = getattr(self.request, "channel", None)
        hold_reading = getattr(channel, "hold_reading", None)
        if hold_reading is not None and channel.transport is not None:
            hold_reading()


class _PasswordCheck(Job):
    """One /login whose password hash is checked in a worker."""

    __slots__ = ("resource", "request", "username", "password", "peer", "under_way")

    def __init__(self, resource: LoginResource, request: IRequest, username: str,
                 password: str, peer: str) -> None:
        self.resource = resource
        self.request = request
        self.username = username
        self.password = password
        self.peer = peer
        self.under_way = True

    def _over(self) -> None:
        """The check is over, one way or another: the pair and address may start another."""
        if self.under_way:
            self.under_way = False
            self.resource.checks_under_way.end(self.username, self.peer)

    def run(self) -> bool:
        return self.resource._context.credentials.store.verify(self.username, self.password)

    def wanted(self) -> bool:
        """Whether the client still waits: no hash is derived for a client that left."""
        return not client_gone(self.request)

    def finished(self, ok: bool, value: Any) -> None:
        try:
            if not client_gone(self.request):  # (a local throttle counts a failure here)
                self.resource._hashed_result(self.request, self.username, self.peer, ok, value)
        finally:
            self._over()

    def expired(self) -> None:
        self._over()
        if not client_gone(self.request):
            send_error(self.request, 503, "Login timed out.", close=True)

    def overloaded(self) -> None:
        """Waited too long for a hash worker: 503 with Retry-After."""
        self._over()
        if not client_gone(self.request):
            self.request.setHeader(b"Retry-After", RETRY_AFTER_BUSY)
            send_error(self.request, 503, "Server busy. Try again later.", close=True)

    def dropped(self) -> None:
        """The pool will not run it (its client left, the server stops)."""
        try:
            super().dropped()
        finally:
            self._over()


def _call_and_encode(callback: Any, username: str, token: str,
                     data: dict[str, Any]) -> tuple[bool, bool, bytes]:
    """In a worker: run the callback and check and encode what it returned."""
    result = callback(username, token, data)
    if not isinstance(result, tuple) or len(result) not in (2, 3):
        raise TypeError(
            "request_callback must return (force_close, force_logout, response_json) or "
            f"(force_close, response_json); it returned {type(result).__name__}")
    if len(result) == 2:
        force_close, response = result
        force_logout = False
    else:
        force_close, force_logout, response = result
    if not isinstance(force_close, bool) or not isinstance(force_logout, bool):
        raise TypeError("request_callback's force_close and force_logout must be bools")
    if not isinstance(response, dict):
        raise TypeError(
            f"request_callback's response_json must be a dict, not {type(response).__name__}")
    return force_close, force_logout, encode(response)


class NotFoundResource(Resource):
    """Any path that is not exactly one of the three endpoints."""

    isLeaf = True

    def __init__(self, origins: OriginPolicy) -> None:
        super().__init__()
        self._origins = origins

    def render(self, request: IRequest) -> Any:
        """Answer 404 in JSON (readable by an allowed origin)."""
        self._origins.allow(request)
        send_error(request, 404, "Not found.")
        return NOT_DONE_YET


class RootResource(Resource):
    """Routes on the exact, undecoded request path; nothing else reaches an endpoint.

    Every other path is 404, or, with C{others}, goes to that resource tree by Twisted's usual
    traversal (a web page, static files): one site, one origin, serverapi's HTTP limits for
    all, and the API's own rules on its three paths.
    """

    def __init__(self, context: APIContext, others: IResource | None = None) -> None:
        super().__init__()
        self.routes: dict[bytes, _Endpoint] = {
            b"/login": LoginResource(context),
            b"/logout": LogoutResource(context),
            b"/communicate": CommunicateResource(context),
        }
        self.others = others
        self._not_found = NotFoundResource(context.origins)

    def is_api(self, target: bytes) -> bool:
        """Whether a request target (query string and all) is one of the API's paths, or a
        path no other resource serves."""
        return self.others is None or target.split(b"?", 1)[0] in self.routes

    def getChildWithDefault(self, path: bytes, request: IRequest) -> Any:
        """The endpoint for the whole path; other paths traverse C{others} from its root."""
        endpoint = self.routes.get(request.path)
        if endpoint is not None or self.others is None:
            return self.route(request.path)
        if self.others.isLeaf:
            return self.others
        return self.others.getChildWithDefault(path, request)

    def route(self, path: bytes) -> Resource:
        """The endpoint for exactly C{path} (no query string), or the 404 resource."""
        return self.routes.get(path, self._not_found)

    def render(self, request: IRequest) -> Any:
        """Unreachable in practice (traversal always picks a child); answer 404."""
        return self._not_found.render(request)

    def early_refusal(self, request: IRequest, method: bytes, target: bytes, *,
                      oversized: bool) -> Refusal | None:
        """What a request earns from its request line and headers alone, else C{None}."""
        endpoint = self.routes.get(target.split(b"?", 1)[0])
        if endpoint is not None:
            return endpoint.early_refusal(request, method, oversized=oversized)
        if self.others is None:
            return 404, "Not found.", []
        return (413, "Request body too large.", []) if oversized else None
