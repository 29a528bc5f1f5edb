"""The audit log: the user's logger, made unable to break serving when its handlers fail."""

from __future__ import annotations

import logging
from typing import Any

from twisted.logger import Logger

_fallback = Logger(namespace="serverapi")
MAX_LOGGED_USERNAME = 64


class SafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logs through the user's logger; a handler that raises is reported, never propagated.

    A request is answered before it is logged, and a failing handler (a full disk, a broken
    socket handler, a bug) costs a log line, never a client's answer or the server's loop.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        """Pass messages through unchanged (no extra context)."""
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        """Log as the wrapped logger would, swallowing (and reporting) any error it raises."""
        try:
            if self.logger.isEnabledFor(level):
                self.logger.log(level, msg, *args, **kwargs)
        except Exception:
            _fallback.failure("serverapi could not write to its logger {name}",
                              name=self.logger.name)


def loggable_username(username: str) -> str:
    """A username for a log line: C{repr}-escaped and cut to a bounded length."""
    if len(username) <= MAX_LOGGED_USERNAME:
        return repr(username)
    return f"{username[:MAX_LOGGED_USERNAME]!r}…({len(username)} chars)"
