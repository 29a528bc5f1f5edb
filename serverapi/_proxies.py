"""Trusted reverse proxies: the real client's address and scheme from X-Forwarded-* / Forwarded."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.web.http_headers import Headers

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
UNIX = "unix"


def parse_trusted_proxies(values: object) -> tuple[str, ...]:
    """Check C{trusted_proxies} (addresses, CIDR networks, "unix") and return them as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError("trusted_proxies must be a list or tuple of addresses or networks, "
                        f"not {type(values).__name__}")
    checked = []
    for value in values:
        if not isinstance(value, str):
            raise TypeError(f"trusted_proxies entries must be str, not {type(value).__name__}")
        if value != UNIX:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {value!r} is not an IP address, a CIDR "
                                 f"network or 'unix'") from None
        checked.append(value)
    return tuple(checked)


def _address(text: str) -> IPAddress | None:
    """Parse one forwarded address (IPv4, IPv6, bracketed IPv6, either with a port), or None."""
    text = text.strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (end + 1 < len(text) and text[end + 1] != ":"):
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        parsed = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


@dataclass(frozen=True, slots=True)
class ForwardedClient:
    """Who a request came from once trusted proxies are looked through."""

    host: str
    secure: bool | None  # None: as the direct connection says


def _forwarded_pairs(header: str) -> list[dict[str, str] | None]:
    """Parse RFC 7239 C{Forwarded} elements into dicts, each None when it is malformed."""
    return [_forwarded_element(element) for element in header.split(",")]


def _forwarded_element(element: str) -> dict[str, str] | None:
    """One C{Forwarded} element's pairs, or None when one of them is malformed."""
    pairs: dict[str, str] = {}
    for pair in element.split(";"):
        if not pair.strip():
            continue
        name, equals, value = pair.partition("=")
        if not equals:
            return None
        pairs[name.strip().lower()] = value.strip().strip('"')
    return pairs


def _proto(value: str | None) -> bool | None:
    """C{True} for https, C{False} for http, None when absent or anything else."""
    if value is None:
        return None
    value = value.strip().lower()
    return {"https": True, "http": False}.get(value)


class ProxyPolicy:
    """Finds the client behind trusted proxies; from any other peer the headers are ignored."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self._unix = False
        networks: list[IPNetwork] = []
        for value in trusted:
            if value == UNIX:
                self._unix = True
            else:
                networks.append(ipaddress.ip_network(value, strict=False))
        self._networks = tuple(networks)
        self.enabled = bool(self._networks) or self._unix

    def _trusted(self, address: IPAddress) -> bool:
        """Whether C{address} is one of the trusted proxies."""
        return any(address in network for network in self._networks)

    def trusts_peer(self, peer: Any) -> bool:
        """Whether the direct peer (a Twisted address) is a trusted proxy."""
        if isinstance(peer, UNIXAddress):
            return self._unix
        host = getattr(peer, "host", None)
        if host is None:
            return False
        parsed = _address(host)
        return parsed is not None and self._trusted(parsed)

    def client(self, peer: Any, headers: Headers) -> ForwardedClient | None:
        """The forwarded client of a request from C{peer}, or None to use the peer itself.

        The client is the rightmost address in C{X-Forwarded-For} (else C{Forwarded: for=})
        that is not itself a trusted proxy; if every one is trusted, the leftmost.  A
        malformed header gives None: the proxy's own address, never an error.
        """
        if not self.enabled or not self.trusts_peer(peer):
            return None
        forwarded_for = headers.getRawHeaders(b"x-forwarded-for")
        if forwarded_for is not None:
            text = ",".join(value.decode("latin-1") for value in forwarded_for)
            addresses = [_address(part) for part in text.split(",")]
            index = self._client_index(addresses)
            if index is None:
                return None
            protos = headers.getRawHeaders(b"x-forwarded-proto")
            secure = None
            if protos:
                secure = _proto(protos[-1].decode("latin-1").split(",")[-1])
            return ForwardedClient(str(addresses[index]), secure)
        forwarded = headers.getRawHeaders(b"forwarded")
        if forwarded is None:
            return None
        elements = _forwarded_pairs(",".join(value.decode("latin-1") for value in forwarded))
        addresses = [None if element is None or "for" not in element
                     else _address(element["for"]) for element in elements]
        index = self._client_index(addresses)
        if index is None:
            return None
        client = elements[index] or {}  # (never None: its address parsed)
        return ForwardedClient(str(addresses[index]), _proto(client.get("proto")))

    def _client_index(self, addresses: list[IPAddress | None]) -> int | None:
        """Where the client stands in a forwarding chain, read from the right: the first hop
        that is not a trusted proxy (if every one is, the leftmost).  None when a hop the
        trusted proxies wrote, at or right of the client, is malformed; what stands left of
        the client is the client's own to write, and is not read."""
        for index in range(len(addresses) - 1, -1, -1):
            address = addresses[index]
            if address is None:
                return None
            if not self._trusted(address):
                return index
        return 0 if addresses else None
