"""ServerConfig and the ThreadedAPIServer constructor reject bad arguments with clear errors."""

from __future__ import annotations

import logging
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from serverapi import ServerConfig, ThreadedAPIServer
from serverapi._config import endpoint_for

from .helpers import CREDENTIALS, echo


def build(**overrides: Any) -> ServerConfig:
    """A config with good defaults and C{overrides} applied."""
    options: dict[str, Any] = {"credentials": CREDENTIALS, "request_callback": echo}
    options.update(overrides)
    return ServerConfig(**options)


class ServerConfigTests(SynchronousTestCase):
    """Validation of every option."""

    def test_defaults(self) -> None:
        """The defaults are the contract's."""
        config = build()
        self.assertEqual(
            (config.login_cookie_level, config.timeout, config.max_body_bytes,
             config.session_check_interval, config.callback_timeout, config.max_threads,
             config.max_queued_requests, config.shutdown_grace, config.login_attempts,
             config.login_window, config.max_sessions_per_user, config.max_sessions,
             config.session_idle_timeout, config.session_max_age, config.endpoint),
            ("Strict", 5.0, 4 * 1024 * 1024, 1.0, 30.0, 10, 100, 10.0, 5, 60.0, 64, 100_000,
             None, None, "tcp:8000:interface=127.0.0.1"))
        self.assertEqual(config.logger, logging.getLogger("serverapi"))
        self.assertEqual(config.request_deadline, 15.0)

    def test_immutable_and_copied(self) -> None:
        """The config cannot be changed, and later changes to the caller's dict do not leak in."""
        credentials = dict(CREDENTIALS)
        config = build(credentials=credentials)
        credentials["eve"] = "x"
        self.assertNotIn("eve", config.credentials)
        with self.assertRaises(AttributeError):
            config.timeout = 1  # type: ignore[misc]
        with self.assertRaises(TypeError):
            config.credentials["eve"] = "x"  # type: ignore[index]

    def test_type_errors(self) -> None:
        """Wrong types are TypeErrors naming the argument."""
        cases = [
            {"credentials": [("a", "b")]}, {"credentials": {"a": 1}}, {"credentials": {1: "a"}},
            {"request_callback": "not callable"}, {"request_callback": lambda a, b: None},
            {"request_callback": lambda: None}, {"session_validity_callback": lambda: True},
            {"session_validity_callback": 5}, {"login_cookie_level": None},
            {"logger": "serverapi"}, {"timeout": "5"}, {"timeout": True},
            {"max_recv_calls_per_request": 1.5}, {"max_threads": None},
            {"session_idle_timeout": "1"},
        ]
        for case in cases:
            with self.assertRaises(TypeError, msg=str(case)) as caught:
                build(**case)
            self.assertIn(next(iter(case)), str(caught.exception))

    def test_value_errors(self) -> None:
        """Out-of-range values are ValueErrors naming the argument."""
        cases = [
            {"login_cookie_level": "strict"}, {"timeout": 0}, {"timeout": -1},
            {"timeout": float("nan")}, {"timeout": float("inf")},
            {"max_recv_calls_per_request": 0}, {"max_threads": 0}, {"max_queued_requests": -1},
            {"callback_timeout": 0}, {"shutdown_grace": -2}, {"login_attempts": 0},
            {"max_sessions": 0}, {"max_sessions_per_user": 0}, {"session_max_age": 0},
            {"session_check_interval": 0}, {"credentials": {"": "x"}},
        ]
        for case in cases:
            with self.assertRaises(ValueError, msg=str(case)):
                build(**case)

    def test_callables_with_defaults_accepted(self) -> None:
        """Callables with extra optional or variadic parameters are fine."""
        build(request_callback=lambda u, t, d, extra=None: None)
        build(request_callback=lambda *args: None)
        build(session_validity_callback=lambda *args, **kw: True)
        build(max_queued_requests=0)

    def test_endpoint_for(self) -> None:
        """Hosts are escaped into endpoint descriptions, IPv6 included."""
        self.assertEqual(endpoint_for("127.0.0.1", 8000),
                         "tcp:port=8000:interface=127.0.0.1:backlog=1024")
        self.assertEqual(endpoint_for("::1", 0), "tcp:port=0:interface=\\:\\:1:backlog=1024")


class ConstructorTests(SynchronousTestCase):
    """ThreadedAPIServer keeps the seed's positional order and validates its arguments."""

    def test_seed_positional_order(self) -> None:
        """All nine positional arguments in the seed's order."""
        logger = logging.getLogger("x")
        server = ThreadedAPIServer("127.0.0.1", 8123, CREDENTIALS, echo, None, "Lax", logger,
                                   2.5, 16)
        self.assertEqual((server.host, server.port), ("127.0.0.1", 8123))
        self.assertFalse(server.isUsingTLS())

    def test_new_options_keyword_only(self) -> None:
        """Options beyond the seed's cannot be passed positionally."""
        with self.assertRaises(TypeError):
            ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, None, "Lax", None, 5.0, 16,
                              1.0)  # type: ignore[misc]
        server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, max_threads=3,
                                   session_idle_timeout=60)
        self.assertEqual(server._config.max_threads, 3)

    def test_bad_address(self) -> None:
        """host and port are checked."""
        for host, port, error in [(None, 1, TypeError), ("", 1, ValueError),
                                  ("h", "80", TypeError), ("h", -1, ValueError),
                                  ("h", 65536, ValueError), ("h", True, TypeError)]:
            with self.assertRaises(error):
                ThreadedAPIServer(host, port, CREDENTIALS, echo)  # type: ignore[arg-type]

    def test_bad_options(self) -> None:
        """Options are validated by the same configuration object."""
        with self.assertRaises(ValueError):
            ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo, login_cookie_level="none")
        with self.assertRaises(TypeError):
            ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, "echo")  # type: ignore[arg-type]

    def test_stop_when_not_running(self) -> None:
        """Stopping a server that is not running is a RuntimeError."""
        server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo)
        with self.assertRaises(RuntimeError):
            server.stopAPIServer()
        self.assertEqual(server.getSessions(), [])
        self.assertEqual(server.invalidateUserSessions("alice"), 0)


class OneSourceTests(SynchronousTestCase):
    """Options, defaults and daemon names are defined once, in ServerConfig."""

    def test_threaded_defaults_are_the_configs(self) -> None:
        """ThreadedAPIServer's positional defaults and every keyword option are ServerConfig's."""
        import inspect

        from serverapi import ThreadedAPIServer
        from serverapi._config import DEFAULTS, KEYWORD_OPTIONS

        parameters = inspect.signature(ThreadedAPIServer.__init__).parameters
        for name in ("login_cookie_level", "timeout", "max_recv_calls_per_request"):
            self.assertEqual(parameters[name].default, DEFAULTS[name], name)
        server = ThreadedAPIServer("127.0.0.1", 0, {"a": "b"}, echo)
        for name in KEYWORD_OPTIONS:
            self.assertEqual(getattr(server._config, name), DEFAULTS[name], name)
        server = ThreadedAPIServer("127.0.0.1", 0, {"a": "b"}, echo, max_threads=3,
                                   cors_origins=["https://a.test"])
        self.assertEqual((server._config.max_threads, server._config.cors_origins),
                         (3, ("https://a.test",)))

    def test_unknown_keyword(self) -> None:
        """An unknown or misplaced keyword is a TypeError naming it and the known ones."""
        from serverapi import ThreadedAPIServer

        for bad in ("max_thread", "endpoint", "tls"):
            with self.assertRaises(TypeError) as caught:
                ThreadedAPIServer("127.0.0.1", 0, {"a": "b"}, echo, **{bad: 1})
            self.assertIn(repr(bad), str(caught.exception))
            self.assertIn("max_threads", str(caught.exception))

    def test_daemon_flags_and_defaults(self) -> None:
        """Every numeric option is a twistd flag whose default is ServerConfig's."""
        from serverapi import tap
        from serverapi._config import DEFAULTS, NUMBERS, daemon_flag

        options = tap.Options()
        for option in NUMBERS:
            flag = daemon_flag(option)
            default = options[flag]
            self.assertEqual(None if default is None else option.metadata["kind"](default),
                             DEFAULTS[option.name], flag)
