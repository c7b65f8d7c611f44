"""Matching and weighting for the ATT, with balance diagnostics.

Module map
----------
``api``         :func:`match` (the dispatcher) and :class:`MatchResult`.
``_inputs``     validation of data and options, covariate expansion.
``propensity``  logistic propensity model (statsmodels results).
``nearest``     greedy nearest-neighbour matching, O((n_t + n_c) log n_c).
``cem``         coarsened exact matching.
``weighting``   matching, subclass and inverse-probability weights; Kish ESS.
``balance``     balance table (MatchIt's ``summary()`` conventions).

The love plot lives in :func:`carecall_eval.plotting.love_plot`.
"""
from .api import SMD_THRESHOLD, MatchResult, match
from .balance import balance_table
from .cem import cem_subclass, coarsen
from .nearest import greedy_nearest
from .propensity import PropensityFit, fit_propensity
from .weighting import att_ipw_weights, effective_sample_size

__all__ = [
    "match",
    "MatchResult",
    "SMD_THRESHOLD",
    "balance_table",
    "greedy_nearest",
    "fit_propensity",
    "PropensityFit",
    "cem_subclass",
    "coarsen",
    "att_ipw_weights",
    "effective_sample_size",
]
