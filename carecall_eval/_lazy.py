"""Lazy package exports (PEP 562), one implementation for every package ``__init__``.

>>> import types
>>> ns = {}
>>> get, names = lazy_exports("carecall_eval", {"level_label": "_validation"}, ns)
>>> get("level_label")(0.9), names()
('90%', ['level_label'])
"""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str], namespace: dict) -> tuple[Callable[[str], Any],
                                                                                  Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a name to its submodule, imported on first use."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
