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
            "APIService", "CallbackPool", "LoginSession", "PoolJob", "ProcessAPIServer", "ServerConfig",
            "SessionStoreUnavailable", "TLSFiles", "ThreadedAPIServer", "ThreadedCallbackPool", "hashPassword", "makeAPIService"])
        for name in serverapi.__all__:
            self.assertTrue(hasattr(serverapi, name), name)

    def test_import_does_not_install_reactor(self) -> None:
        """Importing serverapi and serverapi.tap leaves the global reactor alone."""
        code = ("import sys, serverapi, serverapi.tap; "
                "print('twisted.internet.reactor' in sys.modules)")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                env=child_env(), check=True)
        self.assertEqual(result.stdout.strip(), "False")


class SignatureTests(SynchronousTestCase):
    """Everything the public signatures name is public too (section 12)."""

    def test_named_types_are_exported(self) -> None:
        """makeAPIService's and ServerConfig's parameter types are importable from serverapi."""
        import inspect
        import typing

        from serverapi import _config, _service

        hints = typing.get_type_hints(_service.makeAPIService)
        hints.update(typing.get_type_hints(_config.ServerConfig, vars(_config), vars(serverapi)))
        public = {getattr(serverapi, name) for name in serverapi.__all__}
        for name in ("pool", "hash_pool", "config", "tls"):
            named = {argument for argument in typing.get_args(hints[name]) or (hints[name],)
                     if inspect.isclass(argument) and argument.__module__.startswith("serverapi")}
            self.assertTrue(named, name)
            self.assertLessEqual(named, public, name)
