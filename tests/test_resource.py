"""The three endpoints over HTTP, in memory: every row of the contract's HTTP table."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from serverapi import LoginSession

from .helpers import CREDENTIALS, HeldPool, MemoryServer, request_bytes, status_of

STANDARD_HEADERS = {
    b"content-type": [b"application/json; charset=utf-8"],
    b"x-content-type-options": [b"nosniff"],
    b"cache-control": [b"no-store"],
}


_ECHO = object()


class HeadersMixin:
    """Assertions shared by the endpoint tests."""

    def assertStandardHeaders(self: Any, response: Any) -> None:
        for name, value in STANDARD_HEADERS.items():
            self.assertEqual(response.headers.getRawHeaders(name), value, name)
        self.assertIsNone(response.headers.getRawHeaders(b"server"))

    def assertRawCloses(self: Any, server: MemoryServer, raw: bytes, status: int) -> None:
        """Sent as raw bytes on a keep-alive connection, C{raw} gets C{status} and a close."""
        answer, transport = server.raw(raw)
        self.assertEqual(status_of(answer), status, answer)
        self.assertIn(b"\r\nConnection: close\r\n", answer.split(b"\r\n\r\n")[0] + b"\r\n")
        self.assertTrue(transport.disconnecting)


class LoginTests(HeadersMixin, SynchronousTestCase):
    """C{POST /login}."""

    def setUp(self) -> None:
        self.server = MemoryServer()

    def test_success_sets_cookie(self) -> None:
        """Valid credentials give 200, the seed's message and a Strict HttpOnly cookie."""
        response = self.server.post("/login", {"username": "alice", "password": "password123"})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.server.body(response), {"message": "Login successful."})
        self.assertStandardHeaders(response)
        [cookie] = response.headers.getRawHeaders(b"set-cookie")
        name_value, *attributes = cookie.decode().split("; ")
        name, token = name_value.split("=", 1)
        self.assertEqual(name, "sessionToken")
        self.assertGreaterEqual(len(token), 22)  # >= 128 bits in URL-safe base64
        self.assertEqual(attributes, ["Path=/", "HttpOnly", "SameSite=Strict"])

    def test_cookie_levels(self) -> None:
        """Each cookie level sets its SameSite attribute; "None" sets none."""
        for level, expected in [("Lax", "SameSite=Lax"), ("Strict", "SameSite=Strict"),
                                ("None", None)]:
            server = MemoryServer(login_cookie_level=level)
            response = server.post("/login", {"username": "bob", "password": "securepassword"})
            cookie = response.headers.getRawHeaders(b"set-cookie")[0].decode()
            same_site = [part for part in cookie.split("; ") if part.startswith("SameSite")]
            self.assertEqual(same_site, [expected] if expected else [])

    def test_tokens_are_fresh(self) -> None:
        """Every login issues a new token."""
        tokens = {self.server.login() for _ in range(20)}
        self.assertEqual(len(tokens), 20)

    def test_wrong_password_and_unknown_user_look_the_same(self) -> None:
        """Both give 401 with the same body and close the connection."""
        answers = []
        for body in ({"username": "alice", "password": "nope"},
                     {"username": "mallory", "password": "password123"}):
            response = self.server.post("/login", body)
            self.assertEqual(response.code, 401)
            self.assertRawCloses(self.server, request_bytes("/login", json.dumps(body).encode()),
                                 401)
            self.assertStandardHeaders(response)
            self.assertIsNone(response.headers.getRawHeaders(b"set-cookie"))
            answers.append(self.server.body(response))
        self.assertEqual(answers, [{"error": "Invalid credentials."}] * 2)

    def test_bad_bodies(self) -> None:
        """A body that is not JSON, not an object, or lacks string fields is a 400 that closes."""
        cases = [
            (b"not json", "Invalid JSON."),
            (b"[1, 2]", "Request body must be a JSON object."),
            (b"{}", "Fields 'username' and 'password' must be strings."),
            (b'{"username": "alice"}', "Fields 'username' and 'password' must be strings."),
            (b'{"username": 1, "password": "x"}',
             "Fields 'username' and 'password' must be strings."),
            (b"", "Invalid JSON."),
        ]
        for raw, message in cases:
            response = self.server.post("/login", raw=raw)
            self.assertEqual((response.code, self.server.body(response)),
                             (400, {"error": message}), raw)
            self.assertRawCloses(self.server, request_bytes("/login", raw), 400)
        self.assertEqual(len(self.server.service.sessions), 0)

    def test_passwords_never_logged(self) -> None:
        """Neither the password nor the raw token reaches the log; the hashed token does."""
        token = self.server.login()
        self.server.post("/login", {"username": "alice", "password": "hunter2-secret"})
        text = self.server.log.text
        self.assertNotIn("password123", text)
        self.assertNotIn("hunter2-secret", text)
        self.assertNotIn(token, text)
        [session] = self.server.service.getSessions()
        self.assertIn(session.get_hashed_session_token(), text)

    def test_login_with_cookie_ends_old_session(self) -> None:
        """A login carrying a valid session cookie ends that session; the new token differs."""
        old = self.server.login()
        response = self.server.post("/login", {"username": "alice", "password": "password123"},
                                    cookie=old)
        self.assertEqual(response.code, 200)
        self.assertNotIn(old, response.headers.getRawHeaders(b"set-cookie")[0].decode())
        self.assertEqual(self.server.post("/communicate", {}, cookie=old).code, 401)
        self.assertEqual(len(self.server.service.sessions), 1)


class LogoutTests(HeadersMixin, SynchronousTestCase):
    """C{POST /logout}."""

    def setUp(self) -> None:
        self.server = MemoryServer()

    def test_logout(self) -> None:
        """A valid cookie ends the session, expires the cookie, and the token stops working."""
        token = self.server.login()
        response = self.server.post("/logout", cookie=token)
        self.assertEqual(response.code, 200)
        self.assertEqual(self.server.body(response), {"message": "Logout successful."})
        self.assertStandardHeaders(response)
        cookie = response.headers.getRawHeaders(b"set-cookie")[0].decode()
        self.assertTrue(cookie.startswith("sessionToken=; "))
        self.assertIn("Max-Age=0", cookie)
        self.assertEqual(self.server.post("/communicate", {}, cookie=token).code, 401)
        self.assertEqual(self.server.post("/logout", cookie=token).code, 401)

    def test_no_cookie(self) -> None:
        """No cookie is a 400 asking for a token."""
        response = self.server.post("/logout")
        self.assertEqual((response.code, self.server.body(response)),
                         (400, {"error": "Session token required."}))

    def test_unknown_token(self) -> None:
        """An unknown token is a 401."""
        response = self.server.post("/logout", cookie="not-a-token")
        self.assertEqual((response.code, self.server.body(response)),
                         (401, {"error": "Invalid session token."}))


class CommunicateTests(HeadersMixin, SynchronousTestCase):
    """C{POST /communicate}."""

    def setUp(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.result: Any = _ECHO
        self.server = MemoryServer(request_callback=self.callback)
        self.token = self.server.login()

    def callback(self, username: str, token: str, data: dict[str, Any]) -> Any:
        self.calls.append((username, token, data))
        if isinstance(self.result, BaseException):
            raise self.result
        if self.result is _ECHO:
            return False, False, {"echo": data}
        return self.result

    def test_callback_gets_user_token_and_data(self) -> None:
        """The callback sees username, raw token and body; its dict is the 200 body."""
        response = self.server.post("/communicate", {"action": "echo", "n": [1, 2]},
                                    cookie=self.token)
        self.assertEqual(response.code, 200)
        self.assertStandardHeaders(response)
        self.assertEqual(self.server.body(response), {"echo": {"action": "echo", "n": [1, 2]}})
        self.assertEqual(self.calls, [("alice", self.token, {"action": "echo", "n": [1, 2]})])
        self.assertIsNone(response.headers.getRawHeaders(b"connection"))

    def test_two_element_form(self) -> None:
        """The original release's (force_close, response_json) return is accepted."""
        self.result = (False, {"short": True})
        response = self.server.post("/communicate", {}, cookie=self.token)
        self.assertEqual((response.code, self.server.body(response)), (200, {"short": True}))

    def test_force_close(self) -> None:
        """force_close answers with Connection: close."""
        self.result = (True, False, {"bye": 1})
        response = self.server.post("/communicate", {}, cookie=self.token)
        self.assertEqual(response.code, 200)
        self.assertRawCloses(self.server, request_bytes(cookie=self.token), 200)
        self.result = _ECHO
        answer, transport = self.server.raw(request_bytes(cookie=self.token))
        self.assertEqual(status_of(answer), 200)
        self.assertNotIn(b"Connection: close", answer)
        self.assertFalse(transport.disconnecting)

    def test_force_logout(self) -> None:
        """force_logout answers, expires the cookie and ends the session."""
        self.result = (False, True, {"bye": 1})
        response = self.server.post("/communicate", {}, cookie=self.token)
        self.assertEqual((response.code, self.server.body(response)), (200, {"bye": 1}))
        self.assertIn("Max-Age=0", response.headers.getRawHeaders(b"set-cookie")[0].decode())
        self.result = _ECHO
        self.assertEqual(self.server.post("/communicate", {}, cookie=self.token).code, 401)

    def test_no_or_unknown_token(self) -> None:
        """Without a valid token: 401 and the callback is not called."""
        for cookie in (None, "", "forged-token"):
            response = self.server.post("/communicate", {"x": 1}, cookie=cookie)
            self.assertEqual((response.code, self.server.body(response)),
                             (401, {"error": "Invalid session token."}))
        self.assertEqual(self.calls, [])

    def test_two_session_cookies(self) -> None:
        """Two sessionToken cookies in one request are a 401, even if one is valid."""
        header = f"sessionToken={self.token}; sessionToken=other".encode()
        response = self.server.post("/communicate", {}, headers={b"Cookie": [header]})
        self.assertEqual(response.code, 401)
        response = self.server.post("/communicate", {}, headers={
            b"Cookie": [f"sessionToken={self.token}".encode(), b"sessionToken=x"]})
        self.assertEqual(response.code, 401)
        self.assertEqual(self.calls, [])

    def test_token_only_from_cookie(self) -> None:
        """A token in the body, query or another header does not authenticate."""
        response = self.server.post(f"/communicate?sessionToken={self.token}",
                                    {"sessionToken": self.token},
                                    headers={b"Authorization": [self.token.encode()]})
        self.assertEqual(response.code, 401)

    def test_bad_body(self) -> None:
        """Invalid JSON or a non-object is a 400 and the callback is not called."""
        for raw, message in [(b"{", "Invalid JSON."), (b"[]", "Request body must be a JSON "
                                                              "object."),
                             (b"NaN", "Invalid JSON."), (b'"text"', "Request body must be a "
                                                                   "JSON object.")]:
            response = self.server.post("/communicate", raw=raw, cookie=self.token)
            self.assertEqual((response.code, self.server.body(response)),
                             (400, {"error": message}))
        self.assertEqual(self.calls, [])

    def test_401_before_400(self) -> None:
        """A bad token with a bad body is a 401: the token is checked first."""
        response = self.server.post("/communicate", raw=b"{", cookie="nope")
        self.assertEqual(response.code, 401)

    def test_exception_is_500_with_traceback_in_log(self) -> None:
        """A raising callback gives a generic 500; the traceback goes to the user's logger."""
        self.result = ZeroDivisionError("secret detail")
        response = self.server.post("/communicate", {}, cookie=self.token)
        self.assertEqual((response.code, self.server.body(response)),
                         (500, {"error": "Internal server error."}))
        self.assertIn("ZeroDivisionError", self.server.log.text)
        self.assertIn("Traceback", self.server.log.text)
        self.result = _ECHO
        self.assertEqual(self.server.post("/communicate", {}, cookie=self.token).code, 200)

    def test_bad_return_values_are_500(self) -> None:
        """Every malformed return value is a 500, and the server keeps serving."""
        for bad in [None, {"a": 1}, (False,), (1, 2, 3, 4), ("yes", False, {}),
                    (False, False, ["list"]), (False, False, {"x": float("nan")}),
                    (False, False, {"x": object()}), [False, False, {}]]:
            self.result = bad
            response = self.server.post("/communicate", {}, cookie=self.token)
            self.assertEqual(response.code, 500, bad)
            self.assertEqual(self.server.body(response), {"error": "Internal server error."})
        self.result = _ECHO
        self.assertEqual(self.server.post("/communicate", {}, cookie=self.token).code, 200)

    def test_session_activity_recorded(self) -> None:
        """Each authenticated request updates last_active_at."""
        [session] = self.server.service.getSessions()
        self.server.reactor.advance(42)
        self.server.post("/communicate", {}, cookie=self.token)
        self.assertEqual(session.last_active_at - session.created_at, 42)


class ValidityCallbackTests(SynchronousTestCase):
    """session_validity_callback before each token-bearing request."""

    def test_checked_before_each_request(self) -> None:
        """The callback runs before each request; False ends the session with a 401."""
        seen: list[LoginSession] = []
        verdict = [True]

        def valid(session: LoginSession) -> bool:
            seen.append(session)
            return verdict[0]

        server = MemoryServer(session_validity_callback=valid)
        token = server.login()
        self.assertEqual(seen, [])  # not called at login
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 200)
        self.assertEqual(len(seen), 1)
        self.assertEqual(seen[0].get_username(), "alice")
        verdict[0] = False
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 401)
        self.assertEqual(len(server.service.sessions), 0)

    def test_exception_ends_session(self) -> None:
        """A raising validity callback is logged and ends the session."""
        def broken(session: LoginSession) -> bool:
            raise RuntimeError("validity boom")

        server = MemoryServer(session_validity_callback=broken)
        token = server.login()
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 401)
        self.assertIn("validity boom", server.log.text)
        server.login("bob", "securepassword")  # another user is served meanwhile
        self.assertEqual([session.username for session in server.service.getSessions()],
                         ["bob"])

    def test_invalidate_from_callback(self) -> None:
        """LoginSession.invalidate() called anywhere ends the session before its next use."""
        server = MemoryServer()
        token = server.login()
        [session] = server.service.getSessions()
        session.invalidate()
        self.assertFalse(session.is_valid())
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 401)


class RoutingTests(HeadersMixin, SynchronousTestCase):
    """404, 405 and 415."""

    def setUp(self) -> None:
        self.server = MemoryServer()

    def test_unknown_paths_are_json_404(self) -> None:
        """Other paths, near misses included, are a JSON 404."""
        for path in ["/", "/nothing", "/communicate/", "//communicate", "/COMMUNICATE",
                     "/communicate%2f", "/%2fcommunicate", "/login/x", "/./login"]:
            response = self.server.post(path, {})
            self.assertEqual((response.code, self.server.body(response)),
                             (404, {"error": "Not found."}), path)
            self.assertStandardHeaders(response)

    def test_other_methods_are_405(self) -> None:
        """GET, PUT and friends on the three paths are a JSON 405 with Allow: POST."""
        for path in ["/login", "/logout", "/communicate"]:
            for method in ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"]:
                response = self.server.post(path, method=method)
                self.assertEqual(response.code, 405, (path, method))
                self.assertEqual(response.headers.getRawHeaders(b"allow"), [b"POST"])
                self.assertEqual(self.server.body(response), {"error": "Method not allowed."})
                self.assertStandardHeaders(response)

    def test_form_content_types_are_415(self) -> None:
        """Form-capable content types are refused on every endpoint; none is missing is fine."""
        token = self.server.login()
        for content_type in [b"application/x-www-form-urlencoded", b"text/plain",
                             b"text/plain; charset=utf-8", b"TEXT/PLAIN"]:
            for path in ["/login", "/logout", "/communicate"]:
                response = self.server.post(path, {"username": "alice",
                                                   "password": "password123"},
                                            cookie=token,
                                            headers={b"Content-Type": [content_type]})
                self.assertEqual(response.code, 415, (path, content_type))
        self.assertEqual(self.server.post("/communicate", {}, cookie=token,
                                          headers={b"Content-Type": [
                                              b"application/json; charset=utf-8"]}).code, 200)

    def test_missing_content_type_accepted(self) -> None:
        """A request without Content-Type is served."""
        deferred = self.server.treq.request(
            "POST", "http://example.test/login",
            data=b'{"username": "bob", "password": "securepassword"}')
        self.assertEqual(self.server.result(deferred).code, 200)


class OverloadTests(SynchronousTestCase):
    """Section 8: waiting instead of refusal, refusal by waiting time, late callbacks, and a
    full session table."""

    def communicate(self, server: MemoryServer, token: str) -> Any:
        """Send one /communicate on a new raw connection; return (channel, transport)."""
        channel, transport = server.connect()
        channel.dataReceived(request_bytes(cookie=token))
        return channel, transport

    def test_session_ended_while_waiting(self) -> None:
        """A request waiting for a worker whose session ends meanwhile (a logout, an
        invalidation) gets 401 and its callback is not run."""
        calls: list[Any] = []
        pool = HeldPool()
        server = MemoryServer(pool=pool, request_callback=lambda *args: calls.append(args) or (
            False, False, {}))
        for end in (lambda token: server.post("/logout", cookie=token),
                    lambda token: server.service.invalidateUserSessions("alice")):
            token = server.login()
            _, transport = self.communicate(server, token)
            end(token)
            pool.release()
            self.assertEqual(status_of(transport.value()), 401)
        self.assertEqual(calls, [])
        _, transport = self.communicate(server, server.login())
        pool.release()
        self.assertEqual((status_of(transport.value()), len(calls)), (200, 1))

    def test_long_queue_waits_instead_of_503(self) -> None:
        """Past max_threads + max_queued_requests, requests wait (no 503) and their
        connections are read no further; logins are still answered at once."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, max_threads=2, max_queued_requests=1)
        token = server.login()
        connections = [self.communicate(server, token) for _ in range(5)]
        self.assertEqual([transport.value() for _, transport in connections], [b""] * 5)
        self.assertEqual([transport.producerState for _, transport in connections],
                         ["producing"] * 3 + ["paused"] * 2)
        self.assertEqual(server.post("/login", {"username": "bob", "password":
                                                "securepassword"}).code, 200)
        while pool.jobs:
            pool.release()
        self.assertEqual([status_of(transport.value()) for _, transport in connections],
                         [200] * 5)
        self.assertEqual({transport.producerState for _, transport in connections},
                         {"producing"})

    def test_queue_timeout(self) -> None:
        """A request no worker took within queue_timeout gets 503 with Retry-After and never
        runs; the connection stays open."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, queue_timeout=2)
        token = server.login()
        channel, transport = self.communicate(server, token)
        server.reactor.advance(1.9)
        self.assertEqual(transport.value(), b"")
        server.reactor.advance(0.1)
        answer = transport.value()
        self.assertEqual(status_of(answer), 503)
        self.assertIn(b"\r\nRetry-After: 1\r\n", answer)
        self.assertNotIn(b"Connection: close", answer)
        self.assertTrue(answer.endswith(b'{"error": "Server busy. Try again later."}'))
        pool.release()
        self.assertEqual((pool.ran, server.service.callbacks.in_flight), (0, 0))
        channel.dataReceived(request_bytes(cookie=token))
        pool.release()
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 OK"), 1)

    def test_queue_timeout_defaults_to_timeout(self) -> None:
        """Without queue_timeout, a request may wait C{timeout} seconds."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, timeout=3)
        _, transport = self.communicate(server, server.login())
        server.reactor.advance(2.9)
        self.assertEqual(transport.value(), b"")
        server.reactor.advance(0.1)
        self.assertEqual(status_of(transport.value()), 503)

    def test_callback_deadline(self) -> None:
        """A callback past callback_timeout: 503 with Connection: close; its result is dropped."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, callback_timeout=2, max_threads=1)
        token = server.login()
        channel, transport = self.communicate(server, token)
        job = pool.jobs.pop()
        self.assertTrue(job.start())
        server.reactor.advance(1.9)
        self.assertEqual(transport.value(), b"")
        server.reactor.advance(0.1)
        answer = transport.value()
        self.assertEqual(status_of(answer), 503)
        self.assertIn(b"\r\nConnection: close\r\n", answer)
        self.assertTrue(answer.endswith(b'{"error": "Request timed out."}'))
        self.assertEqual(server.service.callbacks.in_flight, 1)  # the worker is still busy
        job.done(True, (False, False, b"{}"))  # its late result is dropped
        self.assertEqual(transport.value(), answer)
        self.assertEqual(server.service.callbacks.in_flight, 0)
        _, transport = self.communicate(server, token)
        pool.release()
        self.assertEqual(status_of(transport.value()), 200)

    def test_departed_client_not_run(self) -> None:
        """A job whose client left before a worker took it is not run."""
        pool = HeldPool()
        calls: list[str] = []
        server = MemoryServer(pool=pool, request_callback=lambda u, t, d: calls.append(u))
        channel, transport = self.communicate(server, server.login())
        channel.connectionLost(Failure(ConnectionDone()))
        pool.release()
        self.assertEqual((calls, pool.ran, server.service.callbacks.in_flight), ([], 0, 0))

    def test_session_table_full(self) -> None:
        """Logins beyond max_sessions get 503; logging out makes room."""
        server = MemoryServer(max_sessions=2)
        first = server.login()
        server.login("bob", "securepassword")
        response = server.post("/login", {"username": "alice", "password": "password123"})
        self.assertEqual((response.code, server.body(response)),
                         (503, {"error": "Too many sessions. Try again later."}))
        server.post("/logout", cookie=first)
        server.login()

    def test_sessions_per_user(self) -> None:
        """Beyond max_sessions_per_user, a new login ends that user's oldest session."""
        server = MemoryServer(max_sessions_per_user=2)
        oldest, middle = server.login(), server.login()
        newest = server.login()
        self.assertEqual(server.post("/communicate", {}, cookie=oldest).code, 401)
        self.assertEqual(server.post("/communicate", {}, cookie=middle).code, 200)
        self.assertEqual(server.post("/communicate", {}, cookie=newest).code, 200)
        self.assertIn("evicted", server.log.text)


class ThrottleTests(SynchronousTestCase):
    """429 after too many failed logins, and recovery after the window."""

    def test_username_throttle(self) -> None:
        """After login_attempts failures the right password gets 429 until the window passes."""
        server = MemoryServer(login_attempts=3, login_window=60)
        for _ in range(3):
            self.assertEqual(server.post("/login", {"username": "alice",
                                                    "password": "x"}).code, 401)
        response = server.post("/login", {"username": "alice", "password": "password123"})
        self.assertEqual(response.code, 429)
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"60"])
        self.assertIn("error", server.body(response))
        server.login("bob", "securepassword")  # another user is served meanwhile
        self.assertEqual([session.username for session in server.service.getSessions()],
                         ["bob"])
        server.reactor.advance(30)
        response = server.post("/login", {"username": "alice", "password": "password123"})
        self.assertEqual(response.headers.getRawHeaders(b"retry-after"), [b"30"])
        server.reactor.advance(30)
        server.login()

    def test_refused_attempts_do_not_count(self) -> None:
        """A 429 does not extend the lockout."""
        server = MemoryServer(login_attempts=1, login_window=10)
        server.post("/login", {"username": "alice", "password": "x"})
        server.reactor.advance(5)
        self.assertEqual(server.post("/login", {"username": "alice",
                                                "password": "x"}).code, 429)
        server.reactor.advance(5)
        server.login()

    def test_peer_throttle(self) -> None:
        """One peer spraying many usernames is throttled at 10 x login_attempts failures."""
        server = MemoryServer(login_attempts=2, login_window=60,
                              credentials=dict(CREDENTIALS))
        for index in range(20):
            self.assertEqual(server.post("/login", {"username": f"user{index}",
                                                    "password": "x"}).code, 401)
        self.assertEqual(server.post("/login", {"username": "bob",
                                                "password": "securepassword"}).code, 429)
