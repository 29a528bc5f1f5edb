"""The dispatcher: queue and run deadlines, holds, capacity, late results and idleness."""

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

    def overloaded(self) -> None:
        self.events.append("overloaded")

    def hold(self) -> None:
        self.events.append("hold")


class DispatcherTests(SynchronousTestCase):
    """Dispatcher over a held pool and a fake clock."""

    def setUp(self) -> None:
        self.pool = HeldPool()
        self.clock = Clock()
        self.dispatcher = Dispatcher(self.pool, self.clock, queue_timeout=2, run_timeout=5,
                                     capacity=2, hold_after=3)
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

    def start(self, index: int = 0) -> Job:
        """A worker takes a held job and starts it (without finishing it yet)."""
        job = self.pool.jobs.pop(index)
        self.assertTrue(job.start())
        return job

    def test_deadline(self) -> None:
        """A job running past its deadline times out; its late result is dropped but frees
        the slot."""
        self.submit(1)
        job = self.start()
        self.clock.advance(5)
        self.assertEqual(self.events, ["timeout"])
        self.assertEqual(self.dispatcher.in_flight, 1)
        job.done(True, 1)
        self.assertEqual(self.events, ["timeout"])
        self.assertEqual(self.dispatcher.in_flight, 0)

    def test_queue_deadline(self) -> None:
        """A job no worker took within the queue deadline is answered as overloaded and
        never runs; its place is freed when the pool lets it go."""
        self.submit(1)
        self.clock.advance(2)
        self.assertEqual(self.events, ["overloaded"])
        job = self.pool.jobs.pop()
        self.assertFalse(job.start())
        job.dropped()
        self.clock.advance(10)
        self.assertEqual((self.events, self.dispatcher.in_flight), (["overloaded"], 0))

    def test_run_deadline_counts_from_start(self) -> None:
        """A job that started late still gets its whole run time."""
        self.submit(1)
        self.clock.advance(1.5)
        job = self.start()
        self.clock.advance(3.5)  # 5 s since submission, 3.5 s of running
        self.assertEqual(self.events, [])
        self.clock.advance(1.4)
        self.assertEqual(self.events, [])
        self.clock.advance(0.2)
        self.assertEqual(self.events, ["timeout"])
        job.done(True, 1)
        self.assertEqual((self.events, self.dispatcher.in_flight), (["timeout"], 0))

    def test_late_starter_finishing_in_time(self) -> None:
        """A late starter that returns within its run time is reported, and its timer gone."""
        self.submit(1)
        self.clock.advance(1.5)
        job = self.start()
        self.clock.advance(4)
        job.done(True, "late but in time")
        self.assertEqual(self.events, [(True, "late but in time")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_longer_queue_than_run(self) -> None:
        """With a queue deadline longer than the run deadline, a job waits for a worker up to
        the queue deadline (not the run deadline), then gets its whole run time; one that no
        worker takes is answered as overloaded at the queue deadline, and never runs."""
        dispatcher = Dispatcher(self.pool, self.clock, queue_timeout=20, run_timeout=5)
        dispatcher.run(RecordingJob(self.events, "late"))
        dispatcher.run(RecordingJob(self.events, "never"))
        self.clock.advance(12)
        self.assertEqual(self.events, [])
        late = self.pool.jobs.pop(0)
        self.assertTrue(late.start())
        self.clock.advance(4.9)
        self.assertEqual(self.events, [])
        self.clock.advance(0.2)
        self.assertEqual(self.events, ["timeout"])
        self.clock.advance(3)  # 20.1 s since submission
        self.assertEqual(self.events, ["timeout", "overloaded"])
        never = self.pool.jobs.pop()
        self.assertFalse(never.start())
        never.dropped()  # as a pool reports a job it may not start
        late.done(True, "late")
        self.assertEqual((self.events, dispatcher.in_flight), (["timeout", "overloaded"], 0))
        self.clock.advance(5)  # a deadline's timer may fire once more and find nothing
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_hold_past_queue_length(self) -> None:
        """Jobs beyond C{hold_after} in flight are told to hold (backpressure), none before."""
        for value in range(5):
            self.submit(value)
        self.assertEqual(self.events, ["hold", "hold"])
        self.start()
        self.submit(5)
        self.assertEqual(self.events, ["hold", "hold", "hold"])

    def test_claim_race(self) -> None:
        """The queue deadline and a worker's start race for a job: exactly one wins."""
        self.submit(1)
        job = self.start()
        self.clock.advance(2)
        self.assertEqual(self.events, [])  # started in time: not overloaded
        job.done(True, 1)
        self.assertEqual(self.events, [(True, 1)])

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
