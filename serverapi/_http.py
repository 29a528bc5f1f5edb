"""The HTTP layer under the resources: body cap, request deadline, bare errors in JSON."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from operator import methodcaller
from typing import Any

from OpenSSL import SSL
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http, server

from ._deadlines import Deadlines
from ._idle import IdleTimeout
from ._input_batch import InputBatch, reads_socket
from ._internals import (arm_cut_off, client_gone, collect_into, collected_input,
                         handling_request, holds_unparsed_bytes, request_line, request_version,
                         waiting_for_transport)
from ._logging import SafeLogger
from ._proxies import ForwardedClient, ProxyPolicy
from ._responses import close_after_response, raw_error, send_error, sender
from ._resource import RootResource


# A login body is a username and a password: 64 KiB is generous, and it keeps clients that have
# not logged in from making the reactor parse megabytes of JSON.
MAX_LOGIN_BODY_BYTES = 64 * 1024
# Bodies up to this size are read before the endpoint judges the request; larger or chunked
# ones are judged from their headers first.
EARLY_DECISION_BYTES = 64 * 1024
# How long a stop waits for closing connections to send what they hold before aborting them.
CLOSE_FLUSH_SECONDS = 2.0
# Routing uses the whole path, so there are no segments; a tuple, so nothing can add any.
_NO_SEGMENTS: Any = ()
# In place of the two lists Twisted makes for every request (finish notifications, outgoing
# cookies) until something adds to them: the API's endpoints never do.
_NONE_YET: Any = ()


class APIRequest(server.Request):
    """A request that refuses what its headers already condemn before reading its body."""

    _body_bytes = 0
    _body_cap = 0
    _forwarded: ForwardedClient | None = None
    _api_path = True  # whether the target is the API's (set with the headers)
    # Our responses have a known length and standard headers: _responses writes them whole.
    writes_whole_responses = True

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        """Twisted's request, without its two empty lists while nothing uses them.

        Every object with references that a request holds is one more for the garbage
        collector to track; under load, requests waiting for a worker are what fills its young
        generation and promotes objects towards full collections (docs/performance.md).
        """
        super().__init__(channel, *args, **kwargs)
        self.notifications = _NONE_YET
        self.cookies = _NONE_YET

    def notifyFinish(self) -> Deferred[None]:
        """Twisted's, with the list of notifications made on first use."""
        if self.notifications is _NONE_YET:
            self.notifications = []
        return super().notifyFinish()

    def addCookie(self, *args: Any, **kwargs: Any) -> Any:
        """Twisted's, with the list of outgoing cookies made on first use."""
        if self.cookies is _NONE_YET:
            self.cookies = []
        return super().addCookie(*args, **kwargs)

    def gotLength(self, length: int | None) -> None:
        """Refuse at once what the request line and headers condemn, then make the body's file.

        A body that cannot be buffered (no file descriptor left for its temporary file)
        is a 503, logged on the user's logger, not a dropped connection.
        """
        channel: APIChannel = self.channel
        site = channel.site
        command, target = request_line(channel)
        self._body_cap = site.body_cap(target)
        if site.proxies.enabled:
            self._forwarded = site.proxies.client(channel.getPeer(), self.requestHeaders)
        refusal = site.refusal(self, command, target, length, self._body_cap)
        if refusal is not None:
            channel.refuse(*refusal)
            return
        try:
            super().gotLength(length)
        except OSError as error:
            site.logger.error("Cannot buffer a request body, answering 503: %s", error)
            channel.refuse(503, "Server busy. Try again later.", [(b"Retry-After", b"1")])

    def parseCookies(self) -> None:
        """Skip Twisted's cookie parsing on the API's paths: the endpoints read the Cookie
        header themselves (they must see a duplicated C{sessionToken}, which
        C{received_cookies} hides).  Other resources of the site get Twisted's parsing."""
        _, target = request_line(self.channel)
        self._api_path = self.channel.site.resource.is_api(target)  # asked once per request
        if not self._api_path:
            super().parseCookies()

    def getClientAddress(self) -> Any:
        """The client's address: the connection's peer, or who a trusted proxy forwarded."""
        forwarded = self._forwarded
        if forwarded is None:
            return self.client
        kind = IPv6Address if ":" in forwarded.host else IPv4Address
        return kind("TCP", forwarded.host, 0)

    def isSecure(self) -> bool:
        """Whether the client's connection is TLS: ours, or a trusted proxy's C{https}."""
        forwarded = self._forwarded
        if forwarded is not None and forwarded.secure is not None:
            return forwarded.secure
        channel = self.channel
        return channel is not None and channel.secure

    def handleContentChunk(self, data: bytes) -> None:
        """Count body bytes as they arrive (chunked bodies have no length up front)."""
        channel: APIChannel = self.channel
        if channel.refused:
            return
        self._body_bytes += len(data)
        if self._body_bytes > self._body_cap:
            channel.refuse(413, "Request body too large.")
            return
        self.content.write(data)

    def process(self) -> None:
        """Route on the exact path and render: C{server.Request.process} without the segment
        traversal (the routes are whole paths) and without a C{Server} header."""
        site = self.site = self.channel.site
        if not self._api_path:
            super().process()  # another resource of the site: Twisted's traversal and headers
            return
        self.prepath = self.postpath = _NO_SEGMENTS
        try:
            self.render(site.resource.route(self.path))
        except BaseException:
            self.processingFailed(Failure())

    def processingFailed(self, reason: Failure) -> None:
        """Answer a generic 500, then log the error on the user's logger."""
        if not (self.startedWriting or self.finished or client_gone(self)):
            send_error(self, 500, "Internal server error.")
        self.site.logger.error("Unhandled error serving %r", self.path, exc_info=reason.value)


class APIChannel(IdleTimeout, http.HTTPChannel):
    """An HTTP/1.1 connection with a whole-request deadline and JSON for bare errors.

    Its idle timeout keeps one timer for the connection (L{IdleTimeout}), where Twisted's
    channel cancels one and makes another for every request.
    """

    site: APISite
    refused = False
    secure = False
    _receiving = False
    #: Whether the channel is handling bytes that just arrived: a response written meanwhile
    #: answers its request inline, while the reactor is reading (C{_responses._write_response}).
    reading = False
    #: Sends a whole response at once (a worker's result): chosen for the transport when the
    #: connection is made (C{_responses.sender}).
    send_at_once: Callable[[bytes], None]
    _host: Any = None
    _peer: Any = None
    #: Why the socket is not read while a request is in hand (the reactor then cannot see the
    #: client leave, and a job asks the socket instead): the request waits behind too many
    #: others (L{hold_reading}), or the send buffer is full (L{pauseProducing}).
    reading_held = False
    send_buffer_full = False
    #: Where bytes read from the socket wait for the end of the reactor turn (L{InputBatch});
    #: C{None} on an in-memory transport, whose bytes are handled as they are delivered.
    input_batch: InputBatch | None = None
    #: The bytes read this reactor turn and not handled yet (L{InputBatch}).
    waiting_input: list[bytes] | None = None
    #: Whether C{HTTPChannel.requestDone} is handing back the requests it held: those bytes
    #: were read before any still waiting, so they are handled at once.
    _replaying = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.secure = ISSLTransport.providedBy(self.transport)  # asked once, not per request
        self.send_at_once = sender(self.transport)
        if reads_socket(self.transport):
            self.input_batch = self.site.input_batch
        self.site.channels.add(self)

    def getHost(self) -> Any:
        """The server's address, asked of the socket once per connection, not per request."""
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def getPeer(self) -> Any:
        """The client's address, made once per connection, not per request."""
        if self._peer is None:
            self._peer = self.transport.getPeer()
        return self._peer

    def dataReceived(self, data: bytes) -> None:
        """Bytes from the connection: handled at the end of the reactor turn with every other
        connection's (L{InputBatch}); at once on an in-memory transport, and when Twisted hands
        back the pipelined requests it held (read before anything still waiting)."""
        batch = self.input_batch
        if batch is None or self._replaying:
            self.handle_input(data)
        else:
            batch.add(self, data)

    def flush_input(self) -> None:
        """Handle now the bytes read this turn that still wait, before a timer or a stop that
        came due first acts on the connection (as it did when bytes were handled on arrival)."""
        waiting, self.waiting_input = self.waiting_input, None
        if waiting:
            self.handle_input(b"".join(waiting))

    def _idle_check(self) -> None:
        """The idle timer fired: a request read this turn counts as activity."""
        self.flush_input()
        super()._idle_check()

    def handle_input(self, data: bytes) -> None:
        """Start the request deadline on a request's first byte; drop input once refused."""
        if self.refused:
            return
        if not self._receiving and not handling_request(self) and (
                data or holds_unparsed_bytes(self)):
            self._receiving = True
            self.site.deadlines.add(self)
        self.reading = True
        try:
            super().dataReceived(data)
        finally:
            self.reading = False

    def allHeadersReceived(self) -> None:
        """Refuse an HTTP/1.1 request without exactly one Host header, then go on as usual."""
        if request_version(self) == b"HTTP/1.1":
            hosts = self.requests[-1].requestHeaders.getRawHeaders(b"host")
            if hosts is None or len(hosts) != 1:
                self.refuse(400, "Exactly one Host header is required.")
                return
        super().allHeadersReceived()

    def allContentReceived(self) -> None:
        """The whole request is in: stop its deadline and process it."""
        if self.refused:
            return
        self._cancel_deadline()
        super().allContentReceived()

    def rawDataReceived(self, data: bytes) -> None:
        if not self.refused:
            super().rawDataReceived(data)

    def requestDone(self, request: Any) -> None:
        """A response is complete: go on to the next pipelined request, unless the client is
        not reading its answers.

        C{HTTPChannel} replays the pipelined requests it buffered as soon as a response is
        done, even while the transport cannot send (and so would run every callback and
        buffer every answer of a client that never reads).  While the transport is full, this
        channel instead stops parsing (C{LineReceiver.paused}) and stops reading the socket;
        L{resumeProducing} carries on once the client has read.

        It also keeps one list per connection for what arrives while a request is in hand,
        where C{HTTPChannel} makes a new one per request: that list lives through a request's
        whole cycle, long enough to be promoted by the garbage collector (docs/performance.md).
        """
        self.reading_held = self.send_buffer_full = False
        if waiting_for_transport(self):
            self.paused = True
            self.transport.pauseProducing()
        collected = collected_input(self)
        self._replaying = True
        try:
            super().requestDone(request)
        finally:
            self._replaying = False
        collect_into(self, collected)

    def hold_reading(self) -> None:
        """Read nothing more until the request in hand is answered: it waits behind too many
        others (C{HTTPChannel.requestDone} resumes reading once it is answered)."""
        self.reading_held = True
        self.transport.pauseProducing()

    def pauseProducing(self) -> None:
        """The send buffer is full: read the socket no further, even with a request in hand.

        C{HTTPChannel} goes on reading while it handles a request (this channel watches for
        the client leaving meanwhile).  But a full buffer then means the client is not reading,
        and what a TLS layer writes of its own accord (the answer to each of a client's key
        updates) would pile up without bound.  L{resumeProducing} reads again once it drains.
        """
        super().pauseProducing()
        if handling_request(self) and self.transport is not None:
            self.send_buffer_full = True
            self.transport.pauseProducing()

    def resumeProducing(self) -> None:
        """The client read its answers: read the socket again (with a request in hand, unless
        it is held) and parse held requests again."""
        super().resumeProducing()
        if self.send_buffer_full:
            self.send_buffer_full = False
            if handling_request(self) and not self.reading_held and self.transport is not None:
                self.transport.resumeProducing()
        if self.paused and not waiting_for_transport(self) and self.transport is not None:
            self.paused = False
            self.handle_input(b"")

    def _deadline_passed(self) -> None:
        """The request took too long to arrive (slowloris): answer 408 and close."""
        self.flush_input()
        self._receiving = False
        if handling_request(self) or self.transport is None:
            return
        self.site.logger.info("Closing a connection whose request took over %ss to arrive: "
                              "peer=%s", self.site.request_deadline, _peer(self))
        self.refuse(408, "Request took too long to arrive.")

    def _cancel_deadline(self) -> None:
        if self._receiving:
            self._receiving = False
            self.site.deadlines.discard(self)

    def refuse(self, code: int, message: str,
               headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer a request we will not read any further, and close the connection."""
        self.refused = True
        self._cancel_deadline()
        self.transport.write(raw_error(code, message, secure=self.secure, headers=headers))
        self.timeoutConnection()

    def _send100Continue(self) -> None:
        """Invite the body only when the request has not been refused already."""
        if not self.refused:
            super()._send100Continue()

    def lineLengthExceeded(self, line: bytes) -> None:
        """A request or header line longer than Twisted's line limit."""
        self.refuse(431, "Request header fields too large.")

    def _respondToBadRequestAndDisconnect(self) -> None:
        """Twisted's answer to a malformed request, but as a JSON 400."""
        self.refuse(400, "Bad request.")

    def timeoutConnection(self) -> None:
        """Close the connection, aborting it if the peer does not let go (once: the idle
        timer stops, so a refused connection is not timed out again)."""
        self.stop_idle_timer()
        self.persistent = False
        super().timeoutConnection()

    def loseConnection(self) -> None:
        """Close once the answers are sent (after a C{Connection: close} answer, a refusal, a
        time-out).  A client that never reads them is cut off C{timeout} plus C{abortTimeout}
        seconds later, as an idle keep-alive connection holding unread answers would be."""
        if self.abortTimeout is not None:
            arm_cut_off(self, (self.site.timeOut or 0) + self.abortTimeout)
        super().loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.waiting_input = None  # the connection is gone: what it sent is not handled
        self._cancel_deadline()
        self.stop_idle_timer()
        self.site.channel_closed(self)
        if reason.check(SSL.Error, ssl.SSLError):
            peer, why = _peer(self), reason.getErrorMessage()
            self.site.logger.audit("tls_handshake_failed", "TLS handshake failed: peer=%s "
                                   "reason=%s", peer, why, peer=peer, reason=why,
                                   level=logging.WARNING)
        super().connectionLost(reason)


def _peer(channel: http.HTTPChannel) -> str:
    """The peer's address as text, for the log."""
    transport = channel.transport
    address: Any = transport.getPeer() if transport is not None else None
    return str(getattr(address, "host", address))


class APISite(server.Site):
    """The site serving the resource tree with serverapi's HTTP rules."""

    protocol = APIChannel
    requestFactory = APIRequest
    resource: RootResource

    def __init__(self, root: RootResource, *, timeout: float, max_body_bytes: int,
                 logger: SafeLogger, reactor: Any, proxies: ProxyPolicy) -> None:
        super().__init__(root, timeout=timeout, reactor=reactor, parsePOSTFormSubmission=False)
        self.max_body_bytes = max_body_bytes
        self.max_login_body_bytes = min(max_body_bytes, MAX_LOGIN_BODY_BYTES)
        self.request_deadline = 3 * timeout
        self.deadlines: Deadlines[APIChannel] = Deadlines(reactor, self.request_deadline,
                                                          methodcaller("_deadline_passed"))
        self.logger = logger
        self.proxies = proxies
        self.channels: set[APIChannel] = set()
        self.input_batch = InputBatch(reactor)
        self._reactor = reactor
        self._closed_waiters: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> APIChannel:
        channel = super().buildProtocol(addr)
        channel.abortTimeout = min(self.timeOut or 15, 15)
        channel.seconds = self.reactor.seconds  # the clock of the callLater Twisted gave it
        return channel

    def body_cap(self, target: bytes) -> int:
        """The largest body accepted for a request target: C{/login} needs only a few bytes."""
        if target.split(b"?", 1)[0] == b"/login":
            return self.max_login_body_bytes
        return self.max_body_bytes

    def refusal(self, request: APIRequest, method: bytes, target: bytes, length: int | None,
                cap: int) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """What to answer, before reading it, to a request with a large or oversized body.

        A body that is small enough to keep in memory is read, and the endpoint decides.
        Larger ones (or chunked ones, whose size is unknown) are judged from the request line
        and headers first, in the contract's order (404, 405, 403, 413, 415, 401), so that no
        one who will be refused can make the server read and spool megabytes.
        """
        if length is not None and length <= min(cap, EARLY_DECISION_BYTES):
            return None
        return self.resource.early_refusal(request, method, target,
                                           oversized=length is not None and length > cap)

    def drain(self) -> None:
        """Take no more requests: each connection closes once the answers it is owed are
        written, and an idle one closes now."""
        for channel in list(self.channels):
            channel.flush_input()
            if channel.requests:
                for request in channel.requests:
                    if not request.startedWriting:
                        close_after_response(request)
            elif channel.transport is not None:
                channel.transport.loseConnection()

    def close_all(self) -> None:
        """Close every connection, cutting off those still waiting for a callback.

        A closing connection still sends the answers it holds; L{when_closed} waits for that.
        """
        for channel in list(self.channels):
            channel.flush_input()  # a gone connection has nothing waiting
            if channel.transport is None:
                self.channels.discard(channel)
            elif channel.requests:
                channel.transport.abortConnection()
            else:
                channel.transport.loseConnection()

    def when_closed(self, flush_timeout: float = CLOSE_FLUSH_SECONDS) -> Deferred[None]:
        """Fire once every connection has closed, aborting after C{flush_timeout} seconds those
        whose peer does not read what they hold.

        A program about to end (the reactor thread dies with the interpreter, twistd stops the
        reactor) waits for this, or answers already written may never leave the process.
        """
        closed: Deferred[None] = Deferred()
        if not self.channels:
            closed.callback(None)
            return closed
        self._closed_waiters.append(closed)
        timer = self._reactor.callLater(flush_timeout, self._abort_all)
        return closed.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])

    def _abort_all(self) -> None:
        """Abort the connections that did not close in time, and stop waiting for them."""
        for channel in list(self.channels):
            if channel.transport is not None:
                channel.transport.abortConnection()
        waiters, self._closed_waiters = self._closed_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def channel_closed(self, channel: APIChannel) -> None:
        """A connection closed: forget it, and tell a waiting stop when none is left."""
        self.channels.discard(channel)
        if not self.channels and self._closed_waiters:
            waiters, self._closed_waiters = self._closed_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def log(self, request: server.Request) -> None:
        """No access log: the audit log is the user's logger."""
