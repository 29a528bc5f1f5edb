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

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, now: float | None = None) -> None:
        """Start C{key}'s deadline now (C{now}: the clock's time, when the caller has it)."""
        self._due[key] = (self._clock.seconds() if now is None else now) + self._delay
        if self._timer is None:
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
        """Expire every key that is due, then wait for the next one.

        Other threads may L{discard} keys meanwhile, so every read tolerates a key gone missing.
        """
        self._timer = None
        due = self._due
        now = self._clock.seconds()
        while due:
            try:
                key = next(iter(due))
            except (StopIteration, RuntimeError):  # emptied or changed by another thread
                continue
            when = due.get(key)
            if when is None:
                continue
            if when > now:
                self._timer = self._clock.callLater(when - now, self._expire)
                return
            if due.pop(key, None) is not None:
                self._on_expire(key)
