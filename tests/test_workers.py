"""ThreadedCallbackPool: real threads, results handed to the reactor in batches."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._dispatch import Dispatcher, Job
from serverapi._workers import ThreadedCallbackPool

from .helpers import wait_until

#: How often the tests look for a thread's hand-off (seconds).
POLL = 0.001


class FakeReactor:
    """Collects callFromThread calls so the test runs them, as the reactor thread would."""

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []
        self.lock = threading.Lock()

    def callFromThread(self, function: Callable[..., Any], *args: Any) -> None:
        with self.lock:
            self.calls.append(lambda: function(*args))

    def callLater(self, delay: float, function: Callable[..., Any], *args: Any) -> None:
        """Run at once: these tests are about the threads, not the batching of hand-overs."""
        function(*args)

    def run_pending(self) -> int:
        with self.lock:
            calls, self.calls = self.calls, []
        for call in calls:
            call()
        return len(calls)


class FunctionJob:
    """A pool job made of a function and a done callback (always wanted; drops are recorded)."""

    def __init__(self, work: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        self.run = work
        self.done = done
        self.was_dropped = False

    def start(self) -> bool:
        return True

    def dropped(self) -> None:
        self.was_dropped = True


class Value:
    """A result that can be watched through a weak reference."""


class GatedJob(Job):
    """A dispatcher job that records what happens to it; it may wait on a gate or be unwanted."""

    __slots__ = ("name", "events", "gate", "want", "fail")

    def __init__(self, name: str, events: list[tuple[str, str]], *,
                 gate: threading.Event | None = None, want: bool = True,
                 fail: bool = False) -> None:
        self.name = name
        self.events = events
        self.gate = gate
        self.want = want
        self.fail = fail

    def wanted(self) -> bool:
        return self.want

    def run(self) -> str:
        self.events.append(("started", self.name))
        if self.gate is not None:
            self.gate.wait(10)
        return self.name

    def finished(self, ok: bool, value: Any) -> None:
        self.events.append(("finished", self.name))
        if self.fail:
            raise RuntimeError(f"finished() of {self.name} failed")

    def expired(self) -> None:
        self.events.append(("expired", self.name))


class PoolTests(SynchronousTestCase):
    """The worker threads and the batched hand-back."""

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.pool = ThreadedCallbackPool(self.reactor, 3, name="test")
        self.pool.start()
        self.addCleanup(self.pool.join, 5)
        self.addCleanup(self.pool.stop)

    def test_runs_off_thread_and_delivers(self) -> None:
        """Work runs in a daemon worker; results and errors come back through the reactor."""
        results: list[Any] = []
        self.pool.submit(FunctionJob(lambda: threading.current_thread(),
                                     lambda ok, v: results.append(v)))
        self.pool.submit(FunctionJob(lambda: 1 / 0, lambda ok, v: results.append((ok, type(v)))))
        wait_until(lambda: self.reactor.run_pending() >= 0 and len(results) == 2, interval=POLL)
        worker = next(r for r in results if isinstance(r, threading.Thread))
        self.assertTrue(worker.daemon)
        self.assertNotEqual(worker, threading.current_thread())
        self.assertIn((False, ZeroDivisionError), results)

    def test_batches(self) -> None:
        """Results finished while the reactor is busy arrive in one wake-up."""
        gate = threading.Event()
        results: list[int] = []
        for value in range(3):
            self.pool.submit(FunctionJob(lambda value=value: gate.wait(10) and value,
                                         lambda ok, v: results.append(v)))
        gate.set()
        wait_until(lambda: len(self.pool._results) == 3, interval=POLL)
        self.assertEqual(self.reactor.run_pending(), 1)
        self.assertEqual(sorted(results), [0, 1, 2])

    def test_delivered_results_are_let_go(self) -> None:
        """Once delivered, a result is referenced by nothing in the pool: idle workers keep no
        batch they added to, so an answered request is freed at once, not at their next job."""
        gate = threading.Event()
        values = [Value() for _ in range(6)]
        alive = [weakref.ref(value) for value in values]
        delivered: list[bool] = []
        for value in values:
            self.pool.submit(FunctionJob(lambda value=value: gate.wait(10) and value,
                                         lambda ok, v: delivered.append(ok)))
        del value, values
        gate.set()
        wait_until(lambda: self.reactor.run_pending() >= 0 and len(delivered) == 6,
                   interval=POLL)
        wait_until(lambda: all(ref() is None for ref in alive), 2, interval=POLL)

    def test_each_result_let_go_as_delivered(self) -> None:
        """Within one batch, results are handed over in the order they finished, and each is
        let go as soon as its job has heard it, before the next job hears its own."""
        pool = ThreadedCallbackPool(FakeReactor(), 1, name="unstarted")
        values = [Value() for _ in range(3)]
        alive = [weakref.ref(value) for value in values]
        heard: list[tuple[int, int]] = []  # (which result, how many others are still alive)

        def done(ok: bool, value: Any) -> None:
            which = [ref() for ref in alive].index(value)
            heard.append((which, sum(ref() is not None for ref in alive) - 1))

        job = FunctionJob(lambda: None, done)
        pool._results = [(job, True, value) for value in values]
        del values
        pool._deliver()
        self.assertEqual(heard, [(0, 2), (1, 1), (2, 0)])
        self.assertEqual(pool._results, [])

    def test_stop_does_not_wait_for_stuck_work(self) -> None:
        """stop() returns while a job is still running; the stuck thread is a daemon."""
        gate = threading.Event()
        self.pool.submit(FunctionJob(lambda: gate.wait(10), lambda ok, v: None))
        self.pool.stop()
        self.assertTrue(all(thread.daemon for thread in self.pool._threads))
        gate.set()


class DispatchedPoolTests(SynchronousTestCase):
    """A Dispatcher over real worker threads: drops, stops and failed deliveries."""

    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.pool = ThreadedCallbackPool(self.reactor, 2, name="dispatched")
        self.pool.start()
        self.gate = threading.Event()
        self.addCleanup(self.pool.join, 5)
        self.addCleanup(self.pool.stop)
        self.addCleanup(self.gate.set)
        self.dispatcher = Dispatcher(self.pool, Clock(), queue_timeout=30, run_timeout=30)
        self.events: list[tuple[str, str]] = []

    def run_job(self, name: str, **options: Any) -> None:
        """Dispatch a GatedJob."""
        self.dispatcher.run(GatedJob(name, self.events, **options))

    def settle(self) -> None:
        """Deliver results until no job is in flight (bounded)."""
        wait_until(lambda: self.reactor.run_pending() >= 0 and self.dispatcher.in_flight == 0,
                   interval=POLL)

    def test_unwanted_job_not_run(self) -> None:
        """A job no longer wanted when a worker takes it never runs and writes nothing."""
        self.run_job("gone", want=False)
        self.run_job("here")
        self.settle()
        self.assertEqual(sorted(self.events), [("finished", "here"), ("started", "here")])
        self.assertEqual(len(self.dispatcher.deadlines), 0)

    def test_stop_drops_queued_jobs(self) -> None:
        """stop() drops at once every job no worker started; no job starts after it."""
        for name in "abcdef":
            self.run_job(name, gate=self.gate)
        wait_until(lambda: len(self.events) == 2, interval=POLL)
        running = {name for _, name in self.events}
        self.pool.stop()
        queued = set("abcdef") - running
        self.assertEqual({name for event, name in self.events if event == "expired"}, queued)
        self.assertEqual(self.dispatcher.in_flight, 2)
        self.run_job("late")
        self.assertIn(("expired", "late"), self.events)
        self.gate.set()
        self.settle()
        self.pool.join(5)
        self.reactor.run_pending()
        started = {name for event, name in self.events if event == "started"}
        finished = {name for event, name in self.events if event == "finished"}
        self.assertEqual((started, finished), (running, running))

    def test_worker_checks_stop_before_each_job(self) -> None:
        """A job a worker took as the pool stopped is dropped, not started."""
        pool = ThreadedCallbackPool(self.reactor, 1, name="unstarted")
        dispatcher = Dispatcher(pool, Clock(), queue_timeout=30, run_timeout=30)
        job = GatedJob("raced", self.events)
        dispatcher.run(job)  # handed over at once: FakeReactor runs callLater immediately
        pool._stopped = True  # the stop lands between the worker's get() and its start
        pool._jobs.put(None)
        pool._work()  # the worker's loop, on this thread
        self.reactor.run_pending()
        self.assertEqual((self.events, dispatcher.in_flight), ([("expired", "raced")], 0))

    def test_failed_delivery_loses_nothing(self) -> None:
        """A finished() that raises costs no other job of the batch its result or its slot."""
        idle: list[None] = []
        for name, fail in (("a", False), ("bad", True), ("c", False)):
            self.run_job(name, gate=self.gate, fail=fail)
        self.gate.set()
        wait_until(lambda: len(self.pool._results) == 3, interval=POLL)
        self.dispatcher.idle().addCallback(idle.append)
        self.assertEqual(self.reactor.run_pending(), 1)  # one batch
        self.assertEqual(sorted(name for event, name in self.events if event == "finished"),
                         ["a", "bad", "c"])
        self.assertEqual((self.dispatcher.in_flight, idle), (0, [None]))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HandOverTests(SynchronousTestCase):
    """Jobs submitted in one reactor iteration reach the workers together, at its end."""

    def test_batched_hand_over(self) -> None:
        """Nothing reaches the workers until the reactor runs the end-of-iteration call."""
        later: list[Callable[[], Any]] = []

        class Reactor(FakeReactor):
            """Keeps callLater calls for the test to run."""

            def callLater(self, delay: float, function: Callable[..., Any], *args: Any) -> None:
                later.append(lambda: function(*args))

        reactor = Reactor()
        pool = ThreadedCallbackPool(reactor, 2, name="batch")
        pool.start()
        self.addCleanup(pool.stop)
        results: list[int] = []
        for value in range(5):
            pool.submit(FunctionJob(lambda value=value: value, lambda ok, v: results.append(v)))
        self.assertEqual(len(later), 1)  # one hand-over scheduled for all five
        self.assertTrue(pool._jobs.empty())
        later.pop()()
        wait_until(lambda: reactor.run_pending() >= 0 and len(results) == 5, interval=POLL)
        self.assertEqual(sorted(results), [0, 1, 2, 3, 4])
