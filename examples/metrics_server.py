"""The echo server with the operator's extras: an access log, health and Prometheus metrics.

    pip install 'serverapi[metrics]'
    python examples/metrics_server.py

serves the API on http://127.0.0.1:8000 and, on a separate port, GET /healthz and GET /metrics
on http://127.0.0.1:9100; every request is appended to access.log in combined log format.
Send it SIGHUP to reload credentials.json (if there is one) and SIGUSR1 to reopen access.log
after rotating it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from serverapi import ThreadedAPIServer

CREDENTIALS_FILE = "credentials.json"
DEFAULT_CREDENTIALS = {"alice": "password123", "bob": "securepassword"}


def handle(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """Echo the message back."""
    return False, False, {"echo": data.get("message", ""), "user": username}


def load_credentials() -> dict[str, str]:
    """The credentials file's users, or the defaults when there is no file."""
    if not os.path.exists(CREDENTIALS_FILE):
        return dict(DEFAULT_CREDENTIALS)
    with open(CREDENTIALS_FILE, encoding="utf-8") as handle:
        loaded: dict[str, str] = json.load(handle)
        return loaded


def build_server(port: int = 8000, metrics: str = "tcp:9100:interface=127.0.0.1",
                 access_log: str = "access.log") -> ThreadedAPIServer:
    """The server, not started yet."""
    return ThreadedAPIServer("127.0.0.1", port, load_credentials(), handle,
                             access_log=access_log, metrics_endpoint=metrics)


def install_signals(server: ThreadedAPIServer) -> None:
    """SIGHUP reloads the credentials, SIGUSR1 reopens the access log (in a thread of their
    own: both wait for the server's reactor thread)."""

    def reload() -> None:
        """Read the credentials file again and hand it over."""
        try:
            server.setCredentials(load_credentials())
        except (OSError, ValueError, TypeError) as error:  # keep the old ones
            logging.getLogger("serverapi").error("Credentials not reloaded: %s", error)

    signal.signal(signal.SIGHUP, lambda number, frame: threading.Thread(target=reload).start())
    signal.signal(signal.SIGUSR1, lambda number, frame: threading.Thread(
        target=server.reopenAccessLog).start())


def main() -> None:
    """Serve until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = build_server()
    install_signals(server)
    print("API on http://127.0.0.1:8000, health and metrics on http://127.0.0.1:9100. Try:\n"
          "  curl http://127.0.0.1:9100/healthz\n"
          "  curl -s http://127.0.0.1:9100/metrics | grep ^serverapi_", flush=True)
    try:
        server.startAPIServer()
    except KeyboardInterrupt:
        server.stopAPIServer()
    sys.exit(0)


if __name__ == "__main__":
    main()
