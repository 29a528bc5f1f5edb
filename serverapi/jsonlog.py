"""A JSON-lines log observer for C{twistd --logger serverapi.jsonlog.observer}.

twistd's C{--logger} takes the dotted name of a callable that returns the log observer; this
one writes every event as one JSON object per line (Twisted's C{jsonFileLogObserver}), so
serverapi's audit events keep their fields (C{event}, C{user}, C{peer}, C{token_sha256},
C{reason}) and can be queried, e.g. with C{jq 'select(.event == "login_failed")'}.

The lines go to standard output (journald and container runtimes collect it), or, when the
environment variable C{SERVERAPI_JSON_LOG} names a file, are appended to that file.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from twisted.logger import FileLogObserver, jsonFileLogObserver

ENVIRONMENT_VARIABLE = "SERVERAPI_JSON_LOG"


def observer() -> FileLogObserver:
    """The observer twistd's C{--logger} option calls for."""
    path = os.environ.get(ENVIRONMENT_VARIABLE)
    output: IO[str] = sys.stdout  # (twistd calls this before it redirects standard output)
    if path:
        output = open(path, "a", encoding="utf-8", buffering=1)  # a line at a time
    # No record separator: one JSON object per line ("JSON lines"), not RFC 7464 sequences.
    return jsonFileLogObserver(output, recordSeparator="")
