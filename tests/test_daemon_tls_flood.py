"""A real `twistd serverapi` on an `ssl:` endpoint (Twisted's TLS layer) stops reading a client
that floods TLS key updates while its request is in a callback and never reads the answers."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .certificates import Certificates
from .test_daemon import Folder, JSONLog, start_daemon
from .test_tap import handler
from .tls_raw_client import LIBRARIES, RawTLSClient

HELD = "tests.test_daemon_tls_flood:held"
# The kernel buffers of a loopback connection hold a few MiB (the server's receive buffer grows
# to at most 6 MiB by default); a server that keeps reading takes far more than this (buffering
# an answer for each update) without making the client wait, well within the callback's time.
FLOOD_CAP = 24 * 1024 * 1024


def held(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """A callback that keeps its request in hand for a while (the flood comes meanwhile)."""
    time.sleep(25)
    return handler(username, token, data)


class SSLEndpointFloodTests(SynchronousTestCase):
    """Key updates sent over a real socket to a daemon listening on `ssl:`."""

    def setUp(self) -> None:
        if LIBRARIES is None:
            if os.environ.get("CI"):
                self.fail("CI is set but libssl cannot be loaded through ctypes")
            raise self.skipTest("this test drives the system's libssl, which is missing")
        files = Folder(self)
        self.certs = Certificates(files.path)
        creds = files.write("creds.json", json.dumps({"alice": "password123"}))
        endpoint = (f"ssl:0:interface=127.0.0.1:privateKey={self.certs.server_key}"
                    f":certKey={self.certs.server_cert}:extraCertChain={self.certs.server_cert}")
        _, self.port = start_daemon(self, files, JSONLog(files("log.json")), "--credentials",
                                    creds, "--callback", HELD, "--listen", endpoint)

    def login(self) -> str:
        """Log in over TLS (certificate checked) and return the session token."""
        context = ssl.create_default_context(cafile=self.certs.root_cert)
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                                 context=context)
        connection.request("POST", "/login", body=json.dumps(
            {"username": "alice", "password": "password123"}),
            headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        self.assertEqual(answer.status, 200)
        return str(answer.getheader("Set-Cookie")).split("sessionToken=")[1].split(";")[0]

    def test_flood_makes_the_client_wait(self) -> None:
        """Once the answers fill the buffers, the daemon reads no further: the client's sends
        block well before the cap, and the daemon still serves a new client."""
        token = self.login()
        connection = socket.socket()
        self.addCleanup(connection.close)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        connection.settimeout(10)
        connection.connect(("127.0.0.1", self.port))
        client = RawTLSClient()
        self.addCleanup(client.close)
        for _ in range(10):
            done = client.handshake()
            connection.sendall(client.outgoing())
            if done:
                break
            client.incoming(connection.recv(65536))
        body = b'{"message": "hello"}'
        client.write(b"POST /communicate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nCookie: sessionToken=" + token.encode()
                     + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        connection.sendall(client.outgoing())
        connection.settimeout(1)
        sent, blocked = 0, False
        while sent < FLOOD_CAP and not blocked:
            for _ in range(200):
                client.key_update()
            updates = client.outgoing()
            try:
                connection.sendall(updates)
            except TimeoutError:
                blocked = True
            sent += len(updates)
        self.assertTrue(blocked, f"{sent} bytes of key updates were all read")
        self.assertTrue(self.login())
