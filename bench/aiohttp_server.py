"""The aiohttp peer: the same three endpoints as a user would write them with aiohttp.

    python bench/aiohttp_server.py PORT

Checks the same credentials, keeps sessions in a dict keyed by a secrets.token_urlsafe(32)
token sent as the sessionToken cookie, and runs the echo callback inline on the event loop.
Default asyncio event loop, no access log.  Needs aiohttp (pip install aiohttp).
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from aiohttp import web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from workload import CREDENTIALS, echo  # noqa: E402

SESSIONS: dict[str, str] = {}


async def body_of(request: web.Request) -> dict[str, Any] | None:
    """The request's JSON object, or None when it is not one."""
    try:
        data = await request.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def login(request: web.Request) -> web.Response:
    """POST /login: check the password, start a session."""
    body = await body_of(request)
    if body is None:
        return web.json_response({"error": "Invalid JSON."}, status=400)
    password = CREDENTIALS.get(body.get("username"))  # type: ignore[arg-type]
    if password is None or password != body.get("password"):
        return web.json_response({"error": "Invalid credentials."}, status=401)
    token = secrets.token_urlsafe(32)
    SESSIONS[token] = body["username"]
    response = web.json_response({"message": "Login successful."})
    response.set_cookie("sessionToken", token, path="/", httponly=True)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /logout: end the session."""
    if SESSIONS.pop(request.cookies.get("sessionToken", ""), None) is None:
        return web.json_response({"error": "Invalid session token."}, status=401)
    return web.json_response({"message": "Logout successful."})


async def communicate(request: web.Request) -> web.Response:
    """POST /communicate: run the callback inline on the loop, answer its JSON."""
    token = request.cookies.get("sessionToken", "")
    username = SESSIONS.get(token)
    if username is None:
        return web.json_response({"error": "Invalid session token."}, status=401)
    data = await body_of(request)
    if data is None:
        return web.json_response({"error": "Invalid JSON."}, status=400)
    return web.json_response(echo(username, token, data)[2])


def main() -> None:
    """Serve on 127.0.0.1:PORT until killed."""
    port = int(sys.argv[1])
    app = web.Application()
    app.add_routes([web.post("/login", login), web.post("/logout", logout),
                    web.post("/communicate", communicate)])
    web.run_app(app, host="127.0.0.1", port=port, backlog=1024, access_log=None, print=None)


if __name__ == "__main__":
    main()
