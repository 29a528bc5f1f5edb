"""Sliding-window counters of failed logins per (username, address), address and username."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_TRACKED_KEYS = 100_000
# Peer addresses are counted per IPv6 /64: one host usually holds a whole /64, so counting
# single IPv6 addresses would give an attacker 2**64 fresh counters.
IPV6_GROUP_PREFIX = 64
PEERS_PER_USER_FACTOR = 10
USERS_PER_ADDRESS_FACTOR = 100
# Addresses whose group is remembered: parsing one costs about 3 microseconds, and a login asks
# twice (before and after its check), while the addresses a server sees at once are few.
ADDRESS_GROUPS_REMEMBERED = 4096


def _digest(*parts: str) -> bytes:
    """A fixed-size key for text of any length (usernames can be as long as a login body)."""
    hasher = hashlib.blake2b(digest_size=16)
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
    return hasher.digest()


@functools.lru_cache(maxsize=ADDRESS_GROUPS_REMEMBERED)
def address_group(address: str) -> str:
    """The unit an address is throttled as: itself, or its /64 for IPv6 (the latest few
    thousand answers remembered)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_GROUP_PREFIX}", strict=False))
    return str(parsed)


class _FailureWindow:
    """Failure times per key within a sliding window, each key keeping at most C{limit}.

    Keys are kept in order of their latest failure, so keys whose failures all lie outside the
    window sit at the front and are pruned as new failures arrive: memory follows the failures
    of one window, never the whole history, and never more than C{max_keys} keys.
    """

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._failures: OrderedDict[Hashable, list[float]] = OrderedDict()

    def retry_after(self, key: Hashable, now: float) -> float:
        """Seconds until C{key} may try again, or 0 when it is not throttled."""
        times = self._failures.get(key)
        if times is None:
            return 0.0
        cutoff = now - self._window
        if times[-1] <= cutoff:
            del self._failures[key]
            return 0.0
        if len(times) < self._limit or times[0] <= cutoff:
            return 0.0
        return times[0] + self._window - now

    def record(self, key: Hashable, now: float) -> None:
        """Count a failure for C{key} at C{now}, dropping keys whose failures have all expired."""
        failures = self._failures
        times = failures.get(key)
        if times is None:
            if len(failures) >= self._max_keys:
                failures.popitem(last=False)
            times = failures[key] = []
        else:
            failures.move_to_end(key)
        times.append(now)
        if len(times) > self._limit:
            del times[:-self._limit]
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget the least recently failed keys whose latest failure left the window."""
        failures = self._failures
        cutoff = now - self._window
        while failures:
            key, times = next(iter(failures.items()))
            if times[-1] > cutoff:
                return
            del failures[key]

    def forget(self, key: Hashable) -> None:
        """Drop C{key}'s failures (after a successful login)."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


class LoginThrottle:
    """Decides whether a login attempt is refused with 429, and for how long.

    Failures count three ways: per (username, address) up to C{attempts}, per address across
    usernames up to C{10 x attempts}, and per username across addresses up to
    C{100 x attempts}.  Someone guessing a user's password from elsewhere therefore does not
    lock that user out (no malicious lockout) until the per-username count shows a
    distributed attack.
    """

    def __init__(self, *, now: Callable[[], float], attempts: int, window: float,
                 max_keys: int = MAX_TRACKED_KEYS) -> None:
        self._now = now
        self._pairs = _FailureWindow(attempts, window, max_keys)
        self._addresses = _FailureWindow(PEERS_PER_USER_FACTOR * attempts, window, max_keys)
        self._users = _FailureWindow(USERS_PER_ADDRESS_FACTOR * attempts, window, max_keys)

    def retry_after(self, username: str, address: str) -> float:
        """Seconds the attempt must wait (0 to go ahead); a refusal counts as no failure."""
        now = self._now()
        group = address_group(address)
        return max(self._pairs.retry_after(_digest(username, group), now),
                   self._addresses.retry_after(group, now),
                   self._users.retry_after(_digest(username), now))

    def failed(self, username: str, address: str) -> None:
        """Record a failed login for the pair, the address and the username."""
        now = self._now()
        group = address_group(address)
        self._pairs.record(_digest(username, group), now)
        self._addresses.record(group, now)
        self._users.record(_digest(username), now)

    def succeeded(self, username: str, address: str) -> None:
        """Clear the (username, address) failures after a successful login from there.

        The per-address and per-username counts are left to age out of the window, so a
        success does not reset the count of a distributed guess at the same user.
        """
        self._pairs.forget(_digest(username, address_group(address)))

    def tracked(self) -> int:
        """How many pairs, addresses and usernames have failures on record."""
        return len(self._pairs) + len(self._addresses) + len(self._users)


class PasswordChecksUnderWay:
    """Password checks in the hash pool, per (username, address) and per address.

    The throttle counts a failure only once its check is over.  Without a bound on checks under
    way, guesses sent together would all be checked before the first failure counted, and one
    address could take every hash worker from everyone else's logins.  So a pair has at most one
    check under way and an address at most C{per_address} (on the reactor thread only).
    """

    def __init__(self, per_address: int) -> None:
        self._per_address = per_address
        self._pairs: set[bytes] = set()
        self._addresses: dict[str, int] = {}

    def start(self, username: str, address: str) -> bool:
        """Count a check about to start; whether it may (else answer 429)."""
        group = address_group(address)
        pair = _digest(username, group)
        under_way = self._addresses.get(group, 0)
        if pair in self._pairs or under_way >= self._per_address:
            return False
        self._pairs.add(pair)
        self._addresses[group] = under_way + 1
        return True

    def end(self, username: str, address: str) -> None:
        """A check that L{start} counted is over."""
        group = address_group(address)
        self._pairs.discard(_digest(username, group))
        left = self._addresses.get(group, 0) - 1
        if left > 0:
            self._addresses[group] = left
        else:
            self._addresses.pop(group, None)
