"""Audit events: the same stdlib lines as before, and twisted.logger events with fields."""

from __future__ import annotations

import logging
from typing import Any

from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from serverapi._logging import AUDIT_MARK, SafeLogger
from serverapi._sessions import SessionRegistry
from serverapi.tap import _TwistedLogHandler, daemon_logger

from .helpers import HeldPool, MemoryServer, recording_logger, request_bytes, status_of

FIELDS = ("event", "user", "peer", "token_sha256", "reason")


class EventRecorder:
    """Collects serverapi's twisted.logger events while a test runs."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.observe)
        case.addCleanup(globalLogPublisher.removeObserver, self.observe)

    def observe(self, event: dict[str, Any]) -> None:
        """Keep audit events (those with an C{event} field) of namespace serverapi."""
        if event.get("log_namespace") == "serverapi" and "event" in event:
            self.events.append(event)

    def fields(self) -> list[dict[str, Any]]:
        """The five fields of each audit event, in order."""
        return [{name: event[name] for name in FIELDS} for event in self.events]

    def named(self, name: str) -> list[dict[str, Any]]:
        """The events called C{name}."""
        return [event for event in self.events if event["event"] == name]


class SafeLoggerAuditTests(SynchronousTestCase):
    """SafeLogger.audit writes the stdlib line and emits the event."""

    def test_line_and_event(self) -> None:
        """The stdlib line is C{msg % args}; the event carries the fields and that text."""
        recorder = EventRecorder(self)
        logger, handler = recording_logger()
        SafeLogger(logger).audit("login", "Login: user=%s peer=%s", "'al'", "10.0.0.1",
                                 user="al", peer="10.0.0.1", token_sha256="ab")
        [record] = handler.records
        self.assertEqual((record.getMessage(), record.levelno),
                         ("Login: user='al' peer=10.0.0.1", logging.INFO))
        self.assertTrue(getattr(record, AUDIT_MARK))
        [event] = recorder.events
        self.assertEqual({name: event[name] for name in FIELDS},
                         {"event": "login", "user": "al", "peer": "10.0.0.1",
                          "token_sha256": "ab", "reason": None})
        self.assertEqual((event["text"], event["log_level"], event["log_format"]),
                         ("Login: user='al' peer=10.0.0.1", LogLevel.info, "{text}"))

    def test_levels_and_traceback(self) -> None:
        """Warnings and errors keep their level; a traceback is text, never a log_failure."""
        recorder = EventRecorder(self)
        logger, handler = recording_logger()
        try:
            1 / 0
        except ZeroDivisionError as error:
            SafeLogger(logger).audit("callback_failed", "failed", level=logging.ERROR,
                                     exc_info=error, reason="ZeroDivisionError")
        SafeLogger(logger).audit("login_failed", "no", level=logging.WARNING)
        self.assertIn("Traceback", handler.text)
        first, second = recorder.events
        self.assertEqual((first["log_level"], second["log_level"]),
                         (LogLevel.error, LogLevel.warn))
        self.assertIn("ZeroDivisionError", first["text"])
        self.assertTrue(first["text"].startswith("failed\nTraceback"))
        self.assertNotIn("log_failure", first)

    def test_long_username_cut(self) -> None:
        """The user field is bounded like the log line."""
        recorder = EventRecorder(self)
        logger, _ = recording_logger()
        SafeLogger(logger).audit("login_failed", "x", user="u" * 10_000)
        self.assertEqual(recorder.events[0]["user"], "u" * 64 + "…")

    def test_never_raises(self) -> None:
        """A broken handler and a message that does not format cost a line, never an error."""

        class Broken(logging.Handler):
            """Raises on every record."""

            def emit(self, record: logging.LogRecord) -> None:
                """Fail."""
                raise OSError("disk full")

        logger = logging.getLogger("serverapi.test.broken-audit")
        logger.propagate = False
        logger.addHandler(Broken())
        self.addCleanup(logger.removeHandler, logger.handlers[0])
        SafeLogger(logger).audit("login", "Login: %d", "not a number")
        self.flushLoggedErrors()

    def test_bridge_skips_audit_records(self) -> None:
        """The daemon's stdlib-to-twisted bridge forwards plain lines but not audit lines
        (their twisted events are already written)."""
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        logger = logging.getLogger("serverapi.test.bridge")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        bridge = _TwistedLogHandler()
        logger.addHandler(bridge)
        self.addCleanup(logger.removeHandler, bridge)
        SafeLogger(logger).audit("logout", "Session ended (logout)")
        SafeLogger(logger).info("serverapi listening on somewhere")
        texts = [event.get("text") for event in seen if event.get("log_namespace") == "serverapi"]
        self.assertEqual(texts, ["Session ended (logout)", "serverapi listening on somewhere"])
        self.assertEqual([event.get("event") for event in seen
                          if event.get("log_namespace") == "serverapi"], ["logout", None])

    def test_daemon_logger_makes_no_audit_records(self) -> None:
        """The daemon's logger, bridged into twistd's log, is given no stdlib record for an
        audit event (the event itself is written once); its plain lines still pass."""
        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        logger = daemon_logger()
        made: list[logging.LogRecord] = []

        def keep(record: logging.LogRecord) -> bool:
            made.append(record)
            return True

        logger.addFilter(keep)
        self.addCleanup(logger.removeFilter, keep)
        log = SafeLogger(logger)
        log.audit("login", "Login: user=%s", "'al'", user="al")
        log.info("serverapi listening on somewhere")
        self.assertEqual([record.getMessage() for record in made],
                         ["serverapi listening on somewhere"])
        self.assertEqual([(event.get("event"), event.get("text")) for event in seen
                          if event.get("log_namespace") == "serverapi"],
                         [("login", "Login: user='al'"), (None, "serverapi listening on somewhere")])


class ServerAuditTests(SynchronousTestCase):
    """Every audit event of a running server, with its fields."""

    def test_login_logout_failure_throttle(self) -> None:
        """login, login_failed, login_throttled and logout carry user, peer, token and
        reason."""
        recorder = EventRecorder(self)
        server = MemoryServer(login_attempts=1)
        token = server.login()
        session = server.service.getSessions()[0]
        server.post("/logout", cookie=token)
        for _ in range(2):
            server.post("/login", {"username": "bob", "password": "wrong"})
        digest = session.hashed_session_token
        self.assertEqual(recorder.fields(), [
            {"event": "login", "user": "alice", "peer": "127.0.0.1", "token_sha256": digest,
             "reason": None},
            {"event": "logout", "user": "alice", "peer": "127.0.0.1", "token_sha256": digest,
             "reason": "logout"},
            {"event": "login_failed", "user": "bob", "peer": "127.0.0.1", "token_sha256": None,
             "reason": "invalid credentials"},
            {"event": "login_throttled", "user": "bob", "peer": "127.0.0.1",
             "token_sha256": None, "reason": None},
        ])
        self.assertIn("Login: user='alice' peer=127.0.0.1 token_sha256=", server.log.text)
        self.assertIn("Session ended (logout): user='alice' peer=127.0.0.1", server.log.text)

    def test_sessions_ended_and_why(self) -> None:
        """Ended sessions say why: eviction, idle expiry, the validity callback, stopping."""
        recorder = EventRecorder(self)
        server = MemoryServer(max_sessions_per_user=1, session_idle_timeout=10,
                              session_validity_callback=lambda session: session.username
                              != "bob")
        server.login()
        token = server.login()
        server.reactor.advance(11)
        server.post("/communicate", {}, cookie=token)
        bob = server.login("bob", "securepassword")
        server.post("/communicate", {}, cookie=bob)
        server.login()
        self.successResultOf(server.service.stopService())
        reasons = [(event["event"], event["user"], event["reason"])
                   for event in recorder.events if event["event"] != "login"]
        self.assertEqual(reasons, [
            ("session_ended", "alice", "evicted: too many sessions for this user"),
            ("session_ended", "alice", "expired: idle"),
            ("session_ended", "bob", "rejected by session_validity_callback"),
            ("sessions_ended", None, "server stopped"),
        ])

    def test_validity_callback_failure(self) -> None:
        """A validity callback that raises is an error event with the exception as reason."""
        recorder = EventRecorder(self)

        def check(session: Any) -> bool:
            """A validity callback that raises."""
            raise RuntimeError("validity boom")

        server = MemoryServer(session_validity_callback=check)
        token = server.login()
        server.post("/communicate", {}, cookie=token)
        [failed] = recorder.named("validity_callback_failed")
        self.assertEqual((failed["user"], failed["reason"], failed["log_level"]),
                         ("alice", "RuntimeError: validity boom", LogLevel.error))
        self.assertIn("Traceback", failed["text"])

    def test_callback_failure(self) -> None:
        """A request callback that raises is an error event naming the user and the token."""
        recorder = EventRecorder(self)

        def broken(username: str, token: str, data: Any) -> Any:
            """A request callback that raises."""
            raise ZeroDivisionError("callback boom")

        server = MemoryServer(request_callback=broken)
        token = server.login()
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 500)
        [failed] = recorder.named("callback_failed")
        session = server.service.getSessions()[0]
        self.assertEqual((failed["user"], failed["token_sha256"], failed["reason"],
                          failed["log_level"]),
                         ("alice", session.hashed_session_token,
                          "ZeroDivisionError: callback boom", LogLevel.error))
        self.assertIn("request_callback failed for user='alice'", server.log.text)

    def test_session_table_full(self) -> None:
        """A login refused because the table is full is a login_refused event."""
        recorder = EventRecorder(self)
        server = MemoryServer(max_sessions=1)
        server.login()
        self.assertEqual(server.post("/login", {"username": "bob",
                                                "password": "securepassword"}).code, 503)
        [refused] = recorder.named("login_refused")
        self.assertEqual((refused["user"], refused["reason"]), ("bob", "session table full"))

    def test_hashed_login_events(self) -> None:
        """A login checked in the hash pool is audited the same way."""
        from serverapi import hashPassword

        recorder = EventRecorder(self)
        pool = HeldPool()
        server = MemoryServer(credentials={"alice": hashPassword("pw")}, hash_pool=pool)
        channel, transport = server.connect()
        channel.dataReceived(request_bytes("/login", b'{"username": "alice", "password": "x"}'))
        pool.release()
        self.assertEqual(status_of(transport.value()), 401)
        self.assertEqual([(e["event"], e["peer"]) for e in recorder.events],
                         [("login_failed", "10.0.0.7")])

    def test_registry_accepts_plain_logger(self) -> None:
        """A SessionRegistry given a plain logging.Logger still audits."""
        recorder = EventRecorder(self)
        logger, handler = recording_logger()
        registry = SessionRegistry(now=lambda: 0.0, logger=logger)
        registry.end(registry.create("carol", "10.0.0.2"), "testing")
        self.assertEqual([(e["event"], e["user"], e["reason"]) for e in recorder.events],
                         [("session_ended", "carol", "testing")])
        self.assertIn("Session ended (testing): user='carol'", handler.text)
