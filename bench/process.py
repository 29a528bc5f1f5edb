"""ProcessAPIServer against ThreadedAPIServer: goodput with a CPU-bound and an echo callback.

    python bench/process.py [--rounds 3] [--duration 5] [--workers 2] [--json results.json]

Needs wrk (apt-get install wrk).  Starts six servers with the library's defaults (login_attempts
lifted, as in run.py): ThreadedAPIServer and ProcessAPIServer(workers=N), each once with a
callback that spends about 2 ms of pure Python per request (bench/workload.py cpu_echo), once
with the seed's echo callback, and once with the echo callback and a validity callback (which
runs before every request, in ProcessAPIServer's main process: every request is then a round
trip from the worker to the main process).  Each round runs wrk against the six in turn (interleaved, so
slow moments of this shared machine fall on both alike) at 32 connections.  Only 2xx answers
count; the figure is ProcessAPIServer's goodput over ThreadedAPIServer's in the same round
(median over rounds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from run import Scenario, login, machine, start, summarise, wrk  # noqa: E402

CALLBACKS = {"cpu 2 ms": ["--cpu"], "echo": [], "echo+validity": ["--validity"]}
SCENARIO = Scenario("communicate c=32", "communicate.lua", 32)


def main() -> int:
    """Run the comparison; print it; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    kinds = {"threaded": [], "process": ["--workers", str(args.workers)]}
    processes = {}
    runs: dict[str, dict[str, list]] = {name: {kind: [] for kind in kinds} for name in CALLBACKS}
    ratios: dict[str, list[float]] = {name: [] for name in CALLBACKS}
    try:
        for callback, flags in CALLBACKS.items():
            for kind, extra in kinds.items():
                processes[callback, kind] = start(f"{kind} {callback}", ["serverapi_server.py"],
                                                  [*flags, *extra])
        for round_number in range(args.rounds):
            for callback in CALLBACKS:
                results = {}
                for kind in kinds:
                    port = processes[callback, kind][1]
                    results[kind] = result = wrk(port, SCENARIO, args.duration, login(port))
                    runs[callback][kind].append(result)
                    print(f"round {round_number + 1} {callback:13} {kind:8} goodput "
                          f"{result.goodput:7.0f}/s p50 {result.p50_ms:6.2f} ms p99 "
                          f"{result.p99_ms:6.2f} ms non2xx {result.non2xx} errors "
                          f"{result.errors}", flush=True)
                ratios[callback].append(results["process"].goodput
                                        / max(results["threaded"].goodput, 1e-9))
    finally:
        for process, _ in processes.values():
            process.kill()
            process.wait()
    table = {}
    print(f"\nProcessAPIServer(workers={args.workers}) goodput over ThreadedAPIServer's, same "
          f"round (median over rounds), {SCENARIO.name}:")
    for callback in CALLBACKS:
        threaded, process = (summarise(runs[callback][kind]) for kind in kinds)
        ratio = statistics.median(ratios[callback])
        table[callback] = {"threaded": threaded, "process": process,
                           "process_x_threaded": ratio, "per_round": ratios[callback]}
        print(f"  {callback:13} threaded {threaded['goodput']:7.0f}/s  process "
              f"{process['goodput']:7.0f}/s  -> {ratio:.2f}x  (rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios[callback])})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "rounds": args.rounds, "duration": args.duration,
                       "workers": args.workers, "scenario": SCENARIO.name, "results": table},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
