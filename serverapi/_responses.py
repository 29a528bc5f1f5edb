"""Writing JSON responses with the headers every serverapi response carries."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import partial
from http import HTTPStatus
from typing import Any, cast

from twisted.web.http import datetimeToString
from twisted.web.iweb import IRequest

from ._internals import send_now
from ._json import encode

JSON_CONTENT_TYPE = b"application/json; charset=utf-8"
HSTS_VALUE = b"max-age=31536000"
_COMMON_HEADERS = (
    (b"Content-Type", [JSON_CONTENT_TYPE]),
    (b"X-Content-Type-Options", [b"nosniff"]),
    (b"Cache-Control", [b"no-store"]),
)


# Every status line carries its reason phrase (Twisted knows no phrase for 429 or 431).
REASON_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

_date_cache: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The C{Date} header for now, formatted once per second rather than once per response."""
    global _date_cache
    now = int(time.time())
    second, text = _date_cache
    if second != now:
        text = datetimeToString(now)
        _date_cache = (now, text)
    return text


def error_body(message: str) -> bytes:
    """The body of an error response."""
    return encode({"error": message})


def close_after_response(request: IRequest) -> None:
    """Make the connection close once this response is written."""
    request.setHeader(b"Connection", b"close")
    channel = getattr(request, "channel", None)
    if channel is not None:
        channel.persistent = False


_FIXED_HEADERS = b"".join(name + b": " + value[0] + b"\r\n" for name, value in _COMMON_HEADERS)
_HSTS_LINE = b"Strict-Transport-Security: " + HSTS_VALUE + b"\r\n"


def send(request: IRequest, code: int, body: bytes, *, close: bool = False) -> None:
    """Write a complete JSON response (status, standard headers, body) and finish it."""
    if close:
        close_after_response(request)
    if getattr(request, "writes_whole_responses", False) and request.method != b"HEAD":
        _send_whole(request, code, body)
        return
    headers = request.responseHeaders
    request.setResponseCode(code, REASON_PHRASES[code])
    headers.removeHeader(b"Server")
    headers.setRawHeaders(b"Date", [http_date()])
    for name, value in _COMMON_HEADERS:
        headers.setRawHeaders(name, value)
    if request.isSecure():
        headers.setRawHeaders(b"Strict-Transport-Security", [HSTS_VALUE])
    headers.setRawHeaders(b"Content-Length", [b"%d" % len(body)])
    request.write(body)
    request.finish()


def _send_whole(request: Any, code: int, body: bytes) -> None:
    """Write the status line, every header and the body in one transport write, then finish.

    What C{Request.write} does on its first call (format C{responseHeaders}, then the body),
    for a response whose length is known: one buffer instead of a C{Headers} round trip per
    standard header and two writes.  C{startedWriting} and C{sentLength} are the request's
    documented state, so C{finish()} then does the rest of Twisted's bookkeeping.
    """
    phrase = REASON_PHRASES[code]
    request.code = code
    request.code_message = phrase
    parts = [request.clientproto, b" %d %s\r\nDate: %s\r\n" % (code, phrase, http_date()),
             _FIXED_HEADERS]
    if request.isSecure():
        parts.append(_HSTS_LINE)
    for name, values in request.responseHeaders.getAllRawHeaders():
        for value in values:
            parts += (name, b": ", value, b"\r\n")
    parts += (b"Content-Length: %d\r\n\r\n" % len(body), body)
    request.startedWriting = 1
    request.sentLength = len(body)
    _write_response(request.channel, b"".join(parts))
    request.finish()


def _write_response(channel: Any, response: bytes) -> None:
    """Hand a whole response to the channel's transport.

    A response written while its channel is reading (the request answered inline: a login
    checked here, an error) is buffered by the transport, which sends it with the others of the
    same reactor turn once the reads are done; sent at once, each would wake the client's side
    on its own.  A response written later (a worker's result, a store's answer) is sent at once,
    by the channel's L{sender}.
    """
    if channel.reading:
        channel.transport.write(response)
    else:
        channel.send_at_once(response)


def sender(transport: Any) -> Callable[[bytes], None]:
    """How a whole response is sent at once on C{transport}, chosen once per connection: by
    the transport's own C{write_now} if it has one (serverapi's TLS layer, which encrypts the
    response and sends the records through L{send_now}), by L{send_now} otherwise."""
    if hasattr(type(transport), "write_now"):
        return cast(Callable[[bytes], None], transport.write_now)
    return partial(send_now, transport)


def send_empty(request: IRequest, code: int) -> None:
    """Write a response without a body (a CORS preflight's 204) and finish it."""
    headers = request.responseHeaders
    request.setResponseCode(code, REASON_PHRASES[code])
    headers.removeHeader(b"Server")
    headers.setRawHeaders(b"Date", [http_date()])
    headers.setRawHeaders(b"Cache-Control", [b"no-store"])
    headers.setRawHeaders(b"X-Content-Type-Options", [b"nosniff"])
    if request.isSecure():
        headers.setRawHeaders(b"Strict-Transport-Security", [HSTS_VALUE])
    request.finish()


def send_error(request: IRequest, code: int, message: str, *, close: bool = False) -> None:
    """Write C{{"error": message}} with status C{code}."""
    send(request, code, error_body(message), close=close)


def raw_error(code: int, message: str, *, secure: bool,
              headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 error response as bytes, for answers given before a request exists."""
    body = error_body(message)
    lines = [b"HTTP/1.1 %d %s" % (code, REASON_PHRASES[code]), b"Date: " + http_date()]
    lines += [name + b": " + value[0] for name, value in _COMMON_HEADERS]
    if secure:
        lines.append(b"Strict-Transport-Security: " + HSTS_VALUE)
    lines += [name + b": " + value for name, value in headers]
    lines += [b"Content-Length: %d" % len(body), b"Connection: close", b"", b""]
    return b"\r\n".join(lines) + body
