"""A connection's idle timeout that keeps one timer however many requests pass through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall


class IdleTimeout:
    """C{TimeoutMixin}'s C{setTimeout} and C{resetTimeout}, without a new timer per request.

    C{HTTPChannel} switches its idle timeout off while it handles a request and on again once
    the answer is written.  C{TimeoutMixin} does that by cancelling its timer and making a new
    one: two changes to the reactor's timer heap per request.  Here switching the timeout off
    or restarting it only notes when the connection falls due; the one timer, when it fires,
    closes the connection if it is due, sleeps again for the rest of the time if it is not, and
    does nothing while the timeout is off.  A due time earlier than the timer's (a shorter
    timeout, or a clock set back) moves the timer.

    The class using it has C{timeoutConnection} and C{callLater}, as with C{TimeoutMixin}, and
    is given C{seconds}, the clock of its C{callLater}, when that is not the global reactor.
    """

    timeOut: float | None
    callLater: Callable[..., IDelayedCall]
    timeoutConnection: Callable[[], Any]
    #: When the connection times out if nothing happens before; C{None}: it does not.
    _idle_due: float | None = None
    _idle_timer: IDelayedCall | None = None
    #: The timer's own C{getTime()}, kept here because every request compares with it.
    _idle_timer_at = 0.0

    def seconds(self) -> float:
        """The time on the global reactor's clock (an instance may be given another)."""
        from twisted.internet import reactor

        return float(reactor.seconds())  # type: ignore[attr-defined]

    def setTimeout(self, period: float | None) -> float | None:
        """Change the timeout to C{period} seconds from now (C{None}: off); the old period."""
        previous, self.timeOut = self.timeOut, period
        if period is None:
            self._idle_due = None
            return previous
        due = self._idle_due = self.seconds() + period
        if self._idle_timer is None:
            self._arm(due, period)
        elif due < self._idle_timer_at:
            self._rearm(due)
        return previous

    def resetTimeout(self) -> None:
        """Something happened: the timeout, if on, counts from now again."""
        if self._idle_due is not None and self.timeOut is not None:
            due = self._idle_due = self.seconds() + self.timeOut
            if due < self._idle_timer_at:  # the clock went back, or timeOut was shortened
                self._rearm(due)

    def _arm(self, due: float, delay: float) -> None:
        """Wake up in C{delay} seconds, at C{due}."""
        self._idle_timer_at = due
        self._idle_timer = self.callLater(delay, self._idle_check)

    def _rearm(self, due: float) -> None:
        """Wake up at C{due}, earlier than the timer would have."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        self._arm(due, max(0.0, due - self.seconds()))

    def _idle_check(self) -> None:
        """The timer fired: time out if due, sleep again if not, nothing if the timeout is off."""
        self._idle_timer = None
        due = self._idle_due
        if due is None:
            return
        left = due - self.seconds()
        if left > 0:
            self._arm(due, left)
            return
        self._idle_due = None
        self.timeoutConnection()

    def stop_idle_timer(self) -> None:
        """The connection is closing or gone: drop the timer now, not when it would fire."""
        self._idle_due = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
