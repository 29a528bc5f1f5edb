"""Throwaway certificates for the TLS tests, made with trustme."""

from __future__ import annotations

import datetime
import os

import trustme


class Certificates:
    """A server chain (root -> intermediate -> server) and client certificates, as PEM files."""

    def __init__(self, directory: str) -> None:
        self.dir = directory
        root = trustme.CA()
        intermediate = root.create_child_ca()
        server = intermediate.issue_cert("127.0.0.1", "localhost")
        client_ca = trustme.CA()
        other_ca = trustme.CA()
        now = datetime.datetime.now(datetime.timezone.utc)
        self.root_cert = self._write("root.pem", root.cert_pem.bytes())
        self.server_cert = self._write(
            "server-chain.pem", b"".join(blob.bytes() for blob in server.cert_chain_pems))
        self.server_leaf = self._write("server-leaf.pem", server.cert_chain_pems[0].bytes())
        self.server_key = self._write("server-key.pem", server.private_key_pem.bytes())
        self.ca_cert = self._write("client-ca.pem", client_ca.cert_pem.bytes())
        self.client = self._pair("client", client_ca.issue_cert(
            "alice@example.test", common_name="alice"))
        self.stranger = self._pair("stranger", other_ca.issue_cert(
            "mallory@example.test", common_name="mallory"))
        self.expired = self._pair("expired", client_ca.issue_cert(
            "old@example.test", common_name="old", not_before=now - datetime.timedelta(days=10),
            not_after=now - datetime.timedelta(days=1)))
        other_key = trustme.CA().issue_cert("localhost")
        self.wrong_key = self._write("wrong-key.pem", other_key.private_key_pem.bytes())
        self.not_pem = self._write("not.pem", b"this is not a certificate\n")

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as handle:
            handle.write(data)
        return path

    def _pair(self, name: str, cert: trustme.LeafCert) -> tuple[str, str]:
        """Write a client certificate and key; return (cert path, key path)."""
        return (self._write(f"{name}-cert.pem", cert.cert_chain_pems[0].bytes()),
                self._write(f"{name}-key.pem", cert.private_key_pem.bytes()))
