"""The shared session store (SPEC section 9), each test against a live redis-server started in a
child process (see store_scenarios)."""

from __future__ import annotations

import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .redis_server import redis_missing
from .scenarios import outcome


class SharedStoreTests(SynchronousTestCase):
    """Each test checks one scenario's outcome."""

    def setUp(self) -> None:
        """Skip without redis-server, except under CI, where it is a failure."""
        missing = redis_missing()
        if missing and os.environ.get("CI"):
            self.fail(f"CI is set but {missing}")
        if missing:
            self.skipTest(missing)

    def outcome(self, name: str) -> Any:
        return outcome(self, "tests.store_scenarios", name)

    def test_shared_logins(self) -> None:
        """Logins are shared; logout, force_logout, invalidateUserSessions() and
        LoginSession.invalidate() on one server end the session on the other before its next
        request; getSessions() lists the store's sessions without raw tokens; no key holds a
        token."""
        self.assertEqual(self.outcome("shared_logins"), {
            "other_server": 200, "logout_on_b": 200, "after_logout_on_a": 401,
            "force_logout_on_a": 200, "after_force_logout_on_b": 401, "invalidated": 1,
            "after_invalidate_on_a": 401, "bob_still": 200, "listed": [["bob", True]],
            "invalidate_object": True, "keys_hold_no_token": True})

    def test_process_server(self) -> None:
        """ProcessAPIServer's main process keeps the sessions in the store: shared with a
        ThreadedAPIServer both ways, and kept when it stops."""
        self.assertEqual(self.outcome("process_server_on_the_store"), {
            "on_threaded": 200, "logout": 200, "after_logout": 401, "on_process": 200,
            "listed": ["bob"], "kept_after_stop": 200})

    def test_validity_rejection(self) -> None:
        """A failed per-request validity check on one server ends the session on the other."""
        self.assertEqual(self.outcome("validity_rejection_on_one_ends_everywhere"),
                         {"before": 200, "on_a": 401, "on_b": 401})

    def test_credentials_reload(self) -> None:
        """setCredentials() on one server ends the removed users' sessions on the other."""
        self.assertEqual(self.outcome("credentials_reload_ends_removed_users"),
                         {"removed": 401, "kept": 200})

    def test_restart_keeps_sessions(self) -> None:
        """Servers stopped and started again keep every session."""
        self.assertEqual(self.outcome("restart_keeps_sessions"), {"after_restart": [200, 200]})

    def test_expiry_and_caps(self) -> None:
        """Idle expiry (activity anywhere counts), maximum age, max_sessions_per_user and
        max_sessions hold across servers."""
        self.assertEqual(self.outcome("expiry_across_servers"), {
            "touched_on_b": 200, "alive_on_a": 200, "idle_on_b": 401, "young": 200,
            "old": 401, "per_user_cap": [401, 200, 200], "store_full": 503})

    def test_sweep_expires_unused_sessions(self) -> None:
        """Sessions nobody uses again are ended by the sweep, keys and all."""
        self.assertEqual(self.outcome("sweep_expires_without_requests"),
                         {"swept_within": True, "sessions": 0})

    def test_one_sweeper(self) -> None:
        """Exactly one of three servers sweeps; when it stops, another takes over within two
        intervals."""
        result = self.outcome("one_sweeper")
        self.assertEqual(len(result["sweeping"]), 1, result)
        self.assertTrue(result["calls_are_whole_sweeps"], result)
        self.assertLessEqual(result["takeover_intervals"], 2.0, result)

    def test_store_down_and_back(self) -> None:
        """The store stopped or hung: 503 within timeout (never 500 or a hang), 404/405/401
        still answered; back: the same session works again."""
        self.assertEqual(self.outcome("store_down_and_back"), {
            "communicate": 503, "login": 503, "logout": 503, "answered_within": True,
            "not_found": 404, "get_login": 405, "no_cookie": 401, "back_within": True,
            "hung_store": 503, "hung_answered_within_timeout": True, "after_hang": True})

    def test_unreachable_at_start(self) -> None:
        """An unreachable store is one clear line from startAPIServer(), and nothing runs."""
        result = self.outcome("unreachable_at_start")
        self.assertFalse(result["running"])
        self.assertRegex(result["error"], r"^cannot reach the session store "
                                          r"redis://127\.0\.0\.1:\d+/0: .*Connection refused")
        self.assertNotIn("\n", result["error"])

    def test_wrong_password(self) -> None:
        """A wrong password and a missing one are clear errors naming the store without the
        password; the right one works."""
        result = self.outcome("wrong_password")
        wrong, missing = result["messages"]
        self.assertIn("redis://:***@127.0.0.1", wrong)
        self.assertIn("WRONGPASS", wrong)
        self.assertNotIn("wrong@", wrong)
        self.assertIn("NOAUTH", missing)
        self.assertEqual(result["right_password"], 200)

    def test_prefix_isolation(self) -> None:
        """Keys outside the prefix are untouched; two prefixes are two session tables."""
        self.assertEqual(self.outcome("prefix_isolation"), {
            "crossed": 401, "kept": True, "kept_hash": "value",
            "own_keys": ["sweeper", "t", "t", "t"]})

    def test_tls_store(self) -> None:
        """rediss:// to a TLS-only redis-server, trusting its CA through ?ca=, shares logins; a
        certificate the client cannot verify is one line at start."""
        result = self.outcome("tls_store")
        self.assertEqual(result["shared"], 200)
        self.assertIn("cannot reach the session store rediss://localhost:", result["untrusted"])
        self.assertIn("certificate verify failed", result["untrusted"])
        self.assertNotIn("\n", result["untrusted"])

    def test_example(self) -> None:
        """examples/shared_sessions.py shares a login between its two servers."""
        self.assertEqual(self.outcome("shared_sessions_example"),
                         {"other_server": 200, "prefixed": True})

    def test_shared_throttle(self) -> None:
        """Failed logins on one server throttle the same user and address on the other."""
        self.assertEqual(self.outcome("shared_throttle"),
                         {"failures": [401, 401], "throttled_on_b": 429, "other_user": 200})

    def test_daemon_shares_and_hands_over_the_sweep(self) -> None:
        """twistd serverapi and a ThreadedAPIServer share logins; the daemon killed while it
        holds the sweep lease, the library server sweeps within two intervals."""
        result = self.outcome("daemon_shares_and_hands_over_the_sweep")
        self.assertEqual((result["daemon_to_library"], result["library_to_daemon"],
                          result["library_swept_while_daemon_held"]), (200, 200, 0))
        self.assertLessEqual(result["takeover_intervals"], 2.0, result)

    def test_health_follows_store(self) -> None:
        """/healthz says 503 while the store is unreachable, 200 once it is back."""
        self.assertEqual(self.outcome("metrics_health_follows_store"),
                         {"up": 200, "down": 503, "back": 200})
