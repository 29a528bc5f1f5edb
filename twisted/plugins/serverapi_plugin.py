"""Registers C{twistd serverapi}."""

from twisted.application.service import ServiceMaker

serverapi = ServiceMaker(
    "serverapi", "serverapi.tap", "A login-protected JSON API in front of a program", "serverapi")
