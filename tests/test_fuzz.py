"""Random bodies, headers and paths thrown at the resource tree never cause a 500."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from .helpers import MemoryServer, request_bytes, status_of

PATHS = st.one_of(st.sampled_from(["/login", "/logout", "/communicate", "/", "/x"]),
                  st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                          max_size=30).map(lambda text: "/" + text))
METHODS = st.sampled_from(["POST", "GET", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"])
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8),
                                                                     children, max_size=4),
    max_leaves=20)
BODIES = st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: repr(v).encode()),
                   st.dictionaries(st.sampled_from(["username", "password", "x"]),
                                   JSON_VALUES, max_size=3).map(
                       lambda d: __import__("json").dumps(d).encode()))
HEADER_VALUES = st.binary(max_size=40).filter(lambda v: b"\r" not in v and b"\n" not in v)
CONTENT_TYPES = st.one_of(st.none(), st.sampled_from(
    [b"application/json", b"text/plain", b"multipart/form-data; boundary=x",
     b"application/x-www-form-urlencoded", b"application/vnd.api+json"]), HEADER_VALUES)


class FuzzTests(SynchronousTestCase):
    """Property: without a failing callback, no input earns a 500."""

    def setUp(self) -> None:
        self.server = MemoryServer(max_recv_calls_per_request=1)
        self.token = self.server.login()

    @settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")), deadline=None,
              derandomize=not os.environ.get("FUZZ_EXAMPLES"), database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(method=METHODS, path=PATHS, body=BODIES, content_type=CONTENT_TYPES,
           cookie=st.one_of(st.none(), st.just("VALID"), HEADER_VALUES.map(
               lambda v: v.decode("latin-1"))),
           extra=st.lists(st.tuples(st.sampled_from([b"X-A", b"Cookie", b"Expect",
                                                     b"Connection", b"Accept"]),
                                    HEADER_VALUES), max_size=3))
    def test_no_500(self, method: str, path: str, body: bytes, content_type: Any,
                    cookie: Any, extra: list[tuple[bytes, bytes]]) -> None:
        """Any method, path, body, content type, cookie and headers: never a 500."""
        token = self.token if cookie == "VALID" else cookie
        headers = b"".join(name + b": " + value + b"\r\n" for name, value in extra)
        raw = request_bytes(path, body, method=method, cookie=token, extra=headers,
                            content_type=content_type)
        answer, _ = self.server.raw(raw)
        status = status_of(answer)
        self.assertIsNotNone(status, raw[:300])  # every complete request is answered at once
        self.assertNotEqual(status, 500, raw[:300])
        self.assertNotIn("Traceback", self.server.log.text)
