"""Strict JSON parsing of request bodies and encoding of responses."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from serverapi._json import BadJSON, encode, parse_object


class ParseTests(SynchronousTestCase):
    """parse_object accepts exactly RFC 8259 objects."""

    def test_objects(self) -> None:
        """Objects parse, with nested values, unicode and big-but-finite numbers."""
        self.assertEqual(parse_object(b'{"a": [1, 2.5, null, true], "\\u00e9": "\xc3\xa9"}'),
                         {"a": [1, 2.5, None, True], "\u00e9": "\u00e9"})
        self.assertEqual(parse_object(b'{"n": 1e308}'), {"n": 1e308})

    def test_rejected(self) -> None:
        """Everything outside strict JSON objects is BadJSON, never another exception."""
        cases = [
            (b"", "Invalid JSON."), (b"{", "Invalid JSON."), (b"{'a': 1}", "Invalid JSON."),
            (b'{"a": NaN}', "Invalid JSON."), (b'{"a": Infinity}', "Invalid JSON."),
            (b'{"a": -Infinity}', "Invalid JSON."), (b'{"a": 1e400}', "Invalid JSON."),
            (b'{"a": -1e400}', "Invalid JSON."), (b'{"a": ' + b"1" * 5000 + b"}",
                                                  "Invalid JSON."),
            (b"\xff\xfe{}", "Invalid JSON."), (b'{"a": "\xc3"}', "Invalid JSON."),
            (b"\xef\xbb\xbf{}", "Invalid JSON."), (b"[" * 100_000 + b"]" * 100_000,
                                                   "Invalid JSON."),
            (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "Invalid JSON."),
            (b"[]", "Request body must be a JSON object."),
            (b"1", "Request body must be a JSON object."),
            (b"null", "Request body must be a JSON object."),
            (b'"x"', "Request body must be a JSON object."),
            (b"{} {}", "Invalid JSON."),
        ]
        for raw, message in cases:
            with self.assertRaises(BadJSON, msg=raw[:40]) as caught:
                parse_object(raw)
            self.assertEqual(str(caught.exception), message)


class EncodeTests(SynchronousTestCase):
    """encode produces strict ASCII JSON."""

    def test_encode(self) -> None:
        """Non-ASCII is escaped; NaN and unknown types raise."""
        self.assertEqual(encode({"a": "\u00e9"}), b'{"a": "\\u00e9"}')
        with self.assertRaises(ValueError):
            encode({"a": float("nan")})
        with self.assertRaises(TypeError):
            encode({"a": {1, 2}})
