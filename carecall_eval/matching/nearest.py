"""Greedy nearest-neighbour matching on a one-dimensional distance.

The algorithm is MatchIt's (``method = "nearest"``), reorganised so that it
never compares every treated unit with every control:

1. All units are sorted once by (exact stratum, distance, row position).
   The eligible controls, in that order, form the array ``cd``; each treated
   unit gets its insertion point in it (the controls before it in the sort
   are on its *left*).
2. Treated units are visited in the matching order (``largest`` distance
   first by default), in rounds for ``ratio > 1``: every treated unit gets
   its first control before any gets a second, as in MatchIt.
3. A treated unit takes the nearer of the closest free control on its left
   and on its right; on an exact tie the left one (lower distance, or equal
   distance and earlier row) wins.  If that control is outside the caliper
   the unit gets no (further) match.
4. Used controls are skipped with two "next free" union-find maps (one per
   direction) with path compression, so each lookup costs amortised
   ~O(log n) and the whole match costs O((n_t + n_c) log n_c): one sort plus
   one short Python step per treated unit and round.

With replacement nothing is ever used up, so the k nearest controls of every
treated unit are found for all treated units at once with numpy (two
pointers walking outwards from each insertion point).

With ``mahalanobis`` covariates the candidates of each treated unit are the
free controls within the caliper on the distance (found by binary search);
the one nearest in Mahalanobis distance is taken, ties going to the earliest
row.  Without a caliper every control is a candidate, which is O(n_t n_c):
give a caliper on large data.

Tie rule (the only way the input row order can matter): distances that are
exactly equal are ordered by row position, both among treated units (the
matching order) and among controls (which side of a treated unit a control
is on).  Results are otherwise invariant to the row order, except for
``order="data"`` and ``order="random"``, whose order is defined on the rows.
"""
from __future__ import annotations

import warnings
from array import array

import numpy as np

from ..errors import SmallSampleWarning
from ._sort import stable_argsort

__all__ = ["greedy_nearest", "mahalanobis_transform", "matching_order"]


def matching_order(distance_t: np.ndarray, order: str, rng: np.random.Generator | None) -> np.ndarray:
    """Order in which treated units choose their controls.

    Parameters
    ----------
    distance_t : numpy.ndarray
        Distances of the treated units, in data order.
    order : {"largest", "smallest", "random", "data"}
        ``largest``/``smallest`` sort by distance with ties in row order (as
        R's stable ``order()``); ``random`` is a permutation drawn from
        ``rng``; ``data`` is the row order.
    rng : numpy.random.Generator or None
        Used by ``random`` only.

    Returns
    -------
    numpy.ndarray
        Positions among the treated units, first to choose first.

    Examples
    --------
    >>> matching_order(np.array([0.2, 0.9, 0.2]), "largest", None).tolist()
    [1, 0, 2]
    """
    n1 = len(distance_t)
    if order == "largest":
        return np.argsort(-distance_t, kind="stable")
    if order == "smallest":
        return np.argsort(distance_t, kind="stable")
    if order == "random":
        if rng is None:
            rng = np.random.default_rng()
        return rng.permutation(n1)
    if order == "data":
        return np.arange(n1)
    raise ValueError(f"order={order!r} is not supported")


def mahalanobis_transform(X: np.ndarray, treat: np.ndarray, discarded: np.ndarray) -> np.ndarray:
    """Whitened covariates whose Euclidean distances are MatchIt's Mahalanobis distances.

    Parameters
    ----------
    X : numpy.ndarray
        ``(n, q)`` covariates (categorical ones already expanded to 0/1).
    treat : numpy.ndarray
        Boolean treatment indicator.
    discarded : numpy.ndarray
        Boolean mask of units left out of the covariance.

    Returns
    -------
    numpy.ndarray
        ``(n, r)`` matrix ``Z`` with ``||Z_i - Z_j||`` equal to the
        Mahalanobis distance between units ``i`` and ``j``.

    Notes
    -----
    As MatchIt's ``transform_covariates(method = "mahalanobis")``: columns
    without variation are dropped, the covariance is the pooled
    within-group covariance (group-mean centred, divided by ``n - 2``) of
    the non-discarded units, and a generalised inverse is used when it is
    singular.

    Examples
    --------
    >>> X = np.array([[0.0], [2.0], [1.0], [3.0]])
    >>> Z = mahalanobis_transform(X, np.array([True, True, False, False]), np.zeros(4, bool))
    >>> round(float(abs(Z[0, 0] - Z[1, 0])), 4)  # 2 / pooled SD; pooled var = 4 / (4 - 2)
    1.4142
    """
    X = np.asarray(X, dtype=float)
    varying = np.ptp(X, axis=0) >= np.sqrt(np.finfo(float).eps)
    if not varying.any():
        return X[:, :1].copy()
    X = X[:, varying]
    sd = X.std(axis=0, ddof=1)
    sd[sd == 0] = 1.0
    Xs = (X - X.mean(axis=0)) / sd
    keep = ~discarded
    Xk, tk = Xs[keep], treat[keep]
    centred = Xk.copy()
    for g in (True, False):
        m = tk == g
        if m.any():
            centred[m] -= centred[m].mean(axis=0)
    S = centred.T @ centred / max(len(Xk) - 2, 1)
    vals, vecs = np.linalg.eigh(S)
    pos = vals > max(vals.max(), 0) * 1e-10
    W = vecs[:, pos] / np.sqrt(vals[pos])
    return np.ascontiguousarray(Xs @ W)


def greedy_nearest(
    distance: np.ndarray,
    treat: np.ndarray,
    *,
    ratio: int = 1,
    replace: bool = False,
    caliper: float | None = None,
    order: str = "largest",
    discarded: np.ndarray | None = None,
    exact: np.ndarray | None = None,
    mahalanobis: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Greedy k:1 nearest-neighbour matching of treated to control units.

    Parameters
    ----------
    distance : numpy.ndarray
        One distance value per unit (e.g. the propensity score), length ``n``.
    treat : numpy.ndarray
        Boolean treatment indicator, length ``n``.
    ratio : int, default 1
        Controls per treated unit.  Without replacement they are assigned in
        rounds (each treated unit gets its first control before any gets a
        second), as MatchIt does.
    replace : bool, default False
        Whether a control may be matched to several treated units.
    caliper : float, optional
        Largest allowed ``|distance_t - distance_c|``, in distance units.
    order : {"largest", "smallest", "random", "data"}, default "largest"
        Order in which treated units choose their controls.
    discarded : numpy.ndarray, optional
        Boolean mask of units that take no part in matching.
    exact : numpy.ndarray, optional
        Integer stratum code per unit; matches never cross strata.
    mahalanobis : numpy.ndarray, optional
        ``(n, q)`` whitened covariates (see :func:`mahalanobis_transform`):
        within the caliper, controls are chosen by Euclidean distance on
        these instead of by ``distance``.
    rng : numpy.random.Generator, optional
        Used by ``order="random"``.

    Returns
    -------
    numpy.ndarray
        ``(n_treated, ratio)`` integer array; row ``i`` holds the row
        positions of the controls matched to the ``i``-th treated unit (in
        data order), ``-1`` where there is none.  Columns are the rounds.

    Notes
    -----
    See the module docstring for the algorithm and the tie rule.  Cost is
    O((n_t + n_c) log n_c) time and O(n) memory for the plain 1-D case.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([0.9, 0.5, 0.85, 0.45, 0.1, 0.52])
    >>> t = np.array([True, True, False, False, False, False])
    >>> greedy_nearest(d, t).tolist()
    [[2], [5]]
    """
    distance = np.asarray(distance, dtype=float)
    treat = np.asarray(treat, dtype=bool)
    n = len(distance)
    discarded = np.zeros(n, dtype=bool) if discarded is None else np.asarray(discarded, dtype=bool)
    t_rows = np.flatnonzero(treat)
    n1 = len(t_rows)
    out = np.full((n1, ratio), -1, dtype=np.int64)
    cal = np.inf if caliper is None else float(caliper)

    eligible_c = ~treat & ~discarded
    o = stable_argsort(distance)
    if exact is not None:
        exact = np.asarray(exact, dtype=np.int64)
        small = exact.astype(np.int16) if 0 <= exact.min() and exact.max() < 2 ** 15 else exact
        o = o[np.argsort(small[o], kind="stable")]   # by stratum, then distance, then row
    is_c = eligible_c[o]
    ctrl = o[is_c]                       # row positions of eligible controls, sorted
    m = len(ctrl)
    if m == 0 or n1 == 0:
        return out
    cd = distance[ctrl]
    cum = np.cumsum(is_c)
    tpos = np.flatnonzero(treat[o])      # treated positions in the sort
    ins = np.empty(n1, dtype=np.int64)
    ins[np.searchsorted(t_rows, o[tpos])] = cum[tpos]
    del o, is_c, cum, tpos
    if exact is None:
        lo = np.zeros(n1, dtype=np.int64)
        hi = np.full(n1, m, dtype=np.int64)
    else:
        cc = exact[ctrl]
        et = exact[t_rows]
        lo = np.searchsorted(cc, et, side="left")
        hi = np.searchsorted(cc, et, side="right")
    d_t = distance[t_rows]
    active = ~discarded[t_rows] & (hi > lo)

    if not replace:
        n_active = int(active.sum())
        if exact is None:
            short = m < n_active * ratio
        else:
            need = np.bincount(exact[t_rows][active], minlength=exact.max() + 1) * ratio
            have = np.bincount(cc, minlength=exact.max() + 1)
            short = bool((have < need).any())
        if short:
            warnings.warn(
                "fewer eligible control units than treated units x ratio"
                + (" in some exact strata" if exact is not None else "")
                + "; not every treated unit can get its matches (consider replace=True).",
                SmallSampleWarning, stacklevel=3,
            )

    seq = matching_order(d_t, order, rng)
    seq = seq[active[seq]]

    if mahalanobis is not None:
        _mahalanobis_loop(out, seq, ins, lo, hi, d_t, cd, ctrl, t_rows, cal, ratio, replace,
                          np.asarray(mahalanobis, dtype=float))
    elif replace:
        _with_replacement(out, active, ins, lo, hi, d_t, cd, cal, ratio)
    else:
        _without_replacement(out, seq, ins, lo, hi, d_t, cd, cal, ratio)

    filled = out >= 0
    out[filled] = ctrl[out[filled]]
    return out


def _without_replacement(out, seq, ins, lo, hi, d_t, cd, cal, ratio):
    """Sequential greedy matching; ``out`` receives indices into ``cd``."""
    ins_l, lo_l, hi_l, d_l = ins.tolist(), lo.tolist(), hi.tolist(), d_t.tolist()
    cd = array("d", np.ascontiguousarray(cd, dtype=float).tobytes())  # fast scalar reads
    nxt_r: dict[int, int] = {}   # used control -> next candidate on the right
    nxt_l: dict[int, int] = {}   # used control -> next candidate on the left
    get_r, get_l = nxt_r.get, nxt_l.get
    turn = seq.tolist()
    for r in range(ratio):
        chosen = [-1] * len(turn)
        still = []
        for pos, t in enumerate(turn):
            i = ins_l[t]
            d = d_l[t]
            # nearest free control on the right: first free index >= i
            j = i
            nj = get_r(j)
            if nj is not None:
                path = [j]
                j = nj
                nj = get_r(j)
                while nj is not None:
                    path.append(j)
                    j = nj
                    nj = get_r(j)
                for x in path:
                    nxt_r[x] = j
            # nearest free control on the left: last free index <= i - 1
            k = i - 1
            nk = get_l(k)
            if nk is not None:
                path = [k]
                k = nk
                nk = get_l(k)
                while nk is not None:
                    path.append(k)
                    k = nk
                    nk = get_l(k)
                for x in path:
                    nxt_l[x] = k
            if k >= lo_l[t]:
                dl = d - cd[k]
                if j < hi_l[t]:
                    dr = cd[j] - d
                    if dl <= dr:
                        best, bd = k, dl
                    else:
                        best, bd = j, dr
                else:
                    best, bd = k, dl
            elif j < hi_l[t]:
                best, bd = j, cd[j] - d
            else:
                continue
            if bd > cal:
                continue
            nxt_r[best] = best + 1
            nxt_l[best] = best - 1
            chosen[pos] = best
            still.append(t)
        sel = np.array([c >= 0 for c in chosen], dtype=bool)
        if sel.any():
            out[np.asarray(turn)[sel], r] = np.asarray(chosen)[sel]
        # a unit that found nothing this round finds nothing later: the free
        # set only shrinks and the caliper and stratum stay the same
        turn = still
        if not turn:
            break


def _with_replacement(out, active, ins, lo, hi, d_t, cd, cal, ratio):
    """k nearest controls of every treated unit at once (controls are never used up)."""
    m = len(cd)
    left = ins - 1
    right = ins.copy()
    act = active.copy()
    for r in range(ratio):
        has_l = act & (left >= lo)
        has_r = act & (right < hi)
        dl = np.where(has_l, d_t - cd[np.clip(left, 0, m - 1)], np.inf)
        dr = np.where(has_r, cd[np.clip(right, 0, m - 1)] - d_t, np.inf)
        take_l = dl <= dr
        bd = np.where(take_l, dl, dr)
        ok = act & np.isfinite(bd) & (bd <= cal)
        out[ok, r] = np.where(take_l, left, right)[ok]
        left = left - (ok & take_l)
        right = right + (ok & ~take_l)
        act = ok
        if not act.any():
            break


def _mahalanobis_loop(out, seq, ins, lo, hi, d_t, cd, ctrl, t_rows, cal, ratio, replace, Z):
    """Within the caliper on ``cd``, choose by Euclidean distance on whitened ``Z``."""
    Zc = Z[ctrl]
    free = np.ones(len(cd), dtype=bool)
    finite_cal = np.isfinite(cal)
    rounds = 1 if replace else ratio
    turn = seq
    for r in range(rounds):
        still = []
        for t in turn.tolist() if isinstance(turn, np.ndarray) else turn:
            a, b = int(lo[t]), int(hi[t])
            d = d_t[t]
            if finite_cal:
                slack = 1e-9 * (abs(d) + cal + 1.0)
                seg = cd[a:b]
                a, b = (a + int(np.searchsorted(seg, d - cal - slack, side="left")),
                        a + int(np.searchsorted(seg, d + cal + slack, side="right")))
            if replace:
                idx = np.arange(a, b)
            else:
                idx = a + np.flatnonzero(free[a:b])
            if finite_cal and len(idx):
                idx = idx[np.abs(cd[idx] - d) <= cal]
            if len(idx) == 0:
                continue
            diff = Zc[idx] - Z[t_rows[t]]
            md = np.einsum("ij,ij->i", diff, diff)
            if replace:
                pick = idx[np.lexsort((ctrl[idx], md))[:ratio]]
                out[t, :len(pick)] = pick
            else:
                cand = idx[md == md.min()]
                best = cand[np.argmin(ctrl[cand])] if len(cand) > 1 else cand[0]
                out[t, r] = best
                free[best] = False
                still.append(t)
        turn = still
        if not turn:
            break
