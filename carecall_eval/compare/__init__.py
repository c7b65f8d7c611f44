"""Cross-operator comparison without sharing customer data.

* :func:`export_bundle` - an operator's aggregates and effect estimates, small cells withheld (:mod:`.suppress`)
* :func:`read_bundle` - read and verify a bundle (:mod:`.bundle`)
* :func:`compare` - definitions check, side-by-side KPIs, meta-analysis (:mod:`.comparison`, :mod:`.meta`)
* :func:`pseudonymise_directory` - keyed HMAC pseudonyms for ids (:mod:`.pseudonymise`)
"""
from .bundle import Bundle, read_bundle
from .comparison import Comparison, DefinitionMismatch, compare
from .export import export_bundle
from .meta import EFFECTS, meta_analysis
from .pseudonymise import pseudonymise_directory

__all__ = ["export_bundle", "read_bundle", "Bundle", "compare", "Comparison", "DefinitionMismatch",
           "meta_analysis", "EFFECTS", "pseudonymise_directory"]
