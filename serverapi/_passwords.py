"""Password hashing (scrypt, PBKDF2-SHA256) and the credential store that checks logins."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 5
PBKDF2_MIN_ITERATIONS = 600_000
_SALT_BYTES = 16
_HASH_BYTES = 32
_PAD_SALT = b"serverapi-padding"
_PAD_ITERATIONS = 1000  # one padding step: a fraction of a millisecond

_SCRYPT = re.compile(
    r"\$scrypt\$ln=(?P<ln>[1-9][0-9]?),r=(?P<r>[1-9][0-9]{0,2}),p=(?P<p>[1-9][0-9]{0,2})"
    r"\$(?P<salt>[A-Za-z0-9+/]{16,})\$(?P<hash>[A-Za-z0-9+/]{16,})"
)
_PBKDF2 = re.compile(
    r"\$pbkdf2-sha256\$i=(?P<i>[1-9][0-9]{0,8})"
    r"\$(?P<salt>[A-Za-z0-9+/]{16,})\$(?P<hash>[A-Za-z0-9+/]{16,})"
)


def _b64encode(data: bytes) -> str:
    """Standard base64 without padding, as in the PHC string format."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _b64decode(text: str) -> bytes:
    """Decode unpadded standard base64."""
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """A parsed modular-crypt password hash that can check a candidate password."""

    scheme: str
    params: tuple[int, ...]
    salt: bytes
    digest: bytes

    def compute(self, password: str) -> bytes:
        """Derive this hash's digest for C{password} with the same scheme, salt and cost."""
        secret = password.encode("utf-8", "surrogatepass")
        if self.scheme == "scrypt":
            log2n, r, p = self.params
            n = 1 << log2n
            return hashlib.scrypt(secret, salt=self.salt, n=n, r=r, p=p,
                                  maxmem=129 * r * n * p + (1 << 20), dklen=len(self.digest))
        (iterations,) = self.params
        return hashlib.pbkdf2_hmac("sha256", secret, self.salt, iterations, len(self.digest))

    def verify(self, password: str) -> bool:
        """Tell, in constant time over the digest, whether C{password} matches."""
        return hmac.compare_digest(self.compute(password), self.digest)

    def with_salt(self, salt: bytes) -> PasswordHash:
        """Return a hash of the same kind and cost with another salt (for dummy checks)."""
        return PasswordHash(self.scheme, self.params, salt, secrets.token_bytes(len(self.digest)))


def parse_hash(value: str) -> PasswordHash | None:
    """Return the hash C{value} encodes, or C{None} when it is not a supported hash."""
    try:
        match = _SCRYPT.fullmatch(value)
        if match:
            log2n, r, p = int(match["ln"]), int(match["r"]), int(match["p"])
            if log2n > 20 or r * p >= 1 << 30:
                return None
            return PasswordHash("scrypt", (log2n, r, p), _b64decode(match["salt"]),
                                _b64decode(match["hash"]))
        match = _PBKDF2.fullmatch(value)
        if match:
            return PasswordHash("pbkdf2-sha256", (int(match["i"]),),
                                _b64decode(match["salt"]), _b64decode(match["hash"]))
    except (binascii.Error, ValueError):
        return None
    return None


def hashPassword(password: str) -> str:
    """Return a salted scrypt hash of C{password} in modular-crypt form for C{credentials}."""
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    salt = secrets.token_bytes(_SALT_BYTES)
    template = PasswordHash("scrypt", (SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P), salt,
                            bytes(_HASH_BYTES))
    digest = template.compute(password)
    return (f"$scrypt$ln={SCRYPT_LOG2_N},r={SCRYPT_R},p={SCRYPT_P}"
            f"${_b64encode(salt)}${_b64encode(digest)}")


def _fingerprint(password: str) -> bytes:
    """A fixed-length digest of a plaintext password, so comparisons leak no length."""
    return hashlib.sha256(password.encode("utf-8", "surrogatepass")).digest()


def _cost_estimate(hashed: PasswordHash) -> int:
    """A cost estimate that orders hashes of one scheme: scrypt ~ N*r*p, PBKDF2 ~ iterations."""
    if hashed.scheme == "scrypt":
        log2n, r, p = hashed.params
        return (1 << log2n) * r * p
    return hashed.params[0]


def _describe(hashed: PasswordHash) -> str:
    """A hash's scheme and cost as in its modular-crypt form, e.g. C{scrypt ln=14,r=8,p=5}."""
    if hashed.scheme == "scrypt":
        return "scrypt ln=%d,r=%d,p=%d" % hashed.params
    return "pbkdf2-sha256 i=%d" % hashed.params


def _pad_chunk() -> None:
    """Burn a fraction of a millisecond of this thread's CPU on a throwaway PBKDF2 derivation."""
    hashlib.pbkdf2_hmac("sha256", b"padding", _PAD_SALT, _PAD_ITERATIONS)


class CredentialStore:
    """Checks a username and password against plaintext or hashed credentials.

    With only plaintext credentials every check is a constant-time digest comparison, cheap
    enough for the reactor.  Once any hash is configured every check is slow (it belongs in the
    hash pool) and every failed check costs what the costliest configured check costs, so the
    time a failure takes tells nothing about the username: an unknown user is checked against a
    dummy copy of the costliest hash, and a failed check that was cheaper (a wrong plaintext
    password, a wrong password for a cheaper hash) is padded with throwaway PBKDF2 rounds until
    this thread has spent as much CPU time as the costliest check last took.  Padding burns CPU
    rather than sleeping, because a sleep costs no CPU and so shows once the host is loaded.
    A successful check is never padded.
    """

    __slots__ = ("_plain", "_hashed", "_dummy_plain", "_candidates", "_costliest", "_cost",
                 "_calibration")

    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._plain: dict[str, bytes] = {}
        self._hashed: dict[str, PasswordHash] = {}
        for username, value in credentials.items():
            parsed = parse_hash(value)
            if parsed is None:
                self._plain[username] = _fingerprint(value)
            else:
                self._hashed[username] = parsed
        self._dummy_plain = secrets.token_bytes(32)
        dearest: dict[str, PasswordHash] = {}
        for hashed in self._hashed.values():
            best = dearest.get(hashed.scheme)
            if best is None or _cost_estimate(hashed) > _cost_estimate(best):
                dearest[hashed.scheme] = hashed
        # The costliest hash of each scheme; schemes are compared by timing, once, when needed.
        self._candidates = [hashed.with_salt(secrets.token_bytes(_SALT_BYTES))
                            for hashed in dearest.values()]
        self._costliest = self._candidates[0] if len(self._candidates) == 1 else None
        self._cost: float | None = None  # thread CPU seconds the costliest check last took
        self._calibration = threading.Lock()

    def __getstate__(self) -> dict[str, object]:
        """Everything but the lock (a worker process receives a copy; see ProcessAPIServer)."""
        return {name: getattr(self, name) for name in self.__slots__ if name != "_calibration"}

    def __setstate__(self, state: dict[str, object]) -> None:
        """Back from L{__getstate__}, with a lock of its own."""
        for name, value in state.items():
            setattr(self, name, value)
        self._calibration = threading.Lock()

    @property
    def has_hashes(self) -> bool:
        """Whether any user's credential is a hash (so every check is slow)."""
        return bool(self._hashed)

    @property
    def usernames(self) -> frozenset[str]:
        """Every configured username."""
        return frozenset(self._plain).union(self._hashed)

    def knows(self, username: str) -> bool:
        """Whether C{username} is configured (a login checked against an older store is
        confirmed with this once it finishes)."""
        return username in self._plain or username in self._hashed

    @property
    def plaintext_usernames(self) -> list[str]:
        """Usernames whose password is stored in plaintext."""
        return sorted(self._plain)

    def mixed_credentials_warning(self) -> str | None:
        """A one-line start-up warning when checks differ in cost (and so are padded), or C{None}.

        Credentials that mix plaintext passwords and hashes, or hashes of different schemes or
        costs, make every failed login pay for the costliest check.
        """
        kinds = sorted({_describe(hashed) for hashed in self._hashed.values()})
        if self._plain and kinds:
            kinds.insert(0, "plaintext")
        if len(kinds) < 2:
            return None
        return (f"Credentials mix {', '.join(kinds)}: every failed login is padded to the cost "
                f"of the costliest check so its timing does not tell which usernames exist; "
                f"hash every password with one scheme and cost (serverapi.hashPassword) to "
                f"avoid the extra work")

    def is_slow(self, username: str) -> bool:
        """Whether checking C{username} belongs in a worker thread: always, once hashes exist."""
        return bool(self._candidates)

    def verify(self, username: str, password: str) -> bool:
        """Tell whether C{password} is C{username}'s; every failure costs the same."""
        start = time.thread_time()
        hashed = self._hashed.get(username)
        if hashed is not None:
            ok = self._check(hashed, password)
        else:
            plain = self._plain.get(username)
            known = self._dummy_plain if plain is None else plain
            ok = hmac.compare_digest(_fingerprint(password), known) and plain is not None
            if plain is None and self._candidates:
                self._check(self._dearest(), password)
        if not ok and self._candidates:
            self._pad(start)
        return ok

    def _check(self, hashed: PasswordHash, password: str) -> bool:
        """Check C{password} against C{hashed}, recording its cost when it is the costliest."""
        start = time.thread_time()
        ok = hashed.verify(password)
        dearest = self._costliest
        if dearest is not None and (hashed.scheme, hashed.params) == (dearest.scheme,
                                                                       dearest.params):
            self._cost = time.thread_time() - start
        return ok

    def _dearest(self) -> PasswordHash:
        """The dummy hash of the costliest check; with two schemes, each is timed once to pick."""
        dearest = self._costliest
        if dearest is not None:
            return dearest
        with self._calibration:
            if self._costliest is None:
                timed = []
                for hashed in self._candidates:
                    start = time.thread_time()
                    hashed.verify("")
                    timed.append((time.thread_time() - start, _cost_estimate(hashed), hashed))
                self._cost, _, self._costliest = max(timed, key=lambda item: item[:2])
            return self._costliest

    def _pad(self, start: float) -> None:
        """Spend this thread's CPU until the failed check begun at C{start} cost the costliest's."""
        dearest = self._dearest()
        if self._cost is None:
            self._check(dearest, "")  # the first failure measures the costliest check
        cost = self._cost or 0.0
        while time.thread_time() - start < cost:
            _pad_chunk()
