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

    def test_add_while_expiring(self) -> None:
        """A key added by an expiry (a refused request lets the next one in) gets its own
        deadline and still one timer, however often that happens; clear leaves none."""

        def expire_and_add(key: str) -> None:
            self.expired.append(key)
            self.deadlines.add(key + "+")

        self.deadlines = Deadlines(self.clock, 10, expire_and_add)
        self.add("a")
        for _ in range(5):
            self.clock.advance(10)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(self.expired, ["a", "a+", "a++", "a+++", "a++++"])
        self.deadlines.clear()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_expiry_that_raises(self) -> None:
        """An expiry that raises still leaves the timer set for the keys after it."""

        def fail_on_a(key: str) -> None:
            self.expired.append(key)
            if key == "a":
                raise RuntimeError("expiry failed")

        self.deadlines = Deadlines(self.clock, 10, fail_on_a)
        self.add("a")
        self.clock.advance(1)
        self.add("b")
        self.assertRaises(RuntimeError, self.clock.advance, 9)
        self.clock.advance(1)
        self.assertEqual(self.expired, ["a", "b"])
