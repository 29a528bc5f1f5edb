"""Whether a connection's client is still there, asked of its socket without reading from it."""

from __future__ import annotations

import select
import socket
import sys
from typing import Any

# A TCP socket's state, asked with getsockopt, which does not release the interpreter lock: a
# worker asking it hands the lock to no one (a poll would, at a cost seen under load).  Linux's
# numbering (other systems number their states differently, and poll instead).
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None) if sys.platform.startswith(
    "linux") else None
_ESTABLISHED = 1  # TCP_ESTABLISHED; a client's close or reset moves it on (CLOSE_WAIT, CLOSE)
_INET = (socket.AF_INET, socket.AF_INET6)
# How many transports deep the socket is looked for (a TLS layer over TCP is two): a chain
# that goes on (a test's mock, a transport that names itself) ends there.
_LAYERS = 4
# Other sockets: the poll event for a peer that closed its side (Linux reports it even with
# unread bytes before the close, where a peek would see only those bytes), else a peek.
_PEER_CLOSED: int = getattr(select, "POLLRDHUP", 0) if hasattr(select, "poll") else 0
_GONE = _PEER_CLOSED | getattr(select, "POLLHUP", 0) | getattr(select, "POLLERR", 0) | getattr(
    select, "POLLNVAL", 0)


def still_connected(transport: Any) -> bool:
    """Whether the client of C{transport} has neither closed nor reset its connection.

    For a connection whose socket the reactor is not reading (so it cannot have seen the client
    leave): the socket is asked, from any thread, without taking anything from it.  Like the
    reactor, it counts a client that closed its sending side as gone.  A transport without a
    socket (in memory) is taken as connected; one whose socket is closed, as gone.
    """
    try:
        handle = _socket(transport)
    except AttributeError:  # the connection is being torn down: its socket is gone already
        return False
    if handle is None:
        return True
    try:
        if _TCP_INFO is not None and handle.family in _INET:
            return handle.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)[0] == _ESTABLISHED
        descriptor = handle.fileno()
    except OSError:
        return False
    if descriptor < 0:
        return False
    if not _PEER_CLOSED:
        return _peek(handle)
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | _PEER_CLOSED)
    return not any(events & _GONE for _, events in poller.poll(0))


def _socket(transport: Any) -> socket.socket | None:
    """The socket under C{transport}, or C{None} if it has none.

    Through a TLS layer too: Twisted's (an C{ssl:} endpoint) answers C{getHandle} with its
    OpenSSL connection, and its socket is its own transport's.
    """
    for _ in range(_LAYERS):
        get_handle = getattr(transport, "getHandle", None)
        handle = get_handle() if get_handle is not None else None
        if isinstance(handle, socket.socket):
            return handle
        transport = getattr(transport, "transport", None)
        if transport is None:
            break
    return None


def _peek(handle: socket.socket) -> bool:
    """Whether the socket is neither at its end nor broken, peeking at one byte."""
    try:
        return handle.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)) != b""
    except BlockingIOError:  # nothing to read: still there
        return True
    except OSError:
        return False
