"""A web page on one origin calling the API on another through CORS.

    python examples/web_app.py

The API listens on http://127.0.0.1:8000 and lets the page's origin, http://127.0.0.1:8080, call
it with cookies (cors_origins).  Open http://127.0.0.1:8080 in a browser: the page logs in as
alice, sends a message to /communicate, shows the echo and logs out.  Both origins are on the
same site (one host, two ports), so the default SameSite=Strict cookie works.  A page on any
other origin is refused with 403 (try the curl command printed at start).
"""

from __future__ import annotations

import http.server
import logging
from typing import Any

from serverapi import ThreadedAPIServer

API_PORT = 8000
PAGE_PORT = 8080
PAGE_ORIGIN = f"http://127.0.0.1:{PAGE_PORT}"

PAGE = f"""<!doctype html>
<meta charset="utf-8">
<title>serverapi from another origin</title>
<pre id="log"></pre>
<script>
const api = "http://127.0.0.1:{API_PORT}";
const log = (line) => document.getElementById("log").textContent += line + "\\n";
async function call(path, body) {{
  const response = await fetch(api + path, {{
    method: "POST", credentials: "include",
    headers: {{"Content-Type": "application/json"}}, body: JSON.stringify(body)}});
  log(`${{path}} -> ${{response.status}} ${{await response.text()}}`);
}}
(async () => {{
  await call("/login", {{username: "alice", password: "password123"}});
  await call("/communicate", {{action: "echo", message: "hello from the page"}});
  await call("/logout", {{}});
}})();
</script>
""".encode()


def handle(username: str, session_token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """Echo the page's message."""
    return False, False, {"echo": data.get("message", ""), "user": username}


class PageHandler(http.server.BaseHTTPRequestHandler):
    """Serves the page at every path."""

    def do_GET(self) -> None:
        """Send the page."""
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)


def main() -> None:
    """Serve the API and the page until Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api = ThreadedAPIServer("127.0.0.1", API_PORT, {"alice": "password123"}, handle,
                            cors_origins=[PAGE_ORIGIN])
    with api, http.server.ThreadingHTTPServer(("127.0.0.1", PAGE_PORT), PageHandler) as page:
        print(f"Open {PAGE_ORIGIN} in a browser.  A page elsewhere is refused:")
        print(f"  curl -i -H 'Origin: http://evil.example' -H 'Content-Type: application/json' "
              f"-d '{{}}' http://127.0.0.1:{API_PORT}/login")
        try:
            page.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
