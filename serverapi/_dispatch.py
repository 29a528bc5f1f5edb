"""Hands work to a pool with a bound on jobs in flight and a deadline on each job."""

from __future__ import annotations

from operator import methodcaller
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime

from ._deadlines import Deadlines
from ._workers import CallbackPool


class Job:
    """A unit of work for a Dispatcher: C{run} in a worker, then C{finished} or C{expired}.

    Subclasses define the three methods and their own slots; the job itself is what the pool
    queues and what the deadline table keys, so a request waiting for a worker costs one object.
    They may also override the hook L{wanted}, which a worker consults right before C{run}.
    """

    __slots__ = ("dispatcher",)

    dispatcher: Dispatcher

    def run(self) -> Any:
        """In a worker: do the work."""
        raise NotImplementedError()

    def finished(self, ok: bool, value: Any) -> None:
        """On the reactor: the work returned C{value} (C{ok}) or raised it, within the deadline."""
        raise NotImplementedError()

    def expired(self) -> None:
        """On the reactor: the deadline passed first; C{finished} will not be called."""
        raise NotImplementedError()

    def wanted(self) -> bool:
        """Whether the job should still run; a worker asks right before C{run} (default: yes).

        Override it to skip work nobody waits for any more, e.g. C{not request._disconnected}
        when the client has gone.  A job that is not wanted is never run: the pool reports it
        dropped, its place is freed, and neither C{finished} nor C{expired} is called, so nothing
        is written to its client.  It must be cheap and safe to call from any thread (the
        dispatcher also asks it, on the reactor, about jobs the pool drops).
        """
        return True

    def done(self, ok: bool, value: Any) -> None:
        """The pool's report that C{run} ended."""
        self.dispatcher._returned(self, ok, value)

    def dropped(self) -> None:
        """The pool's report that C{run} will never be called (it stopped, or not wanted)."""
        self.dispatcher._dropped(self)


class Dispatcher:
    """Runs jobs in a pool; refuses new ones past C{capacity}; times out slow ones.

    A job counts against C{capacity} from submission until its worker returns (or the pool
    drops it), even when its client was already answered because the deadline passed: a stuck
    worker is not a free one.  A job the pool drops while its client still waits (the pool was
    stopped) is answered through C{expired}.  Everything here runs on the reactor thread.
    """

    def __init__(self, pool: CallbackPool, clock: IReactorTime, *, capacity: int,
                 deadline: float) -> None:
        self._pool = pool
        self._capacity = capacity
        self.deadlines: Deadlines[Job] = Deadlines(clock, deadline,
                                                     methodcaller("expired"))
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def full(self) -> bool:
        """Whether a new job would go past the bound (the caller answers 503)."""
        return self.in_flight >= self._capacity

    def run(self, job: Job) -> None:
        """Run C{job} in the pool; it hears how it ended."""
        self.in_flight += 1
        job.dispatcher = self
        self.deadlines.add(job)
        self._pool.submit(job)

    def _returned(self, job: Job, ok: bool, value: Any) -> None:
        """A worker returned: free its place, and report unless the deadline passed first."""
        self.in_flight -= 1
        try:
            if self.deadlines.discard(job):
                job.finished(ok, value)
        finally:
            self._settle()

    def _dropped(self, job: Job) -> None:
        """The pool will never run C{job}: free its place; answer C{expired} if still wanted."""
        self.in_flight -= 1
        try:
            if self.deadlines.discard(job) and job.wanted():
                job.expired()
        finally:
            self._settle()

    def _settle(self) -> None:
        """Tell whoever waits for idleness once no job is in flight."""
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
