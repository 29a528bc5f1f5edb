"""Timing for metrics: how long callbacks ran and how long validity sweeps took.

Both are measured on the reactor thread into plain-int histograms (L{Histogram}), so a worker
thread takes no lock to be timed.  Used only when metrics are configured.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from ._counters import Histogram
from ._dispatch import Dispatcher, Job
from ._sweep import SessionSweeper


class TimedDispatcher(Dispatcher):
    """A dispatcher that records each finished job's time from the start of its run until its
    result is back on the reactor (what the client waits for, once a worker has taken it)."""

    def __init__(self, *args: Any, histogram: Histogram, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._histogram = histogram

    def _returned(self, job: Job, ok: bool, value: Any) -> None:
        """Record the run's duration, then hand the result on as usual."""
        started = job.started_at
        if started is not None:
            self._histogram.observe(max(0.0, self._clock.seconds() - started))
        super()._returned(job, ok, value)


class TimedSweeper(SessionSweeper):
    """A sweeper that records each sweep's duration, from its first chunk to its last (a sweep
    cut short by a stop counts until the stop)."""

    def __init__(self, *args: Any, histogram: Histogram, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._histogram = histogram

    def _sweep(self) -> Deferred[None]:
        """Start one sweep and record its duration when it ends."""
        started = self._clock.seconds()
        done: Deferred[None] | None = super()._sweep()
        if done is None:  # it ended within this call (there were few sessions)
            self._swept(None, started)
            return None  # type: ignore[return-value]
        return done.addCallback(self._swept, started)

    def _swept(self, result: None, started: float) -> None:
        """A sweep ended."""
        self._histogram.observe(max(0.0, self._clock.seconds() - started))
        return result
