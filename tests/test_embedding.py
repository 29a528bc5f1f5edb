"""Section 12: serverapi's API and other twisted.web resources on one site, with every API rule."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.pages import notFound
from twisted.web.resource import Resource

from .helpers import ROOT, MemoryServer, child_env, request_bytes, status_of

PAGE = b"<!doctype html><title>app</title><script>fetch('/communicate')</script>"


class Page(Resource):
    """Fixed content of one type."""

    isLeaf = True

    def __init__(self, body: bytes, content_type: bytes) -> None:
        super().__init__()
        self.body = body
        self.content_type = content_type

    def render_GET(self, request: Any) -> bytes:
        """The content."""
        request.setHeader(b"Content-Type", self.content_type)
        return self.body


class Tree(Resource):
    """A root whose unknown children are Twisted's escaped 404 page."""

    def getChild(self, path: bytes, request: Any) -> Any:
        """Anything not put here is not found."""
        return notFound()


def site_tree() -> Resource:
    """A program's own resources: a page at / and a JSON status at /status."""
    root = Tree()
    root.putChild(b"", Page(PAGE, b"text/html; charset=utf-8"))
    root.putChild(b"status", Page(b'{"ok": true}', b"application/json"))
    return root


class SharedSiteTests(SynchronousTestCase):
    """One port serves a static page and the API."""

    def setUp(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.server = MemoryServer(others=site_tree(), request_callback=self.callback,
                                   max_recv_calls_per_request=2, timeout=5)
        self.token = self.server.login()

    def callback(self, username: str, token: str, data: dict[str, Any]) -> tuple:
        """Record and echo."""
        self.calls.append(data)
        return False, False, {"echo": data}

    def test_page_and_api(self) -> None:
        """GET / serves the page; /status another resource; the API answers on its paths."""
        answer, _ = self.server.raw(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        self.assertEqual(status_of(answer), 200)
        self.assertTrue(answer.endswith(PAGE))
        self.assertIn(b"Content-Type: text/html; charset=utf-8", answer)
        answer, _ = self.server.raw(b"GET /status HTTP/1.1\r\nHost: app.test\r\n\r\n")
        self.assertTrue(answer.endswith(b'{"ok": true}'))
        answer, _ = self.server.raw(request_bytes(cookie=self.token,
                                                  body=b'{"message": "hi"}'))
        self.assertEqual(status_of(answer), 200)
        self.assertEqual(self.calls, [{"message": "hi"}])

    def test_same_origin_page_needs_no_cors(self) -> None:
        """The page's own fetch (Sec-Fetch-Site: same-origin) is served; another origin's is
        refused on the API paths."""
        same = request_bytes(cookie=self.token, extra=b"Sec-Fetch-Site: same-origin\r\n"
                                                      b"Origin: http://example.test\r\n")
        self.assertEqual(status_of(self.server.raw(same)[0]), 200)
        cross = request_bytes(cookie=self.token, extra=b"Sec-Fetch-Site: same-site\r\n"
                                                       b"Origin: http://example.test:9000\r\n")
        answer, _ = self.server.raw(cross)
        self.assertEqual(status_of(answer), 403)
        self.assertEqual(len(self.calls), 1)

    def test_api_limits_hold(self) -> None:
        """The body cap (413 from the headers) and the API's exact routing still apply."""
        big = request_bytes(cookie=self.token, body=b"x" * 9000)
        self.assertEqual(status_of(self.server.raw(big)[0]), 413)
        answer, _ = self.server.raw(request_bytes("/communicate", method="GET", body=b""))
        self.assertEqual(status_of(answer), 405)
        self.assertEqual(self.calls, [])

    def test_deadline_holds(self) -> None:
        """A request that trickles in is cut at 3 x timeout, on API and page paths alike."""
        for start in (b"POST /communicate HTTP/1.1\r\nHost: x\r\n", b"GET / HTTP/1.1\r\n"):
            channel, transport = self.server.connect()
            channel.dataReceived(start)
            for _ in range(15):
                self.server.reactor.advance(1)
                if transport.disconnecting:
                    break
                channel.dataReceived(b"X-Slow: 1\r\n")
            self.assertEqual(status_of(transport.value()), 408, start)
            channel.connectionLost(Failure(ConnectionDone()))  # the client goes: timers end

    def test_other_paths_keep_cookies(self) -> None:
        """Other resources see parsed cookies as Twisted gives them."""
        seen: list[Any] = []

        class Cookies(Resource):
            """Records the cookies Twisted parsed."""

            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                seen.append(request.getCookie(b"theme"))
                return b"ok"

        root = site_tree()
        root.putChild(b"cookies", Cookies())
        server = MemoryServer(others=root)
        server.raw(b"GET /cookies HTTP/1.1\r\nHost: h\r\nCookie: theme=dark\r\n\r\n")
        self.assertEqual(seen, [b"dark"])

    def test_other_paths_set_cookies_and_hear_the_finish(self) -> None:
        """Other resources may add cookies and ask to hear when their answer is done, as on
        any Twisted request (the API's requests make those lists only when asked)."""
        finished: list[Any] = []

        class Greeting(Resource):
            """Sets a cookie and waits for its answer's end."""

            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                request.addCookie(b"seen", b"yes", path=b"/")
                request.addCookie(b"theme", b"dark")
                request.notifyFinish().addCallback(finished.append)
                return b"hello"

        root = site_tree()
        root.putChild(b"greeting", Greeting())
        server = MemoryServer(others=root)
        answer, _ = server.raw(b"GET /greeting HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(status_of(answer), 200)
        self.assertIn(b"\r\nSet-Cookie: seen=yes; Path=/\r\n", answer)
        self.assertIn(b"\r\nSet-Cookie: theme=dark\r\n", answer)
        self.assertEqual(finished, [None])

    def test_unknown_paths_are_the_tree(self) -> None:
        """A path neither the API nor the tree knows is the tree's 404 (not the API's JSON)."""
        answer, _ = self.server.raw(b"GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(status_of(answer), 404)
        self.assertNotIn(b'"error"', answer)

    def test_without_others_everything_else_is_json_404(self) -> None:
        """Without other resources, the API's own 404 answers every other path."""
        server = MemoryServer()
        answer, _ = server.raw(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        self.assertEqual(status_of(answer), 404)
        self.assertEqual(json.loads(answer.split(b"\r\n\r\n", 1)[1]), {"error": "Not found."})


class TacExampleTests(SynchronousTestCase):
    """examples/embedded.tac run by twistd, as its docstring says."""

    def test_page_api_and_log(self) -> None:
        """One port serves the page and the API; serverapi's events reach twistd's log with no
        stdlib logging set up; SIGTERM stops it cleanly (twistd itself then re-raises the
        signal: an application of the user's, not serverapi's daemon, decides its exit)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        log_path = os.path.join(folder, "twistd.log")
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-ny",
             os.path.join(ROOT, "examples", "embedded.tac"), "--pidfile=", "--logfile",
             log_path], cwd=folder, env=dict(child_env(), SERVERAPI_PORT=str(port)),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/", timeout=5) as response:
                    page = response.read()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    self.fail(f"the .tac did not serve: {process.communicate()[0]!r}")
                time.sleep(0.05)
        self.assertIn(b'fetch(path, {method: "POST"', page)
        same_origin = {"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin",
                       "Origin": base}
        login = urllib.request.Request(base + "/login", method="POST", headers=same_origin,
                                       data=b'{"username": "alice", "password": "password123"}')
        with urllib.request.urlopen(login, timeout=10) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
        talk = urllib.request.Request(base + "/communicate", method="POST",
                                      data=b'{"message": "hi"}',
                                      headers=dict(same_origin, Cookie=cookie))
        with urllib.request.urlopen(talk, timeout=10) as response:
            self.assertEqual(json.loads(response.read()), {"echo": "hi", "user": "alice"})
        process.send_signal(signal.SIGTERM)
        self.assertIn(process.wait(30), (0, -signal.SIGTERM))
        with open(log_path, encoding="utf-8") as handle:
            log = handle.read()
        self.assertIn("Login: user='alice' peer=127.0.0.1", log)
        self.assertIn("1 session(s) ended: server stopped", log)
        self.assertIn("Server Shut Down", log)
        self.assertNotIn("password123", log)
