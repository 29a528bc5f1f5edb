"""Credentials that can change while serving: validation, the credentials file, the holder."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from types import MappingProxyType

from ._passwords import CredentialStore, parse_hash


class CredentialsFileError(ValueError):
    """A credentials file that cannot be used; the message says why (without the option)."""


def check_credentials(credentials: object) -> MappingProxyType[str, str]:
    """Validate a username -> password (or hash) mapping and return a frozen copy.

    Raises C{TypeError} for a wrong type and C{ValueError} for an empty username, with the
    messages the constructor has always given.
    """
    if not isinstance(credentials, Mapping):
        raise TypeError(
            f"credentials must be a dict of username -> password, "
            f"not {type(credentials).__name__}"
        )
    for username, password in credentials.items():
        if not isinstance(username, str) or not isinstance(password, str):
            raise TypeError("credentials must map str usernames to str passwords")
        if not username:
            raise ValueError("credentials must not contain an empty username")
    return MappingProxyType(dict(credentials))


def read_credentials_file(path: str) -> dict[str, str]:
    """Read and check a credentials JSON file in one go, raising L{CredentialsFileError}."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except OSError as error:
        raise CredentialsFileError(f"cannot read {path!r}: {error.strerror or error}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise CredentialsFileError(f"{path!r} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise CredentialsFileError(f"{path!r} must hold a JSON object of username -> password")
    if not data:
        raise CredentialsFileError(f"{path!r} holds no users")
    for username, password in data.items():
        if not username or not isinstance(password, str) or not password:
            raise CredentialsFileError(
                f"the entry for {username!r} in {path!r} must be a non-empty username with a "
                f"non-empty string password or hash")
    return data


def readable_plaintext_warning(path: str, credentials: Mapping[str, str]) -> str | None:
    """A warning when C{path} holds plaintext passwords and others may read it, else C{None}."""
    if all(parse_hash(value) is not None for value in credentials.values()):
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    return (f"{path} holds plaintext passwords and is readable by other users; "
            f"hash them with 'serverapi hash-password' or chmod 600 it")


class Credentials:
    """The credential store a running server checks logins against, replaced as a whole.

    Replacing it is one attribute assignment on the reactor thread, so a login sees either the
    old store or the new one, never a mixture; a password check already running in a worker
    finishes against the store it started with (the login resource then confirms that the
    user is still configured).
    """

    __slots__ = ("store",)

    def __init__(self, store: CredentialStore) -> None:
        self.store = store

    def replace(self, store: CredentialStore) -> frozenset[str]:
        """Make C{store} the current one; return the usernames it no longer has."""
        removed = self.store.usernames - store.usernames
        self.store = store
        return removed
