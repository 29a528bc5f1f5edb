"""What every benchmarked server runs: the seed's echo callback and its users."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

CREDENTIALS = {"alice": "password123", "bob": "securepassword"}
LOGIN_BODY = '{"username": "alice", "password": "password123"}'
COMMUNICATE_BODY = '{"action": "echo", "message": "hello"}'


def echo(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """The seed example's callback."""
    if data.get("action") == "echo":
        response = {"echo": data.get("message", "")}
    else:
        response = {"error": "Unknown action."}
    return (False, False, response)


def sleepy_echo(delay: float) -> Callable[[str, str, dict[str, Any]], tuple[bool, bool, dict]]:
    """The echo callback after C{delay} seconds of sleep: a callback waiting on slow I/O."""

    def callback(username: str, session_token: str,
                 data: dict[str, Any]) -> tuple[bool, bool, dict]:
        """Sleep, then echo."""
        time.sleep(delay)
        return echo(username, session_token, data)

    return callback


# Iterations of cpu_echo's loop: about 2 ms of pure Python on the machine of docs/performance.md.
CPU_LOOP = 40_000


def cpu_echo(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """The echo callback after about 2 ms of pure-Python work (it holds the GIL throughout)."""
    total = 0
    for number in range(CPU_LOOP):
        total += number * number
    return echo(username, session_token, data)


def always_valid(session: Any) -> bool:
    """A session validity callback that keeps every session (its cost is being called)."""
    return True
