"""The access log: combined log format, one line per answer, buffered, never a secret."""

from __future__ import annotations

import os
import re
import shutil
import tempfile

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from serverapi._accesslog import AccessLog

from .helpers import MemoryServer, request_bytes, status_of

LINE = re.compile(r'^(\S+) - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d{3}) '
                  r'(\d+|-) "([^"]*)" "([^"]*)"$')


class AccessLogFileTests(SynchronousTestCase):
    """AccessLog on its own."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.folder)
        self.path = os.path.join(self.folder, "access.log")
        self.clock = Clock()
        self.clock.advance(1_795_000_000)
        self.log = AccessLog(self.path, self.clock)
        self.log.open()
        self.addCleanup(self.log.close)

    def read(self) -> str:
        """The log file's text."""
        with open(self.path, encoding="ascii") as handle:
            return handle.read()

    def test_buffered_until_flush(self) -> None:
        """Lines wait in memory until the once-a-second flush."""
        self.log.write("10.0.0.1", b"POST", b"/login", b"HTTP/1.1", 200, 32, None, b"curl/8")
        self.assertEqual(self.read(), "")
        self.clock.advance(1)
        self.assertEqual(self.read(), '10.0.0.1 - - [18/Nov/2026:11:06:40 +0000] '
                                      '"POST /login HTTP/1.1" 200 32 "-" "curl/8"\n')

    def test_escaping_and_query(self) -> None:
        """Quotes, backslashes and control bytes are escaped; the query string is dropped."""
        self.log.write("::1", b"POST", b'/x"y?sessionToken=secret', b"HTTP/1.1", 404, 0,
                       b'a"b\\c', b"evil\r\n\x00agent")
        self.log.write("10.0.0.2", None, None, None, 400, 0, None, None)
        self.log.flush()
        first, second = self.read().splitlines()
        self.assertEqual(first.split("] ", 1)[1],
                         '"POST /x\\"y HTTP/1.1" 404 - "a\\"b\\\\c" "evil\\x0d\\x0a\\x00agent"')
        self.assertNotIn("secret", first)
        self.assertTrue(second.endswith('] "-" 400 - "-" "-"'), second)

    def test_reopen_after_rotation(self) -> None:
        """After the file is moved away, reopen writes a new file at the path."""
        self.log.write("10.0.0.1", b"POST", b"/login", b"HTTP/1.1", 200, 1, None, None)
        os.rename(self.path, self.path + ".1")
        self.log.reopen()
        self.log.write("10.0.0.1", b"POST", b"/logout", b"HTTP/1.1", 200, 1, None, None)
        self.log.close()
        with open(self.path + ".1", encoding="ascii") as handle:
            self.assertIn("/login", handle.read())
        self.assertIn("/logout", self.read())
        self.assertNotIn("/login", self.read())


class ServerAccessLogTests(SynchronousTestCase):
    """A server with access_log= writes a line per answered request."""

    def setUp(self) -> None:
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        self.path = os.path.join(folder, "access.log")
        self.server = MemoryServer(access_log=self.path, trusted_proxies=["10.0.0.7"])

    def lines(self) -> list[str]:
        """The log's lines after a flush."""
        self.server.reactor.advance(1)
        with open(self.path, encoding="ascii") as handle:
            return handle.read().splitlines()

    def test_lines(self) -> None:
        """Answers and refusals are logged in combined format, without cookie or token."""
        server = self.server
        agent = b"User-Agent: probe/1.0\r\nReferer: https://app.example/\r\n"
        answer, _ = server.raw(request_bytes(
            "/login", b'{"username": "alice", "password": "password123"}', extra=agent))
        token = re.search(rb"sessionToken=([^;]+);", answer).group(1).decode()  # type: ignore
        server.raw(request_bytes("/communicate?q=1", cookie=token, extra=agent
                                 + b"X-Forwarded-For: 203.0.113.9\r\n"))
        server.raw(request_bytes("/nope", method="GET"))
        refused, _ = server.raw(b"POST /communicate HTTP/1.1\r\nHost: x\r\nContent-Length: "
                                b"99999999\r\nUser-Agent: big/1\r\n\r\n")
        self.assertEqual(status_of(refused), 413)
        lines = self.lines()
        parsed = [LINE.match(line) for line in lines]
        self.assertTrue(all(parsed), lines)
        self.assertEqual([match.groups() for match in parsed if match], [
            ("10.0.0.7", "POST /login HTTP/1.1", "200", "32", "https://app.example/",
             "probe/1.0"),
            ("203.0.113.9", "POST /communicate HTTP/1.1", "200", "29", "https://app.example/",
             "probe/1.0"),
            ("10.0.0.7", "GET /nope HTTP/1.1", "404", "23", "-", "-"),
            ("10.0.0.7", "POST /communicate HTTP/1.1", "413", "-", "-", "big/1"),
        ])
        text = "\n".join(lines)
        self.assertNotIn(token, text)
        self.assertNotIn(server.service.getSessions()[0].hashed_session_token, text)
        self.assertNotIn("password", text)

    def test_stop_flushes_and_closes(self) -> None:
        """Stopping writes what is buffered and closes the file."""
        self.server.raw(request_bytes("/nope", method="GET"))
        self.successResultOf(self.server.service.stopService())
        with open(self.path, encoding="ascii") as handle:
            self.assertIn("GET /nope", handle.read())
        self.assertIsNone(self.server.service.access_log._file)  # type: ignore[union-attr]

    def test_reopen(self) -> None:
        """APIService.reopenAccessLog starts a new file at the path."""
        self.server.raw(request_bytes("/one", method="GET"))
        os.rename(self.path, self.path + ".1")
        self.server.service.reopenAccessLog()
        self.server.raw(request_bytes("/two", method="GET"))
        lines = self.lines()
        self.assertEqual(len(lines), 1)
        self.assertIn("/two", lines[0])


class UnopenableTests(SynchronousTestCase):
    """An access log that cannot be opened stops the start."""

    def test_directory(self) -> None:
        """A path that is a directory: startService raises OSError, nothing listens."""
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        with self.assertRaises(OSError):
            MemoryServer(access_log=folder)
