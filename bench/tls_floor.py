"""What TLS costs serverapi, against what its two OpenSSL record calls cost inside the server.

    python bench/tls_floor.py [--rounds 6] [--duration 5] [--pin] [--json results.json]

Needs wrk (apt-get install wrk).  Starts three serverapi servers with the library's defaults
(login_attempts lifted, as in run.py): over plain HTTP; over TLS (setConnectionSecurityParams);
and over plain HTTP doing beside each request the record work TLS does (bench/side_tls_server.py:
decrypt one record as the request arrives, encrypt the answer as it is sent, in memory).  Each
round runs wrk at 32 keep-alive connections against the three in turn.  Only 2xx answers count;
the figures are each server's goodput over the plain server's in the same round (median over
rounds), and each server process's CPU time per answer (from /proc, median over rounds).  If the
side work costs about what TLS costs, TLS costs the server what OpenSSL's record calls cost in
it, and little of the layer around them or of the wire; with --pin (the servers on the first
CPU, wrk on the others), wrk's own TLS work does not share the servers' CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from run import Scenario, cpu_split, login, machine, start, wrk  # noqa: E402

SCENARIO = Scenario("communicate c=32", "communicate.lua", 32)
TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = {"plain": ["serverapi_server.py"], "tls": ["serverapi_server.py"],
           "side work": ["side_tls_server.py"]}


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process C{pid} (every thread) so far, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> int:
    """Run the comparison; print it; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--pin", action="store_true",
                        help="keep the servers on the first CPU and wrk on the others")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    try:
        server_cpus, wrk_cpus = cpu_split(args.pin)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    goodput: dict[str, list[float]] = {name: [] for name in SERVERS}
    cpu_us: dict[str, list[float]] = {name: [] for name in SERVERS}
    with tempfile.TemporaryDirectory(prefix="serverapi-bench-") as folder:
        from certs import make_certificate
        cert, key = make_certificate(folder)
        after = {"plain": [], "tls": ["--tls", cert, key], "side work": [cert, key]}
        processes = {}
        try:
            for name, before in SERVERS.items():
                processes[name] = start(name, before, after[name], cpus=server_cpus)
            for round_number in range(args.rounds):
                for name, (process, port) in processes.items():
                    tls = name == "tls"
                    token = login(port, cert if tls else None)
                    cpu_before = cpu_seconds(process.pid)
                    result = wrk(port, replace(SCENARIO, tls=tls), args.duration, token,
                                 cpus=wrk_cpus)
                    cpu_us[name].append((cpu_seconds(process.pid) - cpu_before) * 1e6
                                        / max(result.requests, 1))
                    if result.non2xx or result.timeout:
                        print(f"{name}: {result.non2xx} non-2xx answers, {result.timeout} "
                              "time-outs", file=sys.stderr)
                    goodput[name].append(result.goodput)
                    print(f"round {round_number + 1} {name:9} goodput {result.goodput:7.0f}/s "
                          f"p99 {result.p99_ms:6.2f} ms server CPU {cpu_us[name][-1]:5.1f} "
                          "µs/answer", flush=True)
        finally:
            for process, _ in processes.values():
                process.kill()
                process.wait()
    keeps = {name: [g / p for g, p in zip(goodput[name], goodput["plain"])]
             for name in SERVERS if name != "plain"}
    print(f"\nkeeps of plain HTTP's goodput, median of {args.rounds} rounds"
          f"{' (pinned)' if args.pin else ''}:")
    for name, ratios in keeps.items():
        print(f"  {name:9} {statistics.median(ratios):.3f}  rounds "
              + ", ".join(f"{r:.2f}" for r in ratios))
    print("server CPU time per answer, µs (median of rounds):")
    for name, values in cpu_us.items():
        print(f"  {name:9} {statistics.median(values):5.1f}  rounds "
              + ", ".join(f"{v:.1f}" for v in values))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "rounds": args.rounds, "duration": args.duration,
                       "pinned": args.pin, "goodput": goodput, "cpu_us_per_answer": cpu_us,
                       "keeps": {name: statistics.median(r) for name, r in keeps.items()}},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
