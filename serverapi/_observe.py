"""The API site, observed: each answered request counted for metrics and/or written to the
access log.  Used only when one of them is configured, so a server without either runs the
plain APISite and pays nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._accesslog import AccessLog, request_headers
from ._counters import Counts
from ._http import APIChannel, APIRequest, APISite
from ._internals import request_line_so_far


class ObservedRequest(APIRequest):
    """A request that keeps its Referer and User-Agent for the access log.

    The endpoints drop a request's headers before it waits for a worker (to hold less while it
    waits), so the two headers the log needs are taken when processing starts.
    """

    _referer: bytes | None = None
    _agent: bytes | None = None

    def process(self) -> None:
        """Keep the two headers, then process as usual."""
        self._referer, self._agent = request_headers(self)
        super().process()


class ObservedChannel(APIChannel):
    """A channel whose refusals (answers written before a request object is done) are seen."""

    site: ObservedSite

    def refuse(self, code: int, message: str,
               headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Refuse as usual, then record the refusal once."""
        first = not self.refused
        super().refuse(code, message, headers)
        if first:
            self.site.refused(self, code)


class ObservedSite(APISite):
    """The API site, recording every answer in C{counts} and C{access_log} (either optional)."""

    protocol = ObservedChannel

    def __init__(self, *args: Any, counts: Counts | None, access_log: AccessLog | None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts = counts
        self.access_log = access_log
        self.requestFactory = ObservedRequest if access_log is not None else APIRequest

    def log(self, request: Any) -> None:
        """Called by Twisted once a response is finished: count it and log it."""
        if self.counts is not None:
            self.counts.request(request.path, request.method, request.code)
        access_log = self.access_log
        if access_log is not None:
            address = request.getClientAddress()
            access_log.write(str(getattr(address, "host", "-")), request.method, request.uri,
                             request.clientproto, request.code, request.sentLength,
                             getattr(request, "_referer", None), getattr(request, "_agent", None))

    def refused(self, channel: APIChannel, code: int) -> None:
        """A request refused from its request line or headers, or a malformed one."""
        method, target, version = request_line_so_far(channel)
        if self.counts is not None:
            self.counts.request(target.split(b"?", 1)[0] if target else None, method, code)
        access_log = self.access_log
        if access_log is not None:
            request = channel.requests[-1] if channel.requests else None
            if request is None:
                address, (referer, agent) = channel.getPeer(), (None, None)
            else:
                address, (referer, agent) = request.getClientAddress(), request_headers(request)
            access_log.write(str(getattr(address, "host", "-")), method, target, version, code,
                             0, referer, agent)
