"""Hands work to a pool with a bound on jobs in flight and a deadline on each job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from ._deadlines import Deadlines
from ._workers import CallbackPool

class Job(Protocol):
    """What a dispatched job tells when it ends."""

    def finished(self, ok: bool, value: Any) -> None:
        """The work returned C{value} (C{ok}) or raised it (not C{ok}) within the deadline."""

    def expired(self) -> None:
        """The deadline passed first; C{finished} will not be called."""


class Dispatcher:
    """Runs jobs in a pool; refuses new ones past C{capacity}; times out slow ones.

    A job counts against C{capacity} from submission until its worker returns, even when its
    client was already answered because the deadline passed: a stuck worker is not a free one.
    Everything here runs on the reactor thread.
    """

    def __init__(self, pool: CallbackPool, clock: IReactorTime, *, capacity: int,
                 deadline: float) -> None:
        self._pool = pool
        self._capacity = capacity
        self.deadlines = Deadlines(clock, deadline)
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def full(self) -> bool:
        """Whether a new job would go past the bound (the caller answers 503)."""
        return self.in_flight >= self._capacity

    def run(self, work: Callable[[], Any], job: Job) -> None:
        """Run C{work} in the pool, then tell C{job} how it ended."""
        self.in_flight += 1
        self.deadlines.add(job, job.expired)
        self._pool.submit(work, _Ticket(self, job))

    def _returned(self, job: Job, ok: bool, value: Any) -> None:
        """A worker returned: free its place, and report unless the deadline passed first."""
        self.in_flight -= 1
        if self.deadlines.discard(job):
            job.finished(ok, value)
        if not self.in_flight and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def idle(self) -> Deferred[None]:
        """A Deferred that fires once no job is in flight."""
        if not self.in_flight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter


class _Ticket:
    """The pool's C{done} for one job (a small object rather than a closure per request)."""

    __slots__ = ("dispatcher", "job")

    def __init__(self, dispatcher: Dispatcher, job: Job) -> None:
        self.dispatcher = dispatcher
        self.job = job

    def __call__(self, ok: bool, value: Any) -> None:
        self.dispatcher._returned(self.job, ok, value)
