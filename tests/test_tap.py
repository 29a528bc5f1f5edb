"""The twistd plugin: discovery, options, makeService, and a real twistd process."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

from treq.testing import StubTreq
from twisted.application.service import IServiceMaker
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.plugin import getPlugins
from serverapi._tls_connection import TLSServerFactory
from twisted.python.usage import UsageError
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from serverapi import tap
from serverapi._http import APISite
from serverapi._service import APIService

from .helpers import ROOT, child_env, echo

HANDLER = "tests.test_tap:handler"


def handler(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict]:
    """A request callback importable by path."""
    return echo(username, token, data)


def checker(session: Any) -> bool:
    """A validity callback importable by path."""
    return True


def two_args(a: Any, b: Any) -> None:
    """A callable with the wrong number of arguments."""


NOT_CALLABLE = 42


class Files:
    """Temporary files for option tests."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.dir = tempfile.mkdtemp()
        case.addCleanup(shutil.rmtree, self.dir)

    def write(self, name: str, text: str, mode: int = 0o600) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, mode)
        return path


class PluginTests(SynchronousTestCase):
    """twistd finds the plugin."""

    def test_discovered(self) -> None:
        """getPlugins(IServiceMaker) finds tapname serverapi pointing at serverapi.tap."""
        makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertIn("serverapi", makers)
        self.assertIs(makers["serverapi"].options, tap.Options)

    def test_installed_package(self) -> None:
        """A non-editable install carries the plugin (`twistd --help` lists serverapi), the
        OpenAPI description and the `serverapi` console script."""
        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work)
        source = os.path.join(work, "src")
        shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "_trial_temp*", "__pycache__"))
        target = os.path.join(work, "site")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                        "--target", target, source],
                       check=True, capture_output=True)
        self.assertTrue(os.path.exists(os.path.join(target, "twisted", "plugins",
                                                    "serverapi_plugin.py")))
        self.assertFalse(os.path.exists(os.path.join(target, "twisted", "__init__.py")))
        self.assertTrue(os.path.exists(os.path.join(target, "serverapi", "py.typed")))
        self.assertTrue(os.path.exists(os.path.join(target, "serverapi", "openapi.json")))
        self.assertTrue(os.path.exists(os.path.join(target, "bin", "serverapi")))
        env = dict(os.environ, PYTHONPATH=target)
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--help"],
            cwd=work, env=env, capture_output=True, text=True)
        self.assertIn("serverapi", result.stdout)
        self.assertIn("login-protected JSON API", result.stdout)


class OptionsTests(SynchronousTestCase):
    """tap.Options parsing: good input as a whole dict, and every bad input."""

    def setUp(self) -> None:
        self.files = Files(self)
        self.creds = self.files.write("creds.json", json.dumps({"alice": "password123"}))

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(args))
        return options

    def test_defaults(self) -> None:
        """The minimal command line gives every default."""
        options = self.parse("--credentials", self.creds, "--callback", HANDLER)
        self.assertEqual(dict(options), {
            "listen": "tcp:8000:interface=127.0.0.1", "credentials": {"alice": "password123"},
            "callback": handler, "validity-callback": None, "tls-cert": None, "tls-key": None,
            "tls-ca": None, "cookie-level": "Strict", "timeout": 5.0, "max-recv-calls": 1024,
            "session-check-interval": 1.0, "callback-timeout": 30.0, "max-threads": 10,
            "max-queued-requests": 100, "queue-timeout": None, "shutdown-grace": 10.0, "login-attempts": 5,
            "login-window": 60.0, "max-sessions-per-user": 64, "max-sessions": 100000,
            "session-idle-timeout": None, "session-max-age": None, "cors-origins": [],
            "trusted-proxies": [], "tls": None, "access-log": None, "metrics": None,
            "session-store": None, "session-store-prefix": "serverapi:", "workers": None})
        self.assertEqual(options.config.endpoint, "tcp:8000:interface=127.0.0.1")
        self.assertEqual(options.warnings, [])

    def test_everything(self) -> None:
        """Every option given is parsed into the dict and the configuration."""
        options = self.parse(
            "--listen", "tcp:0:interface=127.0.0.1", "--credentials", self.creds,
            "--callback", HANDLER, "--validity-callback", "tests.test_tap:checker",
            "--cookie-level", "Lax", "--timeout", "2.5", "--max-recv-calls", "16",
            "--session-check-interval", "0.5", "--callback-timeout", "3", "--max-threads", "4",
            "--max-queued-requests", "0", "--queue-timeout", "1.5", "--shutdown-grace", "1", "--login-attempts", "7",
            "--login-window", "30", "--max-sessions-per-user", "2", "--max-sessions", "9",
            "--session-idle-timeout", "600", "--session-max-age", "3600",
            "--cors-origin", "https://app.example.com", "--cors-origin", "http://localhost:3000",
            "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "unix", "--workers", "3")
        expected = {
            "listen": "tcp:0:interface=127.0.0.1", "credentials": {"alice": "password123"},
            "callback": handler, "validity-callback": checker, "tls-cert": None,
            "tls-key": None, "tls-ca": None, "cookie-level": "Lax", "timeout": 2.5,
            "max-recv-calls": 16, "session-check-interval": 0.5, "callback-timeout": 3.0,
            "max-threads": 4, "max-queued-requests": 0, "queue-timeout": 1.5,
            "shutdown-grace": 1.0,
            "login-attempts": 7, "login-window": 30.0, "max-sessions-per-user": 2,
            "max-sessions": 9, "session-idle-timeout": 600.0, "session-max-age": 3600.0,
            "cors-origins": ["https://app.example.com", "http://localhost:3000"],
            "trusted-proxies": ["10.0.0.0/8", "unix"], "tls": None, "access-log": None,
            "metrics": None, "session-store": None, "session-store-prefix": "serverapi:",
            "workers": 3}
        self.assertEqual(dict(options), expected)
        config = options.config
        self.assertEqual((config.max_body_bytes, config.session_validity_callback,
                          config.max_queued_requests, config.session_max_age),
                         (16 * 4096, checker, 0, 3600.0))
        self.assertEqual((config.cors_origins, config.trusted_proxies),
                         (("https://app.example.com", "http://localhost:3000"),
                          ("10.0.0.0/8", "unix")))

    def test_bad_input(self) -> None:
        """Each bad input is a UsageError naming the option and the problem."""
        files = self.files
        unreadable = files.write("secret.json", "{}", 0o000)
        cases: list[tuple[list[str], str]] = [
            ([], "--credentials is required"),
            (["--credentials", self.creds], "--callback is required"),
            (["--credentials", "/nonexistent.json", "--callback", HANDLER], "cannot read"),
            (["--credentials", files.write("bad.json", "{nope"), "--callback", HANDLER],
             "not valid JSON"),
            (["--credentials", files.write("list.json", "[1]"), "--callback", HANDLER],
             "must hold a JSON object"),
            (["--credentials", files.write("empty.json", "{}"), "--callback", HANDLER],
             "holds no users"),
            (["--credentials", files.write("num.json", '{"a": 1}'), "--callback", HANDLER],
             "entry for 'a'"),
            (["--credentials", self.creds, "--callback", "nomodule_xyz:f"], "cannot import"),
            (["--credentials", self.creds, "--callback", "tests.exits_at_import:handle"],
             "--callback: cannot import 'tests.exits_at_import': SystemExit: this module "
             "refuses to be imported"),
            (["--credentials", self.creds, "--callback", "tests.test_tap:missing"],
             "has no 'missing'"),
            (["--credentials", self.creds, "--callback", "tests.test_tap"],
             "must look like package.module:function"),
            (["--credentials", self.creds, "--callback", "tests.test_tap:NOT_CALLABLE"],
             "must be callable"),
            (["--credentials", self.creds, "--callback", "tests.test_tap:two_args"],
             "must accept 3 positional arguments"),
            (["--credentials", self.creds, "--callback", HANDLER, "--validity-callback",
              "tests.test_tap:two_args"], "must accept 1 positional argument"),
            (["--credentials", self.creds, "--callback", HANDLER, "--cookie-level", "strict"],
             "--cookie-level must be one of"),
            (["--credentials", self.creds, "--callback", HANDLER, "--timeout", "0"],
             "--timeout must be positive"),
            (["--credentials", self.creds, "--callback", HANDLER, "--timeout", "-1"],
             "--timeout must be positive"),
            (["--credentials", self.creds, "--callback", HANDLER, "--timeout", "soon"],
             "--timeout must be a number"),
            (["--credentials", self.creds, "--callback", HANDLER, "--max-threads", "2.5"],
             "--max-threads must be an integer"),
            (["--credentials", self.creds, "--callback", HANDLER, "--timeout", "nan"],
             "--timeout must be positive"),
            (["--credentials", self.creds, "--callback", HANDLER, "--listen", "bogus:1"],
             "--listen"),
            (["--credentials", self.creds, "--callback", HANDLER, "--tls-cert", self.creds],
             "--tls-cert and --tls-key must be given together"),
            (["--credentials", self.creds, "--callback", HANDLER, "--tls-ca", self.creds],
             "--tls-ca requires --tls-cert and --tls-key"),
            (["--credentials", self.creds, "--callback", HANDLER, "--tls-cert", "/nope.pem",
              "--tls-key", "/nope.pem"], "--tls-cert '/nope.pem' does not exist"),
            (["--credentials", self.creds, "--callback", HANDLER, "--tls-cert",
              "my_certfile_dir/server_certfile.pem", "--tls-key", "key.pem"],
             "--tls-cert 'my_certfile_dir/server_certfile.pem' does not exist"),
            (["--credentials", self.creds, "--callback", HANDLER, "--tls-cert", self.creds,
              "--tls-key", self.creds], "--tls-cert"),
            (["--credentials", self.creds, "--callback", HANDLER, "--cors-origin", "*"],
             "--cors-origin cannot be '*'"),
            (["--credentials", self.creds, "--callback", HANDLER, "--cors-origin",
              "https://app.example.com/path"], "--cors-origin: 'https://app.example.com/path' "
                                               "is not an origin"),
            (["--credentials", self.creds, "--callback", HANDLER, "--trusted-proxy", "proxy"],
             "--trusted-proxy: 'proxy' is not an IP address"),
            (["--credentials", self.creds, "--callback", HANDLER, "--session-store",
              "redis://:pw@host:port"], "--session-store: malformed URL"),
            (["--credentials", self.creds, "--callback", HANDLER, "--session-store",
              "memcached://host"], "--session-store must start with redis:// or rediss://"),
            (["--credentials", self.creds, "--callback", HANDLER, "--session-store",
              "redis://host", "--session-store-prefix", ""],
             "--session-store-prefix must be non-empty"),
        ]
        if os.geteuid() != 0:  # root reads any file
            cases.append((["--credentials", unreadable, "--callback", HANDLER], "cannot read"))
        for args, message in cases:
            with self.assertRaises(UsageError, msg=str(args)) as caught:
                self.parse(*args)
            self.assertIn(message, str(caught.exception), args)

    def test_world_readable_plaintext_warns(self) -> None:
        """A credentials file with plaintext passwords readable by others gets a warning."""
        readable = self.files.write("open.json", json.dumps({"a": "plain"}), 0o644)
        options = self.parse("--credentials", readable, "--callback", HANDLER)
        self.assertEqual(len(options.warnings), 1)
        self.assertIn("plaintext passwords", options.warnings[0])
        hashed = self.files.write("hashed.json", json.dumps(
            {"a": "$pbkdf2-sha256$i=1000$c2FsdHNhbHRzYWx0c2FsdA$"
                  "8nX7hwFEzIB8aPajJTYK8weHQc5Ngz0pFVAKvSu4jQA"}), 0o644)
        self.assertEqual(self.parse("--credentials", hashed, "--callback", HANDLER).warnings, [])

    def test_help_documents_every_option(self) -> None:
        """`twistd serverapi --help` mentions every option."""
        text = str(tap.Options())
        for name in ["listen", "credentials", "callback", "validity-callback", "tls-cert",
                     "tls-key", "tls-ca", "cookie-level", "timeout", "max-recv-calls",
                     "session-check-interval", "callback-timeout", "max-threads",
                     "max-queued-requests", "queue-timeout", "shutdown-grace", "login-attempts", "login-window",
                     "max-sessions-per-user", "max-sessions", "session-idle-timeout",
                     "session-max-age", "cors-origin", "trusted-proxy"]:
            self.assertIn(f"--{name}=", text)


class MakeServiceTests(SynchronousTestCase):
    """makeService assembles the shared core."""

    def setUp(self) -> None:
        self.files = Files(self)
        self.creds = self.files.write("creds.json", json.dumps({"alice": "password123"}))

    def test_plain(self) -> None:
        """The service is the core APIService, listening on the --listen endpoint."""
        options = tap.Options()
        options.parseOptions(["--credentials", self.creds, "--callback", HANDLER,
                              "--listen", "tcp:8443:interface=127.0.0.3"])
        reactor = MemoryReactorClock()
        parent = tap.makeService(options, reactor)
        service, sigterm = list(parent)
        self.assertIsInstance(service, APIService)
        self.assertIsInstance(sigterm, tap.DaemonProcess)
        parent.privilegedStartService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8443, "127.0.0.3"))
        self.assertIsInstance(factory, APISite)
        parent.startService()
        self.successResultOf(parent.stopService())

    def test_workers_start_after_privileges(self) -> None:
        """With --workers the main process listens in privilegedStartService (before twistd
        drops privileges) without accepting, and starts no worker before startService; bad
        --workers values and combinations are one-line errors."""
        from serverapi._process_service import ProcessService

        from .certificates import Certificates
        certs = Certificates(self.files.dir)
        options = tap.Options()
        options.parseOptions(["--credentials", self.creds, "--callback", HANDLER,
                              "--listen", "tcp:0", "--workers", "2"])

        class Reactor(MemoryReactorClock):
            """Its ports can stop reading, as a real listening socket can."""

            def listenTCP(self, *args: Any, **kwargs: Any) -> Any:
                port = super().listenTCP(*args, **kwargs)
                port.stopReading = lambda: None
                return port

        reactor = Reactor()
        parent = tap.makeService(options, reactor)
        [service] = [child for child in parent if isinstance(child, ProcessService)]
        parent.privilegedStartService()
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsNone(factory.buildProtocol(None))
        self.assertIsNone(service.supervisor)
        self.assertEqual(service.workers, 2)
        for args, message in [(["--workers", "0"], "--workers must be at least 1, got 0"),
                              (["--workers", "two"], "--workers must be an integer"),
                              (["--workers", "2", "--metrics", "tcp:0"],
                               "not available with worker processes"),
                              (["--workers", "2", "--listen",
                                f"ssl:0:privateKey={certs.server_key}:certKey={certs.server_cert}"],
                               "cannot be shared with worker processes")]:
            with self.assertRaises(usage.UsageError) as raised:
                tap.Options().parseOptions(["--credentials", self.creds, "--callback", HANDLER,
                                            *args])
            self.assertIn(message, str(raised.exception))

    def test_tls(self) -> None:
        """With --tls-cert/--tls-key the site is wrapped in TLS."""
        from .certificates import Certificates
        certs = Certificates(self.files.dir)
        options = tap.Options()
        options.parseOptions(["--credentials", self.creds, "--callback", HANDLER,
                              "--tls-cert", certs.server_cert, "--tls-key", certs.server_key,
                              "--tls-ca", certs.ca_cert, "--listen", "tcp:0"])
        reactor = MemoryReactorClock()
        parent = tap.makeService(options, reactor)
        parent.privilegedStartService()
        [(_, factory, _, _)] = reactor.tcpServers
        self.assertIsInstance(factory, TLSServerFactory)
        self.assertIsInstance(factory.wrappedFactory, APISite)


class TwistdProcessTests(SynchronousTestCase):
    """One real `twistd -n serverapi` process."""

    def test_serve_and_sigterm(self) -> None:
        """twistd serves login and communicate, then exits 0 on SIGTERM, logging no secrets."""
        files = Files(self)
        creds = files.write("creds.json", json.dumps({"alice": "password123"}))
        log_path = os.path.join(files.dir, "twistd.log")
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "--nodaemon", "--pidfile=", "--logfile", log_path, "serverapi",
             "--listen", "tcp:0:interface=127.0.0.1", "--credentials", creds,
             "--callback", HANDLER], cwd=files.dir, env=child_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        port = None
        deadline = time.monotonic() + 30
        while port is None and time.monotonic() < deadline and process.poll() is None:
            if os.path.exists(log_path):
                with open(log_path, encoding="utf-8") as handle:
                    found = re.search(r"serverapi listening on .*port=(\d+)", handle.read())
                if found:
                    port = int(found.group(1))
                    break
            time.sleep(0.05)
        if port is None:
            process.kill()
            self.fail(f"twistd did not start listening: {process.communicate()[0]!r}")
        base = f"http://127.0.0.1:{port}"
        login = urllib.request.Request(base + "/login", method="POST", data=json.dumps(
            {"username": "alice", "password": "password123"}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=10) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
        talk = urllib.request.Request(base + "/communicate", method="POST",
                                      data=b'{"message": "hi"}',
                                      headers={"Content-Type": "application/json",
                                               "Cookie": cookie})
        with urllib.request.urlopen(talk, timeout=10) as response:
            self.assertEqual(json.loads(response.read()), {"echo": "hi", "user": "alice"})
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(30), 0)
        with open(log_path, encoding="utf-8") as handle:
            log = handle.read()
        self.assertIn("Login: user='alice'", log)
        self.assertNotIn("password123", log)
        self.assertNotIn(cookie.split("=", 1)[1], log)
        self.assertIn("Received SIGTERM, stopping gracefully.", log)
        self.assertIn("Server Shut Down", log)


class OperatingOptionsTests(SynchronousTestCase):
    """--access-log, --metrics, and the combinations refused at start."""

    def setUp(self) -> None:
        self.files = Files(self)
        self.creds = self.files.write("creds.json", json.dumps({"alice": "password123"}))

    def parse(self, *args: str) -> tap.Options:
        """Parse the minimal command line plus C{args}."""
        options = tap.Options()
        options.parseOptions(["--credentials", self.creds, "--callback", HANDLER, *args])
        return options

    def test_parsed(self) -> None:
        """Both options reach the configuration; the access log file is created at once."""
        access = os.path.join(self.files.dir, "access.log")
        options = self.parse("--access-log", access, "--metrics", "tcp:9100:interface=127.0.0.2")
        self.assertEqual((options["access-log"], options["metrics"]),
                         (access, "tcp:9100:interface=127.0.0.2"))
        self.assertEqual((options.config.access_log, options.config.metrics_endpoint),
                         (access, "tcp:9100:interface=127.0.0.2"))
        self.assertTrue(os.path.exists(access))
        self.assertEqual(options.credentials_path, self.creds)

    def test_refused(self) -> None:
        """ssl: with --tls-cert, an unopenable access log, a bad metrics endpoint."""
        from .certificates import Certificates
        certs = Certificates(self.files.dir)
        cases = [
            (["--listen", "ssl:8443:privateKey=k.pem", "--tls-cert", certs.server_cert,
              "--tls-key", certs.server_key], "--listen ssl:... and --tls-cert both set up "
                                              "TLS (it would be wrapped twice)"),
            (["--listen", " SSL:8443", "--tls-cert", certs.server_cert, "--tls-key",
              certs.server_key], "wrapped twice"),
            (["--access-log", self.files.dir], f"--access-log: cannot open {self.files.dir!r}"),
            (["--access-log", "/nonexistent/dir/access.log"], "No such file or directory"),
            (["--metrics", "bogus:1"], "--metrics: 'bogus:1' is not a valid endpoint"),
        ]
        for args, message in cases:
            with self.assertRaises(UsageError, msg=str(args)) as caught:
                self.parse(*args)
            self.assertIn(message, str(caught.exception), args)
        self.parse("--listen", "ssl:0:privateKey=" + certs.server_key + ":certKey="
                   + certs.server_cert)  # ssl: alone is fine

    def test_metrics_need_the_extra(self) -> None:
        """Without prometheus_client, --metrics is refused naming the extra."""
        import serverapi._config

        self.patch(serverapi._config, "metrics_available", lambda: False)
        with self.assertRaises(UsageError) as caught:
            self.parse("--metrics", "tcp:9100")
        self.assertIn("--metrics needs prometheus_client: install 'serverapi[metrics]'",
                      str(caught.exception))


class BusyReactor(MemoryReactorClock):
    """A reactor on which every port is taken."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50,
                  interface: str = "") -> Any:
        """Fail as a busy port does."""
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


class StartErrorTests(SynchronousTestCase):
    """A daemon that cannot listen says so in one line."""

    def test_busy_port(self) -> None:
        """CannotListenError becomes StartError, printed without a traceback."""
        files = Files(self)
        options = tap.Options()
        options.parseOptions(["--credentials", files.write("c.json", '{"a": "b"}'),
                              "--callback", HANDLER, "--listen", "tcp:8000:interface=127.0.0.1"])
        parent = tap.makeService(options, BusyReactor())
        self.patch(sys, "excepthook", sys.excepthook)
        with self.assertRaises(tap.StartError) as caught:
            parent.privilegedStartService()
        self.assertEqual(str(caught.exception),
                         "cannot listen on 127.0.0.1:8000: Address already in use")
        printed = io.StringIO()
        self.patch(sys, "stderr", printed)
        sys.excepthook(tap.StartError, caught.exception, None)
        self.assertEqual(printed.getvalue(),
                         "serverapi: cannot listen on 127.0.0.1:8000: Address already in use\n")


class ReloadTests(SynchronousTestCase):
    """SIGHUP's work, in memory: the credentials file is read again and handed over."""

    def setUp(self) -> None:
        self.files = Files(self)
        self.creds = self.files.write("creds.json", json.dumps(
            {"alice": "password123", "bob": "securepassword"}))
        options = tap.Options()
        options.parseOptions(["--credentials", self.creds, "--callback", HANDLER])
        self.reactor = MemoryReactorClock()
        self.parent = tap.makeService(options, self.reactor)
        self.api, self.daemon = list(self.parent)
        self.parent.startService()
        self.addCleanup(self.parent.stopService)

    def post(self, path: str, body: Any, cookie: str | None = None) -> Any:
        """POST JSON to the daemon's resource tree."""
        headers = {b"Content-Type": [b"application/json"]}
        if cookie:
            headers[b"Cookie"] = [f"sessionToken={cookie}".encode()]
        client = StubTreq(self.api.root)  # a new one each time: it keeps no cookies
        response = self.successResultOf(client.post(
            "http://example.test" + path, json.dumps(body).encode(), headers=headers))
        return response

    def users(self) -> list[str]:
        """Whose sessions are live."""
        return sorted(session.username for session in self.api.getSessions())

    def login(self, username: str, password: str) -> str | None:
        """Log in; the token, or None when refused."""
        response = self.post("/login", {"username": username, "password": password})
        if response.code != 200:
            return None
        return response.headers.getRawHeaders(b"Set-Cookie")[0].decode().split(
            ";")[0].split("=", 1)[1]

    def test_good_then_bad_file(self) -> None:
        """A good file replaces the users (removed ones lose their sessions); a bad one keeps
        the old users and logs one error."""
        from .test_audit import EventRecorder

        recorder = EventRecorder(self)
        errors: list[dict[str, Any]] = []

        def observe(event: dict[str, Any]) -> None:
            """Keep errors."""
            if event["log_level"] >= LogLevel.error:
                errors.append(event)

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        alice, bob = self.login("alice", "password123"), self.login("bob", "securepassword")
        self.files.write("creds.json", json.dumps({"alice": "password123", "carol": "pw"}))
        self.assertTrue(alice and bob)
        self.daemon.reload()
        self.assertEqual(self.users(), ["alice"])
        self.assertIsNotNone(self.login("carol", "pw"))
        self.assertIsNone(self.login("bob", "securepassword"))
        self.files.write("creds.json", "{not json")
        self.daemon.reload()
        self.assertEqual(self.users(), ["alice", "carol"])
        self.assertIsNotNone(self.login("carol", "pw"))
        [failed] = recorder.named("credentials_reload_failed")
        self.assertIn("Credentials not reloaded, keeping the old ones: --credentials: ",
                      failed["text"])
        self.assertIn("is not valid JSON", failed["reason"])
        self.assertEqual(errors, [failed])
        self.assertEqual(len(recorder.named("credentials_replaced")), 1)

    def test_world_readable_warning_again(self) -> None:
        """A reloaded file with plaintext passwords others can read is warned about again."""
        from .test_audit import EventRecorder

        seen: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(seen.append)
        self.addCleanup(globalLogPublisher.removeObserver, seen.append)
        EventRecorder(self)
        self.files.write("creds.json", json.dumps({"alice": "pw"}), 0o644)
        self.daemon.reload()
        self.assertTrue(any("readable by other users" in str(event.get("text"))
                            for event in seen))
