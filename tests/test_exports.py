"""The public surface is pinned, and importing it starts no reactor."""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

import serverapi

from .helpers import child_env


class ExportTests(SynchronousTestCase):
    """serverapi's public names."""

    def test_all(self) -> None:
        """__all__ is exactly the public API."""
        self.assertEqual(sorted(serverapi.__all__), [
            "APIService", "LoginSession", "ServerConfig", "ThreadedAPIServer", "hashPassword",
            "makeAPIService"])
        for name in serverapi.__all__:
            self.assertTrue(hasattr(serverapi, name), name)

    def test_import_does_not_install_reactor(self) -> None:
        """Importing serverapi and serverapi.tap leaves the global reactor alone."""
        code = ("import sys, serverapi, serverapi.tap; "
                "print('twisted.internet.reactor' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=child_env(), check=True)
        self.assertEqual(result.stdout.strip(), "False")
