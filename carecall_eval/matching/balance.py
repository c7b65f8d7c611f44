"""Covariate balance before and after matching or weighting.

The statistics are MatchIt's ``summary.matchit()`` for the ATT
(``standardize = TRUE``), column by column:

* **means** of each group; after matching, weighted by the matching weights;
* **standardised mean difference** ``(mean_t - mean_c) / sd``, where ``sd``
  is the standard deviation of the *treated group in the full sample*
  (``sqrt(p (1 - p))`` for a 0/1 variable, the ``n - 1`` sample SD
  otherwise).  The same denominator is used before and after, so a change
  in SMD is a change in the mean difference.  A difference smaller than
  ``sqrt(machine eps)`` is reported as it is (not standardised), and a
  vanishing treated SD falls back to the pooled SD, as in MatchIt;
* **variance ratio** treated / control of weighted variances (reliability
  weights, ``sum w (x - m)^2 / (1 - sum w^2)`` with normalised ``w``);
  not reported for 0/1 variables;
* **eCDF mean / max**: mean and largest absolute difference between the
  groups' weighted empirical CDFs, taken over the distinct values of the
  variable among *all* units; for a 0/1 variable both equal the absolute
  difference in proportions.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ._sort import stable_argsort
from .weighting import effective_sample_size

__all__ = ["balance_table", "balance_stats", "sample_sizes", "BALANCE_STATS"]

#: Statistics reported per sample (``*_before`` and ``*_after`` columns).
BALANCE_STATS = ("mean_treated", "mean_control", "smd", "var_ratio", "ecdf_mean", "ecdf_max")

_TOL = np.sqrt(np.finfo(float).eps)


class _Sample:
    """The units of one sample (positive weight) per group, with their weights.

    ``wt``/``wc`` are ``None`` when all weights of a group are equal, which
    lets the statistics use unweighted (faster) formulas.
    """

    def __init__(self, it: np.ndarray, ic: np.ndarray, w: np.ndarray | None):
        if w is None:
            self.t, self.c, self.wt, self.wc = it, ic, None, None
        else:
            w = np.asarray(w, dtype=float)
            self.t = it[w[it] > 0]
            self.c = ic[w[ic] > 0]
            self.wt = self._norm(w[self.t])
            self.wc = self._norm(w[self.c])
        self.too_small = len(self.t) < 2 and len(self.c) < 2
        self._signed = None
        self._w = w

    def signed(self, n: int) -> np.ndarray:
        """Per unit: -w/sum(w_t) for treated, +w/sum(w_c) for controls (0 outside the sample)."""
        if self._signed is None:
            sw = np.zeros(n)
            for idx, wn, sign in ((self.t, self.wt, -1.0), (self.c, self.wc, 1.0)):
                if len(idx):
                    sw[idx] = sign * (wn if wn is not None else 1.0 / len(idx))
            self._signed = sw
        return self._signed

    @staticmethod
    def _norm(w: np.ndarray) -> np.ndarray | None:
        if len(w) == 0 or np.all(w == w[0]):
            return None
        return w / w.sum()


def _mean(x: np.ndarray, w: np.ndarray | None) -> float:
    if len(x) == 0:
        return np.nan
    return float(x.mean()) if w is None else float(w @ x)


def _var(x: np.ndarray, w: np.ndarray | None) -> float:
    """Reliability-weighted variance ``sum w (x - m)^2 / (1 - sum w^2)`` (w summing to 1)."""
    if w is None:
        return float(x.var(ddof=1)) if len(x) > 1 else np.nan
    m = float(w @ x)
    denom = 1.0 - float(w @ w)
    return float(w @ (x - m) ** 2) / denom if denom > 0 else np.nan


def _pooled_sd(xt: np.ndarray, xc: np.ndarray, binary: bool) -> float:
    n = len(xt) + len(xc)
    if binary:
        v = sum(xi.sum() * (1 - xi.sum() / len(xi)) / n for xi in (xt, xc) if len(xi))
        return float(np.sqrt(v))
    ss = sum(float(((xi - xi.mean()) ** 2).sum()) for xi in (xt, xc) if len(xi))
    return float(np.sqrt(ss / (n - 2))) if n > 2 else np.nan


def _stats(x: np.ndarray, samples: Sequence[_Sample]) -> list[dict]:
    binary = bool(np.all((x == 0) | (x == 1)))
    full = samples[0]
    xt_all, xc_all = x[full.t], x[full.c]
    # SMD denominator: treated SD in the first (full, unweighted) sample
    if binary:
        p = xt_all.mean()
        sd = np.sqrt(p * (1 - p))
    else:
        sd = xt_all.std(ddof=1) if len(xt_all) > 1 else np.nan
    if not np.isfinite(sd) or sd < _TOL:
        sd = _pooled_sd(xt_all, xc_all, binary)
    order = run_end = None
    out = []
    for k, s in enumerate(samples):
        xt, xc = (xt_all, xc_all) if k == 0 else (x[s.t], x[s.c])
        mt, mc = _mean(xt, s.wt), _mean(xc, s.wc)
        diff = mt - mc
        rec = {"binary": binary, "mean_treated": mt, "mean_control": mc,
               "smd": np.nan, "var_ratio": np.nan, "ecdf_mean": np.nan, "ecdf_max": np.nan}
        if abs(diff) > _TOL:
            if not s.too_small:
                rec["smd"] = diff / sd
        else:
            rec["smd"] = diff
        if binary:
            rec["ecdf_mean"] = rec["ecdf_max"] = abs(diff)
        elif not s.too_small and len(xt) and len(xc):
            rec["var_ratio"] = _var(xt, s.wt) / _var(xc, s.wc)
            if order is None:
                # eCDFs are compared at the distinct values among ALL units (as MatchIt):
                # the running sum of signed weights in x order, read at the end of each run
                order, xs = stable_argsort(x, return_sorted=True)
                run_end = np.empty(len(xs), dtype=bool)
                run_end[:-1] = xs[1:] != xs[:-1]
                run_end[-1] = True
            e = np.abs(np.cumsum(s.signed(len(x))[order])[run_end])
            rec["ecdf_mean"], rec["ecdf_max"] = float(e.mean()), float(e.max())
        out.append(rec)
    return out


def balance_stats(
    x: np.ndarray,
    treat: np.ndarray,
    weights: Sequence[np.ndarray | None],
) -> list[dict]:
    """Balance statistics of one variable for several weightings.

    Parameters
    ----------
    x : numpy.ndarray
        Values of the variable, one per unit.
    treat : numpy.ndarray
        Boolean treatment indicator.
    weights : sequence of (numpy.ndarray or None)
        One weight vector per sample to describe (``None`` = unweighted).
        The SMD denominator comes from the first entry's treated units,
        which should therefore be ``None`` (the full sample).

    Returns
    -------
    list of dict
        One dict per entry of ``weights`` with the keys
        :data:`BALANCE_STATS` and ``binary``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1.0, 3.0, 2.0, 4.0, 6.0])
    >>> t = np.array([True, True, False, False, False])
    >>> s = balance_stats(x, t, [None])[0]
    >>> [round(float(s[k]), 4) for k in ("smd", "var_ratio", "ecdf_max")]
    [-1.4142, 0.5, 0.6667]
    """
    treat = np.asarray(treat, dtype=bool)
    it, ic = np.flatnonzero(treat), np.flatnonzero(~treat)
    return _stats(np.asarray(x, dtype=float), [_Sample(it, ic, w) for w in weights])


def balance_table(
    X: np.ndarray,
    names: Sequence[str],
    treat: np.ndarray,
    weights: np.ndarray,
    *,
    variables: Sequence[str] | None = None,
    distance: np.ndarray | None = None,
) -> pd.DataFrame:
    """Balance table before and after matching (one row per covariate term).

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, q)`` covariate matrix, one column per term (every level of a
        categorical covariate has its own 0/1 column).
    names : sequence of str
        Term names (the index of the result).
    treat : numpy.ndarray
        Boolean treatment indicator.
    weights : numpy.ndarray
        Matching or weighting weights (0 = not in the matched sample).
    variables : sequence of str, optional
        The covariate each term comes from (column ``variable``).
    distance : numpy.ndarray, optional
        If given, a first row ``"distance"`` describes it too (as MatchIt).

    Returns
    -------
    pandas.DataFrame
        Index ``term``; columns ``variable``, ``binary`` and, for each of
        :data:`BALANCE_STATS`, ``<stat>_before`` and ``<stat>_after``.

    Notes
    -----
    See the module docstring for the definitions (MatchIt's
    ``summary.matchit()`` for the ATT).
    """
    treat = np.asarray(treat, dtype=bool)
    names = list(names)
    variables = list(variables) if variables is not None else names
    cols = []
    if distance is not None:
        cols.append(("distance", "distance", np.asarray(distance, dtype=float)))
    X = np.asarray(X)
    for j, (nm, var) in enumerate(zip(names, variables)):
        cols.append((nm, var, X[:, j]))
    it, ic = np.flatnonzero(treat), np.flatnonzero(~treat)
    samples = [_Sample(it, ic, None), _Sample(it, ic, weights)]
    rows = []
    for nm, var, x in cols:
        before, after = _stats(np.ascontiguousarray(x, dtype=float), samples)
        row = {"term": nm, "variable": var, "binary": before["binary"]}
        for s in BALANCE_STATS:
            row[f"{s}_before"] = before[s]
        for s in BALANCE_STATS:
            row[f"{s}_after"] = after[s]
        rows.append(row)
    table = pd.DataFrame(rows).set_index("term")
    return table


def sample_sizes(treat: np.ndarray, weights: np.ndarray, discarded: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts and effective sample sizes by group.

    Returns
    -------
    counts : pandas.DataFrame
        Index ``all``, ``matched`` (weight > 0), ``unmatched`` (weight 0, not
        discarded), ``discarded``; columns ``control``, ``treated``.
    ess : pandas.DataFrame
        Kish effective sample sizes, index ``all`` and ``matched``.
    """
    treat = np.asarray(treat, dtype=bool)
    counts, ess = {}, {}
    for name, g in (("control", ~treat), ("treated", treat)):
        w = weights[g]
        matched = int(np.count_nonzero(w > 0))
        disc = int(np.count_nonzero(discarded[g]))
        counts[name] = {"all": int(g.sum()), "matched": matched,
                        "unmatched": int(g.sum()) - matched - disc, "discarded": disc}
        ess[name] = {"all": float(g.sum()), "matched": effective_sample_size(w[w > 0])}
    counts_df = pd.DataFrame(counts).loc[["all", "matched", "unmatched", "discarded"]]
    ess_df = pd.DataFrame(ess).loc[["all", "matched"]]
    return counts_df, ess_df
