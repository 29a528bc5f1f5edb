"""The AMP commands a worker process and the main process exchange over their local channel."""

from __future__ import annotations

from typing import Any

from twisted.protocols import amp

from ._sessions import SessionTableFull
from ._store import SessionStoreUnavailable

# The most bytes one AMP value holds; longer values are split over several keys.
_CHUNK = 0xFFFF


class Text(amp.Unicode):
    """Any Python string, lone surrogates included (a username is whatever JSON said)."""

    def toString(self, inObject: str) -> bytes:  # type: ignore[override]
        """UTF-8, lone surrogates kept."""
        return inObject.encode("utf-8", "surrogatepass")

    def fromString(self, inString: bytes) -> str:  # type: ignore[override]
        """Back from L{toString}."""
        return inString.decode("utf-8", "surrogatepass")


class LongBytes(amp.Argument):
    """Bytes of any length: AMP caps a value at 64 KiB, so longer ones take several keys
    (C{name}, C{name.1}, C{name.2}, ...)."""

    def encode(self, value: Any) -> bytes:
        """The value as bytes."""
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        """The value back from L{encode}."""
        return data

    def toBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any],
              proto: Any) -> None:
        """Split the encoded value over as many keys as it needs."""
        value = self.retrieve(objects, name.decode("ascii"), proto)
        if value is None and self.optional:
            return
        data = self.encode(value)
        strings[name] = data[:_CHUNK]
        for index, start in enumerate(range(_CHUNK, len(data), _CHUNK), 1):
            strings[b"%s.%d" % (name, index)] = data[start:start + _CHUNK]

    def fromBox(self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any],
                proto: Any) -> None:
        """Join the value back from its keys."""
        key = name.decode("ascii")
        if name not in strings and self.optional:
            objects[key] = None
            return
        chunks = [strings[name]]
        while b"%s.%d" % (name, len(chunks)) in strings:
            chunks.append(strings[b"%s.%d" % (name, len(chunks))])
        objects[key] = self.decode(b"".join(chunks))


class LongText(LongBytes):
    """A string of any length, lone surrogates included (see L{LongBytes})."""

    def encode(self, value: Any) -> bytes:
        """UTF-8, lone surrogates kept."""
        return str(value).encode("utf-8", "surrogatepass")

    def decode(self, data: bytes) -> Any:
        """Back from L{encode}."""
        return data.decode("utf-8", "surrogatepass")


class TextList(LongBytes):
    """A list of strings of any length (each as C{<byte length>:<UTF-8>}, joined)."""

    def encode(self, value: Any) -> bytes:
        """Length-prefixed pieces."""
        pieces = []
        for text in value:
            data = text.encode("utf-8", "surrogatepass")
            pieces.append(b"%d:%s" % (len(data), data))
        return b"".join(pieces)

    def decode(self, data: bytes) -> Any:
        """Back from L{encode}."""
        texts, position = [], 0
        while position < len(data):
            colon = data.index(b":", position)
            end = colon + 1 + int(data[position:colon])
            texts.append(data[colon + 1:end].decode("utf-8", "surrogatepass"))
            position = end
        return texts


# Errors a worker's request maps to its own exceptions (the endpoints answer 503 for both).
_STORE_ERRORS: dict[type[Exception], bytes] = {
    SessionTableFull: b"SESSION_TABLE_FULL",
    SessionStoreUnavailable: b"SESSION_STORE_UNAVAILABLE",
}

# The fields of a session as the main process sends it.
_SESSION = [(b"username", LongText()), (b"hashed", amp.Unicode()), (b"created", amp.Float()),
            (b"active", amp.Float()), (b"peer", Text(optional=True)), (b"subject", Text(optional=True))]


# Worker to main: the session store and the login throttle --------------------------------------

class Authenticate(amp.Command):
    """The live session a presented token names (C{touch}: record activity on it), after
    expiry and the validity callback; C{found} false when there is none."""

    arguments = [(b"token", LongText()), (b"touch", amp.Boolean())]
    response = [(b"found", amp.Boolean()), (b"cache", amp.Boolean(optional=True)),
                (b"username", LongText(optional=True)),
                (b"hashed", amp.Unicode(optional=True)), (b"created", amp.Float(optional=True)),
                (b"active", amp.Float(optional=True)), (b"peer", Text(optional=True)),
                (b"subject", Text(optional=True))]
    errors = _STORE_ERRORS


class AuthenticateMany(amp.Command):
    """Authenticate (with C{touch}) every token a worker received in one reactor turn, in one
    message each way.  C{sessions} is a JSON list, one entry per token: C{null}, or
    C{[username, hashed, created, active, peer, subject]}; C{cache} as for Authenticate."""

    arguments = [(b"tokens", TextList())]
    response = [(b"sessions", LongText()), (b"cache", amp.Boolean())]
    errors = _STORE_ERRORS


class Create(amp.Command):
    """Start a session; its token and creation time."""

    arguments = [(b"username", LongText()), (b"peer", Text(optional=True)),
                 (b"subject", Text(optional=True))]
    response = [(b"token", amp.Unicode()), (b"created", amp.Float()),
                (b"cache", amp.Boolean())]
    errors = _STORE_ERRORS


class End(amp.Command):
    """End a session (by its hashed token); whether it was still there."""

    arguments = [*_SESSION, (b"reason", Text()), (b"event", amp.Unicode())]
    response = [(b"ended", amp.Boolean())]
    errors = _STORE_ERRORS


class RetryAfter(amp.Command):
    """Seconds a login attempt must wait (0 to go ahead)."""

    arguments = [(b"username", LongText()), (b"address", Text())]
    response = [(b"seconds", amp.Float())]
    errors = _STORE_ERRORS


class LoginFailed(amp.Command):
    """Count a failed login."""

    arguments = [(b"username", LongText()), (b"address", Text())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _STORE_ERRORS


class LoginSucceeded(amp.Command):
    """Clear the failures of a (username, address) pair after a successful login."""

    arguments = [(b"username", LongText()), (b"address", Text())]
    response: list[tuple[bytes, amp.Argument]] = []
    errors = _STORE_ERRORS


class Touched(amp.Command):
    """Sessions (hashed tokens, comma-separated) a worker served from its cache since it last
    said so, and when it said so: their last activity, for the main process's records."""

    arguments = [(b"hashes", LongText()), (b"at", amp.Float())]
    requiresAnswer = False


# Worker to main: how the worker is doing --------------------------------------------------------

class Ready(amp.Command):
    """The worker listens on the shared socket and serves."""

    arguments = [(b"pid", amp.Integer())]
    response: list[tuple[bytes, amp.Argument]] = []


class StartFailed(amp.Command):
    """The worker cannot serve (its callback cannot be imported, ...); it exits next."""

    arguments = [(b"reason", LongText())]
    response: list[tuple[bytes, amp.Argument]] = []


class Log(amp.Command):
    """One log line of the worker, for the user's logger in the main process; with C{event},
    an audit event (its fields as L{serverapi._logging.SafeLogger.audit} takes them)."""

    arguments = [(b"level", amp.Integer()), (b"text", LongText()),
                 (b"event", LongText(optional=True)), (b"user", LongText(optional=True)),
                 (b"peer", LongText(optional=True)), (b"token_sha256", LongText(optional=True)),
                 (b"reason", LongText(optional=True))]
    requiresAnswer = False


# Main to worker ---------------------------------------------------------------------------------

class Drain(amp.Command):
    """Stop accepting, let running callbacks finish within the grace period, then exit."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response: list[tuple[bytes, amp.Argument]] = []


class Forget(amp.Command):
    """These sessions (hashed tokens, comma-separated) ended: drop them from the cache; the
    answer says they are dropped."""

    arguments = [(b"hashes", LongText())]
    response: list[tuple[bytes, amp.Argument]] = []


class ReplaceCredentials(amp.Command):
    """Check logins against these credentials from now on (a pickled CredentialStore)."""

    arguments = [(b"store", LongBytes())]
    response: list[tuple[bytes, amp.Argument]] = []


class ReopenAccessLog(amp.Command):
    """Reopen the access log file (log rotation moved it)."""

    arguments: list[tuple[bytes, amp.Argument]] = []
    response = [(b"error", Text(optional=True))]
