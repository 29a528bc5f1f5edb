"""The profile reader behind bench/tls_profile.py: CPU time per answer by thread, kind and cause."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from .bench_modules import load_bench

stacks = load_bench("perf_stacks.py")

PYTHON = "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"
MODULES = "/root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload"
LIBRARIES = "/usr/lib/x86_64-linux-gnu"

# Four samples as `perf script -F tid,period,ip,sym,dso` prints them: three on the reactor
# (tid 100), one on a worker (tid 101).
PERF_SCRIPT = f"""\
100     1000000 
\t          fec16 _PyEval_EvalFrameDefault+0x40a6 ({PYTHON})
\t          250a3f _PyEval_Vector+0x7f ({PYTHON})

100      500000 
\t ffffffff8a1b2c3d _raw_spin_unlock_irqrestore+0x1d ([kernel.kallsyms])
\t ffffffff8a1b0000 futex_wake+0x150 ([kernel.kallsyms])
\t ffffffff8a1c0000 __x64_sys_futex+0x112 ([kernel.kallsyms])
\t ffffffff8a200000 do_syscall_64+0x5d ([kernel.kallsyms])
\t ffffffff8a400000 entry_SYSCALL_64_after_hwframe+0x6e ([kernel.kallsyms])
\t          91f10 ___pthread_cond_signal+0x60 ({LIBRARIES}/libc.so.6)
\t          2f1a0 drop_gil (inlined)
\t          2f1a0 PyEval_SaveThread+0x40 ({PYTHON})
\t           7a10 sock_call_ex+0x90 ({MODULES}/_socket.cpython-311-x86_64-linux-gnu.so)
\t           7c20 sock_recv+0x70 ({MODULES}/_socket.cpython-311-x86_64-linux-gnu.so)

100      500000 
\t          1d2e3 aes_gcm_cipher (inlined)
\t          1d2e3 EVP_DecryptUpdate+0x53 ({LIBRARIES}/libcrypto.so.3)
\t          4a5b6 SSL_read_ex+0x36 ({LIBRARIES}/libssl.so.3)
\t           9c8d _ssl__SSLSocket_read_impl+0x1bd ({MODULES}/_ssl.cpython-311-x86_64-linux-gnu.so)

101      250000 
\t ffffffff8a1d0000 __x64_sys_futex+0x112 ([kernel.kallsyms])
\t ffffffff8a400000 entry_SYSCALL_64_after_hwframe+0x6e ([kernel.kallsyms])
\t          8e2a0 __futex_abstimed_wait_common64+0x12 ({LIBRARIES}/libc.so.6)
\t          91000 ___pthread_cond_timedwait64+0x80 ({LIBRARIES}/libc.so.6)
\t          2e000 take_gil (inlined)
\t          2e000 PyEval_RestoreThread+0x30 ({PYTHON})
\t 3b00 _queue_SimpleQueue_get_impl+0x120 ({MODULES}/_queue.cpython-311-x86_64-linux-gnu.so)
"""


class ParseTests(SynchronousTestCase):
    """perf's text becomes samples with whole frames."""

    def test_samples_and_frames(self) -> None:
        """Each block is one sample: its thread, its period, its stack leaf first."""
        samples = stacks.parse(PERF_SCRIPT)
        self.assertEqual([(s.tid, s.nanoseconds, len(s.frames)) for s in samples],
                         [(100, 1_000_000, 2), (100, 500_000, 10), (100, 500_000, 4),
                          (101, 250_000, 7)])
        self.assertEqual(samples[0].frames[0],
                         stacks.Frame("_PyEval_EvalFrameDefault", "libpython3.11.so.1.0"))

    def test_an_inlined_frame_takes_the_library_it_was_inlined_into(self) -> None:
        """"(inlined)" is not a library: the frame is counted as its host's code."""
        leaf = stacks.parse(PERF_SCRIPT)[2].frames[0]
        self.assertEqual(leaf, stacks.Frame("aes_gcm_cipher", "libcrypto.so.3"))
        self.assertEqual(stacks.kind(leaf), "OpenSSL")

    def test_other_output_is_refused(self) -> None:
        """Text from other perf script fields is an error naming the line, not a guess."""
        with self.assertRaises(ValueError) as caught:
            stacks.parse("python 10096 49217.862001: 500250 cpu-clock:ppp:\n\t1 f (x)\n")
        self.assertIn("python 10096", str(caught.exception))


class SummaryTests(SynchronousTestCase):
    """Time per answer by thread, by kind of code and by what made each futex call."""

    def test_per_answer_split(self) -> None:
        """The busiest thread is the reactor; periods over answers give microseconds each."""
        profile = stacks.summarise(stacks.parse(PERF_SCRIPT), answers=10)
        self.assertAlmostEqual(profile.reactor, 200.0)
        self.assertAlmostEqual(profile.others, 25.0)
        self.assertEqual(profile.reactor_kinds,
                         {"interpreter": 100.0, "kernel": 50.0, "OpenSSL": 50.0})
        self.assertAlmostEqual(profile.reactor_in_openssl, 50.0)
        self.assertEqual(profile.reactor_futex, {"wake lock waiter at recv": 50.0})
        self.assertEqual(profile.others_futex, {"wait for the lock at queue get": 25.0})

    def test_futex_causes(self) -> None:
        """A wake without the interpreter lock in the stack is a worker woken for a job."""
        put = stacks.Sample(100, 1, (
            stacks.Frame("futex_wake", "[kernel.kallsyms]"),
            stacks.Frame("__x64_sys_futex", "[kernel.kallsyms]"),
            stacks.Frame("__new_sem_post", "libc.so.6"),
            stacks.Frame("PyThread_release_lock", "libpython3.11.so.1.0"),
            stacks.Frame("_queue_SimpleQueue_put_impl", "_queue.cpython-311.so")))
        self.assertEqual(stacks.futex_cause(put), "wake worker at queue put")
        self.assertIsNone(stacks.futex_cause(stacks.parse(PERF_SCRIPT)[0]))

    def test_no_answers(self) -> None:
        """Without answers there is no time per answer."""
        self.assertRaises(ValueError, stacks.summarise, [], 0)

    def test_median_over_rounds(self) -> None:
        """Each figure is a median; a cause one round lacks counts as nothing that round."""
        one = stacks.summarise(stacks.parse(PERF_SCRIPT), answers=10)
        two = stacks.summarise(stacks.parse(PERF_SCRIPT), answers=20)
        three = stacks.Profile(answers=5, reactor=1.0, reactor_kinds={"kernel": 1.0})
        median = stacks.median([one, two, three])
        self.assertEqual(median.answers, 35)
        self.assertAlmostEqual(median.reactor, 100.0)
        self.assertEqual(median.reactor_kinds, {"interpreter": 50.0, "kernel": 25.0,
                                                "OpenSSL": 25.0})
        self.assertEqual(median.reactor_futex, {"wake lock waiter at recv": 25.0})
        self.assertRaises(ValueError, stacks.median, [])
