"""Trusted proxies in memory: the client address and scheme behind X-Forwarded-* / Forwarded."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig
from serverapi._proxies import parse_trusted_proxies

from .helpers import CREDENTIALS, MemoryServer, echo, request_bytes, status_of

PROXY = IPv4Address("TCP", "10.0.0.1", 40000)
STRANGER = IPv4Address("TCP", "198.51.100.77", 40000)
ALICE = json.dumps({"username": "alice", "password": "password123"}).encode()
WRONG = json.dumps({"username": "alice", "password": "guess"}).encode()


def login(server: MemoryServer, extra: bytes, address: Any, body: bytes = ALICE) -> bytes:
    """Send a login with extra header lines from C{address}; return the raw answer."""
    answer, _ = server.raw(request_bytes("/login", body, extra=extra), address)
    return answer


def last_peer(server: MemoryServer) -> str | None:
    """The client address of the newest session."""
    return server.service.getSessions()[-1].peer_address


# (description, header lines from the proxy, the client address the server must see)
CASES: list[tuple[str, bytes, str]] = [
    ("no forwarding header", b"", "10.0.0.1"),
    ("one address", b"X-Forwarded-For: 203.0.113.5\r\n", "203.0.113.5"),
    ("spoofed left part ignored", b"X-Forwarded-For: 192.0.2.1, 203.0.113.5\r\n",
     "203.0.113.5"),
    ("trusted hops skipped", b"X-Forwarded-For: 192.0.2.1, 203.0.113.5, 10.0.0.2\r\n",
     "203.0.113.5"),
    ("every hop trusted", b"X-Forwarded-For: 10.0.0.3, 10.0.0.2\r\n", "10.0.0.3"),
    ("two header lines", b"X-Forwarded-For: 192.0.2.1\r\nX-Forwarded-For: 203.0.113.5\r\n",
     "203.0.113.5"),
    ("IPv4 with a port", b"X-Forwarded-For: 203.0.113.5:5555\r\n", "203.0.113.5"),
    ("IPv6", b"X-Forwarded-For: 2001:db8::1\r\n", "2001:db8::1"),
    ("bracketed IPv6 with a port", b"X-Forwarded-For: [2001:db8::1]:4711\r\n", "2001:db8::1"),
    ("IPv4-mapped IPv6", b"X-Forwarded-For: ::ffff:203.0.113.5\r\n", "203.0.113.5"),
    ("malformed", b"X-Forwarded-For: not-an-address\r\n", "10.0.0.1"),
    ("one malformed hop", b"X-Forwarded-For: 203.0.113.5, garbage\r\n", "10.0.0.1"),
    # What stands left of the client is the client's to write: it neither hides the client
    # (who would then share the proxy's throttle count with everyone) nor counts.
    ("client's junk left of it", b"X-Forwarded-For: garbage, 203.0.113.5\r\n", "203.0.113.5"),
    ("client's junk, then trusted hops",
     b"X-Forwarded-For: x, 203.0.113.5, 10.0.0.2\r\n", "203.0.113.5"),
    ("Forwarded, client's junk left of it", b"Forwarded: for=unknown, for=203.0.113.5\r\n",
     "203.0.113.5"),
    ("Forwarded, a malformed element left of it", b"Forwarded: junk, for=203.0.113.5\r\n",
     "203.0.113.5"),
    ("Forwarded, an element without for left of it",
     b"Forwarded: by=198.51.100.1, for=203.0.113.5\r\n", "203.0.113.5"),
    ("Forwarded, a malformed pair left of it", b"Forwarded: for=1.2.3.4;x, for=203.0.113.5\r\n",
     "203.0.113.5"),
    ("empty", b"X-Forwarded-For: \r\n", "10.0.0.1"),
    ("broken bracket", b"X-Forwarded-For: [2001:db8::1\r\n", "10.0.0.1"),
    ("Forwarded", b"Forwarded: for=192.0.2.60;proto=http;by=203.0.113.43\r\n", "192.0.2.60"),
    ("Forwarded IPv6", b'Forwarded: for="[2001:db8:cafe::17]:4711"\r\n', "2001:db8:cafe::17"),
    ("Forwarded chain", b"Forwarded: for=192.0.2.1, for=203.0.113.5, for=10.0.0.2\r\n",
     "203.0.113.5"),
    ("Forwarded unknown", b"Forwarded: for=unknown\r\n", "10.0.0.1"),
    ("Forwarded without for", b"Forwarded: proto=https\r\n", "10.0.0.1"),
    ("Forwarded malformed", b"Forwarded: for\r\n", "10.0.0.1"),
    ("X-Forwarded-For preferred", b"Forwarded: for=192.0.2.60\r\n"
                                  b"X-Forwarded-For: 203.0.113.5\r\n", "203.0.113.5"),
]


class ClientAddressTests(SynchronousTestCase):
    """Who the client is, as sessions, logs and the throttle see it."""

    def setUp(self) -> None:
        self.server = MemoryServer(trusted_proxies=["10.0.0.0/8"])

    def test_table(self) -> None:
        """Each forwarding header gives its client address, never an error."""
        for name, extra, expected in CASES:
            answer = login(self.server, extra, PROXY)
            self.assertEqual(status_of(answer), 200, (name, answer))
            self.assertEqual(last_peer(self.server), expected, name)

    def test_untrusted_peer_ignored(self) -> None:
        """From a peer that is not a trusted proxy the headers mean nothing."""
        answer = login(self.server, b"X-Forwarded-For: 203.0.113.5\r\n"
                                    b"X-Forwarded-Proto: https\r\n", STRANGER)
        self.assertEqual(status_of(answer), 200)
        self.assertEqual(last_peer(self.server), "198.51.100.77")
        self.assertNotIn(b"Secure", answer)
        self.assertNotIn(b"Strict-Transport-Security", answer)

    def test_no_trusted_proxies(self) -> None:
        """By default no proxy is trusted."""
        server = MemoryServer()
        login(server, b"X-Forwarded-For: 203.0.113.5\r\n", PROXY)
        self.assertEqual(last_peer(server), "10.0.0.1")

    def test_audit_log_names_client(self) -> None:
        """The audit log names the forwarded client."""
        login(self.server, b"X-Forwarded-For: 203.0.113.5\r\n", PROXY)
        self.assertIn("Login: user='alice' peer=203.0.113.5", self.server.log.text)

    def test_forwarded_https(self) -> None:
        """A trusted proxy's https makes the cookie Secure and adds HSTS; http does not."""
        secure = login(self.server, b"X-Forwarded-For: 203.0.113.5\r\n"
                                    b"X-Forwarded-Proto: https\r\n", PROXY)
        self.assertIn(b"; Secure", secure)
        self.assertIn(b"Strict-Transport-Security: max-age=31536000", secure)
        forwarded = login(self.server, b"Forwarded: for=203.0.113.5;proto=https\r\n", PROXY)
        self.assertIn(b"; Secure", forwarded)
        for extra in (b"X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: http\r\n",
                      b"X-Forwarded-For: 203.0.113.5\r\nX-Forwarded-Proto: gopher\r\n"):
            self.assertNotIn(b"; Secure", login(self.server, extra, PROXY))

    def test_unix_peer(self) -> None:
        """A Unix-socket peer is trusted only with "unix" in the list."""
        unix = UNIXAddress(b"/run/api.sock")
        for trusted, expected in ((["unix"], "203.0.113.5"), (["10.0.0.0/8"], None)):
            server = MemoryServer(trusted_proxies=trusted)
            login(server, b"X-Forwarded-For: 203.0.113.5\r\n", unix)
            peer = last_peer(server)
            if expected is None:
                self.assertNotEqual(peer, "203.0.113.5")
            else:
                self.assertEqual(peer, expected)

    def test_ipv6_proxy(self) -> None:
        """A proxy trusted by an IPv6 network is looked through."""
        server = MemoryServer(trusted_proxies=["::1"])
        login(server, b"X-Forwarded-For: 203.0.113.5\r\n", IPv6Address("TCP", "::1", 1))
        self.assertEqual(last_peer(server), "203.0.113.5")

    def test_configuration(self) -> None:
        """Addresses, networks and "unix" are accepted; anything else is a clear error."""
        self.assertEqual(parse_trusted_proxies(["127.0.0.1", "10.0.0.0/8", "::1", "unix"]),
                         ("127.0.0.1", "10.0.0.0/8", "::1", "unix"))
        for bad, error in [(["proxy.example.com"], ValueError), (["10.0.0.0/33"], ValueError),
                           ("127.0.0.1", TypeError), ([None], TypeError), (7, TypeError)]:
            with self.assertRaises(error, msg=repr(bad)):
                ServerConfig(credentials=CREDENTIALS, request_callback=echo,
                             trusted_proxies=bad)


class LockoutTests(SynchronousTestCase):
    """No malicious lockout behind a proxy."""

    def setUp(self) -> None:
        self.server = MemoryServer(trusted_proxies=["10.0.0.0/8"])

    def test_guessing_from_elsewhere(self) -> None:
        """50 failures for alice from one address; alice still logs in from another."""
        attacker = b"X-Forwarded-For: 198.51.100.1\r\n"
        statuses = [status_of(login(self.server, attacker, PROXY, WRONG)) for _ in range(50)]
        self.assertEqual(statuses[:5], [401] * 5)
        self.assertEqual(set(statuses[5:]), {429})
        self.assertEqual(status_of(login(self.server, attacker, PROXY)), 429)
        home = b"X-Forwarded-For: 198.51.100.2\r\n"
        self.assertEqual(status_of(login(self.server, home, PROXY)), 200)

    def test_proxy_is_not_everyone(self) -> None:
        """Failures from many clients through one proxy do not throttle the next client."""
        for index in range(60):
            extra = b"X-Forwarded-For: 198.51.100.%d\r\n" % index
            self.assertEqual(status_of(login(self.server, extra, PROXY, WRONG)), 401)
        fresh = b"X-Forwarded-For: 198.51.100.200\r\n"
        self.assertEqual(status_of(login(self.server, fresh, PROXY)), 200)

    def test_distributed_guessing(self) -> None:
        """Past 100 x login_attempts failures for one user in the window, the user waits."""
        server = MemoryServer(trusted_proxies=["10.0.0.0/8"], login_attempts=2)
        for index in range(200):
            extra = b"X-Forwarded-For: 198.51.%d.%d\r\n" % (index // 100, index % 100)
            self.assertEqual(status_of(login(server, extra, PROXY, WRONG)), 401)
        elsewhere = b"X-Forwarded-For: 192.0.2.1\r\n"
        self.assertEqual(status_of(login(server, elsewhere, PROXY)), 429)
        other_user = json.dumps({"username": "bob", "password": "securepassword"}).encode()
        self.assertEqual(status_of(login(server, elsewhere, PROXY, other_user)), 200)
