"""Deadlines: many same-length deadlines under one timer."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._deadlines import Deadlines


class DeadlinesTests(SynchronousTestCase):
    """Expiry order, discarding, and the single timer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.expired: list[str] = []
        self.deadlines: Deadlines[str] = Deadlines(self.clock, 10, self.expired.append)

    def add(self, key: str) -> None:
        self.deadlines.add(key)

    def test_expiry(self) -> None:
        """Each key expires `delay` seconds after it was added, in order."""
        self.add("a")
        self.clock.advance(4)
        self.add("b")
        self.clock.advance(5.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, ["a"])
        self.clock.advance(4)
        self.assertEqual(self.expired, ["a", "b"])
        self.assertEqual(len(self.deadlines), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_discard(self) -> None:
        """A discarded key never expires; discard tells whether it was running."""
        self.add("a")
        self.add("b")
        self.assertTrue(self.deadlines.discard("a"))
        self.assertFalse(self.deadlines.discard("a"))
        self.clock.advance(10)
        self.assertEqual(self.expired, ["b"])

    def test_one_timer(self) -> None:
        """However many keys are running, one DelayedCall serves them."""
        for index in range(100):
            self.add(str(index))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_readd_restarts(self) -> None:
        """Adding a key again restarts its deadline."""
        self.add("a")
        self.clock.advance(8)
        self.deadlines.discard("a")
        self.add("a")
        self.clock.advance(8)
        self.assertEqual(self.expired, [])
        self.clock.advance(2)
        self.assertEqual(self.expired, ["a"])

    def test_clear(self) -> None:
        """clear drops every deadline and the timer."""
        self.add("a")
        self.deadlines.clear()
        self.clock.advance(20)
        self.assertEqual((self.expired, self.clock.getDelayedCalls()), ([], []))
