"""The parts of Twisted serverapi relies on that Twisted does not publish, all in one place.

Each is checked when this module is imported, so that a Twisted release that renames or drops
one fails at import, and so in the test suite, instead of misbehaving for clients at run time.
Everything else serverapi uses from Twisted is public API.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.abstract import FileDescriptor
from twisted.internet.tcp import Connection
from twisted.web.http import HTTPChannel, Request

# Methods of HTTPChannel that serverapi's channel overrides (bare errors in JSON; no
# "100 Continue" after a refusal).
OVERRIDDEN_CHANNEL_METHODS = ("_respondToBadRequestAndDisconnect", "_send100Continue")


def request_line(channel: Any) -> tuple[bytes, bytes]:
    """The method and target of the request whose headers just arrived.

    C{HTTPChannel} keeps them in C{_command} and C{_path} until the request object gets them,
    after its body; serverapi needs them before, to refuse a large body from its headers.
    """
    return channel._command, channel._path


def request_line_so_far(channel: Any) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The method, target and version of the request being read, each C{None} when the
    channel has none (between requests, or a request line that did not parse)."""
    return (getattr(channel, "_command", None), getattr(channel, "_path", None),
            getattr(channel, "_version", None))


def request_version(channel: Any) -> bytes:
    """The HTTP version of the request whose headers just arrived (C{HTTPChannel._version})."""
    return bytes(channel._version)


def handling_request(channel: Any) -> bool:
    """Whether the channel has a whole request in hand (between its body and its answer)."""
    return bool(channel._handlingRequest)


def holds_unparsed_bytes(channel: Any) -> bool:
    """Whether the channel holds bytes that arrived and are not parsed yet (pipelined ones it
    stopped parsing: C{LineReceiver._buffer})."""
    return bool(channel._buffer)


def collected_input(channel: Any) -> list[bytes]:
    """The list in which the channel collects what arrives while a request is in hand
    (C{HTTPChannel._dataBuffer}); C{requestDone} joins it, then starts a new one."""
    return cast(list[bytes], channel._dataBuffer)


def collect_into(channel: Any, collected: list[bytes]) -> None:
    """Collect into C{collected} (emptied) from now on, in place of the empty list
    C{requestDone} has just made, unless something already went into that one."""
    current = channel._dataBuffer
    if current is not collected and not current:
        collected.clear()
        channel._dataBuffer = collected


def arm_cut_off(channel: Any, delay: float) -> None:
    """Abort the channel's connection in C{delay} seconds unless it closes first, by the timer
    C{HTTPChannel.timeoutConnection} arms (C{_abortingCall}, which C{connectionLost} cancels);
    nothing if that timer is already armed."""
    if channel._abortingCall is None:
        channel._abortingCall = channel.callLater(delay, channel.forceAbortClient)


def waiting_for_transport(channel: Any) -> bool:
    """Whether the channel's transport asked it to pause: the client is not reading."""
    return bool(channel._waitingForTransport)


def client_gone(request: Any) -> bool:
    """Whether the request's connection was lost (the flag C{Request.write} consults)."""
    return bool(request._disconnected)


def send_now(transport: Any, data: bytes) -> None:
    """Write C{data} to C{transport}: straight into its socket when it holds nothing unsent.

    C{FileDescriptor.write} only buffers, asks the reactor to watch the socket for writing, and
    sends on the next reactor turn, then stops watching: two C{epoll_ctl} calls and one more
    turn per response, each a system call that lets another thread take the interpreter lock.
    A response to a waiting client almost always fits the socket's buffer, so it is sent here
    at once; whatever the socket does not take (or any transport that is not a plain socket, or
    one already closing or with bytes waiting) goes through C{transport.write} as before, after
    what is already buffered, so order and the transport's backpressure are unchanged.
    Only Twisted's own TCP and UNIX connections qualify, asked by type: a wrapper such as
    Twisted's TLS layer (an C{ssl:} endpoint) passes unknown attributes on to the connection
    below it, whose socket must only ever see that layer's ciphertext.  Nor does a connection
    that is closing or being aborted.
    """
    if isinstance(transport, Connection):
        if (not transport.TLS and transport.connected and not transport.disconnecting
                and not transport._aborting and not transport._tempDataLen
                and transport.offset == len(transport.dataBuffer)):
            try:
                sent = transport.socket.send(data)
            except OSError:  # full (EAGAIN), or broken: the transport finds out as it would
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
    transport.write(data)


def _missing() -> list[str]:
    """The names above that this Twisted lacks."""
    channel = HTTPChannel()
    missing = [f"HTTPChannel.{name}" for name in ("_handlingRequest", "_waitingForTransport",
                                                  "_buffer", "_abortingCall", "_dataBuffer")
               if not hasattr(channel, name)]
    missing += [f"HTTPChannel.{name}" for name in OVERRIDDEN_CHANNEL_METHODS
                if not callable(getattr(HTTPChannel, name, None))]
    if not hasattr(Request, "_disconnected"):
        missing.append("Request._disconnected")
    descriptor = FileDescriptor(cast(Any, object()))  # any reactor: it is never used
    missing += [f"FileDescriptor.{name}" for name in ("_tempDataLen", "dataBuffer", "offset")
                if not hasattr(descriptor, name)]
    missing += [f"tcp.Connection.{name}" for name in ("_aborting", "TLS")
                if not hasattr(Connection, name)]
    return missing


def check() -> None:
    """Raise C{ImportError} naming what is missing, if this Twisted lacks any of it."""
    missing = _missing()
    if missing:
        raise ImportError("serverapi relies on Twisted internals that this Twisted does not "
                          f"have: {', '.join(missing)}; install a Twisted it supports")


check()
