"""The failed-login throttle on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._throttle import LoginThrottle


class ThrottleTests(SynchronousTestCase):
    """Sliding windows per username and per peer, bounded in memory."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10,
                                      peer_attempts=5, max_keys=4)

    def test_sliding_window(self) -> None:
        """Failures older than the window stop counting, one by one."""
        for _ in range(3):
            self.throttle.failed("alice", "p")
            self.clock.advance(2)
        self.assertEqual(self.throttle.retry_after("alice", "q"), 4)
        self.clock.advance(4)
        self.assertEqual(self.throttle.retry_after("alice", "q"), 0)
        self.throttle.failed("alice", "p")
        self.assertEqual(self.throttle.retry_after("alice", "q"), 2)

    def test_success_clears_username(self) -> None:
        """A successful login clears the username's failures (not the peer's)."""
        for _ in range(2):
            self.throttle.failed("alice", "p")
        self.throttle.succeeded("alice")
        self.throttle.failed("alice", "p")
        self.assertEqual(self.throttle.retry_after("alice", "other"), 0)

    def test_peer_limit(self) -> None:
        """A peer failing across usernames is throttled at its own limit."""
        for index in range(5):
            self.throttle.failed(f"user{index}", "p")
        self.assertGreater(self.throttle.retry_after("fresh", "p"), 0)
        self.assertEqual(self.throttle.retry_after("fresh", "other"), 0)

    def test_bounded(self) -> None:
        """Past max_keys, the least recently failed keys are forgotten."""
        for index in range(100):
            self.throttle.failed(f"user{index}", f"peer{index}")
        self.assertEqual(self.throttle.tracked(), 8)
