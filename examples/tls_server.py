"""Serve over TLS and require client certificates, with throwaway certificates made here.

    python examples/tls_server.py [FOLDER]

makes a CA, a server certificate for 127.0.0.1/localhost and a client certificate for "alice"
in FOLDER (default ./tls-example), then serves on https://127.0.0.1:8443 accepting only clients
whose certificate that CA signed.  It prints the curl commands that talk to it.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from serverapi import ThreadedAPIServer


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(subject: str, issuer_name: x509.Name, issuer_key: ec.EllipticCurvePrivateKey,
           key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
           sans: list[x509.GeneralName] | None = None,
           usage: list[x509.ObjectIdentifier] | None = None) -> x509.Certificate:
    """Sign a certificate for C{key} valid for 30 days."""
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(folder: str, name: str, data: bytes) -> str:
    path = os.path.join(folder, name)
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)
    return path


def make_certificates(folder: str) -> dict[str, str]:
    """Create the CA, server and client files in C{folder}; return their paths."""
    os.makedirs(folder, exist_ok=True)
    pem = serialization.Encoding.PEM
    private = dict(encoding=pem, format=serialization.PrivateFormat.PKCS8,
                   encryption_algorithm=serialization.NoEncryption())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _issue("serverapi example CA", _name("serverapi example CA"), ca_key, ca_key,
                     ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue("localhost", ca_cert.subject, ca_key, server_key,
                         sans=[x509.DNSName("localhost"),
                               x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                         usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue("alice", ca_cert.subject, ca_key, client_key,
                         usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
    return {
        "ca": _write(folder, "ca.pem", ca_cert.public_bytes(pem)),
        "server_cert": _write(folder, "server.pem", server_cert.public_bytes(pem)),
        "server_key": _write(folder, "server-key.pem", server_key.private_bytes(**private)),
        "client_cert": _write(folder, "client.pem", client_cert.public_bytes(pem)),
        "client_key": _write(folder, "client-key.pem", client_key.private_bytes(**private)),
    }


def handle(username, session_token, data):
    """Echo the message back."""
    return (False, False, {"echo": data.get("message", ""), "user": username})


def main() -> None:
    folder = sys.argv[1] if len(sys.argv) > 1 else "tls-example"
    files = make_certificates(folder)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = ThreadedAPIServer("127.0.0.1", 8443, {"alice": "password123"}, handle)
    server.setConnectionSecurityParams(certfile=files["server_cert"],
                                       keyfile=files["server_key"], cafile=files["ca"])
    tls = f"--cacert {files['ca']} --cert {files['client_cert']} --key {files['client_key']}"
    print(f"""Serving https://127.0.0.1:8443 (client certificates required). Try:
  curl {tls} -c cookies.txt -H 'Content-Type: application/json' \\
       -d '{{"username": "alice", "password": "password123"}}' https://127.0.0.1:8443/login
  curl {tls} -b cookies.txt -H 'Content-Type: application/json' \\
       -d '{{"message": "hello"}}' https://127.0.0.1:8443/communicate""", flush=True)
    try:
        server.startAPIServer()
    except KeyboardInterrupt:
        server.stopAPIServer()


if __name__ == "__main__":
    main()
