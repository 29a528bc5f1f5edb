"""The optional access log: one combined-log-format line per answered request.

Lines go into a 64 KiB in-memory buffer that a LoopingCall flushes every second (and a full
buffer flushes by itself), so the reactor makes one small write to the page cache per second or
per 64 KiB, never one per request, and never waits for a disk: a write() of a buffer to a local
file returns once the kernel has copied it.  A twisted.python.logfile.LogFile would write
every line at once; a writer thread would add a hand-off per request for no gain at this size.

Nothing secret is written: no header but Referer and User-Agent, no cookie, and the path
without its query string (the API ignores query strings, and a client that put a token in one
should not find it in a log).
"""

from __future__ import annotations

import re
from typing import IO, Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.web.http import datetimeToLogString

BUFFER_BYTES = 64 * 1024
FLUSH_SECONDS = 1.0
MAX_FIELD = 512  # characters kept of a Referer, User-Agent or request target
_UNSAFE = re.compile(rb'[^\x20-\x7e]|["\\]')


def _escape(value: bytes | None) -> bytes:
    """A request-supplied value for a quoted log field: C{\\xHH} for anything but printable
    ASCII, C{\\"} and C{\\\\} for quotes and backslashes (Apache's escaping), bounded."""
    if not value:
        return b"-"
    return _UNSAFE.sub(_escaped, value[:MAX_FIELD])


def _escaped(match: re.Match[bytes]) -> bytes:
    """The escape of one unsafe byte."""
    byte = match.group()
    return b"\\" + byte if byte in (b'"', b"\\") else b"\\x%02x" % byte[0]


def _first(values: list[bytes] | None) -> bytes | None:
    """The first of a header's values, if any."""
    return values[0] if values else None


def request_headers(request: Any) -> tuple[bytes | None, bytes | None]:
    """The Referer and User-Agent of a request (taken before the server drops its headers)."""
    headers = request.requestHeaders
    return _first(headers.getRawHeaders(b"referer")), _first(headers.getRawHeaders(b"user-agent"))


class AccessLog:
    """A buffered access log file, reopened on request (after a rotation moved it away)."""

    def __init__(self, path: str, clock: IReactorTime) -> None:
        self.path = path
        self._clock = clock
        self._file: IO[bytes] | None = None
        self._flusher = LoopingCall(self.flush)
        self._flusher.clock = clock
        self._second = -1
        self._stamp = b""

    def open(self) -> None:
        """Open the file for appending (raising C{OSError} if that fails) and start flushing."""
        self._file = open(self.path, "ab", buffering=BUFFER_BYTES)
        if not self._flusher.running:
            self._flusher.start(FLUSH_SECONDS, now=False)

    def reopen(self) -> None:
        """Flush and close the file, then open it again at its path (log rotation).

        If it cannot be opened again, lines are dropped until a later reopen succeeds; the
        error is raised for the caller to log.
        """
        self._close_file()
        self._file = open(self.path, "ab", buffering=BUFFER_BYTES)

    def close(self) -> None:
        """Stop flushing, write what is buffered and close the file."""
        if self._flusher.running:
            self._flusher.stop()
        self._close_file()

    def flush(self) -> None:
        """Write the buffered lines to the file."""
        if self._file is not None:
            try:
                self._file.flush()
            except OSError:
                pass  # a full disk costs access log lines, never serving

    def _close_file(self) -> None:
        """Flush and close the current file, if any."""
        handle, self._file = self._file, None
        if handle is not None:
            try:
                handle.close()
            except OSError:
                pass

    def _timestamp(self) -> bytes:
        """The current time as the log wants it, formatted once per second."""
        now = int(self._clock.seconds())
        if now != self._second:
            self._second = now
            self._stamp = datetimeToLogString(now).encode("ascii")
        return self._stamp

    def write(self, host: str, method: bytes | None, target: bytes | None,
              version: bytes | None, code: int, length: int,
              referer: bytes | None, agent: bytes | None) -> None:
        """Append one line: C{host - - [time] "METHOD path VERSION" code length "ref" "ua"}."""
        handle = self._file
        if handle is None:
            return
        path = target.split(b"?", 1)[0] if target else None
        if method and path and version:
            line = b"%s %s %s" % (_escape(method), _escape(path), _escape(version))
        else:
            line = b"-"
        try:
            handle.write(b'%s - - %s "%s" %d %s "%s" "%s"\n' % (
                host.encode("ascii", "backslashreplace") or b"-", self._timestamp(), line,
                code, b"%d" % length if length else b"-", _escape(referer), _escape(agent)))
        except (OSError, ValueError):
            pass  # a full disk or a closed file costs access log lines, never serving
