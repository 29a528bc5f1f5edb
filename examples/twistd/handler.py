"""The request callback and validity callback the twistd example serves."""

from __future__ import annotations

from typing import Any

from serverapi import LoginSession


def handle(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """Echo the message back; {"action": "logout"} ends the session."""
    if data.get("action") == "logout":
        return False, True, {"bye": username}
    return False, False, {"echo": data.get("message", ""), "user": username}


def check(session: LoginSession) -> bool:
    """Keep every session (a real program might consult its own user database here)."""
    return True
