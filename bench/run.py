"""The benchmark: serverapi against bare twisted.web floors, in interleaved rounds with wrk.

    python bench/run.py [--rounds 3] [--duration 5] [--json results.json]

Starts serverapi and the two reference servers (bench/floor.py: callback inline, and through
deferToThread), then runs each scenario against each server in turn, round after round, so slow
moments of this shared machine fall on all servers alike.  Prints req/s, p50, p99 and errors
(medians over rounds) and the ratios serverapi/floor.  Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TWISTD = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
          "--logfile=/dev/null", "serverapi", "--credentials", "credentials.json",
          "--callback", "workload:echo", "--login-attempts", "1000000",
          "--max-queued-requests", "1000", "--listen"]
# name -> (argv before the port, argv after it, the floor it is compared with like for like).
# The daemon (twistd serverapi) calls gc.freeze() itself, so it compares with the frozen floor.
SERVERS: dict[str, tuple[list[str], list[str], str]] = {
    "serverapi": (["serverapi_server.py"], [], "floor-inline"),
    "serverapi-twistd": (TWISTD, [], "floor-inline+freeze"),
    "floor-inline": (["floor.py", "inline"], [], "floor-inline"),
    "floor-thread": (["floor.py", "thread"], [], "floor-inline"),
    "serverapi+freeze": (["serverapi_server.py"], ["--gc-freeze"], "floor-inline+freeze"),
    "floor-inline+freeze": (["floor.py", "inline"], ["--gc-freeze"], "floor-inline+freeze"),
}


@dataclass(frozen=True)
class Scenario:
    """One wrk run shape."""

    name: str
    script: str
    connections: int
    duration: float | None = None  # None: the --duration given


SCENARIOS = [
    Scenario("communicate c=1", "communicate.lua", 1),
    Scenario("communicate c=32", "communicate.lua", 32),
    Scenario("communicate c=256", "communicate.lua", 256),
    Scenario("login c=32", "login.lua", 32),
    Scenario("communicate c=1000 10s", "communicate.lua", 1000, 10.0),
]


@dataclass
class Result:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    raw: str = field(repr=False, default="")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(name: str, before: list[str], after: list[str]) -> tuple[subprocess.Popen, int]:
    """Start a server process and wait until it accepts connections."""
    port = free_port()
    address = f"tcp:{port}:interface=127.0.0.1:backlog=1024" if before is TWISTD else str(port)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    process = subprocess.Popen([sys.executable, *before, address, *after], cwd=HERE, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{name} did not start")


def login(port: int) -> str:
    """Log in once and return the session token."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("POST", "/login", '{"username": "alice", "password": "password123"}',
                       {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    cookie = response.getheader("Set-Cookie") or ""
    connection.close()
    return cookie.split(";")[0].split("=", 1)[1]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> Result:
    """Read req/s, p50, p99 and errors out of wrk --latency output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore
    p50 = _ms(re.search(r"\s50%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    errors = 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return Result(rps, p50, p99, errors, output)


def wrk(port: int, scenario: Scenario, duration: float, token: str) -> Result:
    """Run wrk once."""
    threads = min(2, scenario.connections)
    seconds = scenario.duration or duration
    command = ["wrk", "--latency", f"-t{threads}", f"-c{scenario.connections}",
               f"-d{seconds:g}s", "--timeout", "10s", "-s", os.path.join(HERE, scenario.script),
               f"http://127.0.0.1:{port}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            env=dict(os.environ, SESSION_TOKEN=token)).stdout
    return parse_wrk(output)


def summarise(runs: list[Result]) -> dict[str, float]:
    """Medians over rounds; errors summed."""
    return {"rps": statistics.median(r.rps for r in runs),
            "p50_ms": statistics.median(r.p50_ms for r in runs),
            "p99_ms": statistics.median(r.p99_ms for r in runs),
            "errors": sum(r.errors for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all)")
    parser.add_argument("--servers", nargs="*", help="servers to run (default: all)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    processes = {}
    try:
        for name, (before, after, _) in SERVERS.items():
            if not args.servers or name in args.servers:
                processes[name] = start(name, before, after)
        runs: dict[str, dict[str, list[Result]]] = {s.name: {n: [] for n in processes}
                                                     for s in scenarios}
        for round_number in range(args.rounds):
            for scenario in scenarios:
                for name, (_, port) in processes.items():
                    # A fresh session per run: a login flood may have evicted the last one.
                    result = wrk(port, scenario, args.duration, login(port))
                    runs[scenario.name][name].append(result)
                    print(f"round {round_number + 1} {scenario.name:24} {name:13} "
                          f"{result.rps:9.0f} req/s p50 {result.p50_ms:7.2f} ms "
                          f"p99 {result.p99_ms:7.2f} ms errors {result.errors}", flush=True)
    finally:
        for process, _ in processes.values():
            process.kill()
    table = {scenario: {name: summarise(results) for name, results in by_server.items()}
             for scenario, by_server in runs.items()}
    print()
    print(f"{'scenario':24} {'server':20} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>6} {'x inline':>9} {'x thread':>9} {'p99 x inline':>12} "
          f"{'x same-gc':>9} {'p99 x same-gc':>13}")
    for scenario, by_server in table.items():
        inline = by_server.get("floor-inline")
        thread = by_server.get("floor-thread")
        for name, row in by_server.items():
            same = by_server.get(SERVERS[name][2])
            row["x_inline"] = row["rps"] / inline["rps"] if inline else float("nan")
            row["x_thread"] = row["rps"] / thread["rps"] if thread else float("nan")
            row["p99_x_inline"] = row["p99_ms"] / inline["p99_ms"] if inline else float("nan")
            row["x_same_gc"] = row["rps"] / same["rps"] if same else float("nan")
            row["p99_x_same_gc"] = row["p99_ms"] / same["p99_ms"] if same else float("nan")
            print(f"{scenario:24} {name:20} {row['rps']:9.0f} {row['p50_ms']:8.2f} "
                  f"{row['p99_ms']:8.2f} {row['errors']:6d} {row['x_inline']:9.2f} "
                  f"{row['x_thread']:9.2f} {row['p99_x_inline']:12.2f} "
                  f"{row['x_same_gc']:9.2f} {row['p99_x_same_gc']:13.2f}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "rounds": args.rounds, "duration": args.duration,
                       "results": table}, handle, indent=2)
    return 0


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


if __name__ == "__main__":
    sys.exit(main())
