"""A real redis-server for the tests: on a free port, in a temporary folder, stopped, paused and
started again at will, its data kept on disk (append-only file) across restarts."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any

from serverapi._store_address import StoreAddress
from serverapi._store_probe import BlockingRedis

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
_START_WAIT = 10.0


def redis_missing() -> str | None:
    """Why the tests cannot start a Redis server, or None when they can."""
    if not os.access(REDIS_SERVER, os.X_OK):
        return "redis-server is not installed (Debian package redis-server)"
    return None


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One redis-server process (started by L{start}), with a blocking client for checks."""

    def __init__(self, *, password: str | None = None, folder: str | None = None,
                 fsync: str = "always", tls: bool = False) -> None:
        """C{fsync}: Redis's appendfsync, "always" in the tests (a stop and start loses
        nothing), "everysec" (Redis's own default for the append-only file) in benchmarks.
        C{tls}: serve TLS only, with a certificate for "localhost" from a throwaway CA whose
        PEM file is C{ca_file}."""
        self.folder = folder or tempfile.mkdtemp(prefix="serverapi-redis-")
        self.port = free_port()
        self.password = password
        self.fsync = fsync
        self.tls = tls
        self.ca_file: str | None = None
        if tls:
            import trustme

            authority = trustme.CA()
            self.ca_file = os.path.join(self.folder, "ca.pem")
            authority.cert_pem.write_to_path(self.ca_file)
            served = authority.issue_cert("localhost")
            served.private_key_pem.write_to_path(os.path.join(self.folder, "key.pem"))
            served.cert_chain_pems[0].write_to_path(os.path.join(self.folder, "cert.pem"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL serverapi is given."""
        secret = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{secret}localhost:{self.port}/0?ca={self.ca_file}"
        return f"redis://{secret}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start (or start again) and wait until it answers."""
        listening = ["--port", str(self.port)]
        if self.tls:
            listening = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                         "cert.pem", "--tls-key-file", "key.pem", "--tls-ca-cert-file", "ca.pem",
                         "--tls-auth-clients", "no"]
        arguments = [REDIS_SERVER, *listening, "--bind", "127.0.0.1",
                     "--dir", self.folder, "--save", "", "--appendonly", "yes",
                     "--appendfsync", self.fsync, "--logfile", "redis.log"]
        if self.password:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(arguments, cwd=self.folder, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + _START_WAIT
        while True:
            try:
                self.command("PING")
                return self
            except (OSError, RuntimeError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on {self.port}: "
                                       f"{self.log()}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (it writes its data first) and wait until it has exited."""
        if self.process is not None and self.process.poll() is None:
            self.resume()
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """Freeze it: connections stay open, nothing answers (a hung server)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Unfreeze it after L{pause}."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def command(self, *args: str) -> Any:
        """Run one command over a fresh blocking connection."""
        host = "localhost" if self.tls else "127.0.0.1"
        client = BlockingRedis(StoreAddress(host, self.port, 0, None, self.password, self.tls,
                                            self.ca_file), timeout=5)
        try:
            return client.command(*args)
        finally:
            client.close()

    def keys(self) -> list[str]:
        """Every key in database 0, sorted."""
        return sorted(key.decode() for key in self.command("KEYS", "*"))

    def log(self) -> str:
        """The server's own log (for failure messages)."""
        try:
            with open(os.path.join(self.folder, "redis.log"), encoding="utf-8",
                      errors="replace") as log:
                return log.read()[-2000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Stop it and remove its folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
