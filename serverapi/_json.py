"""Strict RFC 8259 JSON in and out: what a request body may be and how responses are encoded."""

from __future__ import annotations

import json
import math
from typing import Any



class BadJSON(ValueError):
    """A request body that is not a strict JSON object; the message is safe to show a client."""


def _reject_constant(name: str) -> Any:
    """Refuse C{NaN}, C{Infinity} and C{-Infinity}, which RFC 8259 does not allow."""
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """Parse a JSON number, refusing ones too large for a float (they would become infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(allow_nan=False)


def parse_object(body: bytes) -> dict[str, Any]:
    """Return the JSON object C{body} holds, or raise L{BadJSON} saying what is wrong."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadJSON("Invalid JSON.") from None
    try:
        value = _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise BadJSON("Invalid JSON.") from None
    if not isinstance(value, dict):
        raise BadJSON("Request body must be a JSON object.")
    return value


def encode(payload: Any) -> bytes:
    """Encode a response body; raises C{TypeError}/C{ValueError} when it is not strict JSON."""
    return _ENCODER.encode(payload).encode("ascii")
