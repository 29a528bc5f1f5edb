"""The periodic validity sweep on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi import LoginSession
from serverapi._sessions import SessionRegistry
from serverapi._sweep import SessionSweeper

from .helpers import MemoryServer, recording_logger


class TurnClock(Clock):
    """A Clock whose C{advance} runs only the calls due when it starts: one reactor iteration.

    (A real reactor runs calls scheduled during an iteration in the next one; C{Clock} would
    run them at once, hiding whether the sweep yields.)
    """

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._sortCalls()
        due = [call for call in self.calls if call.getTime() <= self.rightNow]
        for call in due:
            self.calls.remove(call)
            call.called = 1
            call.func(*call.args, **call.kw)


class SweepTests(SynchronousTestCase):
    """SessionSweeper runs the validity callback for every session, every interval."""

    def setUp(self) -> None:
        self.checked: list[str] = []
        self.invalid: set[str] = set()
        self.clock = TurnClock()
        self.logger, self.log = recording_logger()
        self.sessions = SessionRegistry(now=self.clock.seconds, logger=self.logger,
                                        validity_callback=self.valid)
        self.sweeper = SessionSweeper(self.sessions, self.clock, 1.0, self.logger, chunk=3)

    def valid(self, session: LoginSession) -> bool:
        self.checked.append(session.username)
        if session.username == "boom":
            raise ValueError("sweep boom")
        return session.username not in self.invalid

    def test_every_interval(self) -> None:
        """Each interval every session is checked once; False ends it; login does not check."""
        for name in ["a", "b"]:
            self.sessions.create(name)
        self.sweeper.start()
        self.assertEqual(self.checked, [])
        self.clock.advance(1)
        self.assertEqual(self.checked, ["a", "b"])
        self.invalid.add("a")
        self.clock.advance(1)
        self.assertEqual([s.username for s in self.sessions.snapshot()], ["b"])
        self.clock.advance(1)
        self.assertEqual(self.checked, ["a", "b", "a", "b", "b"])

    def test_exception_logged_sweep_continues(self) -> None:
        """A raising callback ends that session, is logged, and the sweep goes on."""
        for name in ["a", "boom", "c"]:
            self.sessions.create(name)
        self.sweeper.start()
        self.clock.advance(1)
        self.assertEqual([s.username for s in self.sessions.snapshot()], ["a", "c"])
        self.assertIn("sweep boom", self.log.text)
        self.clock.advance(1)
        self.assertEqual(self.checked, ["a", "boom", "c", "a", "c"])

    def test_any_failure_ends_one_session_and_sweep_goes_on(self) -> None:
        """SystemExit, KeyboardInterrupt or a raising truth value end one session; sweeps go on."""

        class Undecidable:
            """A verdict whose truth value raises."""

            def __bool__(self) -> bool:
                raise ValueError("no truth value")

        raising: dict[str, BaseException] = {"exit": SystemExit(1),
                                             "interrupt": KeyboardInterrupt()}

        def valid(session: LoginSession) -> object:
            self.checked.append(session.username)
            if session.username in raising:
                raise raising[session.username]
            if session.username == "undecidable":
                return Undecidable()
            return session.username not in self.invalid

        sessions = SessionRegistry(now=self.clock.seconds, logger=self.logger,
                                   validity_callback=valid)
        for name in ["exit", "a", "interrupt", "undecidable", "b"]:
            sessions.create(name)
        sweeper = SessionSweeper(sessions, self.clock, 1.0, self.logger, chunk=2)
        sweeper.start()
        for turn in (1, 0, 0):  # five sessions, two per reactor turn
            self.clock.advance(turn)
        self.assertEqual([s.username for s in sessions.snapshot()], ["a", "b"])
        for text in ("SystemExit", "KeyboardInterrupt", "no truth value", "Traceback"):
            self.assertIn(text, self.log.text)
        self.invalid.add("a")
        self.clock.advance(1)
        self.clock.advance(0)
        self.assertEqual([s.username for s in sessions.snapshot()], ["b"])
        self.assertTrue(sweeper._loop.running)
        sweeper.stop()

    def test_chunks_yield_to_reactor(self) -> None:
        """A large registry is checked a chunk per reactor turn, not all at once."""
        for index in range(8):
            self.sessions.create(f"user{index}")
        self.sweeper.start()
        self.clock.advance(1)
        self.assertEqual(len(self.checked), 3)
        self.clock.advance(0)
        self.assertEqual(len(self.checked), 6)
        self.clock.advance(0)
        self.assertEqual(len(self.checked), 8)
        self.clock.advance(0)
        self.assertEqual(len(self.checked), 8)

    def test_no_overlapping_sweeps(self) -> None:
        """The next sweep waits for the current one to finish."""
        for index in range(8):
            self.sessions.create(f"user{index}")
        sweeper = SessionSweeper(self.sessions, self.clock, 0.001, self.logger, chunk=3)
        sweeper.start()
        self.clock.advance(0.001)
        self.clock.advance(0.001)  # a sweep is under way: only its next chunk runs
        self.assertEqual(len(self.checked), 6)
        sweeper.stop()
        self.clock.advance(1)
        self.assertEqual(len(self.checked), 6)

    def test_sessions_ended_mid_sweep_are_skipped(self) -> None:
        """A session that ended between chunks is not checked."""
        created = [self.sessions.create(f"user{index}") for index in range(6)]
        self.sweeper.start()
        self.clock.advance(1)
        self.sessions.end(created[4], "logout")
        self.clock.advance(0)
        self.assertEqual(self.checked, ["user0", "user1", "user2", "user3", "user5"])

    def test_service_sweeps(self) -> None:
        """The service runs the sweep every session_check_interval on its reactor."""
        seen: list[str] = []
        server = MemoryServer(session_validity_callback=lambda s: seen.append(s.username) or
                              False, session_check_interval=2)
        server.login()
        server.reactor.advance(1.9)
        self.assertEqual(seen, [])
        server.reactor.advance(0.1)
        self.assertEqual(seen, ["alice"])
        self.assertEqual(server.service.getSessions(), [])

    def test_expiry_in_sweep(self) -> None:
        """Idle and maximum-age expiry also happen in the sweep, without any request."""
        server = MemoryServer(session_idle_timeout=5, session_check_interval=1)
        server.login()
        server.reactor.advance(4)
        self.assertEqual(len(server.service.getSessions()), 1)
        server.reactor.advance(1)
        self.assertEqual(server.service.getSessions(), [])
        self.assertIn("expired: idle", server.log.text)
