"""Request and validity callbacks the worker processes of ProcessAPIServer import (by name)."""

from __future__ import annotations

import os
import time
from typing import Any

# The validity callback appends its process id here (so a test sees where it ran) and ends
# sessions while a file of this name plus ".reject" exists.
VALIDITY_RECORD = "SERVERAPI_TEST_VALIDITY_RECORD"


def who(username: str, token: str, data: dict[str, Any]) -> tuple[bool, bool, dict[str, Any]]:
    """Answer with the worker's process id; on request crash the worker (C{os._exit}), spin
    the CPU or sleep first, or ask for force_logout."""
    if data.get("crash"):
        os._exit(1)
    if data.get("spin"):
        deadline = time.monotonic() + float(data["spin"])
        while time.monotonic() < deadline:
            pass
    if data.get("sleep"):
        time.sleep(float(data["sleep"]))
    return False, bool(data.get("logout")), {"pid": os.getpid(), "user": username}


def recorded_validity(session: Any) -> bool:
    """Record this process's id; reject while the reject file exists."""
    path = os.environ[VALIDITY_RECORD]
    with open(path, "a", encoding="utf-8") as record:
        record.write(f"{os.getpid()}\n")
    return not os.path.exists(path + ".reject")
