"""serverapi inside a Twisted application: a web page and the API on one port and origin.

    SERVERAPI_PORT=8000 twistd -ny examples/embedded.tac

The page at http://127.0.0.1:8000/ logs in and calls /communicate with plain fetch() calls:
the same origin, so no CORS and no extra option.  serverapi's audit events reach twistd's log
through twisted.logger, with no stdlib logging set up.
"""

import os
from typing import Any

from twisted.application import service
from twisted.internet import reactor
from twisted.web.resource import Resource

from serverapi import ServerConfig, makeAPIService

PAGE = b"""<!doctype html>
<meta charset="utf-8">
<title>serverapi in a Twisted application</title>
<pre id="log"></pre>
<script>
const log = (line) => document.getElementById("log").textContent += line + "\\n";
async function call(path, body) {
  const response = await fetch(path, {method: "POST",
      headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  log(`${path} -> ${response.status} ${await response.text()}`);
}
(async () => {
  await call("/login", {username: "alice", password: "password123"});
  await call("/communicate", {message: "hello from the same origin"});
  await call("/logout", {});
})();
</script>
"""


def handle(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """Echo the page's message."""
    return False, False, {"echo": data.get("message", ""), "user": username}


class Page(Resource):
    """The web page, for every path that is not the API's."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        """Serve the page."""
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return PAGE


config = ServerConfig(
    credentials={"alice": "password123"}, request_callback=handle,
    endpoint=f"tcp:{int(os.environ.get('SERVERAPI_PORT', '8000'))}:interface=127.0.0.1")
application = service.Application("serverapi-embedded")
makeAPIService(config, reactor, others=Page()).setServiceParent(application)
