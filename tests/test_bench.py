"""The benchmark's own counting: only 2xx answers are served, and TLS rounds pair with plain."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from .bench_modules import load_bench

run = load_bench()

# wrk --latency output, with the line bench/status.lua adds.
WRK_OUTPUT = """\
Running 4s test @ http://127.0.0.1:8080
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.63ms  301.12us   9.43ms   87.44%
    Req/Sec     9.81k   512.33    10.52k    80.00%
  Latency Distribution
     50%  812.00us
     75%    1.71ms
     90%    1.89ms
     99%    1.01s
  78168 requests in 4.00s, 14.76MB read
  Socket errors: connect 1, read 3, write 2, timeout 5
  Non-2xx or 3xx responses: 10
Requests/sec:  19538.44
Transfer/sec:      3.69MB
non2xx 12
"""


def result(goodput: float, seconds: float = 1.0) -> Any:
    """A wrk result with C{goodput} 2xx answers a second and nothing else."""
    return run.Result(int(goodput * seconds), seconds, 1.0, 2.0, 0)


class ParseTests(SynchronousTestCase):
    """What is read out of wrk's output, and what counts as served."""

    def test_figures(self) -> None:
        """Requests, time, percentiles in wrk's units, the script's non-2xx count and every
        kind of socket error are read."""
        parsed = run.parse_wrk(WRK_OUTPUT)
        self.assertEqual((parsed.requests, parsed.seconds), (78168, 4.0))
        self.assertAlmostEqual(parsed.p50_ms, 0.812)
        self.assertAlmostEqual(parsed.p99_ms, 1010.0)
        self.assertEqual(parsed.non2xx, 12)  # the script's count, not wrk's own 10
        self.assertEqual((parsed.connect, parsed.read, parsed.write, parsed.timeout),
                         (1, 3, 2, 5))
        self.assertEqual(parsed.errors, 12 + 1 + 3 + 2 + 5)

    def test_goodput_counts_only_timely_2xx(self) -> None:
        """Goodput leaves out non-2xx answers and answers later than wrk's timeout, which wrk
        counts as requests; connection errors are not requests and are not taken off again."""
        parsed = run.parse_wrk(WRK_OUTPUT)
        self.assertAlmostEqual(parsed.goodput, (78168 - 12 - 5) / 4.0)
        self.assertAlmostEqual(parsed.rps, 78168 / 4.0)

    def test_without_the_status_script(self) -> None:
        """Without the script's line, wrk's own count of statuses above 399 is used."""
        output = WRK_OUTPUT.replace("non2xx 12\n", "")
        self.assertEqual(run.parse_wrk(output).non2xx, 10)

    def test_unreadable_output(self) -> None:
        """Output without a request count is an error that shows the output."""
        error = self.assertRaises(RuntimeError, run.parse_wrk, "wrk: connection refused\n")
        self.assertIn("connection refused", str(error))


class ScheduleTests(SynchronousTestCase):
    """Each TLS server runs right next to its plain twin, first in every other round."""

    def runs_for(self, servers: list[str]) -> dict[str, dict[str, list[Any]]]:
        """Empty result lists for every default scenario and the servers it applies to."""
        return {scenario.name: {name: [] for name in servers
                                if run.SERVERS[name].tls == scenario.tls}
                for scenario in run.SCENARIOS if scenario.default}

    def test_twins_are_adjacent_and_alternate(self) -> None:
        """In even rounds the plain run comes first, in odd rounds the TLS one; every run of
        the round is there once."""
        servers = ["serverapi", "floor-inline", "serverapi-tls", "floor-inline-tls"]
        runs = self.runs_for(servers)
        expected = sorted((s, n) for s, names in runs.items() for n in names)
        for number in range(4):
            steps = [(scenario.name, name)
                     for scenario, name in run.schedule(runs, run.SCENARIOS, number)]
            self.assertEqual(sorted(steps), expected)
            for tls_name in ("serverapi-tls", "floor-inline-tls"):
                plain = (run.TLS_PLAIN_SCENARIO, run.SERVERS[tls_name].plain)
                twin = ("communicate c=32 TLS", tls_name)
                at = steps.index(plain)
                pair = steps[at:at + 2] if number % 2 == 0 else steps[at - 1:at + 1]
                self.assertEqual(pair, [plain, twin] if number % 2 == 0 else [twin, plain])

    def test_tls_keeps_is_a_median_of_same_round_ratios(self) -> None:
        """The TLS figure is the median, over rounds, of TLS goodput over the plain twin's in
        the same round (not a ratio of medians)."""
        runs = {run.TLS_PLAIN_SCENARIO: {"serverapi": [result(100), result(200), result(100)]},
                "communicate c=32 TLS": {"serverapi-tls": [result(90), result(100),
                                                           result(80)]}}
        tls = next(s for s in run.SCENARIOS if s.tls)
        self.assertAlmostEqual(run.tls_keeps(runs, tls, "serverapi-tls"), 0.8)
        self.assertTrue(math.isnan(run.tls_keeps({}, tls, "serverapi-tls")))


class MachineTests(SynchronousTestCase):
    """What a results file says the figures were measured on."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="serverapi-bench-test-")
        self.addCleanup(shutil.rmtree, self.folder)

    def test_processor_is_the_model_name(self) -> None:
        """The CPU's model name is read from a cpuinfo file's first "model name" line."""
        path = os.path.join(self.folder, "cpuinfo")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("processor\t: 0\nvendor_id\t: GenuineIntel\n"
                         "model name\t: Intel(R) Xeon(R) Processor @ 2.50GHz\n"
                         "processor\t: 1\nmodel name\t: another\n")
        self.assertEqual(run.processor(path), "Intel(R) Xeon(R) Processor @ 2.50GHz")

    def test_processor_without_cpuinfo(self) -> None:
        """Without a cpuinfo file the processor is still named, by the platform."""
        self.assertTrue(run.processor(os.path.join(self.folder, "absent")))

    def test_machine_names_processor_and_openssl(self) -> None:
        """A results file records the processor and the OpenSSL of the TLS rows."""
        found = run.machine()
        self.assertTrue(found["processor"])
        self.assertTrue(found["openssl"].startswith(("OpenSSL", "LibreSSL")), found["openssl"])


class RotatingStatus(BaseHTTPRequestHandler):
    """Answers 200, 302 and 503 in turn, over keep-alive HTTP/1.1."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 65536  # each answer leaves in one write
    statuses = (200, 302, 503)
    served: list[int] = []

    def do_POST(self) -> None:
        """Read the body, answer with the next status in turn."""
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.statuses[len(self.served) % len(self.statuses)]
        self.served.append(status)
        self.send_response(status)
        self.send_header("Content-Length", "2")
        if status == 302:
            self.send_header("Location", "/elsewhere")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


class WrkCountingTests(SynchronousTestCase):
    """The wrk scripts, run by the real wrk, count every answer that is not 2xx."""

    def setUp(self) -> None:
        if shutil.which("wrk") is None:
            if os.environ.get("CI"):
                self.fail("CI is set but wrk is missing (apt-get install wrk)")
            self.skipTest("wrk is not installed")
        RotatingStatus.served = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RotatingStatus)
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        self.addCleanup(self.server.server_close)
        self.addCleanup(self.server.shutdown)

    def test_redirects_and_errors_are_not_served(self) -> None:
        """On one keep-alive connection answering 200, 302, 503 in turn, a third of the answers
        count as served; wrk's own line would have let the 302s through."""
        port = self.server.server_address[1]
        scenario = run.Scenario("rotating c=1", "communicate.lua", 1)
        parsed = run.wrk(port, scenario, 1.0, "token")
        answers = parsed.requests
        self.assertGreaterEqual(answers, 3)  # every status at least once
        self.assertEqual(RotatingStatus.served[:answers].count(200), math.ceil(answers / 3))
        self.assertEqual(parsed.non2xx, answers - math.ceil(answers / 3))
        wrk_own = int(run._search(r"Non-2xx or 3xx responses: (\d+)", parsed.raw).group(1))
        self.assertEqual(wrk_own, RotatingStatus.served[:answers].count(503))
        self.assertAlmostEqual(parsed.goodput * parsed.seconds, math.ceil(answers / 3))
