"""Real-browser scenarios for SPEC section 7 (headless Chromium via selenium), run by test_browser.

One Chromium serves every scenario.  Each scenario starts its own ThreadedAPIServer with a
callback that records what it ran, plus plain twisted.web servers for the pages, drives the page
with C{fetch} calls, and returns what the page saw next to what the server recorded: the
callback's calls, the live sessions, and the headers of every request that reached the API.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import threading
import traceback
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread
from twisted.python.failure import Failure
from twisted.web import http, resource, server
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from serverapi import ThreadedAPIServer

from .certificates import Certificates
from .scenarios import ScenarioSet

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CREDENTIALS = {"alice": "password123", "mallory": "mallory-password"}
ALICE = {"username": "alice", "password": "password123"}
MALLORY = {"username": "mallory", "password": "mallory-password"}
PAGE = (b"<!doctype html><meta charset=utf-8><title>serverapi browser test</title>"
        b"<p>A page the tests drive with fetch calls.</p>")

# Headless Chromium as root in a container, with nothing running in the background.  The TLS
# API's key is trusted by its SPKI hash (--ignore-certificate-errors-spki-list, added at start).
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
# Chromium blocks third-party cookies by default (a fresh headless profile too); 0 = allow them,
# which scenario 3 needs for its SameSite=None cookie.  (profile.block_third_party_cookies=False
# alone does not help.)
PREFS = {"profile.cookie_controls_mode": 0}
FETCH_TIMEOUT_MS = 5000
SCRIPT_TIMEOUT_S = 30


class BrowserScenarioSet(ScenarioSet):
    """Scenarios sharing one browser, which is shut down before the child exits."""

    def main(self, names: list[str]) -> None:
        """Run the named scenarios (all by default), quit the browser, print, and exit at once."""
        record_requests()
        results: dict[str, Any] = {}
        try:
            for name in names or list(self.scenarios):
                try:
                    results[name] = {"ok": self.scenarios[name]()}
                except BaseException:
                    results[name] = {"error": traceback.format_exc()}
        finally:
            Browser.close_shared()
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()
        os._exit(0)


scenario = BrowserScenarioSet()

# Every request that reached any server in this (child) process: the request line and the
# headers a browser's cross-origin behaviour shows in, recorded as soon as the headers are in,
# before any refusal decided from them (see record_requests).
SEEN: list[dict[str, Any]] = []
_original_all_headers_received = http.HTTPChannel.allHeadersReceived


def _header(headers: Any, name: bytes) -> str | None:
    """The last value of header C{name}, decoded, or C{None}."""
    values = headers.getRawHeaders(name)
    return values[-1].decode("latin-1") if values else None


def _recording_all_headers_received(channel: http.HTTPChannel) -> None:
    """Record the request whose headers just arrived, then carry on as Twisted does."""
    headers = channel.requests[-1].requestHeaders
    cookie = _header(headers, b"cookie") or ""
    transport: Any = channel.transport
    SEEN.append({
        "port": transport.getHost().port,
        "method": getattr(channel, "_command", b"").decode("latin-1"),
        "path": getattr(channel, "_path", b"").decode("latin-1"),
        "host": _header(headers, b"host"),
        "origin": _header(headers, b"origin"),
        "sec_fetch_site": _header(headers, b"sec-fetch-site"),
        "sec_fetch_mode": _header(headers, b"sec-fetch-mode"),
        "content_type": _header(headers, b"content-type"),
        "x_forwarded_for": _header(headers, b"x-forwarded-for"),
        "session_cookie": "sessionToken=" in cookie,
    })
    _original_all_headers_received(channel)


def record_requests() -> None:
    """Record every request's headers in L{SEEN} (in the child only: this patches Twisted)."""
    http.HTTPChannel.allHeadersReceived = (  # type: ignore[method-assign]
        _recording_all_headers_received)


def seen_by(port: int, since: int = 0) -> list[dict[str, Any]]:
    """The requests recorded for C{port} from index C{since} of L{SEEN} on."""
    return [entry for entry in SEEN[since:] if entry["port"] == port]


class Browser:
    """One headless Chromium (through chromedriver) with a throwaway profile."""

    _shared: Browser | None = None
    _failure: BaseException | None = None

    def __init__(self) -> None:
        """Start Chromium and chromedriver from the Debian packages, nothing downloaded."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        # Never let selenium-manager look for (or download) a browser or driver.
        os.environ["SE_OFFLINE"] = "true"
        os.environ["SE_AVOID_STATS"] = "true"
        self.profile = tempfile.mkdtemp(prefix="serverapi-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        # Trust exactly the TLS scenarios' server key (the throwaway CA is unknown to Chromium).
        options.add_argument(f"--ignore-certificate-errors-spki-list={spki_hash(certificates())}")
        options.add_experimental_option("prefs", PREFS)
        try:
            self.driver: WebDriver = webdriver.Chrome(
                service=Service(executable_path=CHROMEDRIVER), options=options)
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_script_timeout(SCRIPT_TIMEOUT_S)
        self.driver.set_page_load_timeout(10)

    @classmethod
    def shared(cls) -> Browser:
        """The one browser of this process, started on first use, with no cookies."""
        if cls._failure is not None:
            raise RuntimeError("the browser did not start (see the first scenario)") \
                from cls._failure
        if cls._shared is None:
            try:
                cls._shared = cls()
            except BaseException as error:
                cls._failure = error
                raise
        cls._shared.driver.execute_cdp_cmd("Storage.clearCookies", {})
        return cls._shared

    @classmethod
    def close_shared(cls) -> None:
        """Quit the shared browser, if it started, and remove its profile and certificates."""
        try:
            if cls._shared is not None:
                browser, cls._shared = cls._shared, None
                try:
                    browser.driver.quit()
                finally:
                    shutil.rmtree(browser.profile, ignore_errors=True)
        finally:
            if certificates.cache_info().currsize:
                shutil.rmtree(certificates().dir, ignore_errors=True)

    def run(self, page: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Open C{page}, then make each fetch of C{steps} from it in turn; return what it saw."""
        self.driver.get(page)
        results: list[dict[str, Any]] = self.driver.execute_async_script(FETCH_STEPS, steps)
        return results

    def cookies(self) -> list[dict[str, Any]]:
        """Every cookie the browser holds (name, domain, sameSite, secure, ...)."""
        cookies: list[dict[str, Any]] = self.driver.execute_cdp_cmd("Storage.getCookies",
                                                                    {})["cookies"]
        return [{key: cookie.get(key) for key in ("name", "domain", "path", "sameSite",
                                                  "secure", "httpOnly")}
                for cookie in cookies]


# Runs in the page: the fetches one after another, each bounded by its own timeout.
FETCH_STEPS = """
const steps = arguments[0], done = arguments[arguments.length - 1];
(async () => {
  const results = [];
  for (const step of steps) {
    const init = {method: "POST", mode: step.mode, credentials: "include",
                  headers: step.headers, signal: AbortSignal.timeout(step.timeout)};
    if (step.body !== null) init.body = step.blob ? new Blob([step.body]) : step.body;
    try {
      const response = await fetch(step.url, init);
      const text = await response.text();
      let body = text;
      try { body = JSON.parse(text); } catch (error) { }
      results.push({type: response.type, status: response.status, body: body});
    } catch (error) {
      results.push({error: String(error)});
    }
  }
  return results;
})().then(done, (error) => done([{error: "script: " + String(error)}]));
"""


def step(url: str, body: dict[str, Any] | None = None, *, blob: bool = False) -> dict[str, Any]:
    """A credentialed POST: JSON with its Content-Type (CORS mode), or a type-less no-cors Blob."""
    return {"url": url, "body": None if body is None else json.dumps(body), "blob": blob,
            "mode": "no-cors" if blob else "cors",
            "headers": {} if blob else {"Content-Type": "application/json"},
            "timeout": FETCH_TIMEOUT_MS}


class Recorder:
    """The request callback: echoes, and records every call (username, data) on the server."""

    def __init__(self) -> None:
        """No calls yet."""
        self.calls: list[list[Any]] = []
        self._lock = threading.Lock()

    def __call__(self, username: str, token: str,
                 data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
        """Record the call and echo C{data} back with the user's name."""
        with self._lock:
            self.calls.append([username, data])
        return False, False, {"echo": data, "user": username}


@functools.cache
def certificates() -> Certificates:
    """The throwaway trustme certificates of this process (the server's is for 127.0.0.1)."""
    return Certificates(tempfile.mkdtemp(prefix="serverapi-browser-certs-"))


def spki_hash(certs: Certificates) -> str:
    """Base64 SHA-256 of the server certificate's public key, as Chromium's SPKI list wants."""
    with open(certs.server_leaf, "rb") as handle:
        certificate = x509.load_pem_x509_certificate(handle.read())
    key = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(key).digest()).decode("ascii")


def start_api(stack: ExitStack, tls: bool = False,
              **options: Any) -> tuple[ThreadedAPIServer, Recorder]:
    """A started API server on 127.0.0.1 (stopped when C{stack} closes) and its recorder."""
    recorder = Recorder()
    api = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, recorder, **options)
    if tls:
        api.setConnectionSecurityParams(certificates().server_cert, certificates().server_key)
    api.startAPIServer(block=False)
    stack.callback(api.stopAPIServer)
    return api, recorder


def shared_reactor() -> Any:
    """The reactor ThreadedAPIServer runs in its thread (running from first use, never stopped)."""
    if not reactor.running:
        starter = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, Recorder())
        starter.startAPIServer(block=False)
        starter.stopAPIServer()
    return reactor


def listen(stack: ExitStack, root: resource.Resource) -> int:
    """Serve C{root} with twisted.web on 127.0.0.1 in the shared reactor; return the port."""
    running = shared_reactor()
    port = blockingCallFromThread(running, running.listenTCP, 0, server.Site(root),
                                  interface="127.0.0.1")
    stack.callback(blockingCallFromThread, running, port.stopListening)
    number: int = port.getHost().port
    return number


class Page(resource.Resource):
    """A static site: the test page, at every path."""

    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        """The page."""
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return PAGE


# Hop-by-hop headers a proxy does not pass on (and the length, which the client side recomputes).
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer",
              b"transfer-encoding", b"upgrade", b"content-length"}


class ForwardingProxy(Page):
    """The page at every path, and a reverse proxy for the API's three paths.

    The proxy passes C{Host} through (Twisted's own L{twisted.web.proxy.ReverseProxyResource}
    rewrites it to the upstream's address) and adds C{X-Forwarded-For} and C{X-Forwarded-Proto},
    as nginx's usual configuration does.
    """

    def __init__(self, upstream_port: int) -> None:
        """Proxy to the API on 127.0.0.1:C{upstream_port}."""
        super().__init__()
        self.upstream = b"http://127.0.0.1:%d" % upstream_port
        self.agent = Agent(reactor)

    def render_POST(self, request: server.Request) -> bytes | int:
        """Forward a POST to an API path upstream; anything else is the page's 405."""
        if request.path not in (b"/login", b"/logout", b"/communicate"):
            request.setResponseCode(405)
            return b""
        headers = Headers({name: values for name, values in
                           request.requestHeaders.getAllRawHeaders()
                           if name.lower() not in HOP_BY_HOP})
        client = request.getClientAddress()
        headers.setRawHeaders(b"x-forwarded-for", [getattr(client, "host", "unknown").encode()])
        headers.setRawHeaders(b"x-forwarded-proto", [b"http"])
        content = request.content.read() if request.content is not None else b""
        body: Any = FileBodyProducer(io.BytesIO(content))  # an IBodyProducer
        sent = self.agent.request(b"POST", self.upstream + request.uri, headers, body)
        sent.addCallback(self._relay, request)
        sent.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    @staticmethod
    def _relay(response: IResponse, request: server.Request) -> Deferred[None]:
        """Copy the upstream's status, headers and body to the browser."""
        request.setResponseCode(response.code, response.phrase)
        for name, values in response.headers.getAllRawHeaders():
            if name.lower() not in HOP_BY_HOP:
                request.responseHeaders.setRawHeaders(name, values)

        def write(body: bytes) -> None:
            """Send the body and end the response."""
            request.write(body)
            request.finish()

        return readBody(response).addCallback(write)

    @staticmethod
    def _failed(reason: Failure, request: server.Request) -> None:
        """The upstream did not answer: 502."""
        request.setResponseCode(502)
        request.finish()


def sessions(api: ThreadedAPIServer) -> list[list[Any]]:
    """The live sessions as [username, hashed token, peer address], sorted."""
    return sorted([session.get_username(), session.get_hashed_session_token(),
                   session.peer_address] for session in api.getSessions())


def log_in_on_api_origin(browser: Browser, origin: str) -> list[dict[str, Any]]:
    """Log alice in honestly from a document on the API's own origin.

    The browser navigates to a path of the API itself (its 404 page is a document on that
    origin) and logs in with a same-origin fetch, as the API's own front end would.
    """
    return browser.run(f"{origin}/app", [step(f"{origin}/login", ALICE)])


def by_path(results: list[dict[str, Any]], paths: list[str]) -> dict[str, dict[str, Any]]:
    """Label the page's results with the endpoints they were for."""
    return dict(zip(paths, results))


@scenario
def blob_csrf_other_port() -> Any:
    """A page on another port of the same host POSTs type-less Blobs with the victim's cookie."""
    with ExitStack() as stack:
        api, recorder = start_api(stack)
        origin = f"http://127.0.0.1:{api.port}"
        browser = Browser.shared()
        login = log_in_on_api_origin(browser, origin)
        before = sessions(api)
        attacker = listen(stack, Page())
        mark = len(SEEN)
        attack = browser.run(f"http://127.0.0.1:{attacker}/", [
            step(f"{origin}/communicate", {"action": "transfer", "to": "mallory"}, blob=True),
            step(f"{origin}/login", MALLORY, blob=True)])
        return {"login": login[0], "before": before,
                "attack": by_path(attack, ["communicate", "login"]),
                "after": sessions(api), "calls": recorder.calls,
                "attacker_origin": f"http://127.0.0.1:{attacker}",
                "seen": seen_by(api.port, mark), "cookies": browser.cookies()}


def cors_round_trip(page_origin: str, origin: str, api: ThreadedAPIServer, recorder: Any,
                    message: str) -> dict[str, Any]:
    """From a page on C{page_origin}, log in to the API at C{origin}, send C{message}, log out;
    return what the page saw next to what the server recorded."""
    browser = Browser.shared()
    mark = len(SEEN)
    login = browser.run(f"{page_origin}/", [step(f"{origin}/login", ALICE)])
    after_login = sessions(api)
    cookies = browser.cookies()
    rest = browser.run(f"{page_origin}/", [
        step(f"{origin}/communicate", {"message": message}), step(f"{origin}/logout")])
    return {"results": by_path(login + rest, ["login", "communicate", "logout"]),
            "after_login": after_login, "after_logout": sessions(api),
            "calls": recorder.calls, "cookies": cookies, "page_origin": page_origin,
            "seen": seen_by(api.port, mark)}


@scenario
def cors_same_site() -> Any:
    """An allowed origin on the same site logs in, communicates and logs out with CORS."""
    with ExitStack() as stack:
        page = listen(stack, Page())
        page_origin = f"http://127.0.0.1:{page}"
        api, recorder = start_api(stack, cors_origins=(page_origin,))
        return cors_round_trip(page_origin, f"http://127.0.0.1:{api.port}", api, recorder,
                               "hello from the page")


@scenario
def cross_site_none_tls() -> Any:
    """A page on another site (localhost) logs in to the TLS API with a SameSite=None cookie."""
    with ExitStack() as stack:
        page = listen(stack, Page())
        page_origin = f"http://localhost:{page}"
        api, recorder = start_api(stack, tls=True, login_cookie_level="None",
                                  cors_origins=(page_origin,))
        return cors_round_trip(page_origin, f"https://127.0.0.1:{api.port}", api, recorder,
                               "hello across sites")


@scenario
def disallowed_origin() -> Any:
    """A page whose origin is not in cors_origins gets nothing, logged-in browser or not."""
    with ExitStack() as stack:
        allowed = listen(stack, Page())
        page = listen(stack, Page())
        page_origin = f"http://127.0.0.1:{page}"
        api, recorder = start_api(stack, cors_origins=(f"http://127.0.0.1:{allowed}",))
        origin = f"http://127.0.0.1:{api.port}"
        browser = Browser.shared()
        login = log_in_on_api_origin(browser, origin)
        before = sessions(api)
        mark = len(SEEN)
        attempts = browser.run(f"{page_origin}/", [
            step(f"{origin}/login", MALLORY),
            step(f"{origin}/communicate", {"message": "from a stranger"}),
            step(f"{origin}/communicate", {"message": "a type-less Blob"}, blob=True)])
        return {"login": login[0], "before": before,
                "attempts": by_path(attempts, ["login", "communicate", "blob_communicate"]),
                "after": sessions(api), "calls": recorder.calls, "page_origin": page_origin,
                "seen": seen_by(api.port, mark)}


@scenario
def same_origin_proxy() -> Any:
    """A page served with the API behind one reverse proxy (one origin) needs no CORS at all."""
    with ExitStack() as stack:
        api, recorder = start_api(stack, trusted_proxies=("127.0.0.1",))
        page = listen(stack, ForwardingProxy(api.port))
        page_origin = f"http://127.0.0.1:{page}"
        browser = Browser.shared()
        mark = len(SEEN)
        login = browser.run(f"{page_origin}/", [step("/login", ALICE)])
        after_login = sessions(api)
        rest = browser.run(f"{page_origin}/", [
            step("/communicate", {"message": "hello through the proxy"}), step("/logout")])
        return {"results": by_path(login + rest, ["login", "communicate", "logout"]),
                "after_login": after_login, "after_logout": sessions(api),
                "calls": recorder.calls, "page_origin": page_origin,
                "seen": seen_by(api.port, mark)}


if __name__ == "__main__":
    scenario.main(sys.argv[1:])
