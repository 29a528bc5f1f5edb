"""A request callback named so that another process can import it: C{package.module:name}."""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Set in a worker process's environment: a ProcessAPIServer started there is a mistake (a
# script without an C{if __name__ == "__main__":} guard, run again to find its callback).
WORKER_ENVIRONMENT = "SERVERAPI_WORKER"
_SCRIPT_MODULE = "__mp_main__"  # the name multiprocessing gives a script run again in a child


def import_reference(text: str) -> Any:
    """Import C{package.module:name} (C{name} may be dotted); C{ValueError}/C{ImportError}
    say what is wrong."""
    module_name, _, attribute = text.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{text!r} must look like package.module:function")
    try:
        target: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as error:  # a module that exits at import is an error too
        raise ImportError(f"cannot import {module_name!r}: {type(error).__name__}: "
                          f"{error}") from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ImportError(f"{module_name!r} has no {attribute!r}") from None
    return target


@dataclass(frozen=True, slots=True)
class CallbackReference:
    """Where a worker process finds the request callback: a module and a name in it, or a
    name in the program's main script (run again in the worker, as multiprocessing does)."""

    module: str
    name: str
    script: str | None = None

    @classmethod
    def of(cls, callback: Callable[..., Any] | str) -> tuple[Callable[..., Any],
                                                              CallbackReference]:
        """The callback and its reference, from a function or from C{"package.module:name"};
        C{TypeError}/C{ValueError}/C{ImportError} when another process could not import it."""
        if isinstance(callback, str):
            target = import_reference(callback)
            module, _, name = callback.partition(":")
            return target, cls(module, name)
        module = getattr(callback, "__module__", None)
        name = getattr(callback, "__qualname__", None)
        if not isinstance(module, str) or not isinstance(name, str) or "<" in name:
            raise TypeError(f"request_callback must be importable by the worker processes (a "
                            f"module-level function, or 'package.module:name'); {callback!r} "
                            f"is not")
        script = None
        owner = sys.modules.get(module)
        if module == "__main__":
            spec = getattr(owner, "__spec__", None)
            script = getattr(owner, "__file__", None)
            if spec is not None and spec.name != "__main__":  # python -m package.module
                module, script = spec.name, None
            elif script is None:
                raise TypeError("request_callback is defined in an interactive session; the "
                                "worker processes cannot import it: define it in a module")
            else:
                script = os.path.abspath(script)
        reference = cls(module, name, script)
        if reference._resolve(owner) is not callback:
            raise TypeError(f"request_callback must be importable by the worker processes: "
                            f"{module}:{name} does not name {callback!r}")
        return callback, reference

    def load(self) -> Callable[..., Any]:
        """Import the callback (in a worker process); C{ImportError} says why not."""
        if self.script is None:
            target = import_reference(str(self))
        else:
            try:
                namespace = runpy.run_path(self.script, run_name=_SCRIPT_MODULE)
            except (Exception, SystemExit) as error:
                raise ImportError(f"cannot run {self.script!r} to find {self.name!r}: "
                                  f"{type(error).__name__}: {error}") from None
            holder = type(sys)(_SCRIPT_MODULE)
            holder.__dict__.update(namespace)
            target = self._resolve(holder)
            if target is None:
                raise ImportError(f"{self.script!r} has no {self.name!r} (is it defined under "
                                  f"'if __name__ == \"__main__\":'?)")
        if not callable(target):
            raise ImportError(f"{self} is not callable")
        return target  # type: ignore[no-any-return]

    def _resolve(self, module: Any) -> Any:
        """The object C{name} names in C{module}, or C{None}."""
        target = module
        for part in self.name.split("."):
            target = getattr(target, part, None)
        return target

    def __str__(self) -> str:
        return f"{self.module}:{self.name}"
