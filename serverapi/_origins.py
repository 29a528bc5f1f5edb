"""Cross-origin refusal (Go's CrossOriginProtection algorithm) and opt-in CORS."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SAFE_FETCH_SITES = frozenset((b"same-origin", b"none"))
PREFLIGHT_MAX_AGE = b"600"


def _split(origin: str) -> tuple[str, str, int] | None:
    """An origin's lower-case scheme and host and its port (the scheme's default when absent),
    or None when it is not an http(s) origin with a host."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), _DEFAULT_PORTS[scheme] if port is None else port


def _normalise(origin: str) -> str | None:
    """An origin in the form browsers send (C{scheme://host[:port]}, no default port), or None."""
    split = _split(origin)
    parts = urlsplit(origin)
    if (split is None or parts.username is not None or parts.password is not None
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or origin.endswith("?") or origin.endswith("#")):
        return None
    scheme, host, port = split
    if ":" in host:
        host = f"[{host}]"
    if port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def parse_cors_origins(values: object) -> tuple[str, ...]:
    """Check C{cors_origins} (exact origins such as C{https://app.example.com})."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError("cors_origins must be a list or tuple of origins, "
                        f"not {type(values).__name__}")
    origins = []
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"cors_origins entries must be str, not {type(value).__name__}")
        if value == "*":
            raise ValueError("cors_origins cannot be '*': session cookies must never be sent "
                             "for any origin; name each origin")
        normalised = _normalise(value)
        if normalised is None:
            raise ValueError(f"cors_origins: {value!r} is not an origin such as "
                             "'https://app.example.com' (scheme, host and port only)")
        origins.append(normalised)
    return tuple(origins)


def _host_port(authority: str, default_port: int) -> tuple[str, int] | None:
    """Split a C{Host} header value into a lower-case host and a port."""
    try:
        parts = urlsplit("//" + authority)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.path or parts.username is not None:
        return None
    return parts.hostname.lower(), default_port if port is None else port


class OriginPolicy:
    """Decides which browser requests are cross-origin, and which origins CORS lets in.

    The algorithm is Go 1.25's C{net/http.CrossOriginProtection}: a request whose
    C{Sec-Fetch-Site} is C{same-origin} or C{none} is allowed; any other value is refused;
    without that header, an C{Origin} naming another host and port than C{Host} is refused,
    and a request with neither header did not come from a browser and is allowed.  An
    origin in C{cors_origins} is allowed either way.  Ports count: unlike C{SameSite},
    this separates the origins of one host.
    """

    def __init__(self, cors_origins: Iterable[str]) -> None:
        self.cors_origins = frozenset(origin.encode("ascii") for origin in cors_origins)

    def allowed_origin(self, headers: Headers) -> bytes | None:
        """The request's C{Origin} when it is one of C{cors_origins}, else None."""
        if not self.cors_origins:
            return None
        origins = headers.getRawHeaders(b"origin")
        if origins is None or len(origins) != 1 or origins[0] not in self.cors_origins:
            return None
        return origins[0]

    def refuses(self, request: IRequest) -> bool:
        """Whether C{request} is a cross-origin browser request to refuse."""
        headers = request.requestHeaders
        sites = headers.getRawHeaders(b"sec-fetch-site")
        if sites is not None:
            if len(sites) == 1 and sites[0].strip().lower() in _SAFE_FETCH_SITES:
                return False
            return self.allowed_origin(headers) is None
        origins = headers.getRawHeaders(b"origin")
        if origins is None:
            return False
        if len(origins) == 1:
            origin = _split(origins[0].decode("latin-1"))
            hosts = headers.getRawHeaders(b"host")
            if origin is not None and hosts is not None and len(hosts) == 1:
                default_port = 443 if request.isSecure() else 80
                if origin[1:] == _host_port(hosts[0].decode("latin-1"), default_port):
                    return False
        return self.allowed_origin(headers) is None

    def allow(self, request: IRequest) -> bytes | None:
        """Put the CORS headers on the response when the request's origin is allowed; return
        that origin (C{None} at once without C{cors_origins})."""
        if not self.cors_origins:
            return None
        origin = self.allowed_origin(request.requestHeaders)
        if origin is not None:
            for name, value in self.cors_headers(origin):
                request.responseHeaders.setRawHeaders(name, [value])
        return origin

    @staticmethod
    def cors_headers(origin: bytes) -> list[tuple[bytes, bytes]]:
        """The headers every response to an allowed origin carries."""
        return [(b"Access-Control-Allow-Origin", origin),
                (b"Access-Control-Allow-Credentials", b"true"),
                (b"Vary", b"Origin")]

    @staticmethod
    def preflight_headers() -> list[tuple[bytes, bytes]]:
        """The extra headers of a preflight (C{OPTIONS}) answer to an allowed origin."""
        return [(b"Access-Control-Allow-Methods", b"POST"),
                (b"Access-Control-Allow-Headers", b"Content-Type"),
                (b"Access-Control-Max-Age", PREFLIGHT_MAX_AGE)]
