"""Header names are case-insensitive: a request's headers count whatever case they come in."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from .helpers import MemoryServer, status_of


class HeaderCaseTests(SynchronousTestCase):
    """A request's headers are read whatever case the client spells their names in."""

    def setUp(self) -> None:
        self.server = MemoryServer()
        self.token = self.server.login()

    def request(self, *headers: bytes) -> bytes:
        """A POST /communicate with exactly C{headers}."""
        return (b"POST /communicate HTTP/1.1\r\n" + b"".join(h + b"\r\n" for h in headers)
                + b"Content-Length: 2\r\n\r\n{}")

    def test_upper_case_names(self) -> None:
        """HOST, COOKIE and CONTENT-TYPE in capitals are the same headers."""
        answer, _ = self.server.raw(self.request(
            b"HOST: example.test", b"COOKIE: sessionToken=" + self.token.encode(),
            b"CONTENT-TYPE: application/json"))
        self.assertEqual(status_of(answer), 200, answer)

    def test_two_host_headers_in_two_spellings(self) -> None:
        """`Host` and `HOST` are two Host headers: 400."""
        answer, _ = self.server.raw(self.request(b"Host: a", b"HOST: b"))
        self.assertEqual(status_of(answer), 400, answer)

    def test_cross_site_in_any_case(self) -> None:
        """A cross-site browser request is refused whatever case its headers come in."""
        answer, _ = self.server.raw(self.request(
            b"host: example.test", b"cookie: sessionToken=" + self.token.encode(),
            b"SEC-FETCH-SITE: cross-site", b"oRiGiN: https://elsewhere.test"))
        self.assertEqual(status_of(answer), 403, answer)

    def test_form_content_type_in_capitals(self) -> None:
        """A form body is refused whatever case the Content-Type name is in."""
        answer, _ = self.server.raw(self.request(
            b"Host: example.test", b"Cookie: sessionToken=" + self.token.encode(),
            b"CONTENT-type: application/x-www-form-urlencoded"))
        self.assertEqual(status_of(answer), 415, answer)
