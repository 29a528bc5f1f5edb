"""Sliding-window counters of failed logins per username and per peer, bounded in memory."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

MAX_TRACKED_KEYS = 100_000


class _FailureWindow:
    """Failure timestamps per key within a sliding window, each key keeping at most C{limit}."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        """Seconds until C{key} may try again, or 0 when it is not throttled."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0.0
        if len(times) < self._limit:
            return 0.0
        return times[0] + self._window - now

    def record(self, key: str, now: float) -> None:
        """Count a failure for C{key} at C{now}; the least recently failed key goes past the cap."""
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self._max_keys:
                self._failures.popitem(last=False)
            times = self._failures[key] = deque(maxlen=self._limit)
        else:
            self._failures.move_to_end(key)
        times.append(now)

    def forget(self, key: str) -> None:
        """Drop C{key}'s failures (after a successful login)."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


class LoginThrottle:
    """Decides whether a login attempt is refused with 429, and for how long."""

    def __init__(self, *, now: Callable[[], float], attempts: int, window: float,
                 peer_attempts: int, max_keys: int = MAX_TRACKED_KEYS) -> None:
        self._now = now
        self._users = _FailureWindow(attempts, window, max_keys)
        self._peers = _FailureWindow(peer_attempts, window, max_keys)

    def retry_after(self, username: str, peer: str) -> float:
        """Seconds the attempt must wait (0 to go ahead); a refusal counts as no failure."""
        now = self._now()
        return max(self._users.retry_after(username, now), self._peers.retry_after(peer, now))

    def failed(self, username: str, peer: str) -> None:
        """Record a failed login for both the username and the peer."""
        now = self._now()
        self._users.record(username, now)
        self._peers.record(peer, now)

    def succeeded(self, username: str) -> None:
        """Clear the username's failures after a successful login."""
        self._users.forget(username)

    def tracked(self) -> int:
        """How many usernames and peers have failures on record."""
        return len(self._users) + len(self._peers)
