"""A fixed pool of daemon worker threads whose results return to the reactor in batches."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorFromThreads, IReactorTime


class PoolJob(Protocol):
    """Work for a pool: C{run()} in a worker, then C{done(ok, value)} on the reactor."""

    def run(self) -> Any:
        """Do the work (in a worker thread) and return its result."""

    def done(self, ok: bool, value: Any) -> None:
        """On the reactor: the result of C{run()} (C{ok}), or what it raised (not C{ok})."""


class CallbackPool(Protocol):
    """What the core needs from a pool."""

    def start(self) -> None:
        """Start the workers."""

    def submit(self, job: PoolJob) -> None:
        """Run C{job.run()} in a worker; later call C{job.done(ok, value)} on the reactor."""

    def stop(self) -> None:
        """Ask the workers to exit once idle; never blocks."""


class ThreadedCallbackPool:
    """Runs jobs on C{size} daemon threads, handing work over and results back in batches.

    Jobs submitted during one reactor iteration are handed to the workers together at its end,
    so workers do not wake (and contend for the GIL) while the reactor is still reading requests.
    A worker that finishes a job appends the result to a shared list and wakes the reactor only
    when that list was empty, so under load one wake-up delivers many results.  The threads are
    daemons: a callback stuck forever can delay nothing but its own request, not a stop or the
    process exit.  A job is one object, so a request waiting for a worker holds few objects for
    the garbage collector to track.
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

    def start(self) -> None:
        """Start the worker threads."""
        for index in range(self._size):
            thread = threading.Thread(target=self._work, name=f"{self._name}-worker-{index}",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def submit(self, job: PoolJob) -> None:
        """Queue C{job} for the workers at the end of this reactor iteration."""
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
        """Tell every worker to exit after its current job."""
        for _ in self._threads:
            self._jobs.put(None)

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
                result: tuple[PoolJob, bool, Any] = (job, True, job.run())
            except BaseException as error:  # handed to the reactor, which logs it
                result = (job, False, error)
            with self._lock:
                results = self._results
                results.append(result)
                wake = len(results) == 1
            if wake:
                self._reactor.callFromThread(self._deliver)
            del job, result

    def _deliver(self) -> None:
        """On the reactor: hand every finished result to its job."""
        with self._lock:
            results, self._results = self._results, []
        for job, ok, value in results:
            job.done(ok, value)
