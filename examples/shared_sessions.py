"""Two serverapi servers sharing their sessions through Redis: log in on one, talk to the other.

    apt-get install redis-server && pip install 'serverapi[redis]'
    redis-server --port 6379 --appendonly yes &
    python examples/shared_sessions.py [redis://127.0.0.1:6379/0]

It starts servers on ports 8001 and 8002 (in one process here; in production they are separate
processes, on one host or several, behind a load balancer), then logs in on 8001 and uses the
session on 8002:

    curl -c jar -H 'Content-Type: application/json' \\
         -d '{"username": "alice", "password": "password123"}' http://127.0.0.1:8001/login
    curl -b jar -H 'Content-Type: application/json' -d '{"message": "hi"}' \\
         http://127.0.0.1:8002/communicate

Stop it with Ctrl-C and start it again: the cookie in "jar" still works, since the sessions
live in Redis, not in the process.
"""

import logging
import os
import sys

from serverapi import ThreadedAPIServer

CREDENTIALS = {"alice": "password123", "bob": "securepassword"}


def handle(username, session_token, data):
    """Echo the message back, saying which server answered."""
    return False, False, {"echo": data.get("message", ""), "user": username,
                          "served_by": os.getpid()}


def make_servers(store, ports=(8001, 8002)):
    """One server per port, all keeping their sessions in the store at C{store}."""
    return [ThreadedAPIServer("127.0.0.1", port, CREDENTIALS, handle, session_store=store,
                              session_store_prefix="example:")
            for port in ports]


def main() -> None:
    """Start both servers on one store and serve until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    store = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    first, second = make_servers(store)
    second.startAPIServer(block=False)  # raises SessionStoreUnavailable if Redis is not there
    print("serving on 8001 and 8002, sessions in", store, flush=True)
    try:
        first.startAPIServer()  # blocks until Ctrl-C
    except KeyboardInterrupt:
        first.stopAPIServer()
    finally:
        second.stopAPIServer()


if __name__ == "__main__":
    main()
