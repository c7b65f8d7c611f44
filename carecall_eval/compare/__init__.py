"""Cross-operator comparison without sharing customer data.

* :func:`export_bundle` - an operator's aggregates and effect estimates, small cells withheld (:mod:`.suppress`)
* :func:`read_bundle` - read and verify a bundle (:mod:`.bundle`)
* :func:`compare` - definitions check, side-by-side KPIs, meta-analysis (:mod:`.comparison`, :mod:`.meta`)
* :func:`pseudonymise_directory` - keyed HMAC pseudonyms for ids (:mod:`.pseudonymise`)

Names are imported on first use (PEP 562), so the CLI registers its subcommands without loading pandas.
"""
from __future__ import annotations

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
