"""Section 8 with real sockets: default options serve every client; a non-reading client is held."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from .scenarios import outcome

MODULE = "tests.load_scenarios"


class ConcurrentClientsTests(SynchronousTestCase):
    """32, 256 and 1,000 concurrent keep-alive clients with default options."""

    def assertAllServed(self, name: str, expected: int) -> None:
        """Every request of the scenario got 200: no 503, no reset, no time-out."""
        result = outcome(self, MODULE, name)
        self.assertEqual((result["statuses"], result["error_count"], result["errors"]),
                         ({"200": expected}, 0, []))

    def test_32(self) -> None:
        """32 clients x 20 requests: all 200."""
        self.assertAllServed("clients_32", 640)

    def test_256(self) -> None:
        """256 clients x 8 requests: all 200 (the old queue bound answered about a third 503)."""
        self.assertAllServed("clients_256", 2048)

    def test_1000(self) -> None:
        """1,000 clients x 3 requests: all 200."""
        self.assertAllServed("clients_1000", 3000)


class NonReadingClientTests(SynchronousTestCase):
    """A client that pipelines hundreds of requests for large answers and never reads."""

    def test_memory_and_callbacks_bounded(self) -> None:
        """2 x 400 pipelined requests for 128 KiB answers run only the callbacks whose answers
        fit the socket buffers, and memory stays bounded (before: 800 callbacks, +100 MiB)."""
        result = outcome(self, MODULE, "pipelining_reader_that_never_reads")
        self.assertLess(result["calls"], 200)
        self.assertLess(result["rss_growth_kib"], 40 * 1024)
        self.assertEqual(result["calls_after_close"], result["calls"])


class HeldClientTests(SynchronousTestCase):
    """A client whose connection is held (past the queue length) and who leaves meanwhile."""

    def test_callback_not_run_for_a_client_that_left(self) -> None:
        """The server reads nothing from a held connection, yet a client that closed it before
        a worker was free does not get its callback run, and its connection is closed; the one
        before it is answered."""
        result = outcome(self, MODULE, "held_client_that_leaves")
        self.assertEqual((result["ran"], result["first_status"]), (["first"], 200))
