"""The session store's options: URLs and prefixes are checked when the configuration is made,
with errors that name the option and never show a password."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig
from serverapi._sessions import SessionRegistry
from serverapi._store_address import StoreAddress, parse_store_url

from .helpers import CREDENTIALS, echo


def build(**overrides: Any) -> ServerConfig:
    """A config with good defaults and C{overrides} applied."""
    return ServerConfig(credentials=CREDENTIALS, request_callback=echo, **overrides)


class StoreURLTests(SynchronousTestCase):
    """redis:// and rediss:// URLs."""

    def test_parts(self) -> None:
        """Host, port, database, user, password, TLS and a CA file are read from the URL."""
        self.assertEqual(parse_store_url("redis://localhost"), StoreAddress("localhost"))
        self.assertEqual(
            parse_store_url("rediss://app:p%40ss@[::1]:6380/3?ca=/etc/ca.pem"),
            StoreAddress("::1", 6380, 3, "app", "p@ss", True, "/etc/ca.pem"))
        self.assertEqual(parse_store_url("redis://:secret@10.0.0.5/"),
                         StoreAddress("10.0.0.5", 6379, 0, None, "secret"))

    def test_shown_without_password(self) -> None:
        """str() of an address, used in every log line and error, hides the password."""
        address = parse_store_url("redis://app:topsecret@cache:6390/2")
        self.assertEqual(str(address), "redis://app:***@cache:6390/2")
        self.assertNotIn("topsecret", repr(address))

    def test_malformed(self) -> None:
        """Each malformed URL is a ValueError (or TypeError) saying what is wrong."""
        cases = {
            "http://localhost": "must start with redis:// or rediss://",
            "localhost:6379": "must start with redis://",
            "redis://": "names no host",
            "redis://host:port/0": "malformed URL",
            "redis://host:99999": "malformed URL",
            "redis://host/zero": "database number",
            "redis://host/0/1": "database number",
            "redis://host/0?timeout=1": "unknown URL option(s) timeout",
            "redis://host/0?ca=/x.pem": "ca= needs rediss://",
            "redis://host#frag": "fragment",
        }
        for url, message in cases.items():
            with self.assertRaises(ValueError, msg=url) as caught:
                build(session_store=url)
            self.assertIn(message, str(caught.exception))
            self.assertIn("session_store", str(caught.exception))
        with self.assertRaises(TypeError):
            build(session_store=6379)

    def test_prefix(self) -> None:
        """The prefix must be a non-empty str without spaces."""
        self.assertEqual(build(session_store_prefix="app1:").session_store_prefix, "app1:")
        for bad in ("", "two words", "tab\t"):
            with self.assertRaises(ValueError, msg=bad):
                build(session_store_prefix=bad)
        with self.assertRaises(TypeError):
            build(session_store_prefix=b"app")

    def test_default_is_memory(self) -> None:
        """Without session_store, sessions stay in this process."""
        config = build()
        self.assertIsNone(config.session_store_address)


class MemoryHotPathTests(SynchronousTestCase):
    """The default store answers at once: no Deferred on the request path."""

    def test_answers_are_values(self) -> None:
        """create, authenticate, find and end return values, not Deferreds."""
        sessions = SessionRegistry(now=lambda: 0.0, logger=build().log)
        session = sessions.create("alice")
        self.assertIs(sessions.authenticate(session.session_token), session)
        self.assertIs(sessions.find(session.session_token), session)
        self.assertIs(sessions.registered(session.session_token), True)
        self.assertIs(sessions.end(session, "logout"), True)
        self.assertIsNone(sessions.authenticate(session.session_token))
