"""Section 7 in memory: cross-origin refusal, opt-in CORS, SameSite=None and reason phrases."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig
from serverapi._origins import parse_cors_origins

from .helpers import CREDENTIALS, MemoryServer, echo, request_bytes

APP = "https://app.example.com"
PROXY = IPv4Address("TCP", "10.0.0.1", 40000)


def parse(raw: bytes) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
    """The first response in C{raw}: status, reason phrase, headers in order, and body."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = [(name.lower(), value) for name, _, value in
               (line.partition(b": ") for line in lines)]
    length = dict(headers).get(b"content-length", b"0")
    return int(status_line[9:12]), status_line[13:], headers, rest[:int(length)]


def header(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every value of one header."""
    return [value for key, value in headers if key == name]


class _Served:
    """A server whose callback records its calls, with alice logged in."""

    def setUp(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.server = MemoryServer(request_callback=self.callback, cors_origins=(APP,),
                                   max_recv_calls_per_request=2)
        self.token = self.server.login()

    def callback(self, username: str, token: str, data: dict[str, Any]) -> tuple:
        """Record the call and echo."""
        self.calls.append(data)
        return False, False, {"echo": data}

    def send(self, path: str = "/communicate", extra: bytes = b"", *, body: bytes = b"{}",
             method: str = "POST", cookie: bool = True, host: bytes = b"example.test",
             content_type: bytes | None = b"application/json",
             address: Any = None) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes]:
        """Send one request on a fresh connection and parse the answer."""
        raw = request_bytes(path, body, method=method, cookie=self.token if cookie else None,
                            extra=extra, content_type=content_type, host=host)
        answer, _ = self.server.raw(raw, address)
        return parse(answer)


# (description, extra header lines, Host, expected status on /communicate)
CASES: list[tuple[str, bytes, bytes, int]] = [
    ("neither header (curl, requests, treq)", b"", b"example.test", 200),
    ("Sec-Fetch-Site: same-origin", b"Sec-Fetch-Site: same-origin\r\n", b"example.test", 200),
    ("Sec-Fetch-Site: none (typed URL)", b"Sec-Fetch-Site: none\r\n", b"example.test", 200),
    ("Sec-Fetch-Site: same-site (another port)", b"Sec-Fetch-Site: same-site\r\n",
     b"example.test", 403),
    ("Sec-Fetch-Site: cross-site", b"Sec-Fetch-Site: cross-site\r\n", b"example.test", 403),
    ("Sec-Fetch-Site: unknown value", b"Sec-Fetch-Site: bogus\r\n", b"example.test", 403),
    ("Sec-Fetch-Site twice", b"Sec-Fetch-Site: same-origin\r\nSec-Fetch-Site: same-origin\r\n",
     b"example.test", 403),
    ("same-origin wins over a foreign Origin",
     b"Sec-Fetch-Site: same-origin\r\nOrigin: http://evil.test\r\n", b"example.test", 200),
    ("cross-site from an allowed origin",
     b"Sec-Fetch-Site: cross-site\r\nOrigin: https://app.example.com\r\n", b"example.test", 200),
    ("same-site from another port, not allowed",
     b"Sec-Fetch-Site: same-site\r\nOrigin: http://example.test:9000\r\n", b"example.test", 403),
    ("Origin equal to Host", b"Origin: http://example.test\r\n", b"example.test", 200),
    ("Origin with the default port", b"Origin: http://example.test:80\r\n", b"example.test",
     200),
    ("Host with the default port", b"Origin: http://example.test\r\n", b"example.test:80", 200),
    ("Origin on another port", b"Origin: http://example.test:8080\r\n", b"example.test", 403),
    ("Origin and Host on the same port", b"Origin: http://example.test:8080\r\n",
     b"example.test:8080", 200),
    ("Origin case-insensitive host", b"Origin: http://EXAMPLE.test\r\n", b"example.test", 200),
    ("Origin of another host", b"Origin: http://other.test\r\n", b"example.test", 403),
    ("Origin of https on port 80", b"Origin: https://example.test\r\n", b"example.test", 403),
    ("null Origin", b"Origin: null\r\n", b"example.test", 403),
    ("malformed Origin", b"Origin: http://exa mple:port\r\n", b"example.test", 403),
    ("two Origin headers", b"Origin: http://example.test\r\nOrigin: http://example.test\r\n",
     b"example.test", 403),
    ("allowed Origin without Sec-Fetch-Site", b"Origin: https://app.example.com\r\n",
     b"example.test", 200),
    ("allowed origin differently spelled", b"Origin: https://APP.example.com\r\n",
     b"example.test", 403),
    ("IPv6 Origin equal to Host", b"Origin: http://[::1]:8000\r\n", b"[::1]:8000", 200),
]


class CrossOriginTests(_Served, SynchronousTestCase):
    """The Fetch-Metadata / Origin rule on every endpoint."""

    def test_table(self) -> None:
        """Each header combination gets its status; a refusal runs nothing and sets nothing."""
        for name, extra, host, status in CASES:
            code, _, headers, body = self.send(extra=extra, host=host)
            self.assertEqual(code, status, name)
            if status == 403:
                self.assertEqual(json.loads(body), {"error": "Cross-origin request refused."},
                                 name)
                self.assertEqual(self.calls, [], name)
                self.assertEqual(header(headers, b"access-control-allow-origin"), [], name)
            else:
                self.assertEqual(self.calls, [{}], name)
            self.calls.clear()

    def test_blob_attack(self) -> None:
        """A type-less no-cors Blob from another port of the same host never reaches the
        callback (the attack of the issue: no Content-Type, SameSite=Strict cookie sent)."""
        code, _, headers, _ = self.send(
            extra=b"Sec-Fetch-Site: same-site\r\nSec-Fetch-Mode: no-cors\r\n"
                  b"Origin: http://example.test:9000\r\n", content_type=None,
            body=b'{"action": "transfer"}')
        self.assertEqual(code, 403)
        self.assertEqual(self.calls, [])
        code, *_ = self.send(content_type=None)
        self.assertEqual(code, 200)

    def test_login_csrf(self) -> None:
        """A cross-site login is refused: no session, no cookie, no failure counted."""
        before = len(self.server.service.getSessions())
        body = json.dumps({"username": "bob", "password": "securepassword"}).encode()
        code, _, headers, _ = self.send("/login", b"Sec-Fetch-Site: cross-site\r\n", body=body,
                                        content_type=None, cookie=False)
        self.assertEqual(code, 403)
        self.assertEqual(header(headers, b"set-cookie"), [])
        self.assertEqual(len(self.server.service.getSessions()), before)
        self.assertEqual(self.server.service.root.routes[b"/login"]._context.throttle.tracked(),
                         0)

    def test_logout_csrf(self) -> None:
        """A cross-site logout is refused and the session lives on."""
        code, *_ = self.send("/logout", b"Origin: http://evil.test\r\n")
        self.assertEqual(code, 403)
        code, *_ = self.send()
        self.assertEqual(code, 200)

    def test_check_order(self) -> None:
        """405 outranks 403; 403 outranks 413, 415 and 401."""
        cross = b"Sec-Fetch-Site: cross-site\r\n"
        self.assertEqual(self.send(extra=cross, method="GET")[0], 405)
        self.assertEqual(self.send(extra=cross, body=b"x" * 9000)[0], 403)
        self.assertEqual(self.send(extra=cross, content_type=b"text/plain")[0], 403)
        self.assertEqual(self.send(extra=cross, cookie=False)[0], 403)
        self.assertEqual(self.send("/nowhere", extra=cross)[0], 404)

    def test_oversized_refused_before_body(self) -> None:
        """An oversized cross-origin body is refused from its headers, with a close."""
        raw = request_bytes(body=b"", cookie=self.token,
                            extra=b"Origin: http://evil.test\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 999999")
        answer, transport = self.server.raw(raw)
        self.assertEqual(parse(answer)[0], 403)
        self.assertTrue(transport.disconnecting)


class CORSTests(_Served, SynchronousTestCase):
    """CORS for the origins in C{cors_origins}, and only for them."""

    def test_preflight(self) -> None:
        """OPTIONS from an allowed origin: 204 with every preflight header and no body."""
        for path in ("/login", "/logout", "/communicate"):
            code, phrase, headers, body = self.send(
                path, b"Origin: https://app.example.com\r\nSec-Fetch-Site: cross-site\r\n"
                      b"Access-Control-Request-Method: POST\r\n"
                      b"Access-Control-Request-Headers: content-type\r\n",
                method="OPTIONS", body=b"", cookie=False)
            self.assertEqual((code, phrase, body), (204, b"No Content", b""), path)
            found = dict(headers)
            self.assertEqual(found[b"access-control-allow-origin"], APP.encode())
            self.assertEqual(found[b"access-control-allow-credentials"], b"true")
            self.assertEqual(found[b"access-control-allow-methods"], b"POST")
            self.assertEqual(found[b"access-control-allow-headers"], b"Content-Type")
            self.assertEqual(found[b"access-control-max-age"], b"600")
            self.assertEqual(header(headers, b"vary"), [b"Origin"])
            self.assertNotIn(b"server", found)

    def test_preflight_other_origin(self) -> None:
        """OPTIONS from any other origin is 403, with no CORS header."""
        code, _, headers, body = self.send(
            "/communicate", b"Origin: https://evil.example.com\r\n", method="OPTIONS",
            body=b"", cookie=False)
        self.assertEqual(code, 403)
        self.assertEqual(json.loads(body), {"error": "Cross-origin request refused."})
        self.assertEqual(header(headers, b"access-control-allow-origin"), [])

    def test_options_without_origin(self) -> None:
        """OPTIONS without Origin stays 405 with Allow: POST."""
        code, _, headers, _ = self.send(method="OPTIONS", body=b"", cookie=False)
        self.assertEqual(code, 405)
        self.assertEqual(header(headers, b"allow"), [b"POST"])

    def test_every_answer_to_allowed_origin_is_readable(self) -> None:
        """Successes and errors alike carry allow-origin, allow-credentials and Vary."""
        origin = b"Origin: https://app.example.com\r\nSec-Fetch-Site: cross-site\r\n"
        answers = {
            200: self.send(extra=origin),
            401: self.send(extra=origin, cookie=False),
            400: self.send(extra=origin, body=b"{nope"),
            415: self.send(extra=origin, content_type=b"text/plain"),
            405: self.send(extra=origin, method="GET", body=b""),
            404: self.send("/elsewhere", extra=origin),
            413: self.send(extra=origin, body=b"x" * 9000),
        }
        for status, (code, _, headers, _) in answers.items():
            self.assertEqual(code, status)
            self.assertEqual(header(headers, b"access-control-allow-origin"), [APP.encode()],
                             status)
            self.assertEqual(header(headers, b"access-control-allow-credentials"), [b"true"],
                             status)
            self.assertEqual(header(headers, b"vary"), [b"Origin"], status)

    def test_login_from_allowed_origin(self) -> None:
        """An allowed origin logs in, gets its cookie and may read the answer."""
        body = json.dumps({"username": "bob", "password": "securepassword"}).encode()
        code, _, headers, _ = self.send("/login", b"Origin: https://app.example.com\r\n"
                                                  b"Sec-Fetch-Site: cross-site\r\n",
                                        body=body, cookie=False)
        self.assertEqual(code, 200)
        self.assertEqual(len(header(headers, b"set-cookie")), 1)
        self.assertEqual(header(headers, b"access-control-allow-origin"), [APP.encode()])

    def test_no_cors_headers_for_others(self) -> None:
        """Without an allowed Origin, no CORS header is sent."""
        for extra in (b"", b"Origin: http://example.test\r\n",
                      b"Origin: https://evil.example.com\r\n"):
            _, _, headers, _ = self.send(extra=extra)
            self.assertEqual([name for name, _ in headers if name.startswith(b"access-")], [])
            self.assertEqual(header(headers, b"vary"), [])

    def test_configuration(self) -> None:
        """Origins are normalised; '*', paths, strings and other types are refused."""
        self.assertEqual(parse_cors_origins(["HTTPS://App.Example.com:443/",
                                             "http://localhost:3000", "http://[::1]:80"]),
                         ("https://app.example.com", "http://localhost:3000", "http://[::1]"))
        for bad, error in [(["*"], ValueError), (["https://a.test/app"], ValueError),
                           (["ftp://a.test"], ValueError), (["https://"], ValueError),
                           (["https://a.test?x"], ValueError), (["https://u@a.test"], ValueError),
                           (["https://a.test:99999"], ValueError), ("https://a.test", TypeError),
                           ([1], TypeError), (None, TypeError)]:
            with self.assertRaises(error, msg=repr(bad)):
                ServerConfig(credentials=CREDENTIALS, request_callback=echo, cors_origins=bad)


class CookieLevelNoneTests(SynchronousTestCase):
    """C{login_cookie_level="None"}: SameSite=None; Secure over TLS, a warning without it."""

    def cookie(self, server: MemoryServer, extra: bytes = b"",
               address: Any = None) -> list[str]:
        """The attributes of the cookie a login sets."""
        body = json.dumps({"username": "alice", "password": "password123"}).encode()
        answer, _ = server.raw(request_bytes("/login", body, extra=extra), address)
        [cookie] = header(parse(answer)[2], b"set-cookie")
        return cookie.decode().split("; ")[1:]

    def test_plain_http(self) -> None:
        """Over plain HTTP there is no SameSite attribute, and one warning at start."""
        server = MemoryServer(login_cookie_level="None")
        self.assertEqual(self.cookie(server), ["Path=/", "HttpOnly"])
        warnings = [record for record in server.log.records
                    if "login_cookie_level='None'" in record.getMessage()]
        self.assertEqual(len(warnings), 1)
        self.assertIn("Lax", warnings[0].getMessage())

    def test_https_through_trusted_proxy(self) -> None:
        """Over https (a trusted proxy's word) the cookie is SameSite=None; Secure."""
        server = MemoryServer(login_cookie_level="None", trusted_proxies=["10.0.0.0/8"])
        attributes = self.cookie(server, b"X-Forwarded-For: 192.0.2.9\r\n"
                                         b"X-Forwarded-Proto: https\r\n", PROXY)
        self.assertEqual(attributes, ["Path=/", "HttpOnly", "Secure", "SameSite=None"])

    def test_other_levels_unchanged(self) -> None:
        """Strict and Lax keep their attribute, with no warning."""
        for level in ("Strict", "Lax"):
            server = MemoryServer(login_cookie_level=level)
            self.assertEqual(self.cookie(server), ["Path=/", "HttpOnly", f"SameSite={level}"])
            self.assertNotIn("login_cookie_level", server.log.text)


class ReasonPhraseTests(_Served, SynchronousTestCase):
    """Every status line carries its reason phrase."""

    def test_phrases(self) -> None:
        """429, 415, 413, 403, 401 and 200 are named on the status line."""
        self.assertEqual(self.send()[1], b"OK")
        self.assertEqual(self.send(cookie=False)[1], b"Unauthorized")
        self.assertEqual(self.send(content_type=b"text/plain")[1], b"Unsupported Media Type")
        self.assertEqual(self.send(extra=b"Origin: http://evil.test\r\n")[1], b"Forbidden")
        self.assertEqual(self.send(body=b"x" * 9000)[1],
                         HTTPStatus(413).phrase.encode())  # renamed in newer Pythons
        wrong = json.dumps({"username": "bob", "password": "wrong"}).encode()
        for _ in range(5):
            self.send("/login", body=wrong, cookie=False)
        code, phrase, headers, _ = self.send("/login", body=wrong, cookie=False)
        self.assertEqual((code, phrase), (429, b"Too Many Requests"))
        self.assertEqual(len(header(headers, b"retry-after")), 1)
