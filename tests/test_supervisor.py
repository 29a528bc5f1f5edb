"""The supervisor's bookkeeping, with fake workers: telling workers of ended sessions (in
order, with a deadline), broadcasts, and which failures kill a worker."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi import _channel as channel
from serverapi._logging import SafeLogger
from serverapi._supervisor import WorkerProcess, WorkerSupervisor

from .helpers import recording_logger


class FakeChannel:
    """Records the commands sent; each answer is given by the test."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any], Deferred[Any]]] = []

    def callRemote(self, command: Any, **arguments: Any) -> Deferred[Any]:
        answer: Deferred[Any] = Deferred()
        self.calls.append((command, arguments, answer))
        return answer

    def answer_all(self) -> None:
        """Answer every pending call."""
        for _, _, answer in self.calls:
            if not answer.called:
                answer.callback({})


class FakeWorker(WorkerProcess):
    """A worker without a process: counts kills."""

    def __init__(self, supervisor: WorkerSupervisor, pid: int) -> None:
        super().__init__(supervisor)
        self.pid = pid
        self.channel = FakeChannel()  # type: ignore[assignment]
        self.kills = 0

    def kill(self) -> None:
        self.kills += 1


class SupervisorTests(SynchronousTestCase):
    """WorkerSupervisor with two fake workers."""

    def setUp(self) -> None:
        self.clock = Clock()
        logger, self.logged = recording_logger()
        self.supervisor = WorkerSupervisor(self.clock, 2, lambda: None,  # type: ignore
                                           lambda events: None, SafeLogger(logger),  # type: ignore
                                           grace=5, answer_timeout=3)
        self.a, self.b = FakeWorker(self.supervisor, 11), FakeWorker(self.supervisor, 12)
        self.supervisor.workers.extend([self.a, self.b])

    def sent(self, worker: FakeWorker) -> list[str]:
        """The hashes of each Forget the worker was sent."""
        return [arguments["hashes"] for command, arguments, _ in worker.channel.calls
                if command is channel.Forget]

    def test_forget_in_batches_in_order(self) -> None:
        """Ends in one reactor turn go in one batch; an end while a batch is in flight goes in
        the next, and waiting for it waits for that next batch, not the one in flight."""
        self.supervisor.forget("h1")
        self.supervisor.forget("h2")
        first = self.supervisor.forgotten()
        self.clock.advance(0)
        self.assertEqual((self.sent(self.a), self.sent(self.b)), (["h1,h2"], ["h1,h2"]))
        self.supervisor.forget("h3")
        second = self.supervisor.forgotten()
        self.a.channel.answer_all()
        self.b.channel.answer_all()
        self.successResultOf(first)
        self.assertNoResult(second)
        self.clock.advance(0)
        self.assertEqual(self.sent(self.a), ["h1,h2", "h3"])
        self.a.channel.answer_all()
        self.assertNoResult(second)
        self.b.channel.answer_all()
        self.successResultOf(second)
        self.successResultOf(self.supervisor.forgotten())

    def test_silent_worker_is_killed(self) -> None:
        """A worker that does not drop ended sessions within the answer timeout is killed,
        and the end is then complete (a dead worker serves nothing)."""
        self.supervisor.forget("h1")
        waiting = self.supervisor.forgotten()
        self.clock.advance(0)
        self.a.channel.answer_all()
        self.assertNoResult(waiting)
        self.clock.advance(3)
        self.successResultOf(waiting)
        self.assertEqual((self.a.kills, self.b.kills), (0, 1))
        self.assertIn("serverapi worker 12 did not do Forget", self.logged.text)

    def test_broadcast_reaches_starting_workers(self) -> None:
        """A broadcast goes to workers still starting too; one that answers with an error is
        killed (its replacement starts with the current state)."""
        self.b.serving = False
        told = self.supervisor.broadcast(channel.ReplaceCredentials, store=b"x")
        self.assertEqual(len(self.b.channel.calls), 1)
        self.a.channel.answer_all()
        self.b.channel.calls[0][2].errback(RuntimeError("bad"))
        self.successResultOf(told)
        self.assertEqual((self.a.kills, self.b.kills), (0, 1))

    def test_stop_fails_a_start_in_progress(self) -> None:
        """A stop while the workers start fails the start (nobody waits forever)."""
        starting: Deferred[None] = Deferred()
        self.supervisor._starting = starting
        self.supervisor.stop()
        self.failureResultOf(starting, RuntimeError)


class SpawnFailureTests(SynchronousTestCase):
    """A system that cannot start a process (fork or pipe limits)."""

    def setUp(self) -> None:
        class Reactor(Clock):
            """A clock whose processes cannot start."""

            def adoptStreamConnection(self, fd: int, family: Any, factory: Any) -> None:
                pass

            def spawnProcess(self, *args: Any, **kwargs: Any) -> None:
                raise OSError(11, "Resource temporarily unavailable")

        self.clock = Reactor()
        logger, self.logged = recording_logger()
        self.supervisor = WorkerSupervisor(self.clock, 1, lambda: None,  # type: ignore
                                           lambda events: None, SafeLogger(logger),  # type: ignore
                                           grace=5, answer_timeout=3)
        self.supervisor._port_fd = 99

    def test_retried_while_serving(self) -> None:
        """A replacement that cannot start is logged and tried again a second later."""
        self.supervisor._spawn()
        self.assertEqual(self.logged.text.count("Cannot start a serverapi worker"), 1)
        self.clock.advance(1)
        self.assertEqual(self.logged.text.count("Cannot start a serverapi worker"), 2)
        self.assertEqual(self.supervisor.workers, [])

    def test_fails_the_start(self) -> None:
        """At start, it fails the start with the reason."""
        starting: Deferred[None] = Deferred()
        self.supervisor._starting = starting
        self.supervisor._spawn()
        failure = self.failureResultOf(starting)
        self.assertIn("cannot start a worker process: [Errno 11]", failure.getErrorMessage())
