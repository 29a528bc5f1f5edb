"""serverapi on every core: ProcessAPIServer runs the callback in worker processes.

    python examples/process_server.py [PORT] [WORKERS]

The callback is an ordinary module-level function, so each worker process can import it (here
from this script, which every worker runs again with __name__ set to "__mp_main__", the way
multiprocessing does: the server is therefore made and started only under
'if __name__ == "__main__":').  The sessions live in the main process, which also runs the
validity callback.  Try it:

    curl -c jar -H 'Content-Type: application/json' \\
         -d '{"username": "alice", "password": "password123"}' http://127.0.0.1:8000/login
    curl -b jar -H 'Content-Type: application/json' -d '{"n": 25}' \\
         http://127.0.0.1:8000/communicate

Each answer says which worker process computed it.  Stop it with Ctrl-C: the workers finish
what they are doing (within shutdown_grace) and exit with it.
"""

import logging
import os
import sys
import threading

from serverapi import ProcessAPIServer

CREDENTIALS = {"alice": "password123", "bob": "securepassword"}


def fibonacci(n):
    """Slow on purpose: pure Python work, which one process could not spread over cores."""
    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)


def handle(username, session_token, data):
    """Compute fibonacci(n) (n up to 30) and say which worker did it."""
    n = max(0, min(int(data.get("n", 20)), 30))
    return False, False, {"fibonacci": fibonacci(n), "n": n, "worker": os.getpid()}


def still_allowed(session):
    """The validity callback: runs in the main process, before each request."""
    return session.get_username() in CREDENTIALS


def main() -> None:
    """Serve until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else None  # default: one per CPU
    server = ProcessAPIServer("127.0.0.1", port, CREDENTIALS, handle, still_allowed,
                              workers=workers)
    server.startAPIServer(block=False)
    print(f"serving on http://127.0.0.1:{server.port} with {server.workers} workers "
          f"(main process {os.getpid()})", flush=True)
    try:
        threading.Event().wait()  # the server runs in the background until Ctrl-C
    except KeyboardInterrupt:
        server.stopAPIServer()


if __name__ == "__main__":
    main()
