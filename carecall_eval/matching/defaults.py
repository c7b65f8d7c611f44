"""Matching defaults, declared once.

:data:`MATCHIT` holds the defaults of :func:`carecall_eval.matching.match`
(R's ``MatchIt::matchit(method = "nearest", distance = "glm")``); :data:`COHORT`
holds the cohort's defaults (:class:`carecall_eval.cohorts.design.MatchingSpec`),
written as changes to MatchIt's.  Both take their values from here and from
nowhere else.  This module imports nothing, so ``cohorts.design`` can read it
without loading the matching code.

>>> MATCHIT.ratio, COHORT.ratio, COHORT.order == MATCHIT.order
(1, 5, True)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["MatchOptions", "MATCHIT", "COHORT", "SMD_THRESHOLD", "TIE_RULE", "USED_BY"]

#: |SMD| at or above which a covariate is called imbalanced.
SMD_THRESHOLD = 0.1

TIE_RULE = (
    "units are sorted by (exact stratum, distance, row position); exactly equal distances are "
    "ordered by row position, among treated units (matching order) and controls alike, and a "
    "treated unit equally near to a control below and above it takes the one below (MatchIt 4.5)"
)


@dataclass(frozen=True)
class MatchOptions:
    """Every option of :func:`~carecall_eval.matching.match` (see its docstring for their meaning)."""

    method: str = "nearest"
    distance: str = "ps"
    ratio: int = 1
    replace: bool = False
    caliper: float | None = None
    std_caliper: bool = True
    order: str = "largest"
    exact: tuple[str, ...] | None = None
    mahalanobis: tuple[str, ...] | None = None
    discard: str = "none"
    seed: int | None = None
    trim: float | None = None
    cutpoints: Mapping[str, Any] | None = None

    def is_default(self, name: str, value: Any) -> bool:
        """Whether ``value`` equals this option's value here (same type, so ``1.0`` is not ``True``)."""
        default = getattr(self, name)
        if default is None:
            return value is None
        return isinstance(value, type(default)) and value == default


#: :func:`match`'s defaults: MatchIt's 1:1 greedy nearest neighbour without replacement on a logistic
#: propensity score, largest score first, no caliper.
MATCHIT = MatchOptions()

#: The cohort's defaults.  About half of phone cases are reached, so the unreached pool is often smaller
#: than the contact group: matching with replacement keeps (nearly) every contact, five controls per
#: contact (reused across contacts) give balance and precision that 1:1 cannot reach with a small pool,
#: a caliper of 0.2 SD of the logit (Austin 2011) keeps pairs close, exact matching on trigger type
#: compares like with like, and a fixed seed makes the matches reproducible.
COHORT = dataclasses.replace(MATCHIT, distance="logit", ratio=5, replace=True, caliper=0.2, exact=("trigger",),
                             seed=20240101)

#: Options each method reads; any other option must stay at its :data:`MATCHIT` value.
USED_BY = {
    "nearest": {"distance", "ratio", "replace", "caliper", "std_caliper", "order", "exact",
                "mahalanobis", "discard"},
    "cem": {"cutpoints"},
    "ipw": {"distance", "discard", "trim"},
}
