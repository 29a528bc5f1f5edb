"""serverapi.__version__ is the single source of the version; the console script reports it."""

from __future__ import annotations

import configparser
import importlib.metadata
import os
import shutil
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import serverapi

from .helpers import ROOT, child_env


class VersionTests(SynchronousTestCase):
    """One version, read by setup.cfg from the package."""

    def test_single_source(self) -> None:
        """setup.cfg takes the version from serverapi.__version__ (it holds no number)."""
        config = configparser.ConfigParser()
        config.read(os.path.join(ROOT, "setup.cfg"))
        self.assertEqual(config["metadata"]["version"], "attr: serverapi.__version__")
        self.assertRegex(serverapi.__version__, r"^\d+\.\d+\.\d+$")

    def test_installed_metadata_agrees(self) -> None:
        """The installed distribution's version is the package's (when it is installed)."""
        try:
            installed = importlib.metadata.version("serverapi")
        except importlib.metadata.PackageNotFoundError:
            raise self.skipTest("serverapi is not installed") from None
        self.assertEqual(installed, serverapi.__version__)

    def test_module_version_flag(self) -> None:
        """`python -m serverapi --version` prints the name and version."""
        result = subprocess.run([sys.executable, "-m", "serverapi", "--version"],
                                capture_output=True, text=True, env=child_env(), check=True)
        self.assertEqual(result.stdout, f"serverapi {serverapi.__version__}\n")


class ConsoleScriptTests(SynchronousTestCase):
    """The `serverapi` command an install puts on the PATH."""

    def script(self) -> str:
        """The installed console script, beside this interpreter."""
        path = os.path.join(os.path.dirname(sys.executable), "serverapi")
        if not os.path.exists(path):
            path = shutil.which("serverapi") or ""
        if not path:
            raise self.skipTest("the serverapi console script is not installed")
        return path

    def test_version(self) -> None:
        """`serverapi --version`."""
        result = subprocess.run([self.script(), "--version"], capture_output=True, text=True,
                                check=True)
        self.assertEqual(result.stdout, f"serverapi {serverapi.__version__}\n")

    def test_hash_password(self) -> None:
        """`serverapi hash-password` reads a line and prints a hash credentials accept."""
        from serverapi._passwords import parse_hash

        result = subprocess.run([self.script(), "hash-password"], input="s3cret\n",
                                capture_output=True, text=True, check=True)
        parsed = parse_hash(result.stdout.strip())
        self.assertIsNotNone(parsed)
        self.assertTrue(parsed.verify("s3cret"))  # type: ignore[union-attr]

    def test_usage(self) -> None:
        """Without a command it prints usage naming the program and exits 2."""
        result = subprocess.run([self.script()], capture_output=True, text=True)
        self.assertEqual(result.returncode, 2)
        self.assertIn("usage: serverapi", result.stderr)
