"""A TLS client on the system's libssl through ctypes, for what Python's ssl cannot send.

The standard library's C{ssl} has no call to send a TLS 1.3 key update, which a hostile client
can send as often as it likes.  This client drives OpenSSL itself, on memory BIOs, so tests can
send them to the server's TLS layer.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any


def _open(*names: str | None) -> Any:
    """The first of the shared libraries C{names} that loads, or C{None}."""
    for name in names:
        if name:
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
    return None


def _load() -> tuple[Any, Any] | None:
    """libssl and libcrypto with the calls used here typed, or C{None} without them."""
    ssl = _open(ctypes.util.find_library("ssl"), "libssl.so.3")
    crypto = _open(ctypes.util.find_library("crypto"), "libcrypto.so.3")
    if ssl is None or crypto is None or not hasattr(ssl, "SSL_key_update"):  # OpenSSL < 1.1.1
        return None
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    signatures: list[tuple[Any, str, Any, list[Any]]] = [
        (ssl, "TLS_client_method", pointer, []),
        (ssl, "SSL_CTX_new", pointer, [pointer]),
        (ssl, "SSL_CTX_free", None, [pointer]),
        (ssl, "SSL_new", pointer, [pointer]),
        (ssl, "SSL_free", None, [pointer]),
        (ssl, "SSL_set_bio", None, [pointer, pointer, pointer]),
        (ssl, "SSL_set_connect_state", None, [pointer]),
        (ssl, "SSL_do_handshake", integer, [pointer]),
        (ssl, "SSL_write", integer, [pointer, ctypes.c_char_p, integer]),
        (ssl, "SSL_read", integer, [pointer, ctypes.c_char_p, integer]),
        (ssl, "SSL_key_update", integer, [pointer, integer]),
        (crypto, "BIO_s_mem", pointer, []),
        (crypto, "BIO_new", pointer, [pointer]),
        (crypto, "BIO_write", integer, [pointer, ctypes.c_char_p, integer]),
        (crypto, "BIO_read", integer, [pointer, ctypes.c_char_p, integer]),
        (crypto, "BIO_ctrl_pending", ctypes.c_size_t, [pointer]),
    ]
    for library, name, result, arguments in signatures:
        function = getattr(library, name)
        function.restype, function.argtypes = result, arguments
    return ssl, crypto


LIBRARIES = _load()


class RawTLSClient:
    """A TLS client (no certificate check: the server's TLS layer is what is tested) whose
    records are read from L{outgoing} and fed through L{incoming}."""

    def __init__(self) -> None:
        assert LIBRARIES is not None, "libssl is not available"
        self._ssl_lib, self._crypto = LIBRARIES
        context = self._ssl_lib.SSL_CTX_new(self._ssl_lib.TLS_client_method())
        self._ssl = self._ssl_lib.SSL_new(context)
        self._ssl_lib.SSL_CTX_free(context)  # the connection holds its own reference
        self._read_bio = self._crypto.BIO_new(self._crypto.BIO_s_mem())
        self._write_bio = self._crypto.BIO_new(self._crypto.BIO_s_mem())
        self._ssl_lib.SSL_set_bio(self._ssl, self._read_bio, self._write_bio)
        self._ssl_lib.SSL_set_connect_state(self._ssl)

    def close(self) -> None:
        """Free the connection (and its BIOs)."""
        self._ssl_lib.SSL_free(self._ssl)

    def handshake(self) -> bool:
        """Go on with the handshake; whether it is complete."""
        return bool(self._ssl_lib.SSL_do_handshake(self._ssl) == 1)

    def outgoing(self) -> bytes:
        """The records written since the last call."""
        size = self._crypto.BIO_ctrl_pending(self._write_bio)
        if not size:
            return b""
        buffer = ctypes.create_string_buffer(size)
        read = self._crypto.BIO_read(self._write_bio, buffer, size)
        return buffer.raw[:read]

    def incoming(self, data: bytes) -> None:
        """Records from the server."""
        if data:
            self._crypto.BIO_write(self._read_bio, data, len(data))

    def write(self, data: bytes) -> None:
        """Send application data."""
        assert self._ssl_lib.SSL_write(self._ssl, data, len(data)) == len(data)

    def read(self) -> bytes:
        """The application data that has arrived (as much as one call gives)."""
        buffer = ctypes.create_string_buffer(65536)
        read = self._ssl_lib.SSL_read(self._ssl, buffer, len(buffer))
        return buffer.raw[:read] if read > 0 else b""

    def key_update(self) -> None:
        """Send a TLS 1.3 key update that asks the server to update its keys too."""
        assert self._ssl_lib.SSL_key_update(self._ssl, 1) == 1  # SSL_KEY_UPDATE_REQUESTED
        self._ssl_lib.SSL_do_handshake(self._ssl)  # writes it
