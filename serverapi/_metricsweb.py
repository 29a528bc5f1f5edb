"""The separate metrics port: C{GET /healthz} and C{GET /metrics}, nothing else.

It is its own Site on its own endpoint (keep it on a private interface): the API port keeps
exactly its three paths.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

_JSON = b"application/json; charset=utf-8"


def _answer(request: Any, code: int, body: dict[str, str]) -> bytes:
    """Set a JSON answer's status and headers; return its body."""
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", _JSON)
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(body).encode("ascii")


class HealthResource(Resource):
    """C{GET /healthz}: 200 while the server serves, 503 otherwise (starting or stopping)."""

    isLeaf = True

    def __init__(self, serving: Callable[[], bool]) -> None:
        super().__init__()
        self._serving = serving

    def render_GET(self, request: Any) -> bytes:
        """Answer the probe."""
        if self._serving():
            return _answer(request, 200, {"status": "serving"})
        return _answer(request, 503, {"status": "not serving"})


class _NotFound(Resource):
    """Any other path."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        """Answer 404."""
        return _answer(request, 404, {"error": "Not found."})


class MetricsRoot(Resource):
    """Routes exactly C{/healthz} and C{/metrics}; everything else is 404."""

    def __init__(self, serving: Callable[[], bool], registry: CollectorRegistry) -> None:
        super().__init__()
        self._health = HealthResource(serving)
        self._registry = registry
        self._metrics: Resource | None = None
        self._not_found = _NotFound()

    def getChild(self, path: bytes, request: Any) -> Resource:
        """The resource for a one-segment path."""
        if request.postpath:
            return self._not_found
        if path == b"healthz":
            return self._health
        if path == b"metrics":
            return self._metrics_resource()
        return self._not_found

    def render(self, request: Any) -> bytes:
        """C{/} itself."""
        return self._not_found.render(request)

    def _metrics_resource(self) -> Resource:
        """prometheus_client's MetricsResource for this registry, made on first use.

        (Importing C{prometheus_client.twisted} imports the global reactor, and its resource
        runs the exposition in the global reactor's thread pool: by the time a scrape arrives,
        a front door has started that reactor.)
        """
        if self._metrics is None:
            from prometheus_client.twisted import MetricsResource

            self._metrics = MetricsResource(self._registry)
        return self._metrics


class _QuietRequest(Request):
    """A request that sends no C{Server} header."""

    def write(self, data: bytes) -> None:
        """Drop the C{Server} header before the first write."""
        if not self.startedWriting:
            self.responseHeaders.removeHeader(b"Server")
        super().write(data)


class MetricsSite(Site):
    """The metrics port's site; scrapes and probes are not logged."""

    requestFactory = _QuietRequest

    def log(self, request: Any) -> None:
        """No access log lines for scrapes and probes."""


class MetricsEndpoint:
    """Listens on the metrics endpoint while the server runs."""

    def __init__(self, description: str, reactor: Any, serving: Callable[[], bool],
                 registry: CollectorRegistry) -> None:
        self.description = description
        self.registry = registry
        self._reactor = reactor
        self.root = MetricsRoot(serving, registry)
        self.site = MetricsSite(self.root, reactor=reactor)
        self.port: IListeningPort | None = None

    def listen(self) -> Deferred[IListeningPort]:
        """Start listening."""
        endpoint = serverFromString(self._reactor, self.description)
        return endpoint.listen(self.site).addCallback(self._listening)

    def _listening(self, port: IListeningPort) -> IListeningPort:
        """Keep the listening port."""
        self.port = port
        return port

    def stop(self) -> Deferred[Any]:
        """Stop listening (a Deferred that fires once the port is closed)."""
        port, self.port = self.port, None
        if port is None:
            return succeed(None)
        return port.stopListening() or succeed(None)
