"""Password hashes, the credential store, and the hash-password command."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from serverapi import hashPassword
from serverapi._passwords import CredentialStore, PasswordHash, parse_hash

from .helpers import child_env

PBKDF2_HASH = ("$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0c2FsdA$"
               "8nX7hwFEzIB8aPajJTYK8weHQc5Ngz0pFVAKvSu4jQA")


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
        self.hashed = hashPassword("hashed-pw")
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
        """Hashed and unknown users go to a worker when there are hashes; plaintext never."""
        self.assertFalse(self.store.is_slow("plain"))
        self.assertTrue(self.store.is_slow("hash"))
        self.assertTrue(self.store.is_slow("nobody"))
        self.assertFalse(CredentialStore({"a": "b"}).is_slow("nobody"))
        self.assertEqual(self.store.plaintext_usernames, ["plain"])

    def test_dummy_is_same_kind(self) -> None:
        """Unknown users are checked against a dummy hash of the same scheme and cost."""
        dummy = self.store._dummy_hash
        first = parse_hash(self.hashed)
        assert isinstance(dummy, PasswordHash) and first is not None
        self.assertEqual((dummy.scheme, dummy.params), (first.scheme, first.params))


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
