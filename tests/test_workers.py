"""ThreadedCallbackPool: real threads, results handed to the reactor in batches."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from serverapi._workers import ThreadedCallbackPool


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


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll C{predicate} until it holds or C{timeout} passes (thread hand-offs only)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.001)
    return True


class FunctionJob:
    """A pool job made of a function and a done callback."""

    def __init__(self, work: Callable[[], Any], done: Callable[[bool, Any], None]) -> None:
        self.run = work
        self.done = done


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
        self.assertTrue(wait_until(lambda: self.reactor.run_pending() >= 0 and len(results) == 2))
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
        self.assertTrue(wait_until(lambda: len(self.pool._results) == 3))
        self.assertEqual(self.reactor.run_pending(), 1)
        self.assertEqual(sorted(results), [0, 1, 2])

    def test_stop_does_not_wait_for_stuck_work(self) -> None:
        """stop() returns while a job is still running; the stuck thread is a daemon."""
        gate = threading.Event()
        self.pool.submit(FunctionJob(lambda: gate.wait(10), lambda ok, v: None))
        self.pool.stop()
        self.assertTrue(all(thread.daemon for thread in self.pool._threads))
        gate.set()


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
        self.assertTrue(wait_until(lambda: reactor.run_pending() >= 0 and len(results) == 5))
        self.assertEqual(sorted(results), [0, 1, 2, 3, 4])
