"""Replacing credentials while serving: validation, the file, the swap, ended sessions."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from serverapi import hashPassword
from serverapi._credentials import (
    Credentials,
    CredentialsFileError,
    check_credentials,
    read_credentials_file,
    readable_plaintext_warning,
)
from serverapi._passwords import CredentialStore

from .helpers import HeldPool, MemoryServer, request_bytes, status_of
from .test_audit import EventRecorder


def temporary_directory(case: SynchronousTestCase) -> str:
    """A directory removed after the test."""
    path = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, path)
    return path


class CheckTests(SynchronousTestCase):
    """check_credentials and the credentials file."""

    def test_check(self) -> None:
        """A good mapping comes back frozen; bad ones are TypeError/ValueError."""
        frozen = check_credentials({"a": "b"})
        self.assertEqual(dict(frozen), {"a": "b"})
        with self.assertRaises(TypeError):
            frozen["c"] = "d"  # type: ignore[index]
        for bad, error in [([("a", "b")], TypeError), ({"a": 1}, TypeError),
                           ({1: "a"}, TypeError), ({"": "a"}, ValueError)]:
            with self.assertRaises(error, msg=repr(bad)):
                check_credentials(bad)

    def test_file(self) -> None:
        """A good file is read whole; every bad one says why."""
        folder = temporary_directory(self)

        def write(name: str, text: str) -> str:
            """Write a file in the folder."""
            path = os.path.join(folder, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
            return path

        self.assertEqual(read_credentials_file(write("ok.json", '{"a": "b"}')), {"a": "b"})
        for text, message in [("{nope", "not valid JSON"), ("[1]", "must hold a JSON object"),
                              ("{}", "holds no users"), ('{"a": ""}', "entry for 'a'"),
                              ('{"a": 1}', "entry for 'a'")]:
            with self.assertRaises(CredentialsFileError) as caught:
                read_credentials_file(write("bad.json", text))
            self.assertIn(message, str(caught.exception))
        with self.assertRaises(CredentialsFileError) as caught:
            read_credentials_file(os.path.join(folder, "missing.json"))
        self.assertIn("cannot read", str(caught.exception))

    def test_readable_plaintext_warning(self) -> None:
        """Plaintext passwords in a file others can read earn a warning; hashes do not."""
        folder = temporary_directory(self)
        path = os.path.join(folder, "c.json")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("{}")
        os.chmod(path, 0o644)
        self.assertIn("plaintext passwords", readable_plaintext_warning(path, {"a": "pw"}) or "")
        self.assertIsNone(readable_plaintext_warning(path, {"a": hashPassword("pw")}))
        os.chmod(path, 0o600)
        self.assertIsNone(readable_plaintext_warning(path, {"a": "pw"}))

    def test_holder(self) -> None:
        """Replacing the store returns the usernames that are gone."""
        holder = Credentials(CredentialStore({"a": "1", "b": "2"}))
        new = CredentialStore({"b": "3", "c": "4"})
        self.assertEqual(holder.replace(new), frozenset({"a"}))
        self.assertIs(holder.store, new)
        self.assertTrue(new.knows("c") and not new.knows("a"))


class ServiceSetCredentialsTests(SynchronousTestCase):
    """APIService.setCredentials on a running in-memory server."""

    def test_swap(self) -> None:
        """New users log in, removed users' sessions end, others keep theirs."""
        recorder = EventRecorder(self)
        server = MemoryServer()
        alice, bob = server.login(), server.login("bob", "securepassword")
        ended = server.service.setCredentials({"alice": "newpassword", "carol": "pw"})
        self.assertEqual(ended, 1)
        self.assertEqual(server.post("/communicate", {}, cookie=alice).code, 200)
        self.assertEqual(server.post("/communicate", {}, cookie=bob).code, 401)
        self.assertEqual(server.post("/login", {"username": "bob",
                                                "password": "securepassword"}).code, 401)
        self.assertEqual(server.post("/login", {"username": "alice",
                                                "password": "password123"}).code, 401)
        server.login("alice", "newpassword")
        server.login("carol", "pw")
        self.assertIn("Credentials replaced: 2 user(s), 1 removed ('bob'), 1 session(s) ended",
                      server.log.text)
        self.assertIn("Session ended (user removed from the credentials): user='bob'",
                      server.log.text)
        [replaced] = recorder.named("credentials_replaced")
        self.assertEqual(replaced["log_level"].name, "info")

    def test_config_unchanged(self) -> None:
        """The configuration stays immutable: it keeps the start-up credentials."""
        server = MemoryServer()
        server.service.setCredentials({"zed": "pw"})
        self.assertEqual(dict(server.config.credentials),
                         {"alice": "password123", "bob": "securepassword"})
        self.assertTrue(server.config.credential_store.knows("alice"))

    def test_bad_credentials_keep_the_old(self) -> None:
        """Bad input raises and changes nothing."""
        server = MemoryServer()
        token = server.login()
        for bad, error in [(["alice"], TypeError), ({"alice": 5}, TypeError),
                           ({"": "x"}, ValueError)]:
            with self.assertRaises(error):
                server.service.setCredentials(bad)  # type: ignore[arg-type]
        self.assertEqual(server.post("/communicate", {}, cookie=token).code, 200)
        server.login("bob", "securepassword")

    def test_mixed_warning_on_reload(self) -> None:
        """The mixed-credentials warning is logged again when new credentials mix kinds."""
        server = MemoryServer()
        self.assertNotIn("Credentials mix", server.log.text)
        server.service.setCredentials({"alice": hashPassword("pw"), "bob": "plain"})
        self.assertIn("Credentials mix plaintext, scrypt", server.log.text)

    def test_login_in_flight_for_removed_user(self) -> None:
        """A hashed login that was being checked when its user was removed is refused."""
        pool = HeldPool()
        server = MemoryServer(credentials={"alice": hashPassword("pw")}, hash_pool=pool)
        channel, transport = server.connect()
        channel.dataReceived(request_bytes("/login",
                                           b'{"username": "alice", "password": "pw"}'))
        server.service.setCredentials({"bob": "other"})
        pool.release()
        self.assertEqual(status_of(transport.value()), 401)
        self.assertEqual(server.service.getSessions(), [])

    def test_login_in_flight_for_kept_user(self) -> None:
        """A login being checked when other users change still succeeds."""
        pool = HeldPool()
        server = MemoryServer(credentials={"alice": hashPassword("pw")}, hash_pool=pool)
        channel, transport = server.connect()
        channel.dataReceived(request_bytes("/login",
                                           b'{"username": "alice", "password": "pw"}'))
        store: Any = server.service.credentials.store
        server.service.setCredentials({"alice": hashPassword("pw"), "bob": "x"})
        self.assertIsNot(server.service.credentials.store, store)
        pool.release()
        self.assertEqual(status_of(transport.value()), 200)

    def test_file_round_trip(self) -> None:
        """What a daemon reload does: read a file, hand it over."""
        folder = temporary_directory(self)
        path = os.path.join(folder, "c.json")
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"dave": "pw"}, handle)
        server = MemoryServer()
        server.service.setCredentials(read_credentials_file(path))
        server.login("dave", "pw")
