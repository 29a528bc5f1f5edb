"""Talk to serverapi from Python with requests, httpx and treq, over TLS with a client
certificate (or plain HTTP).

    python examples/tls_server.py tls-example &          # serves https://127.0.0.1:8443
    python examples/clients.py https://127.0.0.1:8443 tls-example

Each client logs in (the session cookie is kept by the client's cookie jar), sends one message
to /communicate and logs out.  `python examples/clients.py http://127.0.0.1:8000` does the same
with examples/echo_server.py.  Two TLS pitfalls are handled here:

- requests: REQUESTS_CA_BUNDLE (or CURL_CA_BUNDLE) in the environment silently *replaces* a
  session's C{verify=} CA file, so a private CA stops being trusted ("certificate verify
  failed").  Turn the environment off for the session (C{trust_env = False}), or pass
  C{verify=} on every request.
- httpx 0.28: with C{verify="ca.pem"} (a string) the C{cert=} client certificate is silently
  dropped, so a server that requires one fails the handshake.  Build an C{ssl.SSLContext} with
  the CA and the client certificate, and pass that as C{verify=}.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from http.cookiejar import CookieJar
from typing import Any

from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

CREDENTIALS = {"username": "alice", "password": "password123"}


def tls_files(folder: str | None) -> tuple[str | None, str | None, str | None]:
    """The CA, client certificate and client key that examples/tls_server.py made."""
    if folder is None:
        return None, None, None
    return (os.path.join(folder, "ca.pem"), os.path.join(folder, "client.pem"),
            os.path.join(folder, "client-key.pem"))


def with_requests(base: str, ca: str | None = None, cert: str | None = None,
                  key: str | None = None) -> list[Any]:
    """requests: a Session keeps the cookie; json= sets Content-Type: application/json."""
    import requests

    with requests.Session() as session:
        session.trust_env = False  # else REQUESTS_CA_BUNDLE would replace session.verify
        if ca is not None:
            session.verify = ca
        if cert is not None:
            session.cert = (cert, key)
        login = session.post(f"{base}/login", json=CREDENTIALS, timeout=10)
        talk = session.post(f"{base}/communicate", json={"message": "hello"}, timeout=10)
        bye = session.post(f"{base}/logout", timeout=10)
        return [login.status_code, talk.json(), bye.status_code]


def with_httpx(base: str, ca: str | None = None, cert: str | None = None,
               key: str | None = None) -> list[Any]:
    """httpx: an SSLContext carries both the CA and the client certificate."""
    import httpx

    verify: ssl.SSLContext | bool = True
    if ca is not None:
        verify = ssl.create_default_context(cafile=ca)  # not verify=ca: that drops cert=
        if cert is not None:
            verify.load_cert_chain(cert, key)
    with httpx.Client(base_url=base, verify=verify, timeout=10) as client:
        login = client.post("/login", json=CREDENTIALS)
        talk = client.post("/communicate", json={"message": "hello"})
        bye = client.post("/logout")
        return [login.status_code, talk.json(), bye.status_code]


def with_treq(base: str, ca: str | None = None, cert: str | None = None,
              key: str | None = None) -> list[Any]:
    """treq on the Twisted reactor: an HTTPClient with a cookie jar, and an Agent whose TLS
    options trust the CA and present the client certificate."""
    from twisted.internet.task import react

    results: list[Any] = []

    async def run(reactor: Any) -> None:
        """Log in, talk, log out."""
        from treq.client import HTTPClient
        from twisted.web.client import Agent, BrowserLikePolicyForHTTPS

        policy: Any = BrowserLikePolicyForHTTPS()
        if ca is not None:
            policy = _ClientCertificatePolicy(ca, cert, key)
        client = HTTPClient(Agent(reactor, contextFactory=policy), cookiejar=CookieJar())
        login = await client.post(f"{base}/login", json=CREDENTIALS)
        await login.content()
        talk = await client.post(f"{base}/communicate", json={"message": "hello"})
        answer = await talk.json()
        bye = await client.post(f"{base}/logout")
        await bye.content()
        results.extend([login.code, answer, bye.code])

    try:
        react(lambda reactor: _deferred(run(reactor)))
    except SystemExit as exit:  # react() ends the process's reactor with SystemExit
        if exit.code:
            raise
    return results


def _deferred(coroutine: Any) -> Any:
    """A coroutine as a Deferred (for react)."""
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coroutine)


@implementer(IPolicyForHTTPS)
class _ClientCertificatePolicy:
    """TLS client options for treq's Agent: trust C{ca}, present C{cert}/C{key}."""

    def __init__(self, ca: str, cert: str | None, key: str | None) -> None:
        from twisted.internet.ssl import Certificate, PrivateCertificate

        with open(ca, "rb") as handle:
            self._trust = Certificate.loadPEM(handle.read())
        self._client = None
        if cert is not None and key is not None:
            with open(cert, "rb") as certificate, open(key, "rb") as private:
                self._client = PrivateCertificate.loadPEM(certificate.read() + private.read())

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        """The TLS options for one server."""
        from twisted.internet.ssl import optionsForClientTLS

        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._trust,
                                   clientCertificate=self._client)


def main() -> None:
    """Run every client against the URL given, with the TLS folder given (if any)."""
    base = sys.argv[1] if len(sys.argv) > 1 else "https://127.0.0.1:8443"
    folder = sys.argv[2] if len(sys.argv) > 2 else ("tls-example" if base.startswith("https")
                                                    else None)
    files = tls_files(folder)
    results = {"requests": with_requests(base, *files), "httpx": with_httpx(base, *files),
               "treq": with_treq(base, *files)}
    print(json.dumps(results))


if __name__ == "__main__":
    main()
