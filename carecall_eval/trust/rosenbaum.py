"""Rosenbaum bounds for matched sets with one treated unit and one or more controls.

How strong would a difference the data do not record have to be to explain a
matched comparison away?  Rosenbaum's model lets two customers of the same
matched set differ in their odds of being reached by a factor of at most Γ
(Γ = 1: matching removed every difference that matters).  For each Γ the
largest one-sided p-value of the test of no effect over every assignment
consistent with Γ is bounded; the largest Γ at which that bound stays below α
is the study's sensitivity.

The test statistic is a Huber-Maritz m-statistic (Rosenbaum 2007, section 4),
as in R's ``sensitivitymv::senmv``:

* within each matched set every ordered pair of units gives a difference
  ``y_j - y_k``; all differences are scaled by the ``lam`` quantile of their
  absolute values over the whole study (the median by default), passed through
  Huber's ψ (``inner`` / ``trim``), summed over ``k`` and divided by the set's
  size: unit ``j``'s score (:func:`m_scores`);
* the statistic is the sum of the treated units' scores;
* the bound on its upper tail uses the separable approximation of Gastwirth,
  Krieger and Rosenbaum (2000): in each set the worst case puts the higher
  odds Γ on the units with the largest scores, choosing the split that
  maximises the expectation (then the variance) (:func:`separable_bound`).

:func:`exact_distribution` enumerates the permutation distribution on small
matched sets, and the tests check the bound against it and against Rosenbaum's
published lead example (Observational Studies, 2nd ed., section 4.3).

References
----------
Rosenbaum, P. R. (2007). Sensitivity analysis for m-estimates, tests, and
confidence intervals in matched observational studies. Biometrics 63, 456-464.
Gastwirth, J. L., Krieger, A. M. and Rosenbaum, P. R. (2000). Asymptotic
separability in sensitivity analysis. JRSS B 62, 545-555.
Rosenbaum, P. R. (2002). Observational Studies, 2nd ed. Springer, chapter 4.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats

__all__ = ["m_scores", "separable_bound", "Bound", "gamma_star", "exact_distribution", "exact_pvalue",
           "m_estimate", "sets_matrix"]


def sets_matrix(values, set_ids, treated) -> np.ndarray:
    """A ``(n_sets, J)`` matrix of responses, treated unit in column 0, NaN where a set is smaller.

    ``values``, ``set_ids``, ``treated`` are per unit and set (one row per unit and matched set).  Sets
    without a treated unit or without a control are left out; a set with several treated units is an
    error (Rosenbaum bounds here are for one treated unit per set).
    """
    import pandas as pd

    d = pd.DataFrame({"y": np.asarray(values, float), "s": np.asarray(set_ids), "t": np.asarray(treated, bool)})
    nt = d.groupby("s")["t"].transform("sum")
    if (nt > 1).any():
        raise ValueError("sets_matrix: a matched set has several treated units; each set needs exactly one")
    size = d.groupby("s")["y"].transform("size")
    d = d[(nt == 1) & (size >= 2)]
    d = d.sort_values(["s", "t"], ascending=[True, False], kind="mergesort")
    pos = d.groupby("s", sort=False).cumcount().to_numpy()
    codes, _ = pd.factorize(d["s"], sort=False)
    out = np.full((int(codes.max()) + 1 if len(codes) else 0, int(pos.max()) + 1 if len(pos) else 0), np.nan)
    out[codes, pos] = d["y"].to_numpy()
    return out


def _psi(x: np.ndarray, inner: float, trim: float) -> np.ndarray:
    # the same operations as min(1, max(0, |x| - inner) / (trim - inner)) * sign(x), in place
    ab = np.abs(x)
    if np.isfinite(trim) and inner < trim:
        np.subtract(ab, inner, out=ab)
        np.maximum(ab, 0.0, out=ab)
        np.divide(ab, trim - inner, out=ab)
        np.minimum(ab, 1.0, out=ab)
    elif np.isfinite(trim):
        ab = (ab > inner).astype(float)
    else:
        np.subtract(ab, inner, out=ab)
        np.maximum(ab, 0.0, out=ab)
    return np.multiply(np.sign(x), ab, out=ab)


def _doubled_quantile(vals: np.ndarray, q: float) -> float:
    """``np.quantile(np.concatenate([vals, vals]), q)`` (linear method), without the doubled array.

    The doubled sorted array's element ``k`` is the sorted array's ``k // 2``, so its two neighbours of
    the quantile are order statistics of `vals`; numpy's virtual index (``(n - 1) * q``), bounds and
    interpolation (``_get_indexes``, ``_lerp``) are followed step by step, so the value is
    the same float.
    """
    n = 2 * vals.size
    virtual = (n - 1) * q
    prev = float(np.floor(virtual))
    nxt = prev + 1
    if virtual >= n - 1:
        prev = nxt = -1
    if virtual < 0:
        prev = nxt = 0
    gamma = virtual - prev
    i, j = (int(k) // 2 if k >= 0 else vals.size - 1 for k in (prev, nxt))
    part = np.partition(vals, sorted({i, j}))
    a, b = float(part[i]), float(part[j])
    diff = b - a
    return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma


def m_scores(y, *, inner: float = 0.0, trim: float = 2.5, lam: float = 0.5) -> np.ndarray:
    """Huber-Maritz m-scores of every unit of every matched set (``sensitivitymv::mscorev``).

    Parameters
    ----------
    y : array (n_sets, J)
        Responses, treated unit in column 0, NaN for the empty places of smaller sets.
    inner, trim : float
        Huber's ψ: 0 below ``inner``, rising linearly to 1 at ``trim`` (in units of the scale), flat
        beyond (``trim=inf``: no trimming, a permutational mean).
    lam : float
        The scale is the ``lam`` quantile of the absolute within-set pair differences (0.5: the median).

    Returns
    -------
    array (n_sets', J)
        Scores, NaN where ``y`` is NaN; sets with fewer than two units or no treated response are dropped.

    Examples
    --------
    >>> m_scores(np.array([[3.0, 1.0], [0.0, 2.0]]), trim=np.inf).round(3).tolist()
    [[1.0, -1.0], [-1.0, 1.0]]
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    n_i = np.sum(~np.isnan(y), axis=1)
    use = (n_i >= 2) & ~np.isnan(y[:, 0])
    y, n_i = y[use], n_i[use]
    J = y.shape[1]
    # ψ is odd and y_j - y_k = -(y_k - y_j) exactly, so ψ((y_ij - y_ik) / scale) is computed once per
    # unordered pair (j < k) and used with its sign for (k, j)
    jj, kk = np.triu_indices(J, 1)
    pair = y[:, jj] - y[:, kk]
    if (np.isfinite(trim) or inner > 0) and pair.size:
        vals = np.abs(pair[~np.isnan(pair)])
        # each pair counts twice, as (j, k) and (k, j): the quantile of the doubled values
        scale = _doubled_quantile(vals, lam) if vals.size else 0.0
        if scale <= 0:
            raise ValueError(f"m_scores: the {lam:g} quantile of the absolute pair differences is 0; "
                             "raise lam (more of the differences must be non-zero)")
        pair = _psi(pair / scale, inner, trim)
    pair = np.where(np.isnan(pair), 0.0, pair)              # a missing partner adds nothing (nansum)
    col = {(int(j), int(k)): i for i, (j, k) in enumerate(zip(jj, kk))}
    s = np.zeros((len(y), J))
    for j in range(J):              # over places in a set (a handful), added in the order k = 0, 1, ...
        for k in range(J):          # (the diagonal, a unit against itself, is psi(0) = 0 and adds nothing)
            if k != j:
                s[:, j] += pair[:, col[(j, k)]] if j < k else -pair[:, col[(k, j)]]
    s[np.isnan(y)] = np.nan
    return s / n_i[:, None]


@dataclass(frozen=True)
class Bound:
    """Upper bound on the one-sided p-value at one Γ (``sensitivitymv::separable1v``'s fields)."""

    gamma: float
    pvalue: float
    deviate: float
    statistic: float
    expectation: float
    variance: float


def _worst_case(o: np.ndarray, gamma: float):
    """Per-set maximal expectation (then variance) over the splits of sorted scores ``o`` (rows, no NaN)."""
    n, J = o.shape
    mus, vs = [], []
    # at gamma = 1 every split gives the same probabilities (1/J each), hence the same expectation and
    # variance: the first split is the answer (the maximum, its tie and its argmax)
    for a in range(1, J if gamma != 1.0 else min(J, 2)):
        pr = np.r_[np.ones(a), np.full(J - a, gamma)] / (a + gamma * (J - a))
        mu = o @ pr
        mus.append(mu)
        vs.append((o * o) @ pr - mu * mu)
    mu, v = np.column_stack(mus), np.column_stack(vs)
    mx = mu.max(axis=1)
    tie = mu >= mx[:, None] - 1e-12 * (1.0 + np.abs(mx[:, None]))
    return mx, np.where(tie, v, -np.inf).max(axis=1), mu.argmax(axis=1) + 1


def separable_bound(scores, gamma: float = 1.0) -> Bound:
    """Upper bound on the one-sided (treated higher) p-value at Γ, separable approximation.

    ``scores`` is a ``(n_sets, J)`` matrix of unit scores, treated in column 0, NaN where a set is
    smaller (for instance :func:`m_scores`).  Test the other direction by negating the responses.

    >>> b = separable_bound(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]), 1.0)
    >>> b.statistic, b.expectation, b.variance
    (2.0, 1.5, 0.75)
    """
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1, got {gamma!r}")
    sc = np.atleast_2d(np.asarray(scores, dtype=float))
    n_i = np.sum(~np.isnan(sc), axis=1)
    sc, n_i = sc[(n_i >= 2) & ~np.isnan(sc[:, 0])], n_i[(n_i >= 2) & ~np.isnan(sc[:, 0])]
    stat = float(np.sum(sc[:, 0]))
    expect = var = 0.0
    for J in np.unique(n_i):
        rows = np.sort(sc[n_i == J], axis=1)[:, :J]         # NaN sort last
        mu, v, _ = _worst_case(rows, gamma)
        expect += float(mu.sum())
        var += float(v.sum())
    dev = (stat - expect) / np.sqrt(var) if var > 0 else (np.inf if stat > expect else -np.inf)
    return Bound(float(gamma), float(stats.norm.sf(dev)), float(dev), stat, expect, var)


def gamma_star(scores, alpha: float, gamma_max: float = 1000.0) -> float | None:
    """Largest Γ at which the bound on the one-sided p-value is still at most ``alpha``.

    None when the test does not reject even at Γ = 1; ``inf`` when it still rejects at ``gamma_max``.
    """
    def f(lg):
        return separable_bound(scores, float(np.exp(lg))).pvalue - alpha

    if f(0.0) > 0:
        return None
    if f(np.log(gamma_max)) <= 0:
        return float("inf")
    return float(np.exp(optimize.brentq(f, 0.0, np.log(gamma_max), xtol=1e-10)))


def exact_distribution(scores, gamma: float = 1.0, u=None):
    """Exact distribution of the statistic when set ``i``'s treated unit is ``j`` with chance ∝ exp(γ u_ij).

    ``u`` (same shape as ``scores``, 0/1) defaults to the separable worst case of :func:`separable_bound`.
    Enumerates every assignment (product of the set sizes), so only for small matched sets.
    Returns ``(values, probabilities)``.
    """
    sc = np.atleast_2d(np.asarray(scores, dtype=float))
    vals, probs = np.zeros(1), np.ones(1)
    for i, row in enumerate(sc):
        o = row[~np.isnan(row)]
        if u is None:
            order = np.argsort(o, kind="mergesort")
            _, _, a = _worst_case(o[order][None, :], gamma)
            ui = np.zeros(len(o))
            ui[order[int(a[0]):]] = 1.0
        else:
            ui = np.asarray(u[i], float)[~np.isnan(row)]
        w = np.where(ui > 0, gamma, 1.0)
        vals = (vals[:, None] + o[None, :]).ravel()
        probs = (probs[:, None] * (w / w.sum())[None, :]).ravel()
        if vals.size > 5_000_000:
            raise ValueError("exact_distribution: too many assignments to enumerate; use separable_bound")
    return vals, probs


def exact_pvalue(scores, gamma: float = 1.0) -> float:
    """Exact upper-tail probability of the observed statistic under the separable worst case at Γ."""
    sc = np.atleast_2d(np.asarray(scores, dtype=float))
    t = float(np.nansum(sc[:, 0]))
    vals, probs = exact_distribution(sc, gamma)
    return float(probs[vals >= t - 1e-9 * (1 + abs(t))].sum())


def m_estimate(y, *, level: float = 0.95, inner: float = 0.0, trim: float = 2.5, lam: float = 0.5):
    """Huber-Maritz m-estimate of an additive treated-minus-control shift τ, with its randomization interval.

    The estimate solves "statistic = its expectation" at Γ = 1 for the responses with τ taken off the
    treated unit (the scale recomputed at each τ, as in ``senmv(..., tau=)``); the interval collects the τ
    not rejected by the two-sided test at ``level``.  Returns ``(estimate, low, high)``.
    """
    y = np.atleast_2d(np.asarray(y, dtype=float))
    z = stats.norm.ppf(0.5 + level / 2)

    def dev(tau):
        yy = y.copy()
        yy[:, 0] = yy[:, 0] - tau
        return separable_bound(m_scores(yy, inner=inner, trim=trim, lam=lam), 1.0).deviate

    d = y[:, 1:] - y[:, [0]]
    span = float(np.nanmax(np.abs(d))) if np.isfinite(d).any() else 1.0
    lo, hi = -2 * span - 1.0, 2 * span + 1.0

    def root(target):
        f = lambda t: dev(t) - target  # noqa: E731
        a, b = lo, hi
        if f(a) * f(b) > 0:
            return np.nan
        return float(optimize.brentq(f, a, b, xtol=1e-8 * (1 + span)))

    return root(0.0), root(z), root(-z)
