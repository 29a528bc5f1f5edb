"""serverapi as a user embeds it, for the benchmark.

    python bench/serverapi_server.py PORT [plain|hashed] [--gc-freeze]

With --gc-freeze the program calls gc.freeze() once it is serving, as a program may do at the end
of its start-up: the objects that exist then are left out of later garbage-collection passes.
"""

from __future__ import annotations

import gc
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from serverapi import ThreadedAPIServer, hashPassword  # noqa: E402

from workload import CREDENTIALS, echo  # noqa: E402


def main() -> None:
    port = int(sys.argv[1])
    hashed = "hashed" in sys.argv[2:]
    credentials = ({user: hashPassword(pw) for user, pw in CREDENTIALS.items()} if hashed
                   else CREDENTIALS)
    # Benchmarks log in far more often than real users fail to: lift the throttle.
    server = ThreadedAPIServer("127.0.0.1", port, credentials, echo, login_attempts=10**6,
                               max_queued_requests=1000)
    server.startAPIServer(block=False)
    if "--gc-freeze" in sys.argv:
        gc.freeze()
    print("READY", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stopAPIServer()


if __name__ == "__main__":
    main()
