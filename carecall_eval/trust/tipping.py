"""Tipping points: how strong a hidden trait would have to be to carry an estimate to no effect.

Two scales, one per kind of estimate:

* **Ratios** (the primary PPML percent change): a trait ``U`` the data do not
  record, ``RR_reached`` times as common among reached as among comparable
  unreached customers and multiplying spending by ``RR_spending``, can move a
  ratio by at most the bounding factor ``B = RR_reached * RR_spending /
  (RR_reached + RR_spending - 1)`` (Ding and VanderWeele 2016).  For each
  strength with being reached, :func:`ratio_tipping_table` gives the strength
  with spending that would carry the interval's limit nearest to "no change"
  (and the point estimate) to no change: ``b = t (a - 1) / (a - t)`` for a
  target ``t``; no strength suffices when ``a <= t``.  Where the two strengths
  are equal, ``b`` is the E-value (VanderWeele and Ding 2017).
* **Differences** (the matched currency difference, a weighted regression):
  the robustness value of Cinelli and Hazlett (2020, PySensemakr's
  ``robustness_value``), the partial R² a confounder would need with both
  being reached and spending to carry the estimate (``RV_q``) or its interval
  (``RV_q,alpha``) to zero (:func:`robustness_value`).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["bounding_factor", "ratio_tipping_table", "robustness_value", "STRENGTHS"]

#: Strengths of a hidden trait's link with being reached shown by default (risk ratios).
STRENGTHS = (1.25, 1.5, 2.0, 3.0, 5.0)


def bounding_factor(rr_reached, rr_spending):
    """Ding and VanderWeele's joint bounding factor ``a b / (a + b - 1)`` (both ratios >= 1).

    >>> round(float(bounding_factor(2.0, 2.0)), 6)
    1.333333
    """
    a, b = np.asarray(rr_reached, float), np.asarray(rr_spending, float)
    return a * b / (a + b - 1.0)


def _needed(a: float, target: float) -> float:
    """Strength with spending that, with strength ``a`` with being reached, gives bounding factor ``target``."""
    if target <= 1.0:
        return 1.0
    if a <= target:
        return float("inf")
    return float(target * (a - 1.0) / (a - target))


def ratio_tipping_table(estimate: float, ci_low: float, ci_high: float, strengths=STRENGTHS) -> pd.DataFrame:
    """The tipping-point table of a percent change estimated as a ratio (``estimate`` = ratio - 1).

    Returns one row per strength with being reached: ``rr_reached``, ``rr_spending_point`` (to carry the
    estimate to no change), ``rr_spending_interval`` (to carry the interval's limit nearest to no change
    there; 1 when the interval already contains no change) and ``explained`` (whether a trait of that
    strength with being reached can explain the interval away at all: ``rr_spending_interval`` finite).
    Infinite strengths mean no association with spending is strong enough.

    >>> t = ratio_tipping_table(-0.2, -0.3, -0.1, strengths=(2.0,))
    >>> round(float(t["rr_spending_point"].iloc[0]), 4), round(float(t["rr_spending_interval"].iloc[0]), 4)
    (1.6667, 1.25)
    """
    rr, lo, hi = 1.0 + estimate, 1.0 + ci_low, 1.0 + ci_high
    if not all(np.isfinite([rr, lo, hi])) or min(rr, lo, hi) <= 0:
        raise ValueError("ratio_tipping_table: the estimate and its interval must be finite percent changes above -1")
    t_point = 1.0 / rr if rr < 1 else rr
    t_ci = 1.0 if lo <= 1.0 <= hi else (1.0 / hi if rr < 1 else lo)
    rows = [{"rr_reached": float(a), "rr_spending_point": _needed(float(a), t_point),
             "rr_spending_interval": _needed(float(a), t_ci)} for a in strengths]
    out = pd.DataFrame(rows)
    out["explained"] = np.isfinite(out["rr_spending_interval"])
    return out


def robustness_value(t_statistic: float, dof: float, q: float = 1.0, alpha: float | None = None) -> float:
    """Robustness value of a regression coefficient (Cinelli and Hazlett 2020; PySensemakr's formula).

    The partial R² that a confounder would need with both the treatment and the outcome to reduce the
    estimate by ``100 q`` percent (``alpha`` None), or to make it no longer significant at ``alpha``
    (two-sided) after that reduction.

    >>> round(robustness_value(4.18, 783), 3), round(robustness_value(4.18, 783, alpha=0.05), 3)
    (0.139, 0.076)
    """
    if dof <= 1:
        raise ValueError(f"robustness_value: dof must be above 1, got {dof!r}")
    f_q = q * abs(t_statistic) / np.sqrt(dof)
    if alpha is None:
        return float(0.5 * (np.sqrt(f_q ** 4 + 4 * f_q ** 2) - f_q ** 2))
    f_crit = abs(stats.t.ppf(alpha / 2, dof - 1)) / np.sqrt(dof - 1)
    fqa = f_q - f_crit
    if fqa < 0:
        return 0.0
    if f_q > 1 / f_crit:
        return float((f_q ** 2 - f_crit ** 2) / (1 + f_q ** 2))
    return float(0.5 * (np.sqrt(fqa ** 4 + 4 * fqa ** 2) - fqa ** 2))
