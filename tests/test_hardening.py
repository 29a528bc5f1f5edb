"""What a hostile client and a bad day find: big usernames, broken loggers, no file descriptors,
100-continue after a refusal, and bodies read before a 401."""

from __future__ import annotations

import errno
import json
import logging
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import MemoryServer, request_bytes, status_of


class BrokenHandler(logging.Handler):
    """A log handler that raises on every record, as a full disk or a bug would."""

    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the log handler is broken")

    def handleError(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the log handler is broken")


def failing(username: str, token: str, data: dict[str, Any]) -> tuple:
    """A request callback that always fails."""
    raise ValueError("boom")


class HugeUsernameTests(SynchronousTestCase):
    """Failed logins with enormous usernames cost bounded memory and bounded log lines."""

    def test_log_line_bounded(self) -> None:
        """A 60 KB username is cut in the log line."""
        server = MemoryServer()
        username = "u" * 60_000
        body = json.dumps({"username": username, "password": "x"}).encode()
        answer, _ = server.raw(request_bytes("/login", body))
        self.assertEqual(status_of(answer), 401)
        [line] = [record.getMessage() for record in server.log.records
                  if record.getMessage().startswith("Login failed")]
        self.assertLess(len(line), 200)
        self.assertIn("(60000 chars)", line)

    def test_throttle_memory_bounded(self) -> None:
        """2,000 failures with 60 KB usernames from 40 addresses keep no username text."""
        server = MemoryServer()
        throttle = server.service.root.routes[b"/login"]._context.throttle
        for index in range(2000):
            throttle.failed(f"{index:05d}" + "u" * 60_000, f"192.0.2.{index % 40}")
        windows = (throttle._pairs, throttle._addresses, throttle._users)
        biggest_key = max(len(key) for window in windows for key in window._failures)
        self.assertLessEqual(biggest_key, 16)


class BrokenLoggerTests(SynchronousTestCase):
    """A logger whose handler raises never costs a client its answer."""

    def setUp(self) -> None:
        self.server = MemoryServer(request_callback=failing)
        self.server.logger.addHandler(BrokenHandler())

    def test_failing_callback_still_answered(self) -> None:
        """The callback's failure is answered 500 though logging it raises."""
        token = self.server.login()
        answer, _ = self.server.raw(request_bytes(cookie=token))
        self.assertEqual(status_of(answer), 500)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))  # reported to Twisted's log

    def test_login_answered(self) -> None:
        """Logins and failed logins are answered though every log line raises."""
        good = json.dumps({"username": "alice", "password": "password123"}).encode()
        bad = json.dumps({"username": "alice", "password": "nope"}).encode()
        self.assertEqual(status_of(self.server.raw(request_bytes("/login", good))[0]), 200)
        self.assertEqual(status_of(self.server.raw(request_bytes("/login", bad))[0]), 401)
        self.assertTrue(self.flushLoggedErrors(RuntimeError))  # reported to Twisted's log

    def test_library_logger_silent_by_default(self) -> None:
        """The library's logger has a NullHandler, so an unconfigured program sees nothing."""
        handlers = logging.getLogger("serverapi").handlers
        self.assertTrue(any(isinstance(handler, logging.NullHandler) for handler in handlers))


class NoFileDescriptorTests(SynchronousTestCase):
    """A body that must be spooled to disk when no file can be opened."""

    def test_503_and_logged(self) -> None:
        """The client gets 503 with Retry-After and the user's logger says why."""
        server = MemoryServer()
        token = server.login()

        def no_files(*args: Any, **kwargs: Any) -> Any:
            raise OSError(errno.EMFILE, "Too many open files")

        self.patch(tempfile, "TemporaryFile", no_files)
        body = json.dumps({"data": "x" * 200_000}).encode()
        answer, transport = server.raw(request_bytes(body=body, cookie=token))
        self.assertEqual(status_of(answer), 503)
        self.assertIn(b"\r\nRetry-After: 1\r\n", answer)
        self.assertTrue(transport.disconnecting)
        self.assertIn("Cannot buffer a request body", server.log.text)
        self.assertIn("Too many open files", server.log.text)


class EarlyRefusalTests(SynchronousTestCase):
    """Refusals that the headers decide are sent before the body is read."""

    def setUp(self) -> None:
        self.server = MemoryServer()

    def test_no_continue_after_413(self) -> None:
        """A client expecting 100-continue with an oversized body gets only the 413."""
        head = request_bytes(body=b"", cookie=self.server.login(),
                             extra=b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 99999999")
        answer, _ = self.server.raw(head)
        self.assertEqual(status_of(answer), 413)
        self.assertNotIn(b"100 Continue", answer)

    def test_continue_when_accepted(self) -> None:
        """A client expecting 100-continue with an acceptable body is invited to send it."""
        head = request_bytes(body=b"", cookie=self.server.login(),
                             extra=b"Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 2")
        channel, transport = self.server.connect()
        channel.dataReceived(head)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 100 Continue\r\n\r\n"))
        channel.dataReceived(b"{}")
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())

    def test_unauthenticated_large_body_refused_from_headers(self) -> None:
        """Without a valid token, a 4 MiB /communicate body is refused before any of it
        arrives, with no temporary file and a closed connection."""
        opened: list[Any] = []
        real = tempfile.TemporaryFile

        def counting(*args: Any, **kwargs: Any) -> Any:
            opened.append(args)
            return real(*args, **kwargs)

        self.patch(tempfile, "TemporaryFile", counting)
        for cookie in (None, "not-a-token"):
            head = request_bytes(body=b"", cookie=cookie).replace(
                b"Content-Length: 0", b"Content-Length: 4000000")
            channel, transport = self.server.connect()
            channel.dataReceived(head)
            self.assertEqual(status_of(transport.value()), 401, cookie)
            self.assertTrue(transport.disconnecting)
        chunked = request_bytes(body=b"").replace(b"Content-Length: 0",
                                                   b"Transfer-Encoding: chunked")
        answer, _ = self.server.raw(chunked)
        self.assertEqual(status_of(answer), 401)
        self.assertEqual(opened, [])

    def test_authenticated_large_body_read(self) -> None:
        """With a valid token, a large body is read and handed to the callback."""
        token = self.server.login()
        body = json.dumps({"message": "x" * 200_000}).encode()
        answer, _ = self.server.raw(request_bytes(body=body, cookie=token))
        self.assertEqual(status_of(answer), 200)

    def test_small_unauthenticated_body_keeps_connection(self) -> None:
        """A small body is read and answered 401 on a connection that stays open."""
        answer, transport = self.server.raw(request_bytes())
        self.assertEqual(status_of(answer), 401)
        self.assertFalse(transport.disconnecting)
