"""The examples do what the README says."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import tempfile
from types import ModuleType

from twisted.trial.unittest import SynchronousTestCase

from serverapi import LoginSession
from serverapi._tls import TLSFiles
from serverapi.tap import Options

from .helpers import ROOT


def load(relative: str) -> ModuleType:
    """Import an example file as a module (its main() does not run)."""
    path = os.path.join(ROOT, "examples", relative)
    spec = importlib.util.spec_from_file_location("example_" + relative.replace("/", "_")[:-3],
                                                  path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleTests(SynchronousTestCase):
    """Each example's working parts."""

    def test_echo_server_is_the_seed_example(self) -> None:
        """The seed README's example, with only the import line changed."""
        with open(os.path.join(ROOT, "examples", "echo_server.py"), encoding="utf-8") as handle:
            source = handle.read()
        seeds = glob.glob(os.path.join(ROOT, "..", "shared", "seeds", "000_*.txt"))
        if not seeds:
            self.skipTest("the seed README is not beside this checkout")
        with open(seeds[0], encoding="utf-8") as handle:
            seed = handle.read()
        example = seed.split("#### Example", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        original = "from ServerAPI import ThreadedAPIServer\n"
        self.assertIn(original, example)
        self.assertEqual(source, example.replace(
            original, "from serverapi import ThreadedAPIServer\n"))

    def test_validity_callback(self) -> None:
        """still_active keeps a fresh session and ends an idle one."""
        module = load("validity_callback.py")
        session = LoginSession("alice", "token", 0.0)
        self.assertFalse(module.still_active(session))
        session.last_active_at = __import__("time").time()
        self.assertTrue(module.still_active(session))

    def test_tls_certificates(self) -> None:
        """tls_server.py's certificates are accepted, client CA included."""
        folder = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, folder)
        files = load("tls_server.py").make_certificates(folder)
        self.assertIsNotNone(TLSFiles.from_params(files["server_cert"], files["server_key"],
                                                  files["ca"]))

    def test_web_app(self) -> None:
        """web_app.py's page calls the API's origin with credentials, and the API lets the
        page's origin in."""
        module = load("web_app.py")
        self.assertIn(b'credentials: "include"', module.PAGE)
        self.assertIn(b"http://127.0.0.1:8000", module.PAGE)
        self.assertEqual(module.handle("alice", "t", {"message": "hi"}),
                         (False, False, {"echo": "hi", "user": "alice"}))
        self.assertEqual(module.PAGE_ORIGIN, "http://127.0.0.1:8080")

    def test_twistd_example_parses(self) -> None:
        """The twistd example's command line is valid."""
        directory = os.path.join(ROOT, "examples", "twistd")
        import sys
        sys.path.insert(0, directory)
        self.addCleanup(sys.path.remove, directory)
        options = Options()
        options.parseOptions(["--credentials", os.path.join(directory, "creds.json"),
                              "--callback", "handler:handle",
                              "--validity-callback", "handler:check"])
        self.assertEqual(sorted(options["credentials"]), ["alice", "bob"])
        self.assertTrue(options.config.credential_store.verify("bob", "securepassword"))
