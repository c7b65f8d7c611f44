"""Weights for the ATT: from matches, from subclasses, and inverse-probability weights.

All three follow MatchIt's conventions: treated units weigh 1, and control
weights are scaled so that they sum to the number of control units with a
positive weight (so a weight of 1 still means "counts once").
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "weights_from_matches",
    "subclass_from_matches",
    "weights_from_subclass",
    "att_ipw_weights",
    "effective_sample_size",
]


def _scale_controls(w: np.ndarray, treat: np.ndarray) -> np.ndarray:
    c = ~treat & (w > 0)
    total = w[c].sum()
    if total > 0:
        w[c] *= c.sum() / total
    return w


def weights_from_matches(matches: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """Matching weights from a match matrix (MatchIt's ``weights.matrix``).

    Parameters
    ----------
    matches : numpy.ndarray
        ``(n_treated, k)`` control row positions per treated unit (treated in
        data order), ``-1`` for none.
    treat : numpy.ndarray
        Boolean treatment indicator, length ``n``.

    Returns
    -------
    numpy.ndarray
        Weight per unit: 1 for matched treated units; a control gets
        ``1 / (number of controls in the set)`` for every set it belongs to,
        then control weights are scaled to sum to the number of matched
        controls.  Unmatched units weigh 0.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([True, True, False, False, False])
    >>> weights_from_matches(np.array([[2, 3], [2, -1]]), t).tolist()
    [1.0, 1.0, 1.5, 0.5, 0.0]
    """
    treat = np.asarray(treat, dtype=bool)
    n = len(treat)
    t_rows = np.flatnonzero(treat)
    filled = matches >= 0
    k = filled.sum(axis=1)
    w = np.zeros(n)
    w[t_rows[k > 0]] = 1.0
    inv = np.zeros(len(k))
    inv[k > 0] = 1.0 / k[k > 0]
    for s in range(matches.shape[1]):
        ok = filled[:, s]
        if ok.any():
            w += np.bincount(matches[ok, s], weights=inv[ok], minlength=n)
    return _scale_controls(w, treat)


def subclass_from_matches(matches: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """Pair/set id per unit from a match matrix without replacement.

    Sets are numbered ``1, 2, ...`` in the data order of their treated unit;
    unmatched units get ``-1``.  (MatchIt numbers the same sets in the
    lexical order of the treated row numbers, so its labels are a
    permutation of these.)
    """
    treat = np.asarray(treat, dtype=bool)
    t_rows = np.flatnonzero(treat)
    sub = np.full(len(treat), -1, dtype=np.int64)
    has = (matches >= 0).any(axis=1)
    ids = np.full(len(t_rows), -1, dtype=np.int64)
    ids[has] = np.arange(1, int(has.sum()) + 1)
    sub[t_rows[has]] = ids[has]
    for s in range(matches.shape[1]):
        ok = matches[:, s] >= 0
        sub[matches[ok, s]] = ids[ok]
    return sub


def weights_from_subclass(subclass: np.ndarray, treat: np.ndarray) -> np.ndarray:
    """ATT weights from subclasses (MatchIt's ``weights.subclass``), e.g. CEM strata.

    Treated units in a subclass weigh 1; controls weigh
    ``n_treated(s) / n_control(s)`` for their subclass ``s``, scaled to sum
    to the number of matched controls.  Units with subclass ``-1`` weigh 0.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.array([True, False, False, True, True, False])
    >>> weights_from_subclass(np.array([1, 1, 1, 2, 2, 2]), t).tolist()
    [1.0, 0.5, 0.5, 1.0, 1.0, 2.0]
    """
    treat = np.asarray(treat, dtype=bool)
    sub = np.asarray(subclass, dtype=np.int64)
    inn = sub >= 0
    w = np.zeros(len(sub))
    if not inn.any():
        return w
    k = sub.max() + 1
    n_t = np.bincount(sub[inn & treat], minlength=k)
    n_c = np.bincount(sub[inn & ~treat], minlength=k)
    w[inn & treat] = 1.0
    ci = inn & ~treat
    w[ci] = n_t[sub[ci]] / n_c[sub[ci]]
    return _scale_controls(w, treat)


def att_ipw_weights(
    ps: np.ndarray,
    treat: np.ndarray,
    *,
    discarded: np.ndarray | None = None,
    trim: float | None = None,
) -> tuple[np.ndarray, float | None]:
    """Inverse-probability weights for the ATT ("odds weights").

    Parameters
    ----------
    ps : numpy.ndarray
        Propensity scores in (0, 1).
    treat : numpy.ndarray
        Boolean treatment indicator.
    discarded : numpy.ndarray, optional
        Units given weight 0.
    trim : float, optional
        Quantile in (0, 1) at which control weights are capped (e.g.
        ``0.99`` caps them at their 99th percentile) before normalising.

    Returns
    -------
    weights : numpy.ndarray
        1 for treated units; ``ps / (1 - ps)`` for controls, capped at the
        ``trim`` quantile, and scaled to sum to the number of (kept)
        control units.
    cap : float or None
        The cap applied to the raw odds, if any.

    Examples
    --------
    >>> import numpy as np
    >>> w, _ = att_ipw_weights(np.array([0.5, 0.2, 0.5]), np.array([True, False, False]))
    >>> [round(float(x), 3) for x in w]
    [1.0, 0.4, 1.6]
    """
    ps = np.asarray(ps, dtype=float)
    treat = np.asarray(treat, dtype=bool)
    keep = np.ones(len(ps), dtype=bool) if discarded is None else ~np.asarray(discarded, dtype=bool)
    w = np.zeros(len(ps))
    w[treat & keep] = 1.0
    c = ~treat & keep
    odds = ps[c] / (1.0 - ps[c])
    cap = None
    if trim is not None and odds.size:
        cap = float(np.quantile(odds, trim))
        odds = np.minimum(odds, cap)
    w[c] = odds
    return _scale_controls(w, treat), cap


def effective_sample_size(w: np.ndarray) -> float:
    """Kish's effective sample size ``(sum w)^2 / sum(w^2)`` (0 for no weight).

    Examples
    --------
    >>> effective_sample_size(np.array([1.0, 1.0, 2.0]))
    2.6666666666666665
    """
    w = np.asarray(w, dtype=float)
    s2 = float(np.dot(w, w))
    return float(w.sum() ** 2 / s2) if s2 > 0 else 0.0
