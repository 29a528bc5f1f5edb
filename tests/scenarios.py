"""Running real-socket scenarios in a child process and collecting their results.

A scenario module registers functions with a L{ScenarioSet}; running the module prints one
JSON object of results.  The parent side (L{results_of}) runs each module once per test run.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable
from typing import Any

from .helpers import ROOT, child_env


class ScenarioSet:
    """The scenarios of one child module."""

    def __init__(self) -> None:
        self.scenarios: dict[str, Callable[[], Any]] = {}

    def __call__(self, function: Callable[[], Any]) -> Callable[[], Any]:
        """Register C{function} under its name."""
        self.scenarios[function.__name__] = function
        return function

    def main(self, names: list[str]) -> None:
        """Run the named scenarios (all by default), print the results, and exit at once."""
        results: dict[str, Any] = {}
        for name in names or list(self.scenarios):
            try:
                results[name] = {"ok": self.scenarios[name]()}
            except BaseException:
                results[name] = {"error": traceback.format_exc()}
        sys.stdout.write(json.dumps(results) + "\n")
        sys.stdout.flush()
        os._exit(0)  # leave stuck worker threads behind, as the scenarios intend


def _run(module: str) -> dict[str, Any]:
    """Run C{python -m module} and return its scenario results, or raise saying why not."""
    try:
        completed = subprocess.run([sys.executable, "-m", module], cwd=ROOT, env=child_env(),
                                   capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{module} did not finish within {error.timeout}s:\n"
                             f"{error.stderr!r}") from None
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise AssertionError(f"{module} printed nothing:\n{completed.stderr}")
    results: dict[str, Any] = json.loads(lines[-1])
    return results


@functools.cache
def _outcome_of(module: str) -> dict[str, Any] | AssertionError:
    """The results of one run of C{module}, or the error of that run: failures are kept too,
    so that a child that hangs costs one time-out per test run, not one per test."""
    try:
        return _run(module)
    except AssertionError as error:
        return error


def results_of(module: str) -> dict[str, Any]:
    """Run C{python -m module} once per test run and return its scenario results."""
    result = _outcome_of(module)
    if isinstance(result, AssertionError):
        raise AssertionError(str(result))
    return result


def outcome(case: Any, module: str, name: str) -> Any:
    """The result of scenario C{name}, failing C{case} with the child's traceback on error."""
    result = results_of(module)[name]
    if "error" in result:
        case.fail(result["error"])
    return result["ok"]
