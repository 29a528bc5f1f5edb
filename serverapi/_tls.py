"""TLS: checking certificate files early and building the server's OpenSSL context factory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet.ssl import ContextFactory
from twisted.web.iweb import IRequest

# Forward-secret AEAD suites only, for TLS 1.2 (TLS 1.3 suites are fixed and all good).
TLS12_CIPHERS = (
    b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    b"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
)


def _check_readable(name: str, path: object) -> str:
    """Return C{path} as a string once it names a readable file, else raise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path, not {type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str path")
    if not os.path.isfile(text):
        raise FileNotFoundError(f"{name} {text!r} does not exist or is not a file")
    if not os.access(text, os.R_OK):
        raise FileNotFoundError(f"{name} {text!r} is not readable")
    return text


PARAMETER_NAMES = {"certfile": "certfile", "keyfile": "keyfile", "cafile": "cafile"}


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """The PEM files TLS is served from: certificate (chain), key, and optional client CA."""

    certfile: str
    keyfile: str
    cafile: str | None = None

    @classmethod
    def from_params(cls, certfile: Any = None, keyfile: Any = None, cafile: Any = None, *,
                    names: Mapping[str, str] | None = None) -> TLSFiles | None:
        """Validate C{setConnectionSecurityParams}' arguments; C{None} means plain HTTP.

        Errors name the files as C{names} says (the daemon passes its option names), so that
        a message is built with the right words rather than edited afterwards.
        """
        cert, key, ca = (dict(PARAMETER_NAMES, **(names or {}))[name]
                         for name in ("certfile", "keyfile", "cafile"))
        if (certfile is None) != (keyfile is None):
            raise ValueError(f"{cert} and {key} must be given together")
        if certfile is None:
            if cafile is not None:
                raise ValueError(f"{ca} requires {cert} and {key}")
            return None
        files = cls(_check_readable(cert, certfile), _check_readable(key, keyfile),
                    None if cafile is None else _check_readable(ca, cafile))
        ServerContextFactory(files, (cert, key, ca))  # loads it all now: bad files fail here
        return files


class ServerContextFactory(ContextFactory):
    """The server's TLS context: TLS 1.2+, no compression, modern ciphers, optional mTLS.

    A context factory in Twisted's public sense (one C{getContext()}), whose context is built
    and checked once, when it is made: a bad file is a C{ValueError} then, never at the first
    handshake.
    """

    isClient = 0

    def __init__(self, files: TLSFiles,
                 names: tuple[str, str, str] = ("certfile", "keyfile", "cafile")) -> None:
        self.files = files
        self._context = self._build(files, *names)

    def getContext(self) -> SSL.Context:
        """The one context every connection uses."""
        return self._context

    @staticmethod
    def _build(files: TLSFiles, cert: str, key: str, ca: str) -> SSL.Context:
        """Make the context, raising C{ValueError} on any bad file or mismatch."""
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE
                            | SSL.OP_NO_RENEGOTIATION)
        try:
            context.set_cipher_list(TLS12_CIPHERS)
            context.use_certificate_chain_file(files.certfile)
        except SSL.Error as error:
            raise ValueError(f"{cert} {files.certfile!r} is not a PEM certificate: "
                             f"{_reason(error)}") from None
        try:
            context.use_privatekey_file(files.keyfile)
            context.check_privatekey()
        except SSL.Error as error:
            raise ValueError(f"{key} {files.keyfile!r} is not a PEM private key matching "
                             f"the certificate: {_reason(error)}") from None
        if files.cafile is not None:
            try:
                context.load_verify_locations(files.cafile)
                with open(files.cafile, "rb") as handle:
                    crypto.load_certificate(crypto.FILETYPE_PEM, handle.read())
            except (SSL.Error, crypto.Error) as error:
                raise ValueError(f"{ca} {files.cafile!r} is not a PEM CA certificate: "
                                 f"{_reason(error)}") from None
            context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verified)
        return context


def _verified(connection: Any, certificate: Any, errno: int, depth: int, ok: int) -> bool:
    """Accept exactly what OpenSSL's chain verification accepted."""
    return bool(ok)


def _reason(error: Exception) -> str:
    """A short text for an OpenSSL error."""
    return str(error.args[0] if error.args else error) or type(error).__name__


def peer_certificate_subject(request: IRequest) -> str | None:
    """The verified client certificate's subject (RFC 4514), or C{None} without one."""
    transport = getattr(getattr(request, "channel", None), "transport", None)
    get = getattr(transport, "getPeerCertificate", None)
    certificate = get() if get is not None else None
    if certificate is None:
        return None
    return certificate.to_cryptography().subject.rfc4514_string()
