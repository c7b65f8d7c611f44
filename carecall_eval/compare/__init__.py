"""Cross-operator comparison without sharing customer data.

* :func:`export_bundle` - an operator's aggregates and effect estimates, small cells withheld (:mod:`.suppress`)
* :func:`read_bundle` - read and verify a bundle (:mod:`.bundle`)
* :func:`compare` - definitions check, side-by-side KPIs, meta-analysis (:mod:`.comparison`, :mod:`.meta`)
* :func:`pseudonymise_directory` - keyed HMAC pseudonyms for ids (:mod:`.pseudonymise`)

Names are imported on first use (PEP 562), so the CLI registers its subcommands without loading pandas.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "export_bundle": "export",
    "read_bundle": "bundle",
    "Bundle": "bundle",
    "compare": "comparison",
    "Comparison": "comparison",
    "DefinitionMismatch": "comparison",
    "meta_analysis": "meta",
    "EFFECTS": "meta",
    "pseudonymise_directory": "pseudonymise",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
