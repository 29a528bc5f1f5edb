"""Scale figures: memory per session, sweep stalls, login throughput, latency under a login flood.

    python bench/scale.py [--sessions 100000] [--json scale.json]

Memory and sweep are measured in this process on the real session registry and sweeper; the
login figures start serverapi (plaintext and hashed credentials) and drive it with wrk.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from twisted.internet.task import Clock  # noqa: E402

from serverapi._sessions import SessionRegistry  # noqa: E402
from serverapi._sweep import SessionSweeper  # noqa: E402

import run  # noqa: E402


def rss_bytes() -> int:
    """This process's resident memory."""
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def session_memory(count: int) -> dict[str, float]:
    """Bytes per idle session: traced allocations and resident memory, over C{count} sessions."""
    logger = logging.getLogger("scale")
    logger.disabled = True
    gc.collect()
    clock = Clock()
    registry = SessionRegistry(now=clock.seconds, logger=logger, max_sessions=count + 1,
                               max_sessions_per_user=count + 1)
    users = [f"user{index % 1000}" for index in range(count)]
    rss_before = rss_bytes()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for index in range(count):
        registry.create(users[index], "192.0.2.10")
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    rss = rss_bytes() - rss_before
    return {"sessions": count, "traced_bytes_per_session": traced / count,
            "rss_bytes_per_session": rss / count}


def sweep_stall(count: int) -> dict[str, float]:
    """The longest the reactor is held by one chunk of a sweep over C{count} sessions."""
    logger = logging.getLogger("scale")
    clock = Clock()
    registry = SessionRegistry(now=clock.seconds, logger=logger, validity_callback=lambda s: True,
                               max_sessions=count + 1, max_sessions_per_user=count + 1)
    for index in range(count):
        registry.create(f"user{index % 1000}", "192.0.2.10")
    sweeper = SessionSweeper(registry, clock, 1.0, logger)
    timings: list[float] = []
    original = registry.sweep

    def timed(sessions: Any) -> None:
        started = time.perf_counter()
        original(sessions)
        timings.append(time.perf_counter() - started)

    registry.sweep = timed  # type: ignore[method-assign]
    sweeper.start()
    started = time.perf_counter()
    clock.advance(1)
    total = time.perf_counter() - started
    sweeper.stop()
    return {"sessions": count, "chunks": len(timings), "longest_chunk_ms": max(timings) * 1000,
            "whole_sweep_ms": total * 1000}


def login_figures(duration: float) -> dict[str, Any]:
    """Login req/s with plaintext and hashed credentials, and /communicate under a login flood."""
    results: dict[str, Any] = {}
    servers = {kind: run.start(f"serverapi-{kind}", ["serverapi_server.py"], [kind])
               for kind in ("plain", "hashed")}
    try:
        login = run.Scenario("login c=32", "login.lua", 32)
        talk = run.Scenario("communicate c=8", "communicate.lua", 8)
        for kind, (_, port) in servers.items():
            results[f"login_{kind}"] = summary(run.wrk(port, login, duration, ""))
        _, port = servers["hashed"]
        results["communicate_alone"] = summary(run.wrk(port, talk, duration,
                                                       run.login(port)))
        token = run.login(port)
        flood = subprocess.Popen(
            ["wrk", "-t1", "-c32", f"-d{duration + 2:g}s", "--timeout", "10s", "-s",
             os.path.join(HERE, "login.lua"), f"http://127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL)
        time.sleep(1)
        results["communicate_during_login_flood"] = summary(run.wrk(port, talk, duration,
                                                                    token))
        flood.wait()
    finally:
        for process, _ in servers.values():
            process.kill()
    return results


def summary(result: run.Result) -> dict[str, float]:
    """One wrk run's figures: goodput (2xx/s), req/s, p50, p99 and errors kind by kind."""
    return {"goodput": result.goodput, "rps": result.rps, "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms, "non2xx": result.non2xx, "connect": result.connect,
            "read": result.read, "write": result.write, "timeout": result.timeout}


def main() -> int:
    """Measure every figure; print them; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    figures = {"memory": session_memory(args.sessions), "sweep": sweep_stall(args.sessions)}
    print(json.dumps(figures, indent=2), flush=True)
    figures["logins"] = login_figures(args.duration)
    print(json.dumps(figures["logins"], indent=2))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
