"""Hands work to a pool: refusal by waiting time, a deadline on running, backpressure past a
queue length."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from ._deadlines import Deadlines
from ._workers import CallbackPool


class Job:
    """A unit of work for a Dispatcher: C{run} in a worker, then C{finished}, or one of
    C{expired} (it ran too long) and C{overloaded} (it waited too long for a worker).

    Subclasses define C{run}, C{finished} and C{expired} and their own slots; the job itself is
    what the pool queues and what the deadline tables key, so a request waiting for a worker
    costs one object.  They may also override L{wanted}, L{overloaded} and L{hold}.
    """

    __slots__ = ("dispatcher", "started_at")

    dispatcher: Dispatcher
    started_at: float | None

    def run(self) -> Any:
        """In a worker: do the work."""
        raise NotImplementedError()

    def finished(self, ok: bool, value: Any) -> None:
        """On the reactor: the work returned C{value} (C{ok}) or raised it, within the deadline."""
        raise NotImplementedError()

    def expired(self) -> None:
        """On the reactor: the deadline passed first; C{finished} will not be called."""
        raise NotImplementedError()

    def overloaded(self) -> None:
        """On the reactor: the job waited longer than the queue allows and will not run."""
        self.expired()

    def hold(self) -> None:
        """On the reactor: the queue is long; stop reading more work from this job's source."""

    def wanted(self) -> bool:
        """Whether the job should still run; a worker asks right before C{run} (default: yes).

        Override it to skip work nobody waits for any more, e.g. C{not request._disconnected}
        when the client has gone.  A job that is not wanted is never run: the pool reports it
        dropped, its place is freed, and neither C{finished} nor C{expired} is called, so nothing
        is written to its client.  It must be cheap and safe to call from any thread (the
        dispatcher also asks it, on the reactor, about jobs the pool drops).
        """
        return True

    def start(self) -> bool:
        """In a worker, right before C{run}: claim the job, or say it must not run.

        A job runs only if it is still wanted and its queue deadline has not passed (the
        reactor and the worker race for it; exactly one wins).
        """
        dispatcher = self.dispatcher
        if not (self.wanted() and dispatcher.waiting.discard(self)):
            return False
        self.started_at = dispatcher._clock.seconds()
        return True

    def done(self, ok: bool, value: Any) -> None:
        """The pool's report that C{run} ended."""
        self.dispatcher._returned(self, ok, value)

    def dropped(self) -> None:
        """The pool's report that C{run} will never be called (stopped, unwanted, too late)."""
        self.dispatcher._dropped(self)


class Dispatcher:
    """Runs jobs in a pool with two deadlines and no refusal by count (unless C{capacity}).

    - A job waits for a worker at most C{queue_timeout} seconds, then it is answered through
      C{overloaded} and never runs: refusal by waiting time, as CoDel and Envoy decide, so a
      burst larger than the pool is queued and served rather than refused.
    - A job runs at most C{run_timeout} seconds, then it is answered through C{expired}; its
      worker stays counted as busy until it returns (a stuck worker is not a free one).
    - Past C{hold_after} jobs in flight, each new job is told to C{hold}: its connection is
      read no further until it is answered (TCP backpressure).
    - With C{capacity}, a caller may ask L{full} and refuse (the password checks do: hashing
      costs CPU, so a login flood is refused rather than queued).

    A job counts from submission until the pool is done with it.  The pool asks each job's
    C{start} right before running it; the queue deadline and that start race through one dict
    pop, which is atomic, so a job is either run or answered as overloaded, never both.
    Everything else here runs on the reactor thread.
    """

    def __init__(self, pool: CallbackPool, clock: IReactorTime, *, queue_timeout: float,
                 run_timeout: float, hold_after: int | None = None,
                 capacity: int | None = None) -> None:
        self._pool = pool
        self._clock = clock
        self._run_timeout = run_timeout
        self._hold_after = hold_after
        self._capacity = capacity
        self.waiting: Deadlines[Job] = Deadlines(clock, queue_timeout, self._waited_too_long)
        self.deadlines: Deadlines[Job] = Deadlines(clock, run_timeout, self._ran_too_long)
        self._late_starters: dict[Job, IDelayedCall] = {}
        self.in_flight = 0
        self._idle_waiters: list[Deferred[None]] = []

    def full(self) -> bool:
        """Whether a new job would go past C{capacity} (the caller answers 503)."""
        return self._capacity is not None and self.in_flight >= self._capacity

    def run(self, job: Job) -> None:
        """Run C{job} in the pool; it hears how it ended."""
        self.in_flight += 1
        job.dispatcher = self
        job.started_at = None
        now = self._clock.seconds()
        self.waiting.add(job, now)
        self.deadlines.add(job, now)
        self._pool.submit(job)
        if self._hold_after is not None and self.in_flight > self._hold_after:
            job.hold()

    def _waited_too_long(self, job: Job) -> None:
        """No worker took C{job} within the queue deadline: answer it; it will never run."""
        self._cancel_run_deadline(job)
        job.overloaded()

    def _ran_too_long(self, job: Job) -> None:
        """C{run_timeout} has passed since C{job} was submitted.

        The deadline counts from the start of the run, which the reactor learns only now: a
        job that started late gets the rest of its time on a timer of its own.  A job still
        waiting for a worker (the queue allows more than the run) is looked at again one
        C{run_timeout} later: only its queue deadline refuses it.
        """
        if job in self.waiting:
            self.deadlines.add(job)
            return
        started = job.started_at
        now = self._clock.seconds()
        left = (now if started is None else started) + self._run_timeout - now
        if left > 0:
            self._late_starters[job] = self._clock.callLater(left, self._late_expired, job)
        else:
            job.expired()

    def _late_expired(self, job: Job) -> None:
        """A job that started late ran past its deadline."""
        del self._late_starters[job]
        job.expired()

    def _cancel_run_deadline(self, job: Job) -> bool:
        """Stop C{job}'s run deadline; return whether it was still running."""
        if self.deadlines.discard(job):
            return True
        timer = self._late_starters.pop(job, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def _returned(self, job: Job, ok: bool, value: Any) -> None:
        """A worker returned: free its place, and report unless the deadline passed first."""
        self.in_flight -= 1
        try:
            if self.deadlines.discard(job) or (self._late_starters
                                               and self._cancel_run_deadline(job)):
                job.finished(ok, value)
        finally:
            if not self.in_flight:
                self._settle()

    def _dropped(self, job: Job) -> None:
        """The pool will never run C{job}: free its place; answer C{expired} if still wanted.

        A job dropped because its queue deadline passed was answered then already.
        """
        self.in_flight -= 1
        try:
            self.waiting.discard(job)
            if self._cancel_run_deadline(job) and job.wanted():
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

    def clear(self) -> None:
        """Drop every deadline and timer (the server has stopped; late results are dropped)."""
        self.waiting.clear()
        self.deadlines.clear()
        for timer in self._late_starters.values():
            timer.cancel()
        self._late_starters.clear()
