"""Sessions that end after IDLE_SECONDS without a request, using session_validity_callback.

Run it, log in, wait longer than IDLE_SECONDS, and /communicate answers 401.  (The built-in
keyword session_idle_timeout=... does the same; this shows how to write such a rule yourself.)
"""

import logging
import time

from serverapi import LoginSession, ThreadedAPIServer

IDLE_SECONDS = 30.0


def handle(username, session_token, data):
    """Echo the message back."""
    return (False, False, {"echo": data.get("message", ""), "user": username})


def still_active(session: LoginSession) -> bool:
    """Keep a session only while its last request is under IDLE_SECONDS old.

    This runs on the server's reactor thread before each request that carries the session's
    cookie and in the periodic sweep (every session_check_interval seconds).
    """
    idle = time.time() - session.last_active_at
    if idle >= IDLE_SECONDS:
        logging.getLogger("validity").info(
            "ending idle session of %r (token sha256 %s)", session.get_username(),
            session.get_hashed_session_token())
        return False
    return True


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = ThreadedAPIServer("127.0.0.1", 8000, {"alice": "password123"}, handle,
                               still_active, session_check_interval=5.0)
    try:
        server.startAPIServer()
    except KeyboardInterrupt:
        server.stopAPIServer()


if __name__ == "__main__":
    main()
