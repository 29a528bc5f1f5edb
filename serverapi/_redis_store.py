"""The shared session store on Redis or Valkey, through txredisapi on the reactor.

It answers the in-memory registry's methods with Deferreds.  Every request reads the store
(one Lua script, one round trip), so a logout or an invalidation on one process holds on every
other before its next request; nothing is cached.  A failure to reach the store becomes
L{SessionStoreUnavailable}, which the endpoints answer with 503.
"""

from __future__ import annotations

import hashlib
import secrets
import socket
from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from . import _redis_scripts as scripts
from ._redis_scripts import Script
from ._config import ServerConfig
from ._logging import SafeLogger
from ._sessions import (TOKEN_BYTES, LoginSession, SessionTableFull, audit_session_ended,
                        hash_token, validity_holds)
from ._store import SessionStoreUnavailable, end_invalidated
from ._store_address import StoreAddress
from ._store_probe import probe_store
from ._throttle import PEERS_PER_USER_FACTOR, USERS_PER_ADDRESS_FACTOR, address_group

FETCH_CHUNK = 500
# Redis drops a session key this long after its deadline, in case no process sweeps it.
KEY_GRACE_SECONDS = 300.0
# Longest wait between two attempts to reconnect to the store.
RECONNECT_MAX_DELAY = 1.0


def _text(value: Any) -> str:
    """A string from a reply (bytes, as the connection decodes nothing)."""
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


def _arg(value: str | float | int) -> bytes:
    """A script argument: text as UTF-8 (lone surrogates kept), numbers in full precision."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return repr(value).encode("ascii")


def _digest(*parts: str) -> str:
    """A fixed-size key part for text of any length."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8", "surrogatepass"))
        hasher.update(b"\0")
    return hasher.hexdigest()


def _describe(failure: Failure) -> str:
    """One line about why a store call failed."""
    error = failure.value
    return " ".join(str(error).split()) or type(error).__name__


class RedisStore:
    """Sessions in Redis: the in-memory registry's methods, each answering with a Deferred."""

    shared = True

    def __init__(self, config: ServerConfig, reactor: Any) -> None:
        assert config.session_store_address is not None
        self.address: StoreAddress = config.session_store_address
        self.prefix = config.session_store_prefix
        self._reactor = reactor
        self._log: SafeLogger = config.log
        self._validity_callback = config.session_validity_callback
        constants = scripts.prelude(
            self.prefix, idle=config.session_idle_timeout, max_age=config.session_max_age,
            grace=max(KEY_GRACE_SECONDS, 2 * config.session_check_interval),
            max_sessions=config.max_sessions, max_per_user=config.max_sessions_per_user)
        self._create, self._find, self._end, self._end_user, self._fetch, self._expire = (
            Script(constants + source) for source in (
                scripts.CREATE, scripts.FIND, scripts.END, scripts.END_USER, scripts.FETCH,
                scripts.EXPIRE))
        self._timeout = config.timeout
        self._factory: Any = None
        self._outstanding = 0
        self._progress_at = 0.0
        self._unreachable_since: float | None = None
        self._count = 0
        self._watchdog = LoopingCall(self._watch)
        self._watchdog.clock = reactor

    # Connection ---------------------------------------------------------------------------

    def connect(self) -> Deferred[None]:
        """Connect, failing with a one-line L{SessionStoreUnavailable} if the store cannot be
        reached or refuses the login; then keep reconnecting by itself while the server runs.

        The first check is the daemon's blocking probe, run in the reactor's thread pool: it
        says why a connection failed (refused, a certificate, a password) where txredisapi
        would only say that it was lost.
        """
        import txredisapi

        address = self.address
        options: dict[str, Any] = dict(
            dbid=address.db, charset=None, password=address.password,
            username=address.username, connectTimeout=self._timeout, convertNumbers=False,
            ssl_context_factory=self._tls_options() if address.tls else False)

        def failed(failure: Failure) -> Failure:
            """Let go of what was opened; say where and why in one line."""
            self.stop()
            if failure.check(SessionStoreUnavailable):
                return failure
            return Failure(SessionStoreUnavailable(
                f"cannot reach the session store {address}: {_describe(failure)}"))

        probe: Deferred[None] = deferToThreadPool(self._reactor, self._reactor.getThreadPool(),
                                                  probe_store, address, self._timeout)
        probe.addCallback(lambda _: self._keep_connected(txredisapi, options))
        return probe.addErrback(failed)

    def _tls_options(self) -> Any:
        """TLS client options for rediss://: the server's name checked against the system's
        CAs, or the CAs of C{?ca=}."""
        from twisted.internet.ssl import Certificate, optionsForClientTLS, platformTrust

        address = self.address
        if address.ca_file is None:
            trust = platformTrust()
        else:
            with open(address.ca_file, "rb") as pem:
                trust = Certificate.loadPEM(pem.read())
        return optionsForClientTLS(address.host, trustRoot=trust)

    def _keep_connected(self, txredisapi: Any, options: dict[str, Any]) -> Deferred[None]:
        """Open the connection the server uses, reconnecting whenever it is lost."""
        handler = txredisapi.lazyConnection(self.address.host, self.address.port,
                                            reconnect=True, **options)
        factory = self._factory = handler._factory
        factory.maxDelay = RECONNECT_MAX_DELAY
        factory.initialDelay = min(factory.initialDelay, RECONNECT_MAX_DELAY / 4)
        ready: Deferred[Any] = handler._connected
        ready.addTimeout(self._timeout, self._reactor)
        self._watchdog.start(min(1.0, self._timeout / 4), now=False)
        return ready.addCallback(lambda _: self._log.info("Session store: %s", self.address))

    def stop(self) -> Deferred[None]:
        """Let the connection go; every session stays in the store."""
        if self._watchdog.running:
            self._watchdog.stop()
        factory, self._factory = self._factory, None
        if factory is None:
            return succeed(None)
        stopped: Deferred[None] = factory.disconnect()
        return stopped.addErrback(lambda _: None)

    def _connection(self) -> Any:
        """A connected protocol, or raise L{SessionStoreUnavailable}."""
        factory = self._factory
        if factory is not None:
            for connection in factory.pool:
                if connection.connected:
                    return connection
        raise SessionStoreUnavailable("not connected to the session store")

    def reachable(self) -> bool:
        """Whether the store answers now (as far as this process knows)."""
        return self._unreachable_since is None and self._factory is not None and any(
            connection.connected for connection in self._factory.pool)

    def _watch(self) -> None:
        """Every fraction of C{timeout}: cut a connection whose answers stopped coming, and log
        when the store becomes reachable again."""
        now = self._reactor.seconds()
        if self._outstanding and now - self._progress_at > self._timeout / 2:
            self._went_away(f"no answer within {self._timeout / 2:g}s")
            for connection in list(self._factory.pool if self._factory else ()):
                connection.transport.abortConnection()
            self._progress_at = now
        elif self._unreachable_since is not None:
            try:
                self._connection()
            except SessionStoreUnavailable:
                return
            self._log.warning("Session store %s reachable again after %.1fs", self.address,
                              now - self._unreachable_since)
            self._unreachable_since = None

    def _went_away(self, why: str) -> None:
        """Log (once per outage) that the store cannot be reached."""
        if self._unreachable_since is None:
            self._unreachable_since = self._reactor.seconds()
            self._log.error("Session store %s unreachable (%s); requests that need it get 503 "
                            "until it is back", self.address, why)

    def call(self, script: Script, args: list[bytes], keys: tuple[bytes, ...] = ()
             ) -> Deferred[Any]:
        """Run C{script} (by its digest; sent whole only when the server does not know it yet);
        a failure of any kind becomes L{SessionStoreUnavailable}."""
        return self._send((b"EVALSHA", script.sha, len(keys), *keys, *args), script)

    def command(self, name: str, *args: Any) -> Deferred[Any]:
        """Run one plain command (as L{call} does for a script)."""
        return self._send((name, *args))

    def _send(self, command: tuple[Any, ...], script: Script | None = None) -> Deferred[Any]:
        """Send C{command} on the connection, counting it until its answer is back."""
        try:
            connection = self._connection()
        except SessionStoreUnavailable as error:
            self._went_away(str(error))
            return fail(error)
        if not self._outstanding:
            self._progress_at = self._reactor.seconds()
        self._outstanding += 1
        answer: Deferred[Any] = connection.execute_command(*command)
        if script is not None:
            answer.addErrback(self._load_script, connection, script, command)
        return answer.addBoth(self._answered)

    @staticmethod
    def _load_script(failure: Failure, connection: Any, script: Script,
                     command: tuple[Any, ...]) -> Any:
        """The server does not know the script yet (first use, or it restarted): send it
        whole, with the same keys and arguments."""
        if "NOSCRIPT" not in str(failure.value):
            return failure
        return connection.execute_command(b"EVAL", script.source, *command[2:])

    def _answered(self, result: Any) -> Any:
        """One answer (or failure) came back."""
        self._outstanding -= 1
        self._progress_at = self._reactor.seconds()
        if isinstance(result, Failure):
            if not result.check(SessionStoreUnavailable):
                if not result.check("txredisapi.ResponseError"):
                    self._went_away(_describe(result))
                else:
                    self._log.error("Session store %s refused a command: %s", self.address,
                                    _describe(result))
                return Failure(SessionStoreUnavailable(_describe(result)))
        return result

    # Sessions -----------------------------------------------------------------------------

    def _session(self, hashed: str, fields: list[Any], token: str | None) -> LoginSession:
        """A LoginSession from the fields C{u c a p x} of a reply."""
        username, created, active, peer, subject = (_text(value) for value in fields)
        return LoginSession.restored(
            username, hashed, float(created), float(active), peer or None, subject or None,
            session_token=token, on_invalidate=self._invalidated)

    def _invalidated(self, session: LoginSession) -> None:
        """C{session.invalidate()} was called (in any thread): end it in the store."""
        self._reactor.callFromThread(end_invalidated, self, session, self._log)

    def create(self, username: str, peer_address: str | None = None,
               client_certificate_subject: str | None = None) -> Deferred[LoginSession]:
        """Start a session (failing with L{SessionTableFull} when the store holds
        C{max_sessions}), ending the user's oldest ones beyond C{max_sessions_per_user}."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        hashed = hash_token(token)
        now = self._reactor.seconds()
        args = [_arg(hashed), _arg(username), _arg(_digest(username)), _arg(now),
                _arg(peer_address or ""), _arg(client_certificate_subject or "")]

        def created(reply: list[Any]) -> LoginSession:
            """Log the evictions and return the new session."""
            if not int(reply[0]):
                raise SessionTableFull()
            for evicted in reply[1:]:
                gone = LoginSession.restored(username, _text(evicted), now, now, None, None)
                audit_session_ended(self._log, gone, "evicted: too many sessions for this user")
            session = LoginSession(username, token, now, peer_address,
                                   client_certificate_subject)
            session._on_invalidate = self._invalidated
            self._count += 1
            return session

        return self.call(self._create, args).addCallback(created)

    def find(self, token: str, *, touch: bool = False) -> Deferred[LoginSession | None]:
        """The live session for a presented token, after expiry and the validity callback (a
        session that fails them ends, everywhere)."""
        hashed = hash_token(token)
        args = [hashed.encode("ascii"), repr(self._reactor.seconds()).encode("ascii"),
                b"1" if touch else b"0"]
        return self.call(self._find, args).addCallback(self._found, hashed, token)

    def authenticate(self, token: str) -> Deferred[LoginSession | None]:
        """L{find}, recording activity on the session found."""
        return self.find(token, touch=True)

    def _found(self, reply: list[Any] | None, hashed: str,
               token: str) -> LoginSession | None | Deferred[LoginSession | None]:
        """Judge the session a FIND script returned."""
        if reply is None:
            return None
        state = _text(reply[0])
        session = self._session(hashed, reply[1:], token)
        if state != "ok":
            session._on_invalidate = None
            session._valid = False
            audit_session_ended(self._log, session, state)
            return None
        callback = self._validity_callback
        if callback is None or validity_holds(callback, session, self._log):
            return session
        return self.end(session, "rejected by session_validity_callback").addCallback(
            lambda _: None)

    def registered(self, token: str) -> bool | None:
        """Unknown without asking the store: C{None} (the endpoints then read the body)."""
        return None

    def end(self, session: LoginSession, reason: str, *,
            event: str = "session_ended") -> Deferred[bool]:
        """End C{session} in the store; whether it was still there."""
        session._on_invalidate = None
        session._valid = False

        def ended(existed: int) -> bool:
            """Log the end of a session that was there."""
            if int(existed):
                self._count = max(0, self._count - 1)
                audit_session_ended(self._log, session, reason, event=event)
            return bool(int(existed))

        return self.call(self._end, [_arg(session.hashed_session_token)]).addCallback(ended)

    def end_user(self, username: str,
                 reason: str = "all sessions of the user ended") -> Deferred[int]:
        """End every session of C{username}; how many there were."""
        def ended(hashes: list[Any]) -> int:
            """Log each session that ended."""
            now = self._reactor.seconds()
            for hashed in hashes:
                gone = LoginSession.restored(username, _text(hashed), now, now, None, None)
                gone._valid = False
                audit_session_ended(self._log, gone, reason)
            return len(hashes)

        return self.call(self._end_user, [_arg(_digest(username))]).addCallback(ended)

    def snapshot(self) -> Deferred[list[LoginSession]]:
        """Every session in the store (of every process), oldest first."""
        found: list[LoginSession] = []
        done: Deferred[list[LoginSession]] = Deferred()

        def page(reply: list[Any], start: int) -> None:
            """Keep one page; ask for the next until a short one."""
            sessions = list(self._sessions_of(reply))
            found.extend(sessions)
            if len(reply) < 6 * FETCH_CHUNK:
                found.sort(key=lambda session: session.created_at)
                done.callback(found)
            else:
                self.fetch(start + FETCH_CHUNK).addCallbacks(page, done.errback,
                                                             callbackArgs=(start + FETCH_CHUNK,))

        self.fetch(0).addCallbacks(page, done.errback, callbackArgs=(0,))
        return done

    def fetch(self, start: int, count: int = FETCH_CHUNK) -> Deferred[list[Any]]:
        """Up to C{count} sessions' raw fields from position C{start}."""
        return self.call(self._fetch, [_arg(start), _arg(count)])

    def _sessions_of(self, reply: list[Any]) -> Iterable[LoginSession]:
        """LoginSessions from a FETCH reply (hash and five fields each)."""
        for index in range(0, len(reply), 6):
            yield self._session(_text(reply[index]), reply[index + 1:index + 6], None)

    def expire_due(self, limit: int = FETCH_CHUNK) -> Deferred[int]:
        """End (and log) up to C{limit} sessions past their deadline; how many ended."""
        def ended(reply: list[Any]) -> int:
            """Log each expiry."""
            count = 0
            for index in range(0, len(reply), 7):
                session = self._session(_text(reply[index]), reply[index + 2:index + 7], None)
                session._on_invalidate = None
                session._valid = False
                audit_session_ended(self._log, session, _text(reply[index + 1]))
                count += 1
            return count

        return self.call(self._expire, [_arg(self._reactor.seconds()), _arg(limit)]
                         ).addCallback(ended)

    def refresh_count(self) -> Deferred[int]:
        """Count the live sessions in the store (kept for L{live_count})."""
        def counted(count: Any) -> int:
            """Keep the count."""
            self._count = int(count)
            return self._count

        now = repr(self._reactor.seconds()).encode("ascii")
        return self.command("ZCOUNT", _arg(self.prefix + "all"), b"(" + now, b"+inf"
                            ).addCallback(counted)

    def live_count(self) -> int:
        """How many sessions the store held when last counted (each sweep interval)."""
        return self._count


_RETRY_AFTER, _FAILED, _LEASE, _RELEASE = (
    Script(source) for source in (scripts.RETRY_AFTER, scripts.FAILED, scripts.LEASE,
                                  scripts.RELEASE))


class RedisThrottle:
    """The login throttle's failure counts, kept in the store so every process sees them.

    The same rule as L{serverapi._throttle.LoginThrottle}: the last C{limit} failure times per
    (username, address group), per address group (10x) and per username (100x).
    """

    def __init__(self, store: RedisStore, *, attempts: int, window: float) -> None:
        self._store = store
        self._window = _arg(window)
        self._limits = [_arg(attempts), _arg(PEERS_PER_USER_FACTOR * attempts),
                        _arg(USERS_PER_ADDRESS_FACTOR * attempts)]

    def _keys(self, username: str, address: str) -> tuple[bytes, ...]:
        """The three failure lists of an attempt."""
        group = address_group(address)
        prefix = self._store.prefix
        return (_arg(f"{prefix}t:p:{_digest(username, group)}"),
                _arg(f"{prefix}t:a:{_digest(group)}"), _arg(f"{prefix}t:u:{_digest(username)}"))

    def _args(self) -> list[bytes]:
        """Now, the window and the limits."""
        return [_arg(self._store._reactor.seconds()), self._window, *self._limits]

    def retry_after(self, username: str, address: str) -> Deferred[float]:
        """Seconds the attempt must wait (0 to go ahead)."""
        return self._store.call(_RETRY_AFTER, self._args(), self._keys(username, address)).addCallback(
            lambda wait: float(_text(wait)))

    def failed(self, username: str, address: str) -> Deferred[Any]:
        """Record a failed login for the pair, the address and the username."""
        return self._store.call(_FAILED, self._args(), self._keys(username, address))

    def succeeded(self, username: str, address: str) -> Deferred[Any]:
        """Clear the (username, address) failures after a successful login from there."""
        return self._store.command("DEL", self._keys(username, address)[0])


class LeasedSweeper:
    """The validity sweep of a shared store: only the process holding the lease sweeps.

    Every quarter interval each process takes or renews the lease (it lasts 1.25 intervals),
    so when its holder dies another process sweeps within 1.5 intervals (a holder that stops
    gives the lease up at once); the holder sweeps every interval: first the sessions past their deadline, then, with a validity callback, every
    session, one page per round trip.
    """

    def __init__(self, store: RedisStore, clock: Any, interval: float, logger: SafeLogger,
                 *, histogram: Any = None) -> None:
        self._store = store
        self._clock = clock
        self._interval = interval
        self._log = logger
        self._histogram = histogram
        self._me = _arg(f"{socket.gethostname()}:{secrets.token_hex(8)}")
        self._lease_key = _arg(f"{store.prefix}sweeper")
        self._lease_ms = _arg(int(1.25 * interval * 1000) + 1)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = clock
        self.holds_lease = False
        self._next_sweep = 0.0
        self._sweeping = False
        self._stopped = False

    def start(self) -> None:
        """Begin: the first lease attempt a quarter interval from now."""
        self._stopped = False
        self._loop.start(self._interval / 4, now=False)

    def stop(self) -> Deferred[Any]:
        """Stop sweeping and give the lease up, so another process takes it at once."""
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        if not self.holds_lease:
            return succeed(None)
        self.holds_lease = False
        released = self._store.call(_RELEASE, [self._me], (self._lease_key,))
        return released.addErrback(lambda _: None)

    def _tick(self) -> Deferred[Any]:
        """Take or renew the lease; sweep when it is held and an interval has passed."""
        leased = self._store.call(_LEASE, [self._me, self._lease_ms], (self._lease_key,))
        leased.addCallback(self._leased)
        leased.addErrback(self._lost)
        counted = self._store.refresh_count()
        counted.addErrback(lambda _: None)
        return leased

    def _leased(self, held: Any) -> None:
        """The store answered about the lease."""
        if self._stopped:
            return
        self.holds_lease = bool(int(held))
        now = self._clock.seconds()
        if self.holds_lease and not self._sweeping and now >= self._next_sweep:
            self._next_sweep = now + self._interval - self._interval / 8
            self._sweeping = True
            swept = self._sweep(now)
            swept.addErrback(self._failed)
            swept.addBoth(self._swept, now)

    def _lost(self, failure: Failure) -> None:
        """The store did not answer: this process no longer knows that it holds the lease."""
        self.holds_lease = False

    def _sweep(self, started: float) -> Deferred[Any]:
        """Expire what is due, then ask the validity callback about every session."""
        expired = self._store.expire_due()

        def more(count: int) -> Deferred[Any]:
            """Expire the next batch while batches come back full."""
            if count >= FETCH_CHUNK and not self._stopped:
                return self._store.expire_due().addCallback(more)
            if self._store._validity_callback is None:
                return succeed(None)
            return self._check_from(0)

        return expired.addCallback(more)

    def _check_from(self, start: int) -> Deferred[Any]:
        """Check one page of sessions, then the next."""
        def checked(reply: list[Any]) -> Deferred[Any] | None:
            """Run the callback on each session of the page; end those it rejects."""
            callback = self._store._validity_callback
            assert callback is not None
            ending = [self._store.end(session, "rejected by session_validity_callback")
                      for session in self._store._sessions_of(reply)
                      if not self._stopped and not validity_holds(callback, session, self._log)]
            following = start + FETCH_CHUNK - len(ending)
            if len(reply) < 6 * FETCH_CHUNK or self._stopped:
                return None
            return self._check_from(following)

        return self._store.fetch(start).addCallback(checked)

    def _failed(self, failure: Failure) -> None:
        """A sweep that could not finish: the next interval tries again."""
        self._log.warning("Session sweep stopped early: %s", _describe(failure))

    def _swept(self, result: Any, started: float) -> None:
        """A sweep ended."""
        self._sweeping = False
        if self._histogram is not None:
            self._histogram.observe(max(0.0, self._clock.seconds() - started))
