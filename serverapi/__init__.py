"""serverapi: a login-protected JSON API in front of a program, built on Twisted."""

from ._config import ServerConfig
from ._passwords import hashPassword
from ._service import APIService, makeAPIService
from ._sessions import LoginSession
from ._threaded import ThreadedAPIServer

__all__ = [
    "APIService",
    "LoginSession",
    "ServerConfig",
    "ThreadedAPIServer",
    "hashPassword",
    "makeAPIService",
]
