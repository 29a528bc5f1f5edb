"""The shared session store's address: a C{redis://} or C{rediss://} URL, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

DEFAULT_PORT = 6379
DEFAULT_PREFIX = "serverapi:"
_SCHEMES = ("redis", "rediss")
_QUERY_OPTIONS = ("ca",)  # rediss:// only: a PEM file of the CAs that sign the server


@dataclass(frozen=True)
class StoreAddress:
    """Where the Redis (or Valkey) server is and how to log in to it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None

    def __str__(self) -> str:
        """The URL without its password, fit for logs and error messages."""
        credentials = ""
        if self.username is not None or self.password is not None:
            credentials = f"{self.username or ''}{':***' if self.password else ''}@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{credentials}{host}:{self.port}/{self.db}"


def parse_store_url(url: object) -> StoreAddress:
    """Read C{redis://[[user]:password@]host[:port][/db]} (or C{rediss://}, with an optional
    C{?ca=/path/ca.pem}); raise C{TypeError}/C{ValueError} saying what is wrong."""
    if not isinstance(url, str):
        raise TypeError(f"session_store must be a redis:// URL or None, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ValueError(f"session_store: malformed URL ({error})") from None
    if parts.scheme not in _SCHEMES:
        raise ValueError("session_store must start with redis:// or rediss://, "
                         f"got {parts.scheme + '://' if parts.scheme else 'no scheme'}")
    if not parts.hostname:
        raise ValueError("session_store: the URL names no host")
    if parts.fragment:
        raise ValueError("session_store: the URL must not have a #fragment")
    db_text = parts.path.lstrip("/")
    if parts.path.count("/") > 1 or (db_text and not db_text.isdigit()):
        raise ValueError(f"session_store: the path must be a database number, "
                         f"got {parts.path!r}")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = sorted(set(query) - set(_QUERY_OPTIONS))
    if unknown:
        raise ValueError(f"session_store: unknown URL option(s) {', '.join(unknown)}; "
                         f"the only one is ca= (with rediss://)")
    ca_file = query["ca"][-1] if "ca" in query else None
    if ca_file is not None and parts.scheme != "rediss":
        raise ValueError("session_store: ca= needs rediss://")
    return StoreAddress(
        host=parts.hostname, port=DEFAULT_PORT if port is None else port,
        db=int(db_text) if db_text else 0,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss", ca_file=ca_file or None)


def check_prefix(prefix: object) -> str:
    """The key prefix, checked: a non-empty str without spaces or control characters."""
    if not isinstance(prefix, str):
        raise TypeError(f"session_store_prefix must be a str, not {type(prefix).__name__}")
    if not prefix or any(character.isspace() or ord(character) < 32 for character in prefix):
        raise ValueError("session_store_prefix must be non-empty, without spaces or control "
                         f"characters; got {prefix!r}")
    return prefix
