"""Where serverapi's CPU time goes per answer, plain HTTP against TLS, from perf's call graphs.

    python bench/tls_profile.py [--rounds 3] [--duration 4] [--frequency 1999] [--json F]
                                [-- SERVER OPTIONS, e.g. --max-threads 1]

Needs wrk and perf (apt-get install wrk linux-perf), and the right to profile the server (root,
or kernel.perf_event_paranoid at most 1).  Starts serverapi with the library's defaults
(login_attempts lifted, as in run.py) over plain HTTP and over TLS (setConnectionSecurityParams),
and for each records the server's stacks (``perf record --call-graph dwarf``) while wrk runs
32 keep-alive connections on ``/communicate``, one after the other, plain first in every other
round.  It prints, per answer and as the median over rounds: the CPU time of the reactor thread
(the busiest) by kind of code, its time inside OpenSSL, the other threads' time (the worker
pool), and both's ``futex`` time by what made the call (bench/perf_stacks.py).  Nothing is
pinned: this is the machine as the benchmark runs it, and from one moment to the next the same
answer's cost moves by several microseconds, so take more rounds rather than fewer.  A profile
slows the server: read the split, not the rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from perf_stacks import Profile, median, parse, summarise  # noqa: E402
from run import SCENARIOS, login, machine, start, wrk  # noqa: E402

SCENARIO = next(s for s in SCENARIOS if s.name == "communicate c=32")


def profile(name: str, tls_files: list[str], options: list[str], folder: str,
            duration: float, frequency: int) -> tuple[Profile, float]:
    """Start one server, profile it under wrk, stop it; its profile and wrk's goodput."""
    process, port = start(name, ["serverapi_server.py"],
                          [*options, *(["--tls", *tls_files] if tls_files else [])])
    data = os.path.join(folder, f"{name}.data")
    recorder = None
    try:
        token = login(port, tls_files[0] if tls_files else None)
        recorder = subprocess.Popen(
            ["perf", "record", "-F", str(frequency), "--call-graph", "dwarf,16384",
             "-p", str(process.pid), "-o", data, "--", "sleep", str(duration + 0.5)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2)  # perf attaches before the load starts
        result = wrk(port, dataclasses.replace(SCENARIO, tls=bool(tls_files)), duration, token)
        if recorder.wait() != 0:
            raise RuntimeError(f"perf record failed for {name} (run as root?)")
    finally:
        if recorder is not None and recorder.poll() is None:  # wrk failed: stop perf too
            recorder.kill()
            recorder.wait()
        process.kill()
        process.wait()
    text = subprocess.run(["perf", "script", "-i", data, "-F", "tid,period,ip,sym,dso"],
                          check=True, capture_output=True, text=True).stdout
    return summarise(parse(text), result.requests), result.goodput


def show(profiles: dict[str, Profile]) -> None:
    """Print the profiles side by side, with TLS's difference."""
    plain, tls = profiles["plain"], profiles["tls"]

    def row(label: str, a: float, b: float) -> None:
        print(f"  {label:44} {a:7.2f} {b:7.2f} {b - a:+7.2f}")

    print(f"µs of CPU per answer {'plain':>33} {'TLS':>7} {'extra':>7}")
    row("reactor thread, all of it", plain.reactor, tls.reactor)
    for kind in dict.fromkeys([*tls.reactor_kinds, *plain.reactor_kinds]):
        row(f"  leaf in {kind}", plain.reactor_kinds.get(kind, 0), tls.reactor_kinds.get(kind, 0))
    row("  inside OpenSSL (inclusive)", plain.reactor_in_openssl, tls.reactor_in_openssl)
    row("other threads (the pool), all of it", plain.others, tls.others)
    for title, attribute in (("reactor's futex time", "reactor_futex"),
                             ("other threads' futex time", "others_futex")):
        print(f"  {title}:")
        a, b = getattr(plain, attribute), getattr(tls, attribute)
        for cause in sorted({*a, *b}, key=lambda c: -max(a.get(c, 0), b.get(c, 0)))[:6]:
            row(f"  {cause}", a.get(cause, 0), b.get(cause, 0))


def main() -> int:
    """Profile both servers; print the split; optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of load each")
    parser.add_argument("--frequency", type=int, default=1999, help="samples a second")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("options", nargs="*",
                        help="options for bench/serverapi_server.py (after --), both servers")
    args = parser.parse_args()
    for tool, package in (("wrk", "wrk"), ("perf", "linux-perf")):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: apt-get install {package}", file=sys.stderr)
            return 2
    rounds: dict[str, list[Profile]] = {"plain": [], "tls": []}
    goodput: dict[str, list[float]] = {"plain": [], "tls": []}
    with tempfile.TemporaryDirectory(prefix="serverapi-profile-") as folder:
        from certs import make_certificate
        files = {"plain": [], "tls": list(make_certificate(folder))}
        for number in range(args.rounds):
            for name in ("plain", "tls") if number % 2 == 0 else ("tls", "plain"):
                found, rate = profile(name, files[name], args.options, folder, args.duration,
                                      args.frequency)
                rounds[name].append(found)
                goodput[name].append(rate)
                print(f"round {number + 1} {name:5} goodput under the profiler {rate:7.0f}/s, "
                      f"reactor {found.reactor:5.1f} µs/answer", flush=True)
    profiles = {name: median(found) for name, found in rounds.items()}
    print(f"\nmedians of {args.rounds} rounds")
    show(profiles)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"machine": machine(), "options": args.options, "rounds": args.rounds,
                       "duration": args.duration,
                       "frequency": args.frequency, "goodput": goodput,
                       "medians": {n: dataclasses.asdict(p) for n, p in profiles.items()},
                       "each_round": {n: [dataclasses.asdict(p) for p in found]
                                      for n, found in rounds.items()}},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
