"""The periodic validity sweep, in chunks so a large registry never stalls the reactor."""

from __future__ import annotations

import logging

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall

from ._sessions import LoginSession, SessionRegistry

SWEEP_CHUNK = 1000


class SessionSweeper:
    """Every C{interval} seconds, checks every session, C{chunk} at a time per reactor turn."""

    def __init__(self, registry: SessionRegistry, clock: IReactorTime, interval: float,
                 logger: logging.Logger, chunk: int = SWEEP_CHUNK) -> None:
        self._registry = registry
        self._clock = clock
        self._interval = interval
        self._log = logger
        self._chunk = chunk
        self._loop = LoopingCall(self._sweep)
        self._loop.clock = clock
        self._pending: IDelayedCall | None = None
        self._done: Deferred[None] | None = None

    def start(self) -> None:
        """Begin sweeping every C{interval} seconds (the first sweep one interval from now)."""
        self._loop.start(self._interval, now=False)

    def stop(self) -> None:
        """Stop sweeping, abandoning a sweep under way."""
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        if self._done is not None:
            done, self._done = self._done, None
            done.callback(None)
        if self._loop.running:
            self._loop.stop()

    def _sweep(self) -> Deferred[None]:
        """Start one sweep; the loop waits for it to end before scheduling the next."""
        self._done = Deferred()
        self._step(self._registry.snapshot(), 0)
        return self._done

    def _step(self, sessions: list[LoginSession], start: int) -> None:
        """Check one chunk, then yield to the reactor before the next."""
        self._pending = None
        end = start + self._chunk
        try:
            self._registry.sweep(sessions[start:end])
        except BaseException:  # never let one failure stop the loop for good
            self._log.exception("Session sweep failed; it will run again next interval")
            end = len(sessions)
        if end < len(sessions):
            self._pending = self._clock.callLater(0, self._step, sessions, end)
        elif self._done is not None:
            done, self._done = self._done, None
            done.callback(None)
