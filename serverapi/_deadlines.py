"""Many deadlines of the same length under one timer: cheaper than a DelayedCall each."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Deadlines:
    """Calls a key's C{on_expire} unless the key is discarded within C{delay} seconds.

    Every key gets the same delay, so insertion order is deadline order: one timer, set for the
    oldest key, serves them all.
    """

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        self._clock = clock
        self._delay = delay
        self._due: dict[object, tuple[float, Callable[[], object]]] = {}
        self._timer: IDelayedCall | None = None

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: object, on_expire: Callable[[], object]) -> None:
        """Start C{key}'s deadline now."""
        self._due[key] = (self._clock.seconds() + self._delay, on_expire)
        if self._timer is None:
            self._timer = self._clock.callLater(self._delay, self._expire)

    def discard(self, key: object) -> bool:
        """Stop C{key}'s deadline; return whether it was still running."""
        return self._due.pop(key, None) is not None

    def clear(self) -> None:
        """Drop every deadline and the timer."""
        self._due.clear()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _expire(self) -> None:
        """Expire every key that is due, then wait for the next one."""
        self._timer = None
        due = self._due
        now = self._clock.seconds()
        while due:
            key = next(iter(due))
            when, on_expire = due[key]
            if when > now:
                self._timer = self._clock.callLater(when - now, self._expire)
                return
            del due[key]
            on_expire()
