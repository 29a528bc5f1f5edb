"""What a request waiting for a worker holds: few objects, so the collector stays idle."""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from .helpers import HeldPool, MemoryServer, request_bytes

WAITING = 100


class FootprintTests(SynchronousTestCase):
    """The garbage collector's young generation fills with what waiting requests hold."""

    def test_tracked_objects_per_waiting_request(self) -> None:
        """A /communicate request waiting for a worker holds at most 10 tracked objects."""
        pool = HeldPool()
        server = MemoryServer(pool=pool)
        token = server.login()
        connections = [server.connect() for _ in range(WAITING + 1)]
        request = request_bytes(body=b'{"action": "echo", "message": "hello"}', cookie=token)
        first, _ = connections[0]
        first.dataReceived(request)
        pool.release()  # warm every cache on the path
        gc.collect()
        before = len(gc.get_objects())
        for channel, _ in connections[1:]:
            channel.dataReceived(request)
        gc.collect()
        per_request = (len(gc.get_objects()) - before) / WAITING
        self.assertEqual(len(pool.jobs), WAITING)
        self.assertLessEqual(per_request, 10, per_request)
        while pool.jobs:
            pool.release()

    def test_tracked_objects_per_waiting_request_on_open_connections(self) -> None:
        """On connections that have served a request before, a waiting /communicate request
        holds three tracked objects: its request, its response headers and its job."""
        pool = HeldPool()
        server = MemoryServer(pool=pool)
        token = server.login()
        connections = [server.connect() for _ in range(WAITING)]
        request = request_bytes(body=b'{"action": "echo", "message": "hello"}', cookie=token)
        for channel, _ in connections:  # each connection makes what it keeps once
            channel.dataReceived(request)
            pool.release()
        gc.collect()
        before = len(gc.get_objects())
        for channel, _ in connections:
            channel.dataReceived(request)
        gc.collect()
        per_request = (len(gc.get_objects()) - before) / WAITING
        self.assertEqual(len(pool.jobs), WAITING)
        self.assertLessEqual(per_request, 3.1, per_request)
        while pool.jobs:
            pool.release()
