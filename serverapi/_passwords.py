"""Password hashing (scrypt, PBKDF2-SHA256) and the credential store that checks logins."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

SCRYPT_LOG2_N = 14
SCRYPT_R = 8
SCRYPT_P = 5
PBKDF2_MIN_ITERATIONS = 600_000
_SALT_BYTES = 16
_HASH_BYTES = 32

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


class CredentialStore:
    """Checks a username and password against plaintext or hashed credentials."""

    __slots__ = ("_plain", "_hashed", "_dummy_plain", "_dummy_hash")

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
        first = next(iter(self._hashed.values()), None)
        self._dummy_hash = None if first is None else first.with_salt(secrets.token_bytes(16))

    @property
    def has_hashes(self) -> bool:
        """Whether any user's credential is a hash (so some checks are slow)."""
        return bool(self._hashed)

    @property
    def plaintext_usernames(self) -> list[str]:
        """Usernames whose password is stored in plaintext."""
        return sorted(self._plain)

    def is_slow(self, username: str) -> bool:
        """Whether checking C{username} derives a hash and so belongs in a worker thread."""
        if username in self._plain:
            return False
        return self._dummy_hash is not None

    def verify(self, username: str, password: str) -> bool:
        """Tell whether C{password} is C{username}'s; unknown users cost as much as known ones."""
        hashed = self._hashed.get(username)
        if hashed is not None:
            return hashed.verify(password)
        candidate = _fingerprint(password)
        plain = self._plain.get(username)
        if plain is not None:
            return hmac.compare_digest(candidate, plain)
        if self._dummy_hash is not None:
            self._dummy_hash.verify(password)
        else:
            hmac.compare_digest(candidate, self._dummy_plain)
        return False
