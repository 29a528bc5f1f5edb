"""Loads the benchmark's scripts (in bench/, not part of the installed package) for tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def load_bench(filename: str = "run.py") -> ModuleType:
    """bench/C{filename} as a module, registered in C{sys.modules} (dataclasses look their
    module up there)."""
    name = "serverapi_bench_" + filename.removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCH, filename))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
