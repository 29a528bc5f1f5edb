"""serverapi as a user embeds it, for the benchmark.

    python bench/serverapi_server.py PORT [plain|hashed] [--gc-freeze] [--tls CERT KEY]
                                          [--sleep SECONDS] [--max-threads N]
                                          [--session-store URL] [--workers N] [--cpu]

Every option is serverapi's default (as README.md embeds it) except login_attempts, which is
lifted: the benchmark logs in far faster than the throttle lets a real user fail.  In particular
max_queued_requests is the default (100), so connections beyond the workers and that queue get
503, as a user's server would.

With --gc-freeze the program calls gc.freeze() once it is serving, as a program may do at the end
of its start-up: the objects that exist then are left out of later garbage-collection passes.
--tls serves HTTPS through setConnectionSecurityParams.  --sleep makes the callback sleep that
long before echoing (bench/overload.py); --max-threads sets max_threads (default: the library's);
--session-store keeps the sessions in that Redis (bench/store.py).  --workers N serves with
ProcessAPIServer and N worker processes (bench/process.py); --cpu makes the callback spend about
2 ms of pure Python per request before echoing; --validity adds a validity callback that keeps
every session (so each request runs it, and ProcessAPIServer's workers ask the main process).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import threading
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serverapi import ProcessAPIServer, ThreadedAPIServer, hashPassword  # noqa: E402

from workload import CREDENTIALS, always_valid, cpu_echo, echo, sleepy_echo  # noqa: E402


def parse_args() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int)
    parser.add_argument("credentials", nargs="?", choices=("plain", "hashed"), default="plain")
    parser.add_argument("--gc-freeze", action="store_true")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--sleep", type=float, default=0.0, help="callback sleep, seconds")
    parser.add_argument("--max-threads", type=int)
    parser.add_argument("--session-store", help="redis:// URL of a shared session store")
    parser.add_argument("--workers", type=int, help="serve with ProcessAPIServer and N workers")
    parser.add_argument("--cpu", action="store_true", help="a 2 ms CPU-bound callback")
    parser.add_argument("--validity", action="store_true",
                        help="a session validity callback (always true)")
    return parser.parse_args()


def main() -> None:
    """Serve until killed."""
    args = parse_args()
    credentials = ({user: hashPassword(pw) for user, pw in CREDENTIALS.items()}
                   if args.credentials == "hashed" else CREDENTIALS)
    callback = sleepy_echo(args.sleep) if args.sleep > 0 else cpu_echo if args.cpu else echo
    options: dict[str, Any] = {}
    if args.max_threads is not None:
        options["max_threads"] = args.max_threads
    if args.session_store:
        options["session_store"] = args.session_store
    # The one option lifted: benchmarks log in far more often than real users fail to, and the
    # per-username throttle would otherwise answer them 429.  Everything else is the default.
    if args.workers is not None:
        options["workers"] = args.workers
    kind = ThreadedAPIServer if args.workers is None else ProcessAPIServer
    validity = always_valid if args.validity else None
    server = kind("127.0.0.1", args.port, credentials, callback, validity, login_attempts=10**6,
                  **options)
    if args.tls:
        server.setConnectionSecurityParams(certfile=args.tls[0], keyfile=args.tls[1])
    server.startAPIServer(block=False)
    if args.gc_freeze:
        gc.freeze()
    print("READY", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stopAPIServer()


if __name__ == "__main__":
    main()
