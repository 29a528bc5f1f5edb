"""The shared session store's cost: /communicate with sessions in Redis against in memory.

    python bench/store.py [--rounds 3] [--duration 5] [--json results.json]

Needs wrk and redis-server (apt-get install wrk redis-server).  Starts one redis-server (as the
tests do: a free port, a temporary folder, append-only file, but synced every second, Redis's
own default for that file, where the tests sync every write) and two serverapi processes with the
library's defaults (login_attempts lifted, as in run.py): one keeping sessions in memory, one in
that Redis (session_store=).  Each round runs wrk against both at 32 and 256 connections, in
turn, so slow moments of this shared machine fall on both alike.  Only 2xx answers count; the
figure is the Redis server's goodput over the in-memory one's in the same round (median).
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

from tests.redis_server import RedisServer, redis_missing  # noqa: E402

SCENARIOS = [Scenario("communicate c=32", "communicate.lua", 32),
             Scenario("communicate c=256", "communicate.lua", 256)]


def main() -> int:
    """Run the comparison; print it; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    missing = "wrk is not installed" if shutil.which("wrk") is None else redis_missing()
    if missing:
        print(f"{missing}: apt-get install wrk redis-server", file=sys.stderr)
        return 2
    store = RedisServer(fsync="everysec").start()
    processes = {}
    runs: dict[str, dict[str, list]] = {s.name: {"memory": [], "redis": []} for s in SCENARIOS}
    ratios: dict[str, list[float]] = {s.name: [] for s in SCENARIOS}
    try:
        processes["memory"] = start("memory", ["serverapi_server.py"], [])
        processes["redis"] = start("redis", ["serverapi_server.py"],
                                   ["--session-store", store.url])
        for round_number in range(args.rounds):
            for scenario in SCENARIOS:
                results = {}
                for name, (_, port) in processes.items():
                    results[name] = result = wrk(port, scenario, args.duration, login(port))
                    runs[scenario.name][name].append(result)
                    print(f"round {round_number + 1} {scenario.name:18} {name:7} goodput "
                          f"{result.goodput:7.0f}/s p50 {result.p50_ms:6.2f} ms p99 "
                          f"{result.p99_ms:6.2f} ms non2xx {result.non2xx} errors "
                          f"{result.errors}", flush=True)
                ratios[scenario.name].append(results["redis"].goodput
                                             / max(results["memory"].goodput, 1e-9))
    finally:
        for process, _ in processes.values():
            process.kill()
            process.wait()
        store.cleanup()
    table = {}
    print("\nRedis store goodput over in-memory goodput, same round (median over rounds):")
    for scenario in SCENARIOS:
        memory, redis = (summarise(runs[scenario.name][name]) for name in ("memory", "redis"))
        ratio = statistics.median(ratios[scenario.name])
        table[scenario.name] = {"memory": memory, "redis": redis, "redis_x_memory": ratio,
                                "per_round": ratios[scenario.name]}
        print(f"  {scenario.name:18} memory {memory['goodput']:7.0f}/s  redis "
              f"{redis['goodput']:7.0f}/s  -> {ratio:.2f}x  (rounds: "
              f"{', '.join(f'{r:.2f}' for r in ratios[scenario.name])})")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "rounds": args.rounds, "duration": args.duration,
                       "results": table}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
