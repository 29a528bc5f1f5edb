"""A callback module that imports in the main process but not in a worker process (as a module
whose import needs something only the main process has)."""

from __future__ import annotations

import os
from typing import Any

if os.environ.get("SERVERAPI_WORKER"):
    raise ImportError("this module needs the main process")


def handle(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
    """Echo."""
    return False, False, {"echo": data}
