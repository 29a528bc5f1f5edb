"""Hands work to a pool with a bound on jobs in flight and a deadline on each job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._workers import CallbackPool

OnResult = Callable[[bool, Any], None]
OnTimeout = Callable[[], None]


class Dispatcher:
    """Runs jobs in a pool; refuses new ones past C{capacity}; times out slow ones.

    A job counts against C{capacity} from submission until its worker returns, even when its
    client was already answered because the deadline passed: a stuck worker is not a free one.
    Everything here runs on the reactor thread.
    """

    def __init__(self, pool: CallbackPool, clock: IReactorTime, *, capacity: int,
                 deadline: float) -> None:
        self._pool = pool
        self._clock = clock
        self._capacity = capacity
        self._deadline = deadline
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def full(self) -> bool:
        """Whether a new job would go past the bound (the caller answers 503)."""
        return self.in_flight >= self._capacity

    def run(self, work: Callable[[], Any], on_result: OnResult, on_timeout: OnTimeout) -> None:
        """Run C{work} in the pool; then C{on_result(ok, value)}, or C{on_timeout()} if late."""
        self.in_flight += 1
        timer: IDelayedCall = self._clock.callLater(self._deadline, on_timeout)

        def done(ok: bool, value: Any) -> None:
            self.in_flight -= 1
            if timer.active():
                timer.cancel()
                on_result(ok, value)
            if not self.in_flight and self._idle_waiters:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)

        self._pool.submit(work, done)

    def idle(self) -> Deferred[None]:
        """A Deferred that fires once no job is in flight."""
        if not self.in_flight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter
