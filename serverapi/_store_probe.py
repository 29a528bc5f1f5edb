"""A blocking check that the session store answers, for the daemon before its reactor runs.

twistd reports a failed start to the shell only for errors raised before the reactor runs, and
txredisapi needs the reactor: so the daemon asks the store once, synchronously, with this small
RESP client (connect, AUTH, SELECT, PING), and a store that cannot be reached is a one-line
error at start.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from ._store import SessionStoreUnavailable
from ._store_address import StoreAddress


class BlockingRedis:
    """One blocking connection speaking RESP: enough to log in and ask simple questions."""

    def __init__(self, address: StoreAddress, timeout: float) -> None:
        connection = socket.create_connection((address.host, address.port), timeout=timeout)
        if address.tls:
            context = ssl.create_default_context(cafile=address.ca_file)
            connection = context.wrap_socket(connection, server_hostname=address.host)
        self._socket = connection
        self._reader = connection.makefile("rb")
        if address.password is not None:
            login = ([address.username] if address.username else []) + [address.password]
            self.command("AUTH", *login)
        if address.db:
            self.command("SELECT", str(address.db))

    def command(self, *args: str | bytes) -> Any:
        """Send one command and return its reply; an error reply raises C{RuntimeError}."""
        parts = [arg.encode("utf-8", "surrogatepass") if isinstance(arg, str) else arg
                 for arg in args]
        self._socket.sendall(b"*%d\r\n" % len(parts) + b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part) for part in parts))
        return self._reply()

    def _reply(self) -> Any:
        """Read one reply."""
        line = self._reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("the connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode("latin-1")
        if kind == b"-":
            raise RuntimeError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            if rest == b"-1":
                return None
            data = self._reader.read(int(rest) + 2)
            return data[:-2]
        if kind == b"*":
            return None if rest == b"-1" else [self._reply() for _ in range(int(rest))]
        raise ConnectionError(f"not a Redis reply: {line[:40]!r}")

    def close(self) -> None:
        """Close the connection."""
        self._reader.close()
        self._socket.close()


def probe_store(address: StoreAddress, timeout: float) -> None:
    """Raise L{SessionStoreUnavailable} (one line) unless the store answers a PING."""
    try:
        client = BlockingRedis(address, timeout)
        try:
            client.command("PING")
        finally:
            client.close()
    except (OSError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or " ".join(str(error).split()) or (
            type(error).__name__)
        raise SessionStoreUnavailable(
            f"cannot reach the session store {address}: {reason}") from None
