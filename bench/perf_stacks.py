"""Reads perf's call graphs of a server into CPU time per answer: by thread, by kind of code,
and the `futex` calls by what made them.

The input is the text of ``perf script -F tid,period,ip,sym,dso`` over a ``perf record -g``
(or ``--call-graph dwarf``) of the server's process, with the cpu-clock event, whose period is
in nanoseconds.  The busiest thread is taken to be the reactor (in serverapi it does most of
the work); every other thread is counted together (the worker pool).
"""

from __future__ import annotations

import collections
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field

#: What a leaf frame's library makes the sample's time, for the split by kind of code (the
#: interpreter: libpython, the python binary and the C modules, *.cpython-*.so).
KINDS = (("OpenSSL", ("libssl", "libcrypto")),
         ("kernel", ("[kernel",)),
         ("C library", ("libc.", "libc-", "ld-linux", "libm.")),
         ("interpreter", ("python",)))

#: The C functions whose release or retaking of the interpreter lock names a futex call.
RELEASED_BY = {
    "sock_recv": "recv", "sock_recv_into": "recv", "sock_send": "send",
    "sock_sendall": "send", "select_epoll_poll_impl": "epoll_wait",
    "_ssl__SSLSocket_read_impl": "ssl read", "_ssl__SSLSocket_write_impl": "ssl write",
    "_queue_SimpleQueue_put_impl": "queue put", "_queue_SimpleQueue_get_impl": "queue get",
    "os_write_impl": "os.write", "os_read_impl": "os.read",
}


@dataclass(frozen=True)
class Frame:
    """One frame of a sample's stack: the function and the file it is in."""

    symbol: str
    library: str


@dataclass(frozen=True)
class Sample:
    """One sample: its thread, the CPU time it stands for, and its stack (leaf first)."""

    tid: int
    nanoseconds: int
    frames: tuple[Frame, ...]


@dataclass
class Profile:
    """CPU time per answer, in microseconds, split as the tables in docs/performance.md are."""

    answers: int
    reactor: float = 0.0
    others: float = 0.0
    reactor_kinds: dict[str, float] = field(default_factory=dict)
    reactor_in_openssl: float = 0.0
    reactor_futex: dict[str, float] = field(default_factory=dict)
    others_futex: dict[str, float] = field(default_factory=dict)


def parse(text: str) -> list[Sample]:
    """The samples in C{text} (perf script's output with the fields named above)."""
    samples = []
    for block in text.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if not lines:
            continue
        head = lines[0].split()
        if len(head) < 2 or not (head[0].isdigit() and head[1].isdigit()):
            raise ValueError("not a sample of 'perf script -F tid,period,ip,sym,dso': "
                             f"{lines[0]!r}")
        samples.append(Sample(int(head[0]), int(head[1]), _frames(lines[1:])))
    return samples


def _frames(lines: list[str]) -> tuple[Frame, ...]:
    """A stack's lines as frames; an inlined frame takes the library of the function it was
    inlined into (the next frame that is not inlined)."""
    raw = []
    for line in lines:
        parts = line.strip().split(None, 1)
        rest = parts[1] if len(parts) > 1 else "[unknown] ([unknown])"
        symbol, _, library = rest.rpartition(" (")
        raw.append((symbol.split("+0x")[0] or "[unknown]", library.rstrip(")")))
    frames: list[Frame] = []
    library_below = "[unknown]"
    for symbol, library in reversed(raw):
        if library != "inlined":
            library_below = library.rsplit("/", 1)[-1]
        frames.append(Frame(symbol, library_below))
    return tuple(reversed(frames))


def kind(frame: Frame) -> str:
    """Which kind of code a frame is (OpenSSL, kernel, C library, interpreter or other)."""
    for name, parts in KINDS:
        if any(part in frame.library for part in parts):
            return name
    return "other"


def futex_cause(sample: Sample) -> str | None:
    """What made the C{futex} call a sample is in, or C{None} if it is in none.

    For example "wake lock waiter at recv": the reactor released the interpreter lock around
    C{recv} and woke a thread waiting for it.  A call not about the interpreter lock is about
    the pool's queue ("wake worker", "wait for work") when C{SimpleQueue} made it, and about
    another lock otherwise ("wake lock waiter"/"wait for the lock" at "elsewhere" both ways).
    """
    symbols = [frame.symbol for frame in sample.frames]
    if not any(symbol.startswith("__x64_sys_futex") for symbol in symbols):
        return None
    wakes = any("futex_wake" in symbol or "lll_lock_wake" in symbol for symbol in symbols)
    interpreter_lock = any(symbol in ("drop_gil", "take_gil") for symbol in symbols)
    where = next((RELEASED_BY[symbol] for symbol in symbols if symbol in RELEASED_BY),
                 "elsewhere")
    if not interpreter_lock and where.startswith("queue"):  # a job put, or a worker idle
        what = "wake worker" if wakes else "wait for work"
    else:
        what = "wake lock waiter" if wakes else "wait for the lock"
    return f"{what} at {where}"


def summarise(samples: Iterable[Sample], answers: int) -> Profile:
    """CPU time per answer (microseconds) of the busiest thread and of all others."""
    samples = list(samples)
    if answers <= 0:
        raise ValueError("no answers were counted")
    per_thread = collections.Counter[int]()
    for sample in samples:
        per_thread[sample.tid] += sample.nanoseconds
    profile = Profile(answers)
    if not per_thread:
        return profile
    reactor = per_thread.most_common(1)[0][0]
    scale = 1 / 1000 / answers
    kinds: dict[str, float] = collections.defaultdict(float)
    futex: dict[bool, dict[str, float]] = {True: collections.defaultdict(float),
                                           False: collections.defaultdict(float)}
    for sample in samples:
        time = sample.nanoseconds * scale
        on_reactor = sample.tid == reactor
        if on_reactor:
            profile.reactor += time
            kinds[kind(sample.frames[0]) if sample.frames else "other"] += time
            if any(kind(frame) == "OpenSSL" for frame in sample.frames):
                profile.reactor_in_openssl += time
        else:
            profile.others += time
        cause = futex_cause(sample)
        if cause is not None:
            futex[on_reactor][cause] += time
    profile.reactor_kinds = _largest_first(kinds)
    profile.reactor_futex = _largest_first(futex[True])
    profile.others_futex = _largest_first(futex[False])
    return profile


def median(profiles: list[Profile]) -> Profile:
    """Each figure's median over C{profiles} (a cause missing from one profile counts as 0)."""
    if not profiles:
        raise ValueError("no profiles")

    of = statistics.median

    def merged(name: str) -> dict[str, float]:
        tables: list[dict[str, float]] = [getattr(p, name) for p in profiles]
        keys = dict.fromkeys(key for table in tables for key in table)
        return _largest_first({key: of([table.get(key, 0.0) for table in tables])
                               for key in keys})

    return Profile(answers=sum(p.answers for p in profiles),
                   reactor=of([p.reactor for p in profiles]),
                   others=of([p.others for p in profiles]),
                   reactor_kinds=merged("reactor_kinds"),
                   reactor_in_openssl=of([p.reactor_in_openssl for p in profiles]),
                   reactor_futex=merged("reactor_futex"),
                   others_futex=merged("others_futex"))


def _largest_first(figures: dict[str, float]) -> dict[str, float]:
    """C{figures} ordered from the largest value down."""
    return dict(sorted(figures.items(), key=lambda item: -item[1]))
