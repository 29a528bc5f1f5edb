"""The failed-login throttle on a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._throttle import ADDRESS_GROUPS_REMEMBERED, LoginThrottle, address_group


class ThrottleTests(SynchronousTestCase):
    """Sliding windows per (username, address), per address and per username."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10,
                                      max_keys=4)

    def test_sliding_window(self) -> None:
        """Failures older than the window stop counting, one by one."""
        for _ in range(3):
            self.throttle.failed("alice", "p")
            self.clock.advance(2)
        self.assertEqual(self.throttle.retry_after("alice", "p"), 4)
        self.clock.advance(4)
        self.assertEqual(self.throttle.retry_after("alice", "p"), 0)
        self.throttle.failed("alice", "p")
        self.assertEqual(self.throttle.retry_after("alice", "p"), 2)

    def test_other_address_not_locked_out(self) -> None:
        """Failures for a user from one address do not lock that user out elsewhere."""
        for _ in range(3):
            self.throttle.failed("alice", "attacker")
        self.assertGreater(self.throttle.retry_after("alice", "attacker"), 0)
        self.assertEqual(self.throttle.retry_after("alice", "home"), 0)

    def test_success_clears_pair(self) -> None:
        """A successful login clears that (username, address)'s failures."""
        for _ in range(2):
            self.throttle.failed("alice", "p")
        self.throttle.succeeded("alice", "p")
        self.throttle.failed("alice", "p")
        self.assertEqual(self.throttle.retry_after("alice", "p"), 0)

    def test_address_limit(self) -> None:
        """An address failing across usernames is throttled at 10 x attempts."""
        throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10)
        for index in range(29):
            throttle.failed(f"user{index}", "p")
        self.assertEqual(throttle.retry_after("fresh", "p"), 0)
        throttle.failed("user29", "p")
        self.assertGreater(throttle.retry_after("fresh", "p"), 0)
        self.assertEqual(throttle.retry_after("fresh", "other"), 0)

    def test_username_limit(self) -> None:
        """A username failing from many addresses is throttled at 100 x attempts."""
        throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10)
        for index in range(299):
            throttle.failed("alice", f"10.0.{index // 250}.{index % 250}")
        self.assertEqual(throttle.retry_after("alice", "192.0.2.1"), 0)
        throttle.failed("alice", "10.9.9.9")
        self.assertGreater(throttle.retry_after("alice", "192.0.2.1"), 0)
        self.assertEqual(throttle.retry_after("bob", "192.0.2.1"), 0)

    def test_bounded(self) -> None:
        """Past max_keys, the least recently failed keys are forgotten."""
        for index in range(100):
            self.throttle.failed(f"user{index}", f"peer{index}")
        self.assertEqual(self.throttle.tracked(), 12)

    def test_expired_keys_pruned(self) -> None:
        """Keys whose failures all left the window are dropped as new failures arrive."""
        throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10)
        for index in range(50):
            throttle.failed(f"user{index}", f"peer{index}")
        self.assertEqual(throttle.tracked(), 150)
        self.clock.advance(11)
        throttle.failed("late", "peer")
        self.assertEqual(throttle.tracked(), 3)

    def test_long_usernames_kept_small(self) -> None:
        """Usernames are keyed by a fixed-size digest, whatever their length."""
        throttle = LoginThrottle(now=self.clock.seconds, attempts=3, window=10)
        throttle.failed("x" * 60_000, "p")
        keys = [key for window in (throttle._pairs, throttle._users)
                for key in window._failures]
        self.assertEqual([len(key) for key in keys], [16, 16])

    def test_ipv6_grouped_by_64(self) -> None:
        """IPv6 addresses count per /64; IPv4-mapped ones as their IPv4 address."""
        self.assertEqual(address_group("2001:db8::1"), "2001:db8::/64")
        self.assertEqual(address_group("2001:db8::ffff:1"), "2001:db8::/64")
        self.assertEqual(address_group("::ffff:192.0.2.1"), "192.0.2.1")
        self.assertEqual(address_group("192.0.2.1"), "192.0.2.1")
        for index in range(3):
            self.throttle.failed("alice", f"2001:db8::{index + 1}")
        self.assertGreater(self.throttle.retry_after("alice", "2001:db8::99"), 0)

    def test_remembered_groups_bounded(self) -> None:
        """Groups are remembered for a bounded number of addresses, and stay right past it."""
        for index in range(ADDRESS_GROUPS_REMEMBERED + 500):
            address_group(f"2001:db8:{index:x}::1")
        self.assertLessEqual(address_group.cache_info().currsize, ADDRESS_GROUPS_REMEMBERED)
        self.assertEqual(address_group("2001:db8:0::7"), "2001:db8::/64")
        self.assertEqual(address_group("not an address"), "not an address")
