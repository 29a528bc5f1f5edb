"""Real TLS handshakes against ThreadedAPIServer, run in a child process by test_tls."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import sys
import tempfile
import time
from typing import Any

from serverapi import ThreadedAPIServer

from .certificates import Certificates
from .helpers import RecordingHandler
from .scenarios import ScenarioSet

scenario = ScenarioSet()
CERTS = Certificates(tempfile.mkdtemp())
CREDENTIALS = {"alice": "password123"}
LOGIN = json.dumps({"username": "alice", "password": "password123"})


def callback(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """Echo."""
    return False, False, {"echo": data}


def tls_server(mutual: bool = False, **options: Any) -> tuple[ThreadedAPIServer,
                                                               RecordingHandler]:
    """A started TLS server (with client-certificate checks when C{mutual})."""
    logger = logging.getLogger(f"tls-scenario-{time.monotonic_ns()}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    handler = RecordingHandler()
    logger.addHandler(handler)
    server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, callback, logger=logger, **options)
    server.setConnectionSecurityParams(CERTS.server_cert, CERTS.server_key,
                                       CERTS.ca_cert if mutual else None)
    server.startAPIServer(block=False)
    return server, handler


def client_context(cert: tuple[str, str] | None = None,
                   version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting only the root CA (so the chain must be sent)."""
    context = ssl.create_default_context(cafile=CERTS.root_cert)
    if version is not None:
        context.minimum_version = version
        context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def login(port: int, context: ssl.SSLContext) -> dict[str, Any]:
    """Log in over TLS; return status, cookie and headers, or the error."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("POST", "/login", LOGIN, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return {"status": response.status, "cookie": response.getheader("Set-Cookie"),
                "hsts": response.getheader("Strict-Transport-Security"),
                "version": connection.sock.version() if connection.sock else None}
    except (ssl.SSLError, OSError, http.client.HTTPException) as error:
        return {"error": f"{type(error).__name__}: {error}"}
    finally:
        connection.close()


@scenario
def versions() -> Any:
    """TLS 1.2 and 1.3 succeed; the cookie is Secure and HSTS is sent."""
    server, _ = tls_server()
    with_12 = login(server.port, client_context(version=ssl.TLSVersion.TLSv1_2))
    with_13 = login(server.port, client_context(version=ssl.TLSVersion.TLSv1_3))
    server.stopAPIServer()
    return {"tls12": with_12, "tls13": with_13, "using_tls": server.isUsingTLS()}


@scenario
def old_versions_refused() -> Any:
    """A client offering only TLS 1.1 (or 1.0) is refused by the server; it keeps serving."""
    server, _ = tls_server()
    answers = {}
    for name, version in [("tls11", ssl.TLSVersion.TLSv1_1), ("tls10", ssl.TLSVersion.TLSv1)]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        context.minimum_version = version
        context.maximum_version = version
        answers[name] = login(server.port, context)
    after = login(server.port, client_context())
    server.stopAPIServer()
    return {"answers": answers, "after": after.get("status")}


@scenario
def mutual_tls() -> Any:
    """With cafile: a CA-signed client gets in; none, a stranger's or an expired one do not."""
    server, handler = tls_server(mutual=True)
    answers = {
        "none": login(server.port, client_context()),
        "stranger": login(server.port, client_context(CERTS.stranger)),
        "expired": login(server.port, client_context(CERTS.expired)),
        "good": login(server.port, client_context(CERTS.client)),
        "none_tls12": login(server.port, client_context(version=ssl.TLSVersion.TLSv1_2)),
    }
    subjects = [session.client_certificate_subject for session in server.getSessions()]
    server.stopAPIServer()
    log = handler.text
    return {"answers": answers, "subjects": subjects,
            "handshake_failures_logged": log.count("TLS handshake failed"),
            "key_in_log": "PRIVATE KEY" in log}


@scenario
def plain_http_to_tls_port() -> Any:
    """Plain HTTP sent to the TLS port is closed without an HTTP answer; the server goes on."""
    server, _ = tls_server()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
        try:
            received = sock.recv(4096)
        except ConnectionResetError:
            received = b""
    after = login(server.port, client_context())
    server.stopAPIServer()
    return {"http_answer": received.startswith(b"HTTP/"), "after": after.get("status")}


@scenario
def stalled_handshake() -> Any:
    """A client that connects and never says hello is closed by the idle timeout."""
    server, _ = tls_server(timeout=0.5)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            data = sock.recv(1)
        except ConnectionResetError:
            data = b""
    took = time.monotonic() - started
    after = login(server.port, client_context())
    server.stopAPIServer()
    return {"closed": data == b"", "took_under_5s": took < 5, "took_the_timeout": took >= 0.4,
            "after": after.get("status")}


@scenario
def change_while_listening() -> Any:
    """setConnectionSecurityParams while listening is a RuntimeError."""
    server, _ = tls_server()
    try:
        server.setConnectionSecurityParams()
        error = None
    except RuntimeError:
        error = "RuntimeError"
    server.stopAPIServer()
    server.setConnectionSecurityParams()
    return {"error": error, "tls_after_reset": server.isUsingTLS()}


if __name__ == "__main__":
    scenario.main(sys.argv[1:])
