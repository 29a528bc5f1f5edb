"""A callback module that calls sys.exit() at import, as a broken user module might."""

import sys

sys.exit("this module refuses to be imported")


def handle(username: str, token: str, data: dict) -> tuple:  # pragma: no cover
    """Never reached."""
    return False, False, {}
