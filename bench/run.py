"""The benchmark: serverapi against aiohttp and bare twisted.web floors, interleaved, with wrk.

    python bench/run.py [--rounds 3] [--duration 5] [--json results.json]
                        [--only SCENARIO ...] [--servers SERVER ...] [--pin]

Needs wrk (apt-get install wrk) and, for the aiohttp peer, aiohttp in the same interpreter
(pip install aiohttp); without aiohttp that server is skipped with a message and its ratios are
left blank.  Nothing else: the TLS rows use a throwaway certificate made with `cryptography`
(installed with serverapi) in a temporary folder.

Starts every server as its own process on 127.0.0.1 (serverapi embedded and as the twistd daemon,
both with the library's DEFAULT options except login_attempts; the aiohttp peer; bare twisted.web
floors with the callback inline and through deferToThread; TLS variants), then runs each scenario
against each server in turn, round after round, so slow moments of this shared machine fall on
all servers alike; each TLS server runs right next to its plain twin, first in every other
round, so that the TLS ratio compares two runs made one after the other.  Only 2xx answers count
as served: the wrk scripts count the other answers, and goodput = (requests - non-2xx - late
responses) / seconds, where late responses are wrk's "timeout" count (answers slower than
--timeout, which wrk counts as requests too).  Connect, read and write errors are reported
separately: wrk never counts those as requests, so they are not subtracted again.  Every ratio
compares goodput; p50/p99 are wrk's, over every answer.

With --pin every server process runs on the first CPU only and wrk on the others, so the load
generator does not take CPU time from the server it measures (on two CPUs: one each); without
it, as by default, the scheduler places both anywhere.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import math
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
# The daemon as a user runs it: every option the default except --login-attempts, lifted because
# the benchmark logs in far more often than real users fail to (the throttle would answer 429).
TWISTD = ["-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
          "--logfile=/dev/null", "serverapi", "--credentials", "credentials.json",
          "--callback", "workload:echo", "--login-attempts", "1000000", "--listen"]
INLINE, INLINE_TLS, THREAD, AIOHTTP = "floor-inline", "floor-inline-tls", "floor-thread", "aiohttp"
TLS_FILES = ["--tls", "{cert}", "{key}"]


@dataclass(frozen=True)
class Server:
    """One server process: its argv around the port, and what it is compared with."""

    before: list[str]
    after: list[str] = field(default_factory=list)
    same_gc: str = INLINE  # the floor compared like for like (the daemon calls gc.freeze())
    tls: bool = False
    plain: str | None = None  # for a TLS server: the same server over plain HTTP
    needs: str | None = None  # a module the server imports that may be missing


SERVERS: dict[str, Server] = {
    "serverapi": Server(["serverapi_server.py"]),
    "serverapi-twistd": Server(TWISTD, same_gc="floor-inline+freeze"),
    AIOHTTP: Server(["aiohttp_server.py"], needs="aiohttp"),
    INLINE: Server(["floor.py", "inline"]),
    THREAD: Server(["floor.py", "thread"]),
    "serverapi+freeze": Server(["serverapi_server.py"], ["--gc-freeze"],
                               same_gc="floor-inline+freeze"),
    "floor-inline+freeze": Server(["floor.py", "inline"], ["--gc-freeze"],
                                  same_gc="floor-inline+freeze"),
    "serverapi-tls": Server(["serverapi_server.py"], TLS_FILES, same_gc=INLINE_TLS, tls=True,
                            plain="serverapi"),
    INLINE_TLS: Server(["floor.py", "inline"], TLS_FILES, same_gc=INLINE_TLS, tls=True,
                       plain=INLINE),
}


@dataclass(frozen=True)
class Scenario:
    """One wrk run shape; TLS scenarios run against the TLS servers only, others the rest."""

    name: str
    script: str
    connections: int
    duration: float | None = None  # None: the --duration given
    tls: bool = False
    default: bool = True  # run without --only


TLS_PLAIN_SCENARIO = "communicate c=32"
SCENARIOS = [
    Scenario("communicate c=1", "communicate.lua", 1, default=False),
    Scenario(TLS_PLAIN_SCENARIO, "communicate.lua", 32),
    # Each TLS server runs right next to its plain twin at the scenario above (schedule()).
    Scenario("communicate c=32 TLS", "communicate.lua", 32, tls=True),
    Scenario("communicate c=256", "communicate.lua", 256),
    Scenario("login c=32", "login.lua", 32),
    Scenario("communicate c=1000 10s", "communicate.lua", 1000, 10.0),
]


@dataclass
class Result:
    """What one wrk run measured."""

    requests: int  # every complete response, whatever its status
    seconds: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    raw: str = field(repr=False, default="")

    @property
    def rps(self) -> float:
        """Every response per second (wrk's Requests/sec)."""
        return self.requests / self.seconds

    @property
    def goodput(self) -> float:
        """2xx responses that came within wrk's timeout, per second."""
        return max(0, self.requests - self.non2xx - self.timeout) / self.seconds

    @property
    def errors(self) -> int:
        """Non-2xx answers and socket errors of every kind."""
        return self.non2xx + self.connect + self.read + self.write + self.timeout

    def figures(self) -> dict[str, float]:
        """The numbers, without wrk's text."""
        values = {k: v for k, v in asdict(self).items() if k != "raw"}
        return dict(values, rps=self.rps, goodput=self.goodput)


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpus: set[int] | None) -> Any:
    """What runs in a child before it starts: keep it (and its threads) on C{cpus}, if given."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """The servers' CPUs and wrk's: with C{pin}, the first CPU and the others; without, anywhere
    (C{None}).  Raises C{ValueError} when pinning is asked of a machine with one CPU."""
    if not pin:
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise ValueError("--pin needs at least two CPUs")
    return {cpus[0]}, set(cpus[1:])


def start(name: str, before: list[str], after: list[str], *,
          cpus: set[int] | None = None) -> tuple[subprocess.Popen, int]:
    """Start a server process (on C{cpus} only, if given) and wait until it accepts
    connections."""
    port = free_port()
    address = f"tcp:{port}:interface=127.0.0.1:backlog=1024" if before is TWISTD else str(port)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(HERE), HERE]))
    process = subprocess.Popen([sys.executable, *before, address, *after], cwd=HERE, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               preexec_fn=pinned(cpus))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"{name} did not start (exit status {process.returncode})")


def login(port: int, cafile: str | None = None, username: str = "alice",
          password: str = "password123") -> str:
    """Log in once (over TLS when C{cafile} is given) and return the session token."""
    connection: http.client.HTTPConnection
    if cafile:
        connection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=10, context=ssl.create_default_context(cafile=cafile))
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/login",
                           json.dumps({"username": username, "password": password}),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie") or ""
    finally:
        connection.close()
    if response.status != 200 or not cookie.startswith("sessionToken="):
        raise RuntimeError(f"login on port {port} answered {response.status} {cookie!r}")
    return cookie.split(";")[0].split("=", 1)[1]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    """wrk's time (3.2ms, 812.00us, 1.01s, 1.00m) in milliseconds."""
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _search(pattern: str, output: str) -> re.Match[str]:
    """The match, or an error that shows wrk's output."""
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in wrk's output:\n{output}")
    return match


def parse_wrk(output: str) -> Result:
    """Read requests, run time, p50, p99, non-2xx and socket errors out of wrk --latency output."""
    requests_line = _search(r"(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),", output)
    requests, seconds = int(requests_line.group(1)), _ms(requests_line.group(2)) / 1000
    p50 = _ms(_search(r"\s50%\s+([\d.]+\w+)", output).group(1))
    p99 = _ms(_search(r"\s99%\s+([\d.]+\w+)", output).group(1))
    non2xx_line = re.search(r"^non2xx (\d+)$", output, re.MULTILINE)
    if non2xx_line:
        non2xx = int(non2xx_line.group(1))
    else:  # a script without status.lua: wrk's own count (statuses above 399 only)
        wrk_status = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
        non2xx = int(wrk_status.group(1)) if wrk_status else 0
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", output)
    connect, read, write, timeout = (int(v) for v in socket_errors.groups()) if socket_errors \
        else (0, 0, 0, 0)
    return Result(requests, seconds, p50, p99, non2xx, connect, read, write, timeout, output)


def wrk(port: int, scenario: Scenario, duration: float, token: str, *,
        cpus: set[int] | None = None) -> Result:
    """Run wrk once against 127.0.0.1:C{port} (https for a TLS scenario), on C{cpus} only if
    given."""
    threads = min(2, scenario.connections)
    seconds = scenario.duration or duration
    scheme = "https" if scenario.tls else "http"
    command = ["wrk", "--latency", f"-t{threads}", f"-c{scenario.connections}",
               f"-d{seconds:g}s", "--timeout", "10s", "-s", os.path.join(HERE, scenario.script),
               f"{scheme}://127.0.0.1:{port}"]
    output = subprocess.run(command, capture_output=True, text=True, check=True,
                            timeout=seconds + 60, cwd=HERE, preexec_fn=pinned(cpus),
                            env=dict(os.environ, SESSION_TOKEN=token)).stdout
    return parse_wrk(output)


def summarise(runs: list[Result]) -> dict[str, float]:
    """Medians over rounds; error counts summed, kind by kind."""
    summary: dict[str, float] = {
        key: statistics.median(getattr(r, key) for r in runs)
        for key in ("goodput", "rps", "p50_ms", "p99_ms")}
    for key in ("non2xx", "connect", "read", "write", "timeout", "requests"):
        summary[key] = sum(getattr(r, key) for r in runs)
    return summary


def ratio(top: float, bottom: float | None) -> float:
    """top / bottom, NaN when there is nothing to compare with."""
    return top / bottom if bottom else float("nan")


def of(row: dict[str, float] | None, key: str) -> float | None:
    """A reference row's figure, None without the reference."""
    return row[key] if row else None


def no_nan(value: Any) -> Any:
    """The value with every NaN made None, for strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: no_nan(item) for key, item in value.items()}
    if isinstance(value, list):
        return [no_nan(item) for item in value]
    return value


def schedule(runs: dict[str, dict[str, list[Result]]], scenarios: list[Scenario],
             round_number: int) -> list[tuple[Scenario, str]]:
    """One round's runs in order: scenario by scenario and server by server, except that each
    TLS server runs right next to its plain twin at the plain scenario, before it in odd rounds
    and after it in even ones.  "TLS keeps X of plain" then compares two runs made one after the
    other, not half a minute apart, and neither always comes first."""
    paired = {SERVERS[name].plain: (scenario, name)
              for scenario in scenarios if scenario.tls for name in runs.get(scenario.name, {})
              if SERVERS[name].plain in runs.get(TLS_PLAIN_SCENARIO, {})}
    twins = set(paired.values())
    steps: list[tuple[Scenario, str]] = []
    for scenario in scenarios:
        for name in runs.get(scenario.name, {}):
            if (scenario, name) in twins:
                continue
            pair = [(scenario, name)]
            if scenario.name == TLS_PLAIN_SCENARIO and name in paired:
                pair.append(paired[name])
                if round_number % 2:
                    pair.reverse()
            steps += pair
    return steps


def tls_keeps(runs: dict[str, dict[str, list[Result]]], scenario: Scenario,
              name: str) -> float:
    """Median over rounds of a TLS server's goodput over its plain twin's at c=32, same round."""
    plain = SERVERS[name].plain
    tls_runs = runs.get(scenario.name, {}).get(name, [])
    plain_runs = runs.get(TLS_PLAIN_SCENARIO, {}).get(plain or "", [])
    ratios = [ratio(t.goodput, p.goodput) for t, p in zip(tls_runs, plain_runs)]
    return statistics.median(ratios) if ratios else float("nan")


def _r(value: float, width: int) -> str:
    """A ratio, or '-' when there is none."""
    return f"{'-':>{width}}" if math.isnan(value) else f"{value:{width}.2f}"


def report(runs: dict[str, dict[str, list[Result]]],
           scenarios: list[Scenario]) -> dict[str, dict[str, dict[str, float]]]:
    """Print the table of medians and ratios (by goodput); return it."""
    table = {scenario: {name: summarise(results) for name, results in by_server.items()}
             for scenario, by_server in runs.items()}
    print()
    print("goodput = 2xx answers per second; p50/p99 over every answer (wrk); errors summed over "
          "rounds; ratios are goodput over the reference's (TLS rows: over floor-inline-tls).")
    header = (f"{'scenario':24} {'server':19} {'goodput':>8} {'req/s':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'non2xx':>7} {'connect':>7} {'read':>6} {'write':>6} "
              f"{'timeout':>7} {'x inline':>8} {'x aiohttp':>9} {'x thread':>8} "
              f"{'p99 x inline':>12} {'p99 x aiohttp':>13}")
    print(header)
    by_name = {s.name: s for s in scenarios}
    for scenario_name, by_server in table.items():
        tls = by_name[scenario_name].tls
        inline = by_server.get(INLINE_TLS if tls else INLINE)
        aiohttp = None if tls else by_server.get(AIOHTTP)
        thread = None if tls else by_server.get(THREAD)
        for name, row in by_server.items():
            same = by_server.get(SERVERS[name].same_gc)
            row["x_inline"] = ratio(row["goodput"], of(inline, "goodput"))
            row["x_aiohttp"] = ratio(row["goodput"], of(aiohttp, "goodput"))
            row["x_thread"] = ratio(row["goodput"], of(thread, "goodput"))
            row["p99_x_inline"] = ratio(row["p99_ms"], of(inline, "p99_ms"))
            row["p99_x_aiohttp"] = ratio(row["p99_ms"], of(aiohttp, "p99_ms"))
            row["x_same_gc"] = ratio(row["goodput"], of(same, "goodput"))
            row["p99_x_same_gc"] = ratio(row["p99_ms"], of(same, "p99_ms"))
            if tls:
                row["tls_keeps_of_plain"] = tls_keeps(runs, by_name[scenario_name], name)
            print(f"{scenario_name:24} {name:19} {row['goodput']:8.0f} {row['rps']:8.0f} "
                  f"{row['p50_ms']:8.2f} {row['p99_ms']:8.2f} {row['non2xx']:7.0f} "
                  f"{row['connect']:7.0f} {row['read']:6.0f} {row['write']:6.0f} "
                  f"{row['timeout']:7.0f} {_r(row['x_inline'], 8)} {_r(row['x_aiohttp'], 9)} "
                  f"{_r(row['x_thread'], 8)} {_r(row['p99_x_inline'], 12)} "
                  f"{_r(row['p99_x_aiohttp'], 13)}")
    for scenario in scenarios:
        if scenario.tls and scenario.name in table:
            print(f"\nTLS keeps X of plain ({scenario.name}, keep-alive: goodput over the same "
                  f"server's plain-HTTP goodput at {TLS_PLAIN_SCENARIO} in the same round, "
                  "median over rounds):")
            for name, row in table[scenario.name].items():
                print(f"  {name:19} keeps {_r(row['tls_keeps_of_plain'], 4).strip()} "
                      f"of {SERVERS[name].plain}")
    return table


def available(names: list[str] | None) -> dict[str, Server]:
    """The servers asked for, less those whose module is missing (said on stderr)."""
    servers = {}
    for name, server in SERVERS.items():
        if names and name not in names:
            continue
        if server.needs and importlib.util.find_spec(server.needs) is None:
            print(f"{server.needs} is not installed in {sys.executable}: skipping the {name} "
                  f"server (pip install {server.needs}); its ratios are left blank.",
                  file=sys.stderr)
            continue
        servers[name] = server
    return servers


def main() -> int:
    """Run the benchmark; print the table; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--only", nargs="*", help="scenario names to run (default: all but "
                        + ", ".join(s.name for s in SCENARIOS if not s.default) + ")")
    parser.add_argument("--servers", nargs="*", help="servers to run (default: all)")
    parser.add_argument("--pin", action="store_true",
                        help="keep every server on the first CPU and wrk on the others")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    scenarios = [s for s in SCENARIOS if (s.name in args.only if args.only else s.default)]
    try:
        server_cpus, wrk_cpus = cpu_split(args.pin)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    servers = available(args.servers)
    processes: dict[str, tuple[subprocess.Popen, int]] = {}
    runs: dict[str, dict[str, list[Result]]] = {}
    with tempfile.TemporaryDirectory(prefix="serverapi-bench-") as folder:
        cert = key = ""
        if any(server.tls for server in servers.values()):
            from certs import make_certificate
            cert, key = make_certificate(folder)
        try:
            for name, server in servers.items():
                after = [arg.format(cert=cert, key=key) for arg in server.after]
                processes[name] = start(name, server.before, after, cpus=server_cpus)
            runs = {s.name: {n: [] for n in processes if servers[n].tls == s.tls}
                    for s in scenarios}
            runs = {scenario: by_server for scenario, by_server in runs.items() if by_server}
            for round_number in range(args.rounds):
                for scenario, name in schedule(runs, scenarios, round_number):
                    port = processes[name][1]
                    # A fresh session per run: a login flood may have evicted the last one.
                    token = login(port, cert if scenario.tls else None)
                    result = wrk(port, scenario, args.duration, token, cpus=wrk_cpus)
                    runs[scenario.name][name].append(result)
                    print(f"round {round_number + 1} {scenario.name:24} {name:19} "
                          f"goodput {result.goodput:7.0f}/s req/s {result.rps:7.0f} "
                          f"p50 {result.p50_ms:7.2f} ms p99 {result.p99_ms:7.2f} ms "
                          f"non2xx {result.non2xx} connect {result.connect} "
                          f"read {result.read} write {result.write} "
                          f"timeout {result.timeout}", flush=True)
        finally:
            for process, _ in processes.values():
                process.kill()
                process.wait()
    table = report(runs, scenarios)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(no_nan({
                "machine": machine(), "rounds": args.rounds, "duration": args.duration,
                "pinned": args.pin,
                "results": table,
                "runs": {scenario: {name: [r.figures() for r in results]
                                    for name, results in by_server.items()}
                         for scenario, by_server in runs.items()}}), handle, indent=2)
    return 0


def machine() -> dict[str, Any]:
    """What the numbers were measured on (hosts of the same name can differ twofold in speed,
    and the TLS rows also depend on the OpenSSL the standard library was built with)."""
    import platform
    return {"python": platform.python_version(), "cpus": os.cpu_count(),
            "processor": processor(), "openssl": ssl.OPENSSL_VERSION,
            "platform": platform.platform(), "when": time.strftime("%Y-%m-%d %H:%M:%S")}


def processor(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name, from Linux's C{cpuinfo}; elsewhere what C{platform} knows."""
    import platform
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
