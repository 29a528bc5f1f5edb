"""LoginSession and the session registry, with a fake clock."""

from __future__ import annotations

import hashlib
import re

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi import LoginSession
from serverapi._sessions import SessionRegistry, SessionTableFull

from .helpers import recording_logger


def registry(**options: object) -> tuple[SessionRegistry, Clock]:
    """A registry on a fake clock."""
    clock = Clock()
    logger, _ = recording_logger()
    return SessionRegistry(now=clock.seconds, logger=logger, **options), clock  # type: ignore


class LoginSessionTests(SynchronousTestCase):
    """The public LoginSession keeps the original's methods."""

    def test_seed_methods(self) -> None:
        """get_username, get_session_token, get_hashed_session_token, invalidate, is_valid."""
        session = LoginSession("alice", "tok", 10.0, "10.0.0.1", "CN=alice")
        self.assertEqual(session.get_username(), "alice")
        self.assertEqual(session.get_session_token(), "tok")
        self.assertEqual(session.get_hashed_session_token(),
                         hashlib.sha256(b"tok").hexdigest())
        self.assertEqual((session.created_at, session.last_active_at), (10.0, 10.0))
        self.assertEqual((session.peer_address, session.client_certificate_subject),
                         ("10.0.0.1", "CN=alice"))
        self.assertTrue(session.is_valid())
        session.invalidate()
        self.assertFalse(session.is_valid())

    def test_repr_hides_token(self) -> None:
        """The repr shows neither the raw token nor the whole hash."""
        session = LoginSession("alice", "raw-secret-token", 0.0)
        self.assertNotIn("raw-secret-token", repr(session))
        self.assertNotIn(session.get_hashed_session_token(), repr(session))


class RegistryTests(SynchronousTestCase):
    """Creating, finding and ending sessions."""

    def test_tokens(self) -> None:
        """Tokens are URL-safe, at least 128 bits, and unique."""
        sessions, _ = registry()
        tokens = [sessions.create("alice").session_token for _ in range(200)]
        self.assertEqual(len(set(tokens)), 200)
        for token in tokens:
            self.assertRegex(token, re.compile(r"^[A-Za-z0-9_-]{43}$"))

    def test_find(self) -> None:
        """A token finds its session; anything else finds nothing."""
        sessions, _ = registry()
        session = sessions.create("alice", "10.0.0.1")
        self.assertIs(sessions.find(session.session_token), session)
        self.assertIsNone(sessions.find(session.session_token + "x"))
        self.assertIsNone(sessions.find(session.hashed_session_token))

    def test_invalidated_is_forgotten(self) -> None:
        """An invalidated session is removed on its next lookup."""
        sessions, _ = registry()
        session = sessions.create("alice")
        session.invalidate()
        self.assertIsNone(sessions.find(session.session_token))
        self.assertEqual(len(sessions), 0)

    def test_idle_timeout(self) -> None:
        """A session idle for session_idle_timeout seconds ends; activity keeps it alive."""
        sessions, clock = registry(idle_timeout=10)
        session = sessions.create("alice")
        clock.advance(9)
        self.assertIs(sessions.find(session.session_token), session)
        sessions.touch(session)
        clock.advance(9)
        self.assertIs(sessions.find(session.session_token), session)
        clock.advance(10)
        self.assertIsNone(sessions.find(session.session_token))

    def test_max_age(self) -> None:
        """A session older than session_max_age ends however active it is."""
        sessions, clock = registry(max_age=30)
        session = sessions.create("alice")
        for _ in range(2):
            clock.advance(14)
            sessions.touch(session)
            self.assertIs(sessions.find(session.session_token), session)
        clock.advance(2)
        self.assertIsNone(sessions.find(session.session_token))

    def test_validity_callback_verdicts(self) -> None:
        """True keeps a session; False, None or an exception ends it."""
        verdicts: dict[str, object] = {"a": True, "b": False, "c": None, "d": RuntimeError()}

        def valid(session: LoginSession) -> bool:
            verdict = verdicts[session.username]
            if isinstance(verdict, Exception):
                raise verdict
            return verdict  # type: ignore[return-value]

        sessions, _ = registry(validity_callback=valid)
        created = {name: sessions.create(name) for name in verdicts}
        found = {name: sessions.find(s.session_token) is not None for name, s in created.items()}
        self.assertEqual(found, {"a": True, "b": False, "c": False, "d": False})

    def test_any_callback_failure_ends_one_session(self) -> None:
        """SystemExit, KeyboardInterrupt or a result whose truth raises end just that session."""

        class Undecidable:
            """A verdict whose truth value raises."""

            def __bool__(self) -> bool:
                raise ValueError("no truth value")

        verdicts: dict[str, object] = {"exit": SystemExit(3), "interrupt": KeyboardInterrupt(),
                                       "undecidable": Undecidable(), "fine": True}

        def valid(session: LoginSession) -> object:
            verdict = verdicts[session.username]
            if isinstance(verdict, BaseException):
                raise verdict
            return verdict

        clock = Clock()
        logger, log = recording_logger()
        sessions = SessionRegistry(now=clock.seconds, logger=logger, validity_callback=valid)
        created = {name: sessions.create(name) for name in verdicts}
        found = {name: sessions.find(s.session_token) is not None for name, s in created.items()}
        self.assertEqual(found, {"exit": False, "interrupt": False, "undecidable": False,
                                 "fine": True})
        self.assertEqual([s.username for s in sessions.snapshot()], ["fine"])
        self.assertFalse(sessions.check(sessions.create("exit")))
        for text in ("SystemExit", "KeyboardInterrupt", "no truth value", "Traceback"):
            self.assertIn(text, log.text)

    def test_caps(self) -> None:
        """max_sessions refuses new logins; max_sessions_per_user evicts the oldest."""
        sessions, _ = registry(max_sessions=3, max_sessions_per_user=2)
        first = sessions.create("alice")
        sessions.create("alice")
        sessions.create("alice")
        self.assertFalse(first.is_valid())
        sessions.create("bob")
        with self.assertRaises(SessionTableFull):
            sessions.create("carol")
        sessions.create("alice")  # at alice's own cap: evicts instead of refusing
        self.assertEqual(len(sessions), 3)

    def test_end_user_and_snapshot(self) -> None:
        """end_user ends every session of one user and says how many."""
        sessions, _ = registry()
        for name in ["alice", "alice", "bob"]:
            sessions.create(name)
        self.assertEqual(sessions.end_user("alice"), 2)
        self.assertEqual(sessions.end_user("alice"), 0)
        self.assertEqual([s.username for s in sessions.snapshot()], ["bob"])

    def test_end_all(self) -> None:
        """end_all invalidates every session with a single log line."""
        clock = Clock()
        logger, log = recording_logger()
        sessions = SessionRegistry(now=clock.seconds, logger=logger)
        created = [sessions.create(f"user{index}") for index in range(50)]
        sessions.end_all("server stopped")
        self.assertEqual(len(sessions), 0)
        self.assertFalse(any(session.is_valid() for session in created))
        self.assertEqual([record.getMessage() for record in log.records],
                         ["50 session(s) ended: server stopped"])
