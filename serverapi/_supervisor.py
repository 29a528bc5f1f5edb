"""The main process's worker processes: started on the shared socket, replaced when one dies,
drained and stopped within the grace period."""

from __future__ import annotations

import os
import pickle
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.protocols import amp
from twisted.python.failure import Failure

from . import _channel as channel
from ._callback_reference import WORKER_ENVIRONMENT
from ._logging import SafeLogger
from ._session_owner import SessionOwner, WorkerEvents
from ._worker_process import CHANNEL_FD, LISTEN_FD, WorkerSetup

# How often processes that are gone are reaped (the reactor may run without a SIGCHLD handler,
# in ThreadedAPIServer's background thread).
REAP_INTERVAL = 0.05
# A worker that dies before serving is started again only after this long (no busy loop).
RESTART_DELAY = 1.0
MAX_OUTPUT_LINE = 4096
_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = ("import sys; sys.path.insert(0, {!r}); "
         "from serverapi._worker_process import main; main()").format(_PACKAGE_PARENT)


class WorkerProcess(ProcessProtocol, WorkerEvents):
    """One worker: its process, its channel, and what it has said."""

    pid: int | None = None
    failure: str | None = None  # why it said it cannot serve

    def __init__(self, supervisor: WorkerSupervisor) -> None:
        self._supervisor = supervisor
        self.channel: amp.AMP | None = None
        self.serving = False
        self.gone = False  # its channel closed or its process ended
        self.ended: Deferred[None] = Deferred()
        self._partial = b""

    def connectionMade(self) -> None:
        """The process started."""
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, fd: int, data: bytes) -> None:
        """Whatever the worker printed (a crash report, a callback's print) goes to the log,
        one line at a time."""
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()[-MAX_OUTPUT_LINE:]
        for line in lines:
            self._supervisor.log.warning("serverapi worker %s: %s", self.pid,
                                         line[:MAX_OUTPUT_LINE].decode("utf-8", "replace"))

    def processExited(self, reason: Failure) -> None:
        """The process is gone (and reaped), whether or not something it started still holds
        its output pipes: let go of them too."""
        try:
            self._supervisor.gone(self, reason)
        finally:
            self.transport.loseConnection()  # type: ignore[union-attr]
            if not self.ended.called:
                self.ended.callback(None)

    def ready(self, pid: int) -> None:
        """The worker serves."""
        self.serving = True
        self._supervisor.worker_ready(self)

    def start_failed(self, reason: str) -> None:
        """The worker cannot serve."""
        self._supervisor.worker_failed(self, reason)

    def channel_lost(self) -> None:
        """The channel closed: the worker is gone or going."""
        self._supervisor.gone(self, None)

    def kill(self) -> None:
        """End the process now (SIGKILL), if it still runs."""
        if self.transport is None:
            return
        try:
            self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except (ProcessExitedAlready, OSError):
            pass


class WorkerStartError(RuntimeError):
    """A worker process could not start serving."""


class WorkerSupervisor:
    """Keeps C{count} worker processes serving on the shared socket."""

    def __init__(self, reactor: Any, count: int, setup: Callable[[], WorkerSetup],
                 owner: Callable[[WorkerEvents], SessionOwner], log: SafeLogger,
                 grace: float, answer_timeout: float) -> None:
        """C{setup} makes each worker's set-up when it is started (so a worker started later
        gets the credentials current then); C{answer_timeout}: how long a worker may take to
        drop ended sessions before it is killed instead."""
        self._reactor = reactor
        self._count = count
        self._setup = setup
        self._answer_timeout = answer_timeout
        self._owner = owner
        self.log = log
        self._grace = grace
        self.workers: list[WorkerProcess] = []
        self._port_fd: int | None = None
        self._starting: Deferred[None] | None = None
        self._stopping = False
        self._restarts: list[Any] = []
        self._reaper = LoopingCall(self._reap)
        self._reaper.clock = reactor
        self._to_forget: list[str] = []
        # The next batch of ended sessions to tell the workers of (sent at the end of this
        # reactor turn), and the last one sent: each fires once every worker has dropped its
        # sessions (a worker answers in order, so the last batch answered means every earlier
        # one was too).
        self._next_forget: Deferred[None] | None = None
        self._last_forget: Deferred[None] | None = None

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (those running now)."""
        return [worker.pid for worker in self.workers if worker.pid is not None]

    def serving(self) -> int:
        """How many workers serve now."""
        return sum(worker.serving and not worker.gone for worker in self.workers)

    def start(self, port: IListeningPort) -> Deferred[None]:
        """Start the workers on C{port}'s socket; fires once every one serves, or fails with
        the first one's reason for not serving (the others are stopped)."""
        self._port_fd = port.fileno()  # type: ignore[attr-defined]
        self._starting = Deferred()
        self._reaper.start(REAP_INTERVAL, now=False)
        for _ in range(self._count):
            self._spawn()
        return self._starting

    def _spawn(self) -> None:
        """Start one worker process, or try again after a pause if the system cannot."""
        try:
            self._start_one()
        except Exception as error:  # fork or pipe limits: EAGAIN, ENOMEM, EMFILE
            self.log.error("Cannot start a serverapi worker: %s; trying again in %ss", error,
                           RESTART_DELAY)
            if self._starting is not None:
                starting, self._starting = self._starting, None
                self.stop()
                starting.errback(WorkerStartError(f"cannot start a worker process: {error}"))
            elif not self._stopping:
                self._restarts.append(self._reactor.callLater(RESTART_DELAY, self._restart))

    def _start_one(self) -> None:
        """Start one worker process, with its channel."""
        assert self._port_fd is not None
        setup = pickle.dumps(self._setup())
        worker = WorkerProcess(self)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            worker.channel = self._owner(worker)
            self._reactor.adoptStreamConnection(ours.fileno(), socket.AF_UNIX,
                                                Factory.forProtocol(lambda: worker.channel))
            environment = dict(os.environ, **{WORKER_ENVIRONMENT: "1"})
            self._reactor.spawnProcess(
                worker, sys.executable, [sys.executable, "-c", _BOOT], env=environment,
                childFDs={0: "w", 1: "r", 2: "r", LISTEN_FD: self._port_fd,
                          CHANNEL_FD: theirs.fileno()})
        except BaseException:
            worker.gone = True  # its channel's end closes next: nothing to replace
            raise
        finally:
            ours.close()
            theirs.close()
        self.workers.append(worker)
        worker.transport.write(setup)  # type: ignore[union-attr]
        worker.transport.closeStdin()  # type: ignore[union-attr]

    def worker_ready(self, worker: WorkerProcess) -> None:
        """A worker serves; the start is done once all do."""
        starting = self._starting
        if starting is not None and self.serving() >= self._count:
            self._starting = None
            starting.callback(None)

    def worker_failed(self, worker: WorkerProcess, reason: str) -> None:
        """A worker cannot serve: fail the start, or log it (it is retried after a pause)."""
        worker.failure = reason
        starting = self._starting
        if starting is not None:
            self._starting = None
            self.stop()
            starting.errback(WorkerStartError(reason))
        elif not self._stopping:
            self.log.error("A replacement serverapi worker cannot serve: %s", reason)

    def gone(self, worker: WorkerProcess, reason: Failure | None) -> None:
        """A worker's channel closed or its process ended: make sure the process ends, and
        start another in its place."""
        if reason is not None and worker in self.workers:
            self.workers.remove(worker)
        if worker.gone:
            return
        worker.gone = True
        if self._stopping:  # a drained worker closes its channel as it exits; the grace
            return          # period's end kills any that does not
        worker.kill()
        if self._starting is not None:
            starting, self._starting = self._starting, None
            self.stop()
            starting.errback(WorkerStartError(
                worker.failure or f"a worker process (pid {worker.pid}) exited before serving"))
            return
        if worker.serving:
            self.log.error("serverapi worker %s exited; starting another", worker.pid)
            self._spawn()
        else:
            self._restarts.append(self._reactor.callLater(RESTART_DELAY, self._restart))

    def _restart(self) -> None:
        """Start a worker in place of one that could not serve (after a pause)."""
        self._restarts = [call for call in self._restarts if call.active()]
        if not self._stopping:
            self._spawn()

    def _reap(self) -> None:
        """Collect the exit of processes that are gone (without SIGCHLD, nothing else does)."""
        for worker in list(self.workers):
            process = worker.transport
            if process is not None and getattr(process, "pid", None) is not None:
                try:
                    process.reapProcess()  # type: ignore[attr-defined]
                except Exception:
                    pass

    def forget(self, hashed: str) -> None:
        """A session ended: tell every worker to drop it from its cache (batched per reactor
        turn)."""
        self._to_forget.append(hashed)
        if self._next_forget is None:
            self._next_forget = Deferred()
            self._reactor.callLater(0, self._send_forgets)

    def _send_forgets(self) -> None:
        """Send the batch to every worker with a channel.  A worker that does not answer
        within the answer timeout is killed (then it serves nothing it should have dropped);
        the batch is done once every worker answered or was killed."""
        batch, self._next_forget = self._next_forget, None
        assert batch is not None
        self._last_forget = batch
        hashes, self._to_forget = ",".join(self._to_forget), []
        calls = [self.ask(worker, channel.Forget, hashes=hashes) for worker in self.workers
                 if not worker.gone and worker.channel is not None]
        DeferredList(calls, consumeErrors=True).addCallback(lambda _: batch.callback(None))

    def ask(self, worker: WorkerProcess, command: type[amp.Command],
            **arguments: Any) -> Deferred[Any]:
        """Send C{command} to one worker; kill the worker if it does not answer within the
        answer timeout or answers with an error (a replacement starts with the current
        state)."""
        assert worker.channel is not None

        def failed(failure: Failure) -> Failure:
            if not worker.gone and not self._stopping:
                self.log.error("serverapi worker %s did not do %s (%s); killing it", worker.pid,
                               command.__name__, failure.getErrorMessage() or "no answer")
                worker.kill()
            return failure

        call: Deferred[Any] = worker.channel.callRemote(command, **arguments)
        call.addTimeout(self._answer_timeout, self._reactor)
        return call.addErrback(failed)

    def forgotten(self) -> Deferred[None]:
        """Fires once every worker has dropped every session that ended so far."""
        batch = self._next_forget or self._last_forget
        if batch is None or batch.called:
            return succeed(None)
        waiter: Deferred[None] = Deferred()

        def tell(result: object) -> object:
            waiter.callback(None)
            return result

        batch.addBoth(tell)
        return waiter

    def broadcast(self, command: type[amp.Command], **arguments: Any) -> Deferred[list[Any]]:
        """Send C{command} to every worker (started or starting); their answers (failures
        included: a worker that fails is killed, see L{ask})."""
        calls = [self.ask(worker, command, **arguments) for worker in self.workers
                 if not worker.gone and worker.channel is not None]
        return DeferredList(calls, consumeErrors=True)

    def stop(self) -> Deferred[None]:
        """Drain every worker; kill those still running after the grace period; fires when
        every process has ended."""
        self._stopping = True
        if self._starting is not None:
            starting, self._starting = self._starting, None
            starting.errback(WorkerStartError("the server stopped while its workers started"))
        for call in self._restarts:
            if call.active():
                call.cancel()
        self._restarts = []
        workers = list(self.workers)
        for worker in workers:
            if worker.serving and not worker.gone and worker.channel is not None:
                worker.channel.callRemote(channel.Drain).addErrback(lambda _: None)
            else:
                worker.kill()
        if not workers:
            self._stop_reaping()
            return succeed(None)
        deadline = self._reactor.callLater(self._grace, self._kill_all)
        ended: Deferred[Any] = DeferredList([worker.ended for worker in workers])

        def done(_: object) -> None:
            if deadline.active():
                deadline.cancel()
            self._stop_reaping()

        return ended.addCallback(done)

    def _kill_all(self) -> None:
        """The grace period is over: end every worker still running."""
        running = [worker for worker in self.workers if not worker.ended.called]
        if running:
            self.log.warning("Killing %d serverapi worker(s) still running after %ss",
                             len(running), self._grace)
        for worker in running:
            worker.kill()

    def _stop_reaping(self) -> None:
        """Every process has ended."""
        if self._reaper.running:
            self._reaper.stop()
