"""serverapi: a login-protected JSON API in front of a program, built on Twisted."""

import logging

from ._config import ServerConfig
from ._passwords import hashPassword
from ._process_server import ProcessAPIServer
from ._service import APIService, makeAPIService
from ._sessions import LoginSession
from ._store import SessionStoreUnavailable
from ._threaded import ThreadedAPIServer
from ._tls import TLSFiles
from ._workers import CallbackPool, PoolJob, ThreadedCallbackPool

__version__ = "1.0.0"  # the single source: setup.cfg reads it (version = attr: ...)

# A library's logger stays silent unless the program configures logging (Python's logging HOWTO).
logging.getLogger("serverapi").addHandler(logging.NullHandler())

__all__ = [
    "APIService",
    "CallbackPool",
    "LoginSession",
    "PoolJob",
    "ProcessAPIServer",
    "ServerConfig",
    "SessionStoreUnavailable",
    "TLSFiles",
    "ThreadedAPIServer",
    "ThreadedCallbackPool",
    "hashPassword",
    "makeAPIService",
]
