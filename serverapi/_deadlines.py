"""Many deadlines of the same length under one timer: cheaper than a DelayedCall each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

K = TypeVar("K")


class Deadlines(Generic[K]):
    """Calls C{on_expire(key)} for each key not discarded within C{delay} seconds of its adding.

    Every key gets the same delay, so insertion order is deadline order: one timer, set for the
    oldest key, serves them all, and a running deadline costs one float.
    """

    def __init__(self, clock: IReactorTime, delay: float, on_expire: Callable[[K], object]) -> None:
        self._clock = clock
        self._delay = delay
        self._on_expire = on_expire
        self._due: dict[K, float] = {}
        self._timer: IDelayedCall | None = None
        self._expiring = False

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: K) -> bool:
        return key in self._due

    def add(self, key: K, now: float | None = None) -> None:
        """Start C{key}'s deadline now (C{now}: the clock's time, when the caller has it)."""
        self._due[key] = (self._clock.seconds() if now is None else now) + self._delay
        if self._timer is None and not self._expiring:  # (expiring: it sets one when done)
            self._timer = self._clock.callLater(self._delay, self._expire)

    def discard(self, key: K) -> bool:
        """Stop C{key}'s deadline; return whether it was still running.

        Safe from any thread: a single dict pop, atomic, so when a worker takes a key while
        the reactor expires it, exactly one of them gets it.
        """
        return self._due.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every deadline and the timer."""
        self._due.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expire(self) -> None:
        """Expire every key that is due, then wait for the oldest one left.

        An C{on_expire} may add keys (a refused request lets the next pipelined one in): they
        fall due after every key here, so the one timer set at the end serves them too, and it
        is set even if an C{on_expire} raises.
        """
        self._timer = None
        self._expiring = True
        try:
            self._expire_due(self._clock.seconds())
        finally:
            self._expiring = False
            self._wait_for_oldest()

    def _expire_due(self, now: float) -> None:
        """Expire the keys due by C{now}, oldest first.

        Other threads may L{discard} keys meanwhile, so every read tolerates a key gone missing.
        """
        due = self._due
        while due:
            key = self._oldest()
            if key is None:
                return
            when = due.get(key)
            if when is None:
                continue
            if when > now:
                return
            if due.pop(key, None) is not None:
                self._on_expire(key)

    def _wait_for_oldest(self) -> None:
        """Set the timer for the oldest key's deadline, if a key is left and no timer is set."""
        due = self._due
        while due and self._timer is None:
            key = self._oldest()
            when = None if key is None else due.get(key)
            if when is not None:
                delay = max(0.0, when - self._clock.seconds())
                self._timer = self._clock.callLater(delay, self._expire)

    def _oldest(self) -> K | None:
        """The key added first, or C{None} if none is left (another thread may be taking
        keys: a dict that changes while it is read is read again)."""
        while self._due:
            try:
                return next(iter(self._due))
            except StopIteration:
                return None
            except RuntimeError:  # changed size while being read
                continue
        return None
