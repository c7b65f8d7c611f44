"""Matching and weighting for the ATT, with balance diagnostics.

Module map
----------
``api``         :func:`match`, the dispatcher: validates once, fits the propensity model, calls a method.
``result``      :class:`MatchResult`, what :func:`match` returns (result protocol).
``describe``    the label and plain-language text of a result.
``defaults``    the matching defaults, declared once (``match()``'s and the cohort's).
``_inputs``     validation of data and options, covariate expansion.
``propensity``  logistic propensity model (statsmodels results).
``nearest``     greedy nearest-neighbour matching, O((n_t + n_c) log n_c).
``cem``         coarsened exact matching.
``weighting``   matching, subclass and inverse-probability weights; Kish ESS.
``balance``     balance table (MatchIt's ``summary()`` conventions).

The love plot lives in :func:`carecall_eval.plotting.love_plot`.  Names are
imported on first use (PEP 562), so ``matching.defaults`` can be read without
loading pandas or statsmodels.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "match": "api",
    "MatchResult": "result",
    "SMD_THRESHOLD": "defaults",
    "balance_table": "balance",
    "greedy_nearest": "nearest",
    "fit_propensity": "propensity",
    "PropensityFit": "propensity",
    "cem_subclass": "cem",
    "coarsen": "cem",
    "att_ipw_weights": "weighting",
    "effective_sample_size": "weighting",
}

__all__ = [
    "match", "MatchResult", "SMD_THRESHOLD", "balance_table", "greedy_nearest", "fit_propensity",
    "PropensityFit", "cem_subclass", "coarsen", "att_ipw_weights", "effective_sample_size",
]

if TYPE_CHECKING:  # pragma: no cover
    from .api import match
    from .balance import balance_table
    from .cem import cem_subclass, coarsen
    from .defaults import SMD_THRESHOLD
    from .nearest import greedy_nearest
    from .propensity import PropensityFit, fit_propensity
    from .result import MatchResult
    from .weighting import att_ipw_weights, effective_sample_size


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
