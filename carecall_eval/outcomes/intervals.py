"""Confidence intervals shared by several estimators (one implementation each).

:func:`wilson_interval` is the one Wilson score interval for a proportion
(reach, answer rates, actions, reception, retention's "still active" share).
"""
from __future__ import annotations

import numpy as np

from .._validation import check_level

__all__ = ["wilson_interval"]


def wilson_interval(count, nobs, level: float = 0.95):
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    count, nobs : array_like
        Number of successes and of trials (broadcast together).  ``count`` may
        be a non-integer (e.g. a weighted count with an effective ``nobs``).
    level : float
        Confidence level, strictly between 0 and 1.

    Returns
    -------
    (ci_low, ci_high) : tuple of ndarray or float
        NaN where ``nobs`` is 0.

    Notes
    -----
    ``p = count / nobs``; the interval is
    ``(p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z``
    the ``1 - (1 - level)/2`` normal quantile.  It keeps its coverage near the
    nominal level for small counts and proportions near 0 or 1, where the Wald
    interval does not.  Computed by
    ``statsmodels.stats.proportion.proportion_confint(method="wilson")``; this
    wrapper adds validation, NaN for ``nobs == 0`` and the ``level`` argument.

    References
    ----------
    Wilson, E. B. (1927). Probable inference, the law of succession, and
    statistical inference. JASA 22, 209-212.

    Examples
    --------
    >>> lo, hi = wilson_interval(40, 100)
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.3094, 0.498)
    """
    from statsmodels.stats.proportion import proportion_confint

    level = check_level(level)
    count = np.asarray(count, dtype=float)
    nobs = np.asarray(nobs, dtype=float)
    if np.any(count < 0) or np.any(count > nobs * (1 + 1e-12)):
        raise ValueError("wilson_interval: need 0 <= count <= nobs")
    safe = np.where(nobs > 0, nobs, 1.0)
    lo, hi = proportion_confint(np.minimum(count, safe), safe, alpha=1 - level, method="wilson")
    lo = np.where(nobs > 0, lo, np.nan)
    hi = np.where(nobs > 0, hi, np.nan)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi
