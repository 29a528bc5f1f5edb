"""The dispatcher: capacity, deadlines, late results and waiting for idle."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._dispatch import Dispatcher, Job

from .helpers import HeldPool


class RecordingJob(Job):
    """A job that returns (or raises) what it is given and records how it ended."""

    __slots__ = ("events", "value", "want")

    def __init__(self, events: list[Any], value: Any, want: bool = True) -> None:
        self.events = events
        self.value = value
        self.want = want

    def wanted(self) -> bool:
        return self.want

    def run(self) -> Any:
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def finished(self, ok: bool, value: Any) -> None:
        self.events.append((ok, value))
        if value == "raise in finished":
            raise RuntimeError(value)

    def expired(self) -> None:
        self.events.append("timeout")


class DispatcherTests(SynchronousTestCase):
    """Dispatcher over a held pool and a fake clock."""

    def setUp(self) -> None:
        self.pool = HeldPool()
        self.clock = Clock()
        self.dispatcher = Dispatcher(self.pool, self.clock, capacity=2, deadline=5)
        self.events: list[Any] = []

    def submit(self, value: Any) -> None:
        self.dispatcher.run(RecordingJob(self.events, value))

    def test_capacity(self) -> None:
        """full() turns true at capacity and false once a job returns."""
        self.submit(1)
        self.assertFalse(self.dispatcher.full())
        self.submit(2)
        self.assertTrue(self.dispatcher.full())
        self.pool.release()
        self.assertFalse(self.dispatcher.full())
        self.assertEqual(self.events, [(True, 1)])

    def test_deadline(self) -> None:
        """A job past its deadline times out; its late result is dropped but frees the slot."""
        self.submit(1)
        self.clock.advance(5)
        self.assertEqual(self.events, ["timeout"])
        self.assertEqual(self.dispatcher.in_flight, 1)
        self.pool.release()
        self.assertEqual(self.events, ["timeout"])
        self.assertEqual(self.dispatcher.in_flight, 0)

    def test_errors_delivered(self) -> None:
        """An exception in the job arrives as (False, exception)."""
        self.dispatcher.run(RecordingJob(self.events, ZeroDivisionError()))
        self.pool.release()
        [(ok, error)] = self.events
        self.assertEqual((ok, type(error)), (False, ZeroDivisionError))

    def test_idle(self) -> None:
        """idle() fires at once when nothing runs, else when the last job returns."""
        fired: list[None] = []
        self.dispatcher.idle().addCallback(fired.append)
        self.assertEqual(fired, [None])
        self.submit(1)
        self.submit(2)
        self.dispatcher.idle().addCallback(fired.append)
        self.pool.release()
        self.assertEqual(fired, [None])
        self.pool.release()
        self.assertEqual(fired, [None, None])

    def test_wanted_by_default(self) -> None:
        """The hook a worker consults before running a job says yes unless overridden."""
        self.assertTrue(Job().wanted())

    def test_dropped_job_answered_by_expired(self) -> None:
        """A job the pool drops (it stopped) frees its place and deadline; expired() answers."""
        fired: list[None] = []
        self.submit(1)
        self.dispatcher.idle().addCallback(fired.append)
        self.pool.jobs.pop().dropped()
        self.assertEqual(self.events, ["timeout"])
        self.assertEqual((self.dispatcher.in_flight, len(self.dispatcher.deadlines)), (0, 0))
        self.assertEqual(fired, [None])
        self.clock.advance(5)
        self.assertEqual(self.events, ["timeout"])

    def test_unwanted_job_dropped_silently(self) -> None:
        """A dropped job that is no longer wanted frees its place with nothing called."""
        self.dispatcher.run(RecordingJob(self.events, 1, want=False))
        self.pool.jobs.pop().dropped()
        self.clock.advance(5)
        self.assertEqual((self.events, self.dispatcher.in_flight), ([], 0))

    def test_failing_finished_frees_slot(self) -> None:
        """A finished() that raises has already freed its place, and idle() still fires."""
        fired: list[None] = []
        self.submit("raise in finished")
        self.dispatcher.idle().addCallback(fired.append)
        self.assertRaises(RuntimeError, self.pool.release)
        self.assertEqual((self.dispatcher.in_flight, fired), (0, [None]))
