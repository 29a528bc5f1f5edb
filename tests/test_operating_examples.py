"""The operating examples do what the README says: the systemd unit and logrotate file, the
client recipes, the metrics server."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .helpers import ROOT
from .scenarios import outcome

TWISTD_EXAMPLES = os.path.join(ROOT, "examples", "twistd")


def unit() -> configparser.ConfigParser:
    """examples/twistd/serverapi.service, read as systemd would (continuation lines joined)."""
    with open(os.path.join(TWISTD_EXAMPLES, "serverapi.service"), encoding="utf-8") as handle:
        text = handle.read().replace("\\\n", " ")
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


class SystemdUnitTests(SynchronousTestCase):
    """The systemd unit."""

    def test_reload_and_stop(self) -> None:
        """ExecReload sends SIGHUP to the main process; a stop outlasts the grace period."""
        service = unit()["Service"]
        self.assertEqual(service["ExecReload"], "/bin/kill -HUP $MAINPID")
        self.assertEqual(service["KillSignal"], "SIGTERM")
        self.assertGreater(int(service["TimeoutStopSec"]), 10)

    def test_command_line_parses(self) -> None:
        """twistd accepts ExecStart's command line (with this checkout's files in place of the
        installed ones): no daemonizing, no pidfile, the JSON logger, every serverapi option."""
        from twisted.scripts.twistd import ServerOptions

        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        credentials = os.path.join(folder, "creds.json")
        with open(credentials, "w", encoding="utf-8") as handle:
            handle.write('{"alice": "password123"}')
        os.chmod(credentials, 0o600)
        replacements = {"/etc/serverapi/creds.json": credentials,
                        "handler:handle": "tests.test_tap:handler",
                        "handler:check": "tests.test_tap:checker",
                        "/var/log/serverapi/access.log": os.path.join(folder, "access.log")}
        words = shlex.split(unit()["Service"]["ExecStart"])
        self.assertTrue(words[0].endswith("/bin/twistd"))
        arguments = [replacements.get(word, word) for word in words[1:]]
        options = ServerOptions()
        options.parseOptions(arguments)
        self.assertEqual((options["nodaemon"], options["pidfile"]), (True, ""))
        from serverapi.jsonlog import observer

        self.assertIs(options["logger"], observer)
        served: Any = options.subOptions
        self.assertEqual((served["listen"], served["metrics"]),
                         ("tcp:8000:interface=127.0.0.1", "tcp:9100:interface=127.0.0.1"))
        self.assertEqual(served.config.access_log, os.path.join(folder, "access.log"))
        self.assertIsNotNone(served.config.session_validity_callback)

    def test_logrotate(self) -> None:
        """logrotate rotates the unit's access log and then sends SIGUSR1 to reopen it."""
        with open(os.path.join(TWISTD_EXAMPLES, "serverapi.logrotate"),
                  encoding="utf-8") as handle:
            text = handle.read()
        self.assertIn("/var/log/serverapi/access.log {", text)
        self.assertIn("--access-log /var/log/serverapi/access.log",
                      " ".join(unit()["Service"]["ExecStart"].split()))
        self.assertIn("systemctl kill --signal=SIGUSR1 serverapi.service", text)


class RunningExampleTests(SynchronousTestCase):
    """Examples run against live servers (in a child process)."""

    def test_client_recipes(self) -> None:
        """requests, httpx and treq log in, talk and log out over TLS with a client
        certificate (with REQUESTS_CA_BUNDLE set) and over plain HTTP; the two pitfalls the
        recipes avoid do fail."""
        result = outcome(self, "tests.operating_scenarios", "client_recipes")
        expected = [200, {"echo": {"message": "hello"}, "user": "alice"}, 200]
        for transport in ("tls", "plain"):
            self.assertEqual(result[transport], {"requests": expected, "httpx": expected,
                                                 "treq": expected}, transport)
        self.assertEqual((result["requests_session_verify"], result["httpx_verify_string"]),
                         ("SSLError", "certificate required"))

    def test_metrics_server(self) -> None:
        """examples/metrics_server.py serves, logs access lines and exposes its counts."""
        self.assertEqual(outcome(self, "tests.operating_scenarios", "metrics_example"), {
            "answer": [200, {"echo": "hi", "user": "alice"}], "health": 200,
            "communicate_200": True,
            "access_lines": ["POST /login HTTP/1.1", "POST /communicate HTTP/1.1"]})
