"""Overload: serverapi far past its capacity; goodput per second and a fresh client's login latency.

    python bench/overload.py [--duration 60] [--connections 1000] [--sleep 0.05]
                             [--max-threads 10] [--probe-interval 0.5] [--json overload.json]

Starts serverapi (bench/serverapi_server.py: default options but login_attempts, a callback that
sleeps --sleep seconds, max_threads=--max-threads, so a capacity of about max_threads / sleep =
200 requests a second) on 127.0.0.1.  A load client of its own (asyncio, raw HTTP/1.1 keep-alive,
in a child process so it does not share this process's GIL with the probe) keeps --connections
connections sending POST /communicate as alice for --duration seconds, each sending its next
request as soon as the last is answered, as wrk does; it records every answer's status and
latency, so it can report served (2xx) requests per second over time and their own latency
percentiles, which wrk cannot.  Meanwhile a thread here logs in as bob on a fresh connection
(http.client) every --probe-interval seconds and times it, connect to full answer: how the server
treats a newcomer while overloaded.  (bob, so that those logins never evict alice's session: 64
sessions per user is the default.)  Prints a summary; --json writes every figure.
Everything runs on loopback and stops by itself: the client at --duration, the server after.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import http.client
import json
import math
import os
import resource
import subprocess
import sys
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402
from workload import COMMUNICATE_BODY  # noqa: E402

PROBE_BODY = json.dumps({"username": "bob", "password": "securepassword"})
ERROR_KINDS = ("connect", "read", "write", "timeout")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of C{values} (NaN when empty)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def latency_figures(seconds: list[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    return {"count": len(seconds), "p50_ms": percentile(seconds, 0.50) * 1000,
            "p90_ms": percentile(seconds, 0.90) * 1000,
            "p99_ms": percentile(seconds, 0.99) * 1000,
            "max_ms": max(seconds) * 1000 if seconds else float("nan")}


# ---- the load client (runs in a child process: overload.py --client PORT) ----

class Tally:
    """What the load client saw, bucketed by whole second since the start."""

    def __init__(self, seconds: int) -> None:
        """Empty buckets for C{seconds} seconds."""
        self.served = [0] * seconds
        self.refused = [0] * seconds
        self.failed = [0] * seconds
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.served_latency: list[float] = []
        self.refused_latency: list[float] = []

    def bucket(self, start_at: float) -> int:
        """This moment's second, clamped to the run."""
        return min(len(self.served) - 1, max(0, int(time.time() - start_at)))

    def error(self, kind: str, start_at: float) -> None:
        """Count a socket error of C{kind}."""
        self.errors[kind] += 1
        self.failed[self.bucket(start_at)] += 1


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; return its status and whether the server closes after it."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    version, status_text = lines[0].split(b" ", 2)[:2]
    status = int(status_text)
    close = version == b"HTTP/1.0"
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value
        elif name == b"connection":
            close = value == b"close"
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers are expected: the final CRLF
                break
            await reader.readexactly(size + 2)
    elif length is not None:
        await reader.readexactly(length)
    else:
        await reader.read()
        close = True
    return status, close


async def keep_sending(port: int, request: bytes, tally: Tally, start_at: float,
                       timeout: float) -> None:
    """One connection: send, wait for the answer, record it, repeat; reconnect when closed."""
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    try:
        while True:
            if writer is None:
                try:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection("127.0.0.1", port), timeout)
                except (OSError, asyncio.TimeoutError):
                    tally.error("connect", start_at)
                    await asyncio.sleep(0.01)  # as wrk: retry, but do not spin on a refusal
                    continue
            assert reader is not None and writer is not None
            started = time.monotonic()
            try:
                writer.write(request)
                await writer.drain()
            except OSError:
                tally.error("write", start_at)
                writer.close()
                writer = None
                continue
            try:
                status, close = await asyncio.wait_for(read_response(reader), timeout)
            except asyncio.TimeoutError:
                tally.error("timeout", start_at)
                close = True
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                    asyncio.LimitOverrunError):
                tally.error("read", start_at)
                close = True
            else:
                elapsed = time.monotonic() - started
                second = tally.bucket(start_at)
                tally.statuses[status] += 1
                if 200 <= status < 300:
                    tally.served[second] += 1
                    tally.served_latency.append(elapsed)
                else:
                    tally.refused[second] += 1
                    tally.refused_latency.append(elapsed)
            if close:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()


async def load(port: int, token: str, connections: int, start_at: float, duration: float,
               timeout: float) -> Tally:
    """Run C{connections} senders from C{start_at} for C{duration} seconds; return the tally."""
    body = COMMUNICATE_BODY.encode()
    request = (b"POST /communicate HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               b"Content-Type: application/json\r\nCookie: sessionToken=%s\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (port, token.encode(), len(body), body))
    tally = Tally(max(1, math.ceil(duration)))
    await asyncio.sleep(max(0.0, start_at - time.time()))
    tasks = [asyncio.create_task(keep_sending(port, request, tally, start_at, timeout))
             for _ in range(connections)]
    await asyncio.sleep(max(0.0, start_at + duration - time.time()))
    for task in tasks:  # requests still in flight at the end are not counted, as in wrk
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return tally


def client_main(args: argparse.Namespace) -> int:
    """The child process: run the load, print the tally as JSON on stdout."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.connections + 100), hard))
    tally = asyncio.run(load(args.client, os.environ["SESSION_TOKEN"], args.connections,
                             args.start_at, args.duration, args.timeout))
    json.dump({"served": tally.served, "refused": tally.refused, "failed": tally.failed,
               "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
               "errors": {kind: tally.errors[kind] for kind in ERROR_KINDS},
               "served_latency": latency_figures(tally.served_latency),
               "refused_latency": latency_figures(tally.refused_latency)}, sys.stdout)
    return 0


# ---- the probe (a thread in the parent process) ----

def probe(port: int, start_at: float, end_at: float, interval: float, timeout: float,
          out: list[dict[str, Any]]) -> None:
    """Every C{interval} s, a fresh client's POST /login; time it from connect to full answer."""
    slot = 0
    while True:
        at = start_at + slot * interval
        now = time.time()
        if at >= end_at:
            return
        if at < now - interval / 2:  # the last probe overran: skip the missed slots
            slot = math.ceil((now - start_at) / interval)
            continue
        time.sleep(max(0.0, at - now))
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("POST", "/login", PROBE_BODY, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException) as failure:
            error = type(failure).__name__
        finally:
            connection.close()
        out.append({"at_s": round(at - start_at, 3),
                    "ms": (time.monotonic() - started) * 1000, "status": status, "error": error})
        slot += 1


# ---- the parent: server, client, probe, summary ----

def overload(args: argparse.Namespace) -> dict[str, Any]:
    """Start the server, run load and probe together, and gather every figure."""
    server_args = ["--sleep", f"{args.sleep:g}", "--max-threads", str(args.max_threads)]
    process, port = run.start("serverapi", ["serverapi_server.py"], server_args)
    probes: list[dict[str, Any]] = []
    try:
        token = run.login(port)
        start_at = time.time() + 1.0  # time for the client process to start
        client = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--client", str(port),
             "--connections", str(args.connections), "--duration", f"{args.duration:g}",
             "--timeout", f"{args.timeout:g}", "--start-at", repr(start_at)],
            stdout=subprocess.PIPE, env=dict(os.environ, SESSION_TOKEN=token), text=True)
        prober = threading.Thread(
            target=probe, args=(port, start_at, start_at + args.duration, args.probe_interval,
                                args.timeout, probes), daemon=True)
        prober.start()
        try:
            output, _ = client.communicate(timeout=args.duration + args.timeout + 60)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait()
            raise RuntimeError("the load client did not finish in time") from None
        prober.join(args.timeout + 5)
        if client.returncode != 0:
            raise RuntimeError(f"the load client failed with status {client.returncode}")
        load_figures = json.loads(output)
    finally:
        process.kill()
        process.wait()
    probe_ok = [p["ms"] / 1000 for p in probes if p["status"] == 200]
    served = sum(load_figures["served"])
    return {
        "machine": run.machine(),
        "settings": {"duration_s": args.duration, "connections": args.connections,
                     "callback_sleep_s": args.sleep, "max_threads": args.max_threads,
                     "capacity_per_s": args.max_threads / args.sleep if args.sleep else None,
                     "probe_interval_s": args.probe_interval, "timeout_s": args.timeout},
        "goodput_per_s": served / args.duration,
        "load": load_figures,
        "login_probe": dict(latency_figures(probe_ok),
                            failures=len(probes) - len(probe_ok), probes=probes),
    }


def _f(value: float) -> str:
    """A millisecond figure, or '-'."""
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def print_summary(figures: dict[str, Any]) -> None:
    """The summary and the per-second table."""
    settings, load_figures = figures["settings"], figures["load"]
    probe_figures = figures["login_probe"]
    served_latency = load_figures["served_latency"]
    capacity = settings["capacity_per_s"]
    capacity_text = f"~{capacity:.0f} req/s" if capacity else "unbounded"
    print(f"overload: serverapi (default options but login_attempts), callback sleeps "
          f"{settings['callback_sleep_s'] * 1000:g} ms, max_threads={settings['max_threads']} "
          f"(capacity {capacity_text}), {settings['connections']} connections, "
          f"{settings['duration_s']:g} s")
    print(f"served (2xx): {served_latency['count']} = {figures['goodput_per_s']:.1f}/s; "
          f"latency p50 {_f(served_latency['p50_ms'])} ms, p99 {_f(served_latency['p99_ms'])} "
          f"ms, max {_f(served_latency['max_ms'])} ms")
    refused = load_figures["refused_latency"]
    statuses = ", ".join(f"{k}: {v}" for k, v in load_figures["statuses"].items())
    print(f"answers by status: {statuses or 'none'}; non-2xx p50 {_f(refused['p50_ms'])} ms, "
          f"p99 {_f(refused['p99_ms'])} ms")
    print("socket errors: " + ", ".join(f"{kind} {count}"
                                        for kind, count in load_figures["errors"].items()))
    print(f"fresh client's /login every {settings['probe_interval_s']:g} s: "
          f"{probe_figures['count']} answered 200, {probe_figures['failures']} not; "
          f"p50 {_f(probe_figures['p50_ms'])} ms, p99 {_f(probe_figures['p99_ms'])} ms, "
          f"max {_f(probe_figures['max_ms'])} ms")
    by_second: dict[int, list[float]] = collections.defaultdict(list)
    for entry in probe_figures["probes"]:
        by_second[int(entry["at_s"])].append(entry["ms"])
    print(f"\n{'second':>6} {'2xx':>6} {'non-2xx':>8} {'errors':>7} {'login ms (max)':>15}")
    for second, served in enumerate(load_figures["served"]):
        logins = by_second.get(second)
        print(f"{second:6d} {served:6d} {load_figures['refused'][second]:8d} "
              f"{load_figures['failed'][second]:7d} "
              f"{_f(max(logins)) if logins else '-':>15}")


def main() -> int:
    """Parse the command line; run the client (child) or the whole scenario (parent)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--sleep", type=float, default=0.05, help="callback sleep, seconds")
    parser.add_argument("--max-threads", type=int, default=10)
    parser.add_argument("--probe-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds a request may take before it counts as timed out")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--client", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        return client_main(args)
    figures = overload(args)
    print_summary(figures)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(run.no_nan(figures), handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
