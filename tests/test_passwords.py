"""Password hashes, the credential store, and the hash-password command."""

from __future__ import annotations

import subprocess
import sys
import time

from twisted.trial.unittest import SynchronousTestCase

from serverapi import hashPassword
from serverapi._passwords import CredentialStore, PasswordHash, _b64encode, parse_hash

from .helpers import child_env

PBKDF2_HASH = ("$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0c2FsdA$"
               "8nX7hwFEzIB8aPajJTYK8weHQc5Ngz0pFVAKvSu4jQA")


def make_hash(password: str, scheme: str, *params: int) -> str:
    """A modular-crypt hash of C{password} with the given scheme and cost (for cheap tests)."""
    template = PasswordHash(scheme, params, b"0123456789abcdef", bytes(32))
    digest = _b64encode(template.compute(password))
    salt = _b64encode(template.salt)
    if scheme == "scrypt":
        return "$scrypt$ln=%d,r=%d,p=%d$%s$%s" % (*params, salt, digest)
    return "$pbkdf2-sha256$i=%d$%s$%s" % (*params, salt, digest)


class HashTests(SynchronousTestCase):
    """hashPassword and parse_hash."""

    def test_format_and_verify(self) -> None:
        """Hashes are salted modular-crypt scrypt strings that verify only the password."""
        first, second = hashPassword("s3cret"), hashPassword("s3cret")
        self.assertNotEqual(first, second)
        self.assertRegex(first, r"^\$scrypt\$ln=14,r=8,p=5\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
        parsed = parse_hash(first)
        assert parsed is not None
        self.assertTrue(parsed.verify("s3cret"))
        self.assertFalse(parsed.verify("s3cret "))
        self.assertFalse(parsed.verify(first))

    def test_pbkdf2(self) -> None:
        """PBKDF2-SHA256 hashes are understood."""
        parsed = parse_hash(PBKDF2_HASH)
        self.assertEqual(parsed and parsed.scheme, "pbkdf2-sha256")
        self.assertTrue(parsed and parsed.verify("password"))

    def test_not_hashes(self) -> None:
        """Anything that does not parse as a supported scheme is a plaintext password."""
        for value in ["password", "$scrypt$", "$scrypt$ln=14,r=8,p=5$short$short",
                      "$md5$abc$def", "$scrypt$ln=99,r=8,p=1$" + "A" * 22 + "$" + "A" * 43,
                      "$pbkdf2-sha256$i=0$" + "A" * 22 + "$" + "A" * 43, hashPassword("x") + " "]:
            self.assertIsNone(parse_hash(value), value)

    def test_type(self) -> None:
        """hashPassword wants a str."""
        with self.assertRaises(TypeError):
            hashPassword(b"bytes")  # type: ignore[arg-type]


class StoreTests(SynchronousTestCase):
    """CredentialStore mixes plaintext and hashed credentials."""

    def setUp(self) -> None:
        self.hashed = make_hash("hashed-pw", "scrypt", 12, 8, 1)
        self.store = CredentialStore({"plain": "plain-pw", "hash": self.hashed,
                                      "pb": PBKDF2_HASH})

    def test_verify(self) -> None:
        """Each form checks its own password; a hash is never accepted as the password."""
        self.assertTrue(self.store.verify("plain", "plain-pw"))
        self.assertFalse(self.store.verify("plain", "plain-pw2"))
        self.assertTrue(self.store.verify("hash", "hashed-pw"))
        self.assertFalse(self.store.verify("hash", self.hashed))
        self.assertTrue(self.store.verify("pb", "password"))
        self.assertFalse(self.store.verify("nobody", "plain-pw"))
        self.assertFalse(self.store.verify("plain", "\ud800"))

    def test_slow_paths(self) -> None:
        """With any hash configured every check goes to a worker; plaintext-only, none does."""
        for username in ("plain", "hash", "nobody"):
            self.assertTrue(self.store.is_slow(username), username)
        self.assertFalse(CredentialStore({"a": "b"}).is_slow("a"))
        self.assertFalse(CredentialStore({"a": "b"}).is_slow("nobody"))
        self.assertEqual(self.store.plaintext_usernames, ["plain"])

    def test_dummy_is_costliest(self) -> None:
        """Unknown users are checked against a dummy of the costliest hash (scrypt here)."""
        self.assertFalse(self.store.verify("nobody", "x"))
        dummy = self.store._costliest
        first = parse_hash(self.hashed)
        assert isinstance(dummy, PasswordHash) and first is not None
        self.assertEqual((dummy.scheme, dummy.params), (first.scheme, first.params))
        self.assertNotEqual(dummy.salt, first.salt)


def cpu_cost(store: CredentialStore, username: str, password: str) -> float:
    """The CPU time this thread spends in one C{store.verify()}."""
    start = time.thread_time()
    store.verify(username, password)
    return time.thread_time() - start


class TimingTests(SynchronousTestCase):
    """Every failed check costs what the costliest configured check costs."""

    def setUp(self) -> None:
        self.store = CredentialStore({
            "plain": "plain-pw",
            "cheap": make_hash("cheap-pw", "pbkdf2-sha256", 10_000),
            "dear": make_hash("dear-pw", "pbkdf2-sha256", 100_000),
        })

    def test_failures_cost_the_same(self) -> None:
        """Wrong plaintext and wrong cheaper-hash passwords cost what an unknown user costs."""
        totals = {"nobody": 0.0, "plain": 0.0, "cheap": 0.0}
        self.store.verify("cheap", "wrong")  # the first failure also measures the costliest
        for _ in range(4):
            for username in totals:
                totals[username] += cpu_cost(self.store, username, "wrong")
        for username in ("plain", "cheap"):
            ratio = totals[username] / totals["nobody"]
            self.assertTrue(0.8 <= ratio <= 1.25, f"{username}/unknown CPU ratio {ratio:.3f}")

    def test_success_not_padded(self) -> None:
        """A right password costs only its own check."""
        unknown = cpu_cost(self.store, "nobody", "x")
        self.assertTrue(self.store.verify("plain", "plain-pw"))
        self.assertLess(cpu_cost(self.store, "plain", "plain-pw"), unknown / 4)
        self.assertLess(cpu_cost(self.store, "cheap", "cheap-pw"), unknown / 2)

    def test_schemes_compared_by_timing(self) -> None:
        """With two schemes, the one that takes longer is the unknown users' dummy."""
        store = CredentialStore({"s": make_hash("pw", "scrypt", 4, 8, 1),
                                 "p": make_hash("pw", "pbkdf2-sha256", 100_000)})
        self.assertFalse(store.verify("nobody", "pw"))
        self.assertEqual(store._costliest and store._costliest.scheme, "pbkdf2-sha256")
        self.assertTrue(store.verify("s", "pw"))
        self.assertTrue(store.verify("p", "pw"))
        unknown = cpu_cost(store, "nobody", "wrong")
        ratio = cpu_cost(store, "s", "wrong") / unknown
        self.assertTrue(0.8 <= ratio <= 1.25, f"scrypt/unknown CPU ratio {ratio:.3f}")

    def test_plaintext_only_unchanged(self) -> None:
        """Without hashes, checks stay cheap digest comparisons, with no padding."""
        store = CredentialStore({"a": "pw-a"})
        self.assertTrue(store.verify("a", "pw-a"))
        self.assertFalse(store.verify("a", "pw-b"))
        self.assertFalse(store.verify("nobody", "pw-a"))
        self.assertLess(cpu_cost(store, "nobody", "pw-a"), 0.005)
        self.assertIsNone(store.mixed_credentials_warning())

    def test_mixed_credentials_warning(self) -> None:
        """Mixing plaintext and hashes, or hash costs, gets a one-line start-up warning."""
        warning = self.store.mixed_credentials_warning()
        assert warning is not None
        self.assertNotIn("\n", warning)
        for text in ("plaintext", "pbkdf2-sha256 i=10000", "pbkdf2-sha256 i=100000", "padded",
                     "one scheme and cost"):
            self.assertIn(text, warning)
        same = make_hash("pw", "pbkdf2-sha256", 1000)
        self.assertIsNone(CredentialStore({"a": same, "b": PBKDF2_HASH})
                          .mixed_credentials_warning())
        self.assertIsNotNone(CredentialStore({"a": same, "b": "pw"}).mixed_credentials_warning())


class CommandTests(SynchronousTestCase):
    """python -m serverapi hash-password."""

    def test_reads_stdin(self) -> None:
        """Given a password on standard input, it prints a hash of it."""
        result = subprocess.run([sys.executable, "-m", "serverapi", "hash-password"],
                                input="from-stdin\n", capture_output=True, text=True,
                                check=True, env=child_env())
        parsed = parse_hash(result.stdout.strip())
        self.assertTrue(parsed and parsed.verify("from-stdin"))

    def test_empty_refused(self) -> None:
        """An empty password is refused with exit status 1."""
        result = subprocess.run([sys.executable, "-m", "serverapi", "hash-password"],
                                input="\n", capture_output=True, text=True, env=child_env())
        self.assertEqual(result.returncode, 1)
        self.assertIn("empty", result.stderr)
