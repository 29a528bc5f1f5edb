"""Authentication details: hashed logins off the reactor, check order, floods, the audit log."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from serverapi import hashPassword

from .helpers import HeldPool, MemoryServer, request_bytes, status_of

HASHED = {"alice": hashPassword("password123"), "bob": "securepassword"}
ALICE_LOGIN = request_bytes("/login", b'{"username": "alice", "password": "password123"}')


class HashedLoginTests(SynchronousTestCase):
    """Logins against hashed credentials."""

    def test_hash_checked_in_pool(self) -> None:
        """A hashed password is checked in the hash pool, not on the reactor."""
        hash_pool = HeldPool()
        server = MemoryServer(credentials=HASHED, hash_pool=hash_pool)
        channel, transport = server.connect()
        channel.dataReceived(ALICE_LOGIN)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(len(hash_pool.jobs), 1)
        hash_pool.release()
        self.assertEqual(status_of(transport.value()), 200)

    def test_unknown_user_also_hashes(self) -> None:
        """An unknown user costs a hash check too, and gets the wrong-password answer."""
        hash_pool = HeldPool()
        server = MemoryServer(credentials=HASHED, hash_pool=hash_pool)
        answers = []
        for username in ("alice", "nobody"):
            channel, transport = server.connect()
            channel.dataReceived(request_bytes(
                "/login", b'{"username": "%s", "password": "wrong"}' % username.encode()))
            self.assertEqual(len(hash_pool.jobs), 1)
            hash_pool.release()
            answers.append(transport.value().split(b"\r\n", 1)[0]
                           + transport.value().rsplit(b"\r\n\r\n", 1)[1])
        self.assertEqual(answers[0], answers[1])
        self.assertEqual(status_of(answers[0]), 401)

    def test_plaintext_user_in_pool(self) -> None:
        """With hashes configured, a plaintext password is checked in the hash pool too."""
        hash_pool = HeldPool()
        server = MemoryServer(credentials=HASHED, hash_pool=hash_pool)
        channel, transport = server.connect()
        channel.dataReceived(request_bytes(
            "/login", b'{"username": "bob", "password": "securepassword"}'))
        self.assertEqual((transport.value(), len(hash_pool.jobs)), (b"", 1))
        hash_pool.release()
        self.assertEqual(status_of(transport.value()), 200)

    def test_hash_as_password_refused(self) -> None:
        """Sending the stored hash as the password fails."""
        server = MemoryServer(credentials=HASHED)
        response = server.post("/login", {"username": "alice", "password": HASHED["alice"]})
        self.assertEqual(response.code, 401)

    def test_client_gone_during_hash(self) -> None:
        """A client that leaves while its hash is checked gets nothing written."""
        hash_pool = HeldPool()
        server = MemoryServer(credentials=HASHED, hash_pool=hash_pool)
        channel, transport = server.connect()
        channel.dataReceived(ALICE_LOGIN)
        channel.connectionLost(Failure(ConnectionDone()))
        hash_pool.release()
        self.assertEqual(transport.value(), b"")


def cheap_hash(password: str) -> str:
    """A PBKDF2 hash with few iterations: a real hashed credential, quick to check."""
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 1000)
    salt_text, digest_text = (base64.b64encode(part).decode().rstrip("=")
                              for part in (salt, digest))
    return f"$pbkdf2-sha256$i=1000${salt_text}${digest_text}"


class ConcurrentLoginTests(SynchronousTestCase):
    """Guesses sent together, against hashed credentials (checked in the hash pool)."""

    def setUp(self) -> None:
        self.hash_pool = HeldPool()
        self.server = MemoryServer(credentials={"alice": cheap_hash("password123"),
                                                "bob": "securepassword"},
                                   hash_pool=self.hash_pool)

    def attempt(self, username: str, password: str, host: str = "10.0.0.7") -> Any:
        """Send one login from C{host} on a new connection; its transport."""
        channel, transport = self.server.connect(IPv4Address("TCP", host, 50000))
        channel.dataReceived(request_bytes("/login", json.dumps(
            {"username": username, "password": password}).encode()))
        return transport

    def release_all(self) -> None:
        """Run every check waiting in the hash pool."""
        while self.hash_pool.jobs:
            self.hash_pool.release()

    def test_one_check_per_user_and_address(self) -> None:
        """Guesses at one user from one address, sent together, get one check under way at a
        time and the rest 429 at once, so the failed-login limit holds as for guesses sent one
        after another (5, then 429)."""
        guesses = [self.attempt("alice", f"guess{index}") for index in range(20)]
        self.assertEqual(len(self.hash_pool.jobs), 1)
        self.assertEqual([status_of(guess.value()) for guess in guesses[1:]], [429] * 19)
        self.release_all()
        self.assertEqual(status_of(guesses[0].value()), 401)
        statuses = []
        for index in range(6):
            guess = self.attempt("alice", f"again{index}")
            self.release_all()
            statuses.append(status_of(guess.value()))
        self.assertEqual(statuses, [401] * 4 + [429] * 2)

    def test_checks_per_address_bounded(self) -> None:
        """One address has at most login_attempts checks under way, so it cannot take every
        hash worker: another address's login is still checked, and the places free up."""
        crowd = [self.attempt(f"user{index}", "guess") for index in range(10)]
        self.assertEqual(len(self.hash_pool.jobs), 5)
        self.assertEqual([status_of(member.value()) for member in crowd],
                         [None] * 5 + [429] * 5)
        bob = self.attempt("bob", "securepassword", host="10.0.0.8")
        self.assertEqual(len(self.hash_pool.jobs), 6)
        self.release_all()
        self.assertEqual(status_of(bob.value()), 200)
        self.attempt("user9", "guess")
        self.assertEqual(len(self.hash_pool.jobs), 1)

    def test_check_that_ends_early_frees_its_place(self) -> None:
        """A check whose client left before it ran is dropped, and the pair may try again."""
        channel, _ = self.server.connect(IPv4Address("TCP", "10.0.0.7", 50000))
        channel.dataReceived(request_bytes(
            "/login", b'{"username": "alice", "password": "guess"}'))
        channel.connectionLost(Failure(ConnectionDone()))
        self.release_all()
        self.attempt("alice", "password123")
        self.assertEqual(len(self.hash_pool.jobs), 1)


class OrderTests(SynchronousTestCase):
    """The contract's order of checks."""

    def test_communicate_415_before_401(self) -> None:
        """A form content type is refused before the token is looked at."""
        server = MemoryServer()
        answer, _ = server.raw(request_bytes(cookie="bad", content_type=b"text/plain"))
        self.assertEqual(status_of(answer), 415)

    def test_login_400_before_429(self) -> None:
        """A throttled username with a bad body still gets 400."""
        server = MemoryServer(login_attempts=1)
        server.post("/login", {"username": "alice", "password": "x"})
        self.assertEqual(server.post("/login", {"username": "alice"}).code, 400)
        self.assertEqual(server.post("/login", {"username": "alice",
                                                "password": "x"}).code, 429)

    def test_login_405_before_415(self) -> None:
        """A GET with a form content type is a 405."""
        server = MemoryServer()
        answer, _ = server.raw(request_bytes("/login", method="GET",
                                             content_type=b"text/plain"))
        self.assertEqual(status_of(answer), 405)


class DisconnectTests(SynchronousTestCase):
    """A client leaving mid-callback."""

    def test_no_write_no_traceback(self) -> None:
        """The callback's result is dropped quietly when its client has gone."""
        pool = HeldPool()
        server = MemoryServer(pool=pool)
        token = server.login()
        channel, transport = server.connect()
        channel.dataReceived(request_bytes(cookie=token))
        channel.connectionLost(Failure(ConnectionDone()))
        pool.release()
        self.assertEqual(transport.value(), b"")
        self.assertNotIn("Traceback", server.log.text)
        self.assertEqual(server.service.callbacks.in_flight, 0)

    def test_force_logout_applies_after_disconnect(self) -> None:
        """A force_logout from a callback whose client left while it ran still ends the
        session."""
        pool = HeldPool()
        server = MemoryServer(pool=pool, request_callback=lambda u, t, d: (False, True, {}))
        token = server.login()
        channel, _ = server.connect()
        channel.dataReceived(request_bytes(cookie=token))
        job = pool.jobs.pop()
        self.assertTrue(job.start())
        channel.connectionLost(Failure(ConnectionDone()))
        job.done(True, job.run())
        self.assertEqual(server.service.getSessions(), [])


class FloodTests(SynchronousTestCase):
    """Memory stays bounded when logins never log out."""

    def test_one_user_flood(self) -> None:
        """One user logging in again and again keeps at most max_sessions_per_user sessions."""
        server = MemoryServer(max_sessions_per_user=5)
        for _ in range(50):
            server.login()
        self.assertEqual(len(server.service.getSessions()), 5)

    def test_many_users_flood(self) -> None:
        """Many users logging in never take the table past max_sessions."""
        credentials = {f"user{index}": "pw" for index in range(30)}
        server = MemoryServer(credentials=credentials, max_sessions=10)
        codes = [server.post("/login", {"username": name, "password": "pw"}).code
                 for name in credentials]
        self.assertEqual(codes.count(200), 10)
        self.assertEqual(codes.count(503), 20)
        self.assertEqual(len(server.service.getSessions()), 10)


class AuditLogTests(SynchronousTestCase):
    """Security events on the user's logger, without secrets."""

    def test_events(self) -> None:
        """Login, failure, throttling, logout, eviction and expiry are logged."""
        server = MemoryServer(login_attempts=1, max_sessions_per_user=1,
                              session_idle_timeout=10)
        first = server.login()
        server.login()  # evicts the first
        server.post("/login", {"username": "bob", "password": "wrong-pw"})
        server.post("/login", {"username": "bob", "password": "wrong-pw"})
        [session] = server.service.getSessions()
        server.post("/logout", cookie=session.session_token)
        third = server.login()
        server.reactor.advance(11)
        self.assertEqual(server.post("/communicate", {}, cookie=third).code, 401)
        text = server.log.text
        for needle in ["Login: user='alice' peer=127.0.0.1 token_sha256=",
                       "Login failed: user='bob' peer=127.0.0.1",
                       "Login throttled: user='bob' peer=127.0.0.1",
                       "Session ended (logout): user='alice'",
                       "Session ended (evicted: too many sessions for this user)",
                       "Session ended (expired: idle)"]:
            self.assertIn(needle, text)
        for secret in [first, third, "wrong-pw", "password123", session.session_token]:
            self.assertNotIn(secret, text)

    def test_username_escaped(self) -> None:
        """A username with control characters cannot forge log lines."""
        server = MemoryServer()
        server.post("/login", {"username": "x\nINFO Login: user='admin'", "password": "p"})
        self.assertIn("x\\nINFO Login", server.log.text)
        self.assertNotIn("\nINFO Login: user='admin'", server.log.text)
