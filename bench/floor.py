"""The reference servers: the same three endpoints on bare twisted.web, nothing more.

    python bench/floor.py inline PORT    # the callback runs on the reactor thread
    python bench/floor.py thread PORT    # the callback runs through deferToThread

With --gc-freeze after PORT, gc.freeze() is called once the server listens.  With --tls CERT KEY
it serves HTTPS (Twisted's default CertificateOptions) instead of HTTP.

They check credentials, keep sessions in a dict and answer JSON, with none of serverapi's limits
or checks: the floor any twisted.web server with these endpoints stands on.
"""

from __future__ import annotations

import gc
import json
import secrets
import sys
from typing import Any

from twisted.internet import reactor, ssl
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from workload import CREDENTIALS, echo

SESSIONS: dict[bytes, str] = {}


def answer(request: Any, code: int, payload: dict[str, Any]) -> bytes:
    """Set the status and content type; return the JSON body."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    return json.dumps(payload).encode()


class Login(Resource):
    """POST /login: check the password, start a session."""

    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        """Answer 200 with a session cookie, or 401."""
        body = json.loads(request.content.read())
        username = body.get("username")
        password = CREDENTIALS.get(username)
        if password is None or password != body.get("password"):
            return answer(request, 401, {"error": "Invalid credentials."})
        token = secrets.token_urlsafe(32)
        SESSIONS[token.encode()] = username
        request.setHeader(b"Set-Cookie", f"sessionToken={token}; Path=/; HttpOnly".encode())
        return answer(request, 200, {"message": "Login successful."})


class Logout(Resource):
    """POST /logout: end the session."""

    isLeaf = True

    def render_POST(self, request: Any) -> bytes:
        """Answer 200 and forget the session, or 401."""
        if SESSIONS.pop(request.getCookie(b"sessionToken") or b"", None) is None:
            return answer(request, 401, {"error": "Invalid session token."})
        return answer(request, 200, {"message": "Logout successful."})


class Communicate(Resource):
    """POST /communicate: run the callback inline or through deferToThread."""

    isLeaf = True

    def __init__(self, threaded: bool) -> None:
        """Run the callback through deferToThread when C{threaded}, else inline."""
        super().__init__()
        self.threaded = threaded

    def render_POST(self, request: Any) -> Any:
        """Answer the callback's JSON, or 401."""
        token = request.getCookie(b"sessionToken") or b""
        username = SESSIONS.get(token)
        if username is None:
            return answer(request, 401, {"error": "Invalid session token."})
        data = json.loads(request.content.read())
        if not self.threaded:
            return answer(request, 200, echo(username, token.decode(), data)[2])

        def done(result: Any) -> None:
            """Back on the reactor: answer."""
            request.write(answer(request, 200, result[2]))
            request.finish()

        deferToThread(echo, username, token.decode(), data).addCallback(done)
        return NOT_DONE_YET


def main() -> None:
    """Serve until killed."""
    mode, port = sys.argv[1], int(sys.argv[2])
    root = Resource()
    root.putChild(b"login", Login())
    root.putChild(b"logout", Logout())
    root.putChild(b"communicate", Communicate(threaded=mode == "thread"))
    site = Site(root)
    if "--tls" in sys.argv:
        at = sys.argv.index("--tls")
        cert_path, key_path = sys.argv[at + 1], sys.argv[at + 2]
        with open(cert_path, "rb") as cert, open(key_path, "rb") as key:
            options = ssl.PrivateCertificate.loadPEM(cert.read() + key.read()).options()
        reactor.listenSSL(port, site, options, backlog=1024, interface="127.0.0.1")
    else:
        reactor.listenTCP(port, site, backlog=1024, interface="127.0.0.1")
    if "--gc-freeze" in sys.argv:
        gc.freeze()
    print("READY", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
