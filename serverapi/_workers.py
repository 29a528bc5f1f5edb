"""A fixed pool of daemon worker threads whose results return to the reactor in batches."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.logger import Logger

_log = Logger(namespace="serverapi")
_DROPPED = object()  # in place of a result: the job was never run


class PoolJob(Protocol):
    """Work for a pool: C{run()} in a worker, then C{done(ok, value)} on the reactor.

    Or, instead of both, C{dropped()} on the reactor: the pool stopped before a worker took the
    job, or C{start()} said no right before it would have run.
    """

    def start(self) -> bool:
        """In a worker, right before C{run()}: claim the job, or say it must not run (cheap)."""

    def run(self) -> Any:
        """Do the work (in a worker thread) and return its result."""

    def done(self, ok: bool, value: Any) -> None:
        """On the reactor: the result of C{run()} (C{ok}), or what it raised (not C{ok})."""

    def dropped(self) -> None:
        """On the reactor: C{run()} was not called and never will be."""


class CallbackPool(Protocol):
    """What the core needs from a pool."""

    def start(self) -> None:
        """Start the workers."""

    def submit(self, job: PoolJob) -> None:
        """Run C{job.run()} in a worker; later call C{job.done(ok, value)} on the reactor."""

    def stop(self) -> None:
        """Start no more jobs, dropping those not started yet; never blocks.

        Jobs already running finish and report as usual; every other job submitted, before or
        after, gets C{dropped()} (those waiting in the pool before C{stop} returns).
        """


class ThreadedCallbackPool:
    """Runs jobs on C{size} daemon threads, handing work over and results back in batches.

    Jobs submitted during one reactor iteration are handed to the workers together at its end,
    so workers do not wake (and contend for the GIL) while the reactor is still reading requests.
    A worker that finishes a job appends the result to a shared list and wakes the reactor only
    when that list was empty, so under load one wake-up delivers many results.  The threads are
    daemons: a callback stuck forever can delay nothing but its own request, not a stop or the
    process exit.  A job is one object, so a request waiting for a worker holds few objects for
    the garbage collector to track.  A worker asks C{job.start()} right before running a job,
    and once the pool has stopped it starts nothing: jobs it skips are reported as dropped.
    """

    def __init__(self, reactor: Any, size: int, name: str = "serverapi") -> None:
        self._reactor: IReactorFromThreads = reactor
        self._clock: IReactorTime = reactor
        self._batch: list[PoolJob] = []
        self._size = size
        self._name = name
        self._jobs: queue.SimpleQueue[PoolJob | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._results: list[tuple[PoolJob, bool, Any]] = []
        self._threads: list[threading.Thread] = []
        self._stopped = False

    def start(self) -> None:
        """Start the worker threads."""
        for index in range(self._size):
            thread = threading.Thread(target=self._work, name=f"{self._name}-worker-{index}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def submit(self, job: PoolJob) -> None:
        """Queue C{job} for the workers at the end of this reactor iteration (or drop it)."""
        if self._stopped:
            _report(job, False, _DROPPED)
            return
        batch = self._batch
        batch.append(job)
        if len(batch) == 1:
            self._clock.callLater(0, self._hand_over)

    def _hand_over(self) -> None:
        """On the reactor: give this iteration's jobs to the workers."""
        batch, self._batch = self._batch, []
        put = self._jobs.put
        for job in batch:
            put(job)

    def stop(self) -> None:
        """On the reactor: drop every job not started yet; each worker exits after its own."""
        if self._stopped:
            return
        self._stopped = True  # from here on, no worker starts a job
        waiting, self._batch = self._batch, []
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                waiting.append(job)
        for _ in self._threads:
            self._jobs.put(None)
        for job in waiting:
            _report(job, False, _DROPPED)

    def join(self, timeout: float) -> None:
        """Wait up to C{timeout} seconds in all for the workers to exit (not on the reactor)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        """A worker's loop: run jobs until told to stop."""
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                if self._stopped or not job.start():
                    result: tuple[PoolJob, bool, Any] = (job, False, _DROPPED)
                else:
                    result = (job, True, job.run())
            except BaseException as error:  # handed to the reactor, which logs it
                result = (job, False, error)
            with self._lock:
                self._results.append(result)
                wake = len(self._results) == 1
            # Hold nothing while waiting for the next job: a worker that kept the batch it
            # added to would keep every answered request in it alive until its next job.
            del job, result
            if wake:
                self._reactor.callFromThread(self._deliver)

    def _deliver(self) -> None:
        """On the reactor: hand every finished result to its job, whatever another one does.

        Each result is let go as soon as it is handed over, so an answered request is freed
        at once rather than when the whole batch is done.
        """
        with self._lock:
            results, self._results = self._results, []
        results.reverse()
        take = results.pop
        while results:
            _report(*take())


def _report(job: PoolJob, ok: bool, value: Any) -> None:
    """On the reactor: tell C{job} how it ended (or that it was dropped), logging any error."""
    try:
        if value is _DROPPED:
            job.dropped()
        else:
            job.done(ok, value)
    except BaseException:  # one job's failure never costs another its result
        _log.failure("serverapi: reporting a job's outcome failed")
