"""SPEC section 7 in a real browser: cross-origin refusal, CORS, SameSite=None, same origin."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .browser_scenarios import CHROMEDRIVER, CHROMIUM
from .scenarios import outcome

MODULE = "tests.browser_scenarios"


def missing_binaries() -> list[str]:
    """The browser binaries the scenarios need that are not installed."""
    return [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]


def requests(result: dict[str, Any], method: str, path: str) -> list[dict[str, Any]]:
    """The requests for C{method} C{path} that reached the API during the scenario."""
    return [entry for entry in result["seen"]
            if (entry["method"], entry["path"]) == (method, path)]


def statuses(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the page got for each call: the status it could read, or the fetch error."""
    return {name: answer.get("status", answer.get("error")) for name, answer in results.items()}


def session_cookies(result: dict[str, Any]) -> list[tuple[Any, Any]]:
    """The C{sessionToken} cookies the browser held after login, as (SameSite, Secure)."""
    return [(cookie["sameSite"], cookie["secure"]) for cookie in result["cookies"]
            if cookie["name"] == "sessionToken"]


class BrowserTests(SynchronousTestCase):
    """Each test checks one scenario; one child process and one Chromium run them all."""

    def setUp(self) -> None:
        """Skip without Chromium, except under CI, where a missing browser is a failure."""
        missing = missing_binaries()
        if missing and os.environ.get("CI"):
            self.fail(f"CI is set but {', '.join(missing)} is missing "
                      "(apt-get install chromium chromium-driver)")
        if missing:
            self.skipTest(f"no browser: {', '.join(missing)} is missing")

    def outcome(self, name: str) -> Any:
        """The result of scenario C{name}."""
        return outcome(self, MODULE, name)

    def test_blob_csrf_other_port(self) -> None:
        """Type-less Blobs from another port of the host, cookie and all, run nothing."""
        result = self.outcome("blob_csrf_other_port")
        self.assertEqual(result["login"]["status"], 200, result["login"])
        self.assertEqual([session[0] for session in result["before"]], ["alice"])
        self.assertEqual(result["calls"], [], "the callback ran for the other port's page")
        self.assertEqual(result["after"], result["before"],
                         "the attack's login started or ended a session")
        for path in ("/communicate", "/login"):
            # The browser did send the attack, with alice's cookie: the server stopped it.
            self.assertEqual([(attack["origin"], attack["session_cookie"])
                              for attack in requests(result, "POST", path)],
                             [(result["attacker_origin"], True)], result["seen"])

    def test_cors_same_site(self) -> None:
        """An allowed origin logs in, reads the callback's answer and logs out, with cookies."""
        result = self.outcome("cors_same_site")
        results = result["results"]
        self.assertEqual(statuses(results), {"login": 200, "communicate": 200, "logout": 200},
                         results)
        self.assertEqual(results["communicate"]["body"],
                         {"echo": {"message": "hello from the page"}, "user": "alice"})
        self.assertEqual(result["calls"], [["alice", {"message": "hello from the page"}]])
        self.assertEqual([session[0] for session in result["after_login"]], ["alice"])
        self.assertEqual(result["after_logout"], [])
        self.assertEqual(session_cookies(result), [("Strict", False)], result["cookies"])
        self.assertTrue(requests(result, "OPTIONS", "/login"), "no preflight reached the API")

    def test_cross_site_none_tls(self) -> None:
        """Over TLS, login_cookie_level="None" gives a cookie a page on another site can use."""
        result = self.outcome("cross_site_none_tls")
        self.assertEqual([session[0] for session in result["after_login"]], ["alice"])
        self.assertEqual(session_cookies(result), [("None", True)], result["cookies"])
        self.assertEqual([(call["origin"], call["sec_fetch_site"], call["session_cookie"])
                          for call in requests(result, "POST", "/communicate")],
                         [(result["page_origin"], "cross-site", True)], result["seen"])
        self.assertEqual(result["calls"], [["alice", {"message": "hello across sites"}]])
        self.assertEqual(result["after_logout"], [])
        results = result["results"]
        self.assertEqual(statuses(results), {"login": 200, "communicate": 200, "logout": 200},
                         results)

    def test_disallowed_origin(self) -> None:
        """An origin not in cors_origins can neither log in nor reach the callback."""
        result = self.outcome("disallowed_origin")
        self.assertEqual(result["login"]["status"], 200, result["login"])
        self.assertEqual(result["calls"], [], "the callback ran for a disallowed origin")
        self.assertEqual(result["after"], result["before"],
                         "the disallowed origin started or ended a session")
        # Only the Blob, which needs no preflight, got through the browser (with alice's
        # cookie): the server stopped it.
        self.assertEqual([(blob["origin"], blob["session_cookie"])
                          for blob in requests(result, "POST", "/communicate")],
                         [(result["page_origin"], True)], result["seen"])
        attempts = result["attempts"]
        self.assertEqual(statuses(attempts), {"login": "TypeError: Failed to fetch",
                                              "communicate": "TypeError: Failed to fetch",
                                              "blob_communicate": 0}, attempts)

    def test_same_origin_proxy(self) -> None:
        """Page and API behind one reverse proxy: plain fetch calls work without CORS."""
        result = self.outcome("same_origin_proxy")
        results = result["results"]
        self.assertEqual(statuses(results), {"login": 200, "communicate": 200, "logout": 200},
                         results)
        self.assertEqual(results["communicate"]["body"],
                         {"echo": {"message": "hello through the proxy"}, "user": "alice"})
        self.assertEqual(result["calls"], [["alice", {"message": "hello through the proxy"}]])
        self.assertEqual([session[0] for session in result["after_login"]], ["alice"])
        self.assertEqual(result["after_logout"], [])
        host = result["page_origin"].removeprefix("http://")
        self.assertEqual({(entry["host"], entry["sec_fetch_site"], entry["x_forwarded_for"])
                          for entry in result["seen"]}, {(host, "same-origin", "127.0.0.1")})
