"""Names a package loads on first use (PEP 562): the one loader of the three lazy packages.

``aichatonline``, ``aichatonline.gateway`` and ``aichatonline.testing`` export names whose
modules are costly to import (httpx, Starlette, the bundled server), and the package's
pytest plugin imports them in every test run of every project that has the SDK
installed. Each says where its names live; :func:`lazy_exports` gives it the module
``__getattr__`` that imports a name's module when the name is first used (and keeps the
value, so the next use is a plain global) and the ``__dir__`` that lists the names.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, Iterable[str]], public: Iterable[str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``, whose ``exports`` map a module
    (relative to the package) to the names it gives; ``public`` is what ``dir()`` shows."""
    module_of = {name: module for module, names in exports.items() for name in names}
    namespace = sys.modules[package].__dict__
    shown = sorted(public)

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return list(shown)

    return __getattr__, __dir__
