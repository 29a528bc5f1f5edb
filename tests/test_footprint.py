"""What a request waiting for a worker holds: few objects, so the collector stays idle."""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from serverapi._internals import collected_input

from .helpers import HeldPool, MemoryServer, request_bytes

WAITING = 100
ECHO = b'{"action": "echo", "message": "hello"}'


def tracked_per_waiting_request(warm: list[int], waiting: list[int]) -> float:
    """Tracked objects each of C{waiting} connections holds once its /communicate request
    waits for a worker, after one request on each of C{warm} has warmed what it keeps."""
    pool = HeldPool()
    server = MemoryServer(pool=pool)
    request = request_bytes(body=ECHO, cookie=server.login())
    connections = [server.connect()[0] for _ in range(max(warm + waiting) + 1)]
    for index in warm:
        connections[index].dataReceived(request)
        pool.release()
    gc.collect()
    before = len(gc.get_objects())
    for index in waiting:
        connections[index].dataReceived(request)
    gc.collect()
    per_request = (len(gc.get_objects()) - before) / len(waiting)
    assert len(pool.jobs) == len(waiting), len(pool.jobs)
    while pool.jobs:
        pool.release()
    return per_request


class FootprintTests(SynchronousTestCase):
    """The garbage collector's young generation fills with what waiting requests hold."""

    def test_tracked_objects_per_waiting_request(self) -> None:
        """A /communicate request waiting for a worker on a new connection holds at most 10
        tracked objects, the connection's own included."""
        per_request = tracked_per_waiting_request([0], list(range(1, WAITING + 1)))
        self.assertLessEqual(per_request, 10, per_request)

    def test_tracked_objects_per_waiting_request_on_open_connections(self) -> None:
        """On connections that have served a request before, a waiting /communicate request
        holds three tracked objects: its request, its response headers and its job."""
        every = list(range(WAITING))
        per_request = tracked_per_waiting_request(every, every)
        self.assertLessEqual(per_request, 3.1, per_request)

    def test_one_input_list_per_connection(self) -> None:
        """A connection collects what arrives during a request in the same list request after
        request (Twisted's channel makes a new one each time), and answers pipelined requests
        as before."""
        server = MemoryServer()
        request = request_bytes(body=ECHO, cookie=server.login())
        channel, transport = server.connect()
        channel.dataReceived(request)
        collected = collected_input(channel)
        channel.dataReceived(request + request + request)
        self.assertIs(collected_input(channel), collected)
        self.assertEqual(collected, [])
        self.assertEqual(transport.value().count(b"HTTP/1.1 200 "), 4)
