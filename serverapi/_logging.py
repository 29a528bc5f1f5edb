"""The audit log: the user's logger, made unable to break serving, plus twisted.logger events."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from twisted.logger import Logger, LogLevel

_fallback = Logger(namespace="serverapi")
_events = Logger(namespace="serverapi")
MAX_LOGGED_USERNAME = 64
# The attribute that marks a stdlib record as an audit event already emitted to twisted.logger
# (the daemon's stdlib-to-twisted bridge skips such records, so none is written twice).
AUDIT_MARK = "serverapi_audit"
_AUDIT_EXTRA = {AUDIT_MARK: True}
# The attribute that marks a stdlib logger whose records all end up in twisted.logger (the
# daemon's bridge): audit events, twisted.logger events already, are not made into stdlib records
# for it at all (making one costs more than the line it would not write).
BRIDGED_TO_TWISTED = "serverapi_bridged_to_twisted"
_LEVELS = {logging.DEBUG: LogLevel.debug, logging.INFO: LogLevel.info,
           logging.WARNING: LogLevel.warn, logging.ERROR: LogLevel.error,
           logging.CRITICAL: LogLevel.critical}


class SafeLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Logs through the user's logger; a handler that raises is reported, never propagated.

    A request is answered before it is logged, and a failing handler (a full disk, a broken
    socket handler, a bug) costs a log line, never a client's answer or the server's loop.
    """

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logger, {})
        self._audit_lines = not getattr(logger, BRIDGED_TO_TWISTED, False)

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

    def audit(self, event: str, msg: str, *args: Any, user: str | None = None,
              peer: str | None = None, token_sha256: str | None = None,
              reason: str | None = None, level: int = logging.INFO,
              exc_info: BaseException | bool | None = None) -> None:
        """Log one audit event: the stdlib line (C{msg % args}; not for a logger bridged into
        twisted.logger) and a twisted.logger event in namespace C{serverapi} with the fields
        C{event}, C{user}, C{peer}, C{token_sha256} and C{reason}, so JSON log observers can be
        queried.  Never raises.

        The twisted event's C{text} is the stdlib line, followed by the traceback when there is
        one.  (The traceback is text, not a C{log_failure}: an audit event is a record of what
        happened to a client, not an unhandled error.)
        """
        if self._audit_lines:
            self.log(level, msg, *args, exc_info=exc_info, extra=_AUDIT_EXTRA)
        try:
            text = msg % args if args else msg
            if exc_info:
                text += "\n" + _traceback_text(exc_info)
            _events.emit(_LEVELS.get(level, LogLevel.info), "{text}", text=text, event=event,
                         user=_field_username(user), peer=peer, token_sha256=token_sha256,
                         reason=reason)
        except Exception:
            _fallback.failure("serverapi could not emit its audit event {event}", event=event)


def _traceback_text(exc_info: BaseException | bool) -> str:
    """The traceback of C{exc_info} (an exception, or C{True} for the one being handled)."""
    error = sys.exc_info()[1] if exc_info is True else exc_info
    if not isinstance(error, BaseException):
        return ""
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).rstrip()


def _field_username(username: str | None) -> str | None:
    """A username for an event field: as given, cut to a bounded length."""
    if username is None or len(username) <= MAX_LOGGED_USERNAME:
        return username
    return username[:MAX_LOGGED_USERNAME] + "…"


def describe_exception(error: object) -> str | None:
    """An exception as C{Type: message} (for an event's C{reason}); never raises."""
    if not isinstance(error, BaseException):
        return None
    name = type(error).__name__
    try:
        text = str(error)
    except Exception:
        text = ""
    return f"{name}: {text}" if text else name


def as_safe_logger(logger: logging.Logger | SafeLogger) -> SafeLogger:
    """C{logger} as a L{SafeLogger} (wrapped unless it is one already)."""
    return logger if isinstance(logger, SafeLogger) else SafeLogger(logger)


def loggable_username(username: str) -> str:
    """A username for a log line: C{repr}-escaped and cut to a bounded length."""
    if len(username) <= MAX_LOGGED_USERNAME:
        return repr(username)
    return f"{username[:MAX_LOGGED_USERNAME]!r}…({len(username)} chars)"
