"""Command line: C{serverapi hash-password} (or C{python -m serverapi ...}) and C{--version}."""

from __future__ import annotations

import argparse
import getpass
import sys

from . import __version__
from ._passwords import hashPassword


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(prog="serverapi")
    parser.add_argument("--version", action="version", version=f"serverapi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "hash-password",
        help="read a password (without echo on a terminal, else one line of standard input) "
             "and print its hash for use in credentials")
    parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("The passwords differ.", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("The password is empty.", file=sys.stderr)
        return 1
    print(hashPassword(password))
    return 0


if __name__ == "__main__":
    sys.exit(main())
