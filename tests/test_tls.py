"""TLS: early validation of the files, the context's settings, and real handshakes."""

from __future__ import annotations

import os
import shutil
import tempfile

from OpenSSL import SSL
from twisted.trial.unittest import SynchronousTestCase

from serverapi import ThreadedAPIServer
from serverapi._tls import ServerContextFactory, TLSFiles

from .certificates import Certificates
from .helpers import CREDENTIALS, MemoryServer, echo
from .scenarios import outcome

MODULE = "tests.tls_scenarios"


class ValidationTests(SynchronousTestCase):
    """setConnectionSecurityParams checks its arguments and files at once."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, directory)
        self.certs = Certificates(directory)
        self.server = ThreadedAPIServer("127.0.0.1", 0, CREDENTIALS, echo)

    def test_good(self) -> None:
        """Certificate chain, key and CA are accepted; isUsingTLS tells the truth."""
        self.assertFalse(self.server.isUsingTLS())
        self.server.setConnectionSecurityParams(self.certs.server_cert, self.certs.server_key,
                                                self.certs.ca_cert)
        self.assertTrue(self.server.isUsingTLS())
        self.server.setConnectionSecurityParams()
        self.assertFalse(self.server.isUsingTLS())

    def test_combinations(self) -> None:
        """certfile and keyfile go together; cafile needs both."""
        certs = self.certs
        for args in [(certs.server_cert, None), (None, certs.server_key),
                     (None, None, certs.ca_cert), (certs.server_cert, None, certs.ca_cert)]:
            with self.assertRaises(ValueError, msg=str(args)):
                self.server.setConnectionSecurityParams(*args)
        self.assertFalse(self.server.isUsingTLS())

    def test_missing_files(self) -> None:
        """A missing file is FileNotFoundError naming it."""
        certs = self.certs
        for args in [("/nope/cert.pem", certs.server_key), (certs.server_cert, "/nope/key.pem"),
                     (certs.server_cert, certs.server_key, "/nope/ca.pem"),
                     (certs.dir, certs.server_key)]:
            with self.assertRaises(FileNotFoundError) as caught:
                self.server.setConnectionSecurityParams(*args)
            self.assertIn("does not exist", str(caught.exception))

    def test_unreadable_file(self) -> None:
        """An unreadable file is FileNotFoundError (not checkable as root, who reads all)."""
        if os.geteuid() == 0:
            self.skipTest("root can read any file")
        os.chmod(self.certs.server_key, 0)
        with self.assertRaises(FileNotFoundError):
            self.server.setConnectionSecurityParams(self.certs.server_cert,
                                                    self.certs.server_key)

    def test_bad_contents(self) -> None:
        """Non-PEM files and a key that does not match raise ValueError at once."""
        certs = self.certs
        cases = [((certs.not_pem, certs.server_key), "certfile"),
                 ((certs.server_cert, certs.not_pem), "keyfile"),
                 ((certs.server_cert, certs.wrong_key), "matching the certificate"),
                 ((certs.server_cert, certs.server_key, certs.not_pem), "cafile")]
        for args, message in cases:
            with self.assertRaises(ValueError) as caught:
                self.server.setConnectionSecurityParams(*args)
            self.assertIn(message, str(caught.exception))
        self.assertFalse(self.server.isUsingTLS())

    def test_context_settings(self) -> None:
        """No compression, TLS 1.2 minimum (via options), and mutual TLS that insists."""
        certs = self.certs
        factory = ServerContextFactory(TLSFiles(certs.server_cert, certs.server_key,
                                                certs.ca_cert))
        context = factory.getContext()
        self.assertTrue(context.set_options(0) & SSL.OP_NO_COMPRESSION)
        self.assertEqual(context.get_verify_mode(),
                         SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT)
        plain = ServerContextFactory(TLSFiles(certs.server_cert, certs.server_key)).getContext()
        self.assertEqual(plain.get_verify_mode(), SSL.VERIFY_NONE)


class InMemoryTLSTests(SynchronousTestCase):
    """Cookie and header rules for requests that arrive over TLS."""

    def test_secure_cookie_and_hsts(self) -> None:
        """Over TLS the cookie is Secure and responses carry Strict-Transport-Security."""
        server = MemoryServer()
        deferred = server.treq.request(
            "POST", "https://example.test/login",
            data=b'{"username": "alice", "password": "password123"}',
            headers={b"Content-Type": [b"application/json"]})
        response = server.result(deferred)
        self.assertEqual(response.code, 200)
        self.assertIn("; Secure;", response.headers.getRawHeaders(b"set-cookie")[0].decode())
        self.assertEqual(response.headers.getRawHeaders(b"strict-transport-security"),
                         [b"max-age=31536000"])
        plain = server.post("/login", {"username": "alice", "password": "password123"})
        self.assertNotIn("Secure", plain.headers.getRawHeaders(b"set-cookie")[0].decode())
        self.assertIsNone(plain.headers.getRawHeaders(b"strict-transport-security"))


class HandshakeTests(SynchronousTestCase):
    """Real handshakes with real sockets (in a child process)."""

    def test_tls12_and_tls13(self) -> None:
        """TLS 1.2 and 1.3 clients trusting only the root get in: the chain is sent."""
        result = outcome(self, MODULE, "versions")
        for name, version in [("tls12", "TLSv1.2"), ("tls13", "TLSv1.3")]:
            answer = result[name]
            self.assertEqual((answer["status"], answer["version"], answer["hsts"]),
                             (200, version, "max-age=31536000"), answer)
            self.assertIn("; Secure;", answer["cookie"])
        self.assertTrue(result["using_tls"])

    def test_old_versions_refused(self) -> None:
        """TLS 1.1 and 1.0 are refused with a protocol-version alert; the server goes on."""
        result = outcome(self, MODULE, "old_versions_refused")
        for name in ("tls11", "tls10"):
            self.assertIn("PROTOCOL_VERSION", result["answers"][name]["error"])
        self.assertEqual(result["after"], 200)

    def test_mutual_tls(self) -> None:
        """Only a client certificate from the CA gets in; its subject is on the session."""
        result = outcome(self, MODULE, "mutual_tls")
        answers = result["answers"]
        for name in ("none", "stranger", "expired", "none_tls12"):
            self.assertIn("error", answers[name], name)
        self.assertEqual(answers["good"]["status"], 200)
        [subject] = result["subjects"]
        self.assertTrue(subject.startswith("CN=alice,"), subject)
        self.assertGreaterEqual(result["handshake_failures_logged"], 4)
        self.assertFalse(result["key_in_log"])

    def test_plain_http_to_tls_port(self) -> None:
        """Plain HTTP to the TLS port gets no HTTP answer, and the server keeps serving."""
        self.assertEqual(outcome(self, MODULE, "plain_http_to_tls_port"),
                         {"http_answer": False, "after": 200})

    def test_stalled_handshake(self) -> None:
        """A silent client is closed after the timeout; the server keeps serving."""
        self.assertEqual(outcome(self, MODULE, "stalled_handshake"),
                         {"closed": True, "took_under_5s": True, "took_the_timeout": True,
                          "after": 200})

    def test_change_while_listening(self) -> None:
        """Changing TLS settings while listening is a RuntimeError."""
        self.assertEqual(outcome(self, MODULE, "change_while_listening"),
                         {"error": "RuntimeError", "tls_after_reset": False})
