"""Heterogeneity and partial pooling, one implementation each for the programme analyses.

:func:`random_effects`
    Cochran's Q, I^2 and the DerSimonian-Laird between-group variance of a set
    of estimates with standard errors (statsmodels' ``combine_effects``, with
    tau^2 truncated at zero as in :mod:`carecall_eval.compare.meta`): the
    heterogeneity test.
:func:`normal_pooling`
    Partial pooling of estimates with standard errors (normal random effects):
    each group's effect averaged over the between-group sd ``tau`` with a
    uniform prior on ``tau`` and a flat one on the mean (Gelman 2006), so that
    the groups' intervals carry the uncertainty about how much groups differ
    (empirical Bayes at the single best ``tau`` gives zero-width intervals when
    ``tau`` is estimated at 0).
:func:`glmm_logit`
    The same for a random-intercept logistic model with fixed effects (case mix):
    at each ``tau`` the conditional modes and the Laplace approximation of the
    marginal likelihood (lme4's ``glmer`` with ``nAGQ = 1``); its products run
    over cells and profiles (:class:`CellDesign`), not row by row.
:func:`lmm`
    A random-intercept linear model: fixed effects by REML (from the groups'
    sufficient statistics, minimised to machine precision), the groups' mean
    residuals pooled by :func:`normal_pooling`.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

__all__ = ["RandomEffects", "random_effects", "GroupEffects", "normal_pooling", "glmm_logit", "lmm", "one_blas_thread"]


def one_blas_thread(func):
    """Run ``func`` with one BLAS thread (as :func:`carecall_eval.evaluate` does): the small dense products of
    these models are faster so on a busy machine, and their sums do not depend on the thread count."""
    @functools.wraps(func)
    def run(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return func(*args, **kwargs)
    return run


@dataclass(frozen=True)
class RandomEffects:
    """A random-effects fit of ``k`` estimates."""

    mu: float          # pooled mean (random-effects weights)
    mu_se: float
    tau2: float        # between-group variance (DerSimonian-Laird, truncated at 0)
    q: float           # Cochran's Q
    df: int
    q_p: float         # p-value of Q against chi-square(df): small = the groups differ
    i2: float          # share of the variation beyond chance, max(0, (Q - df) / Q)
    k: int


def random_effects(y, se) -> RandomEffects:
    """Cochran's Q test and the DerSimonian-Laird random-effects fit of estimates ``y`` with errors ``se``.

    Examples
    --------
    >>> r = random_effects([0.0, 0.1, 0.4], [0.1, 0.1, 0.1])
    >>> round(r.q, 3), r.df, round(r.i2, 3)
    (8.667, 2, 0.769)
    """
    from statsmodels.stats.meta_analysis import combine_effects

    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    k = len(y)
    if k < 2:
        raise ValueError(f"random_effects needs at least two estimates, got {k}")
    if not (np.all(np.isfinite(y)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("random_effects: every estimate needs a finite value and a positive standard error")
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # statsmodels takes the square root of a negative untruncated DL tau^2 (truncated below)
        warnings.filterwarnings("ignore", message="invalid value encountered in sqrt", category=RuntimeWarning)
        res = combine_effects(y, se ** 2, method_re="dl")
    q = float(res.q)
    tau2 = max(0.0, float(res.tau2))
    w = 1.0 / (se ** 2 + tau2)
    mu = float(np.sum(w * y) / w.sum())
    return RandomEffects(mu=mu, mu_se=float(np.sqrt(1 / w.sum())), tau2=tau2, q=q, df=k - 1,
                         q_p=float(stats.chi2.sf(q, k - 1)), i2=max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0, k=k)


@dataclass(frozen=True)
class GroupEffects:
    """Partially pooled group effects: posterior mean and sd of each group's deviation, and the between-group sd."""

    effect: np.ndarray      # posterior means (log-odds for the logit, outcome units otherwise); 0 = the average
    sd: np.ndarray          # posterior standard deviations (over tau)
    tau: float              # posterior mean of the between-group sd
    tau_ci: tuple           # equal-tailed credible interval of tau at the requested level
    mu: float               # the average group (normal pooling: the pooled mean; logit and LMM: 0)
    n: np.ndarray           # rows per group
    method: str
    beta: np.ndarray | None = None    # fixed effects (logit: at the posterior mode of tau)


def _mixture(grid, logl, means, sds, level):
    """Mix per-tau posteriors with weights proportional to the marginal likelihood (uniform prior on tau)."""
    w = np.exp(logl - np.max(logl))
    w = w / w.sum()
    mean = w @ means
    var = w @ (sds ** 2 + means ** 2) - mean ** 2
    cdf = np.cumsum(w)
    a = (1 - level) / 2
    lo = float(grid[min(np.searchsorted(cdf, a), len(grid) - 1)])
    hi = float(grid[min(np.searchsorted(cdf, 1 - a), len(grid) - 1)])
    return mean, np.sqrt(np.maximum(var, 0.0)), float(w @ grid), (lo, hi), w


def normal_pooling(y, se, *, level: float = 0.95, grid_size: int = 400) -> GroupEffects:
    """Partially pooled estimates: normal random effects averaged over the between-group sd.

    ``y_j ~ N(theta_j, se_j^2)``, ``theta_j ~ N(mu, tau^2)``, flat prior on ``mu``, uniform on ``tau``
    (over a grid up to five times the larger of the spread of ``y`` and the typical ``se``).  Returns
    each ``theta_j``'s posterior mean and sd (the pooled mean ``mu`` included in ``effect``).

    Examples
    --------
    >>> r = normal_pooling([0.0, 0.0, 0.0], [0.1, 0.1, 0.1])
    >>> [round(float(x), 6) for x in r.effect]
    [0.0, 0.0, 0.0]
    """
    y = np.asarray(y, dtype=float)
    se = np.asarray(se, dtype=float)
    if len(y) < 2 or not (np.all(np.isfinite(y)) and np.all(np.isfinite(se)) and np.all(se > 0)):
        raise ValueError("normal_pooling needs at least two finite estimates with positive standard errors")
    top = 5 * max(float(np.std(y)), float(np.median(se)))
    grid = np.linspace(0.0, top, grid_size)
    logl, means, sds, mus = [], [], [], []
    for tau in grid:
        v = se ** 2 + tau ** 2
        w = 1 / v
        mu = float(np.sum(w * y) / w.sum())
        v_mu = 1 / w.sum()
        logl.append(-0.5 * np.sum(np.log(v)) - 0.5 * np.log(w.sum()) - 0.5 * np.sum(w * (y - mu) ** 2))
        b = tau ** 2 / v
        means.append(mu + b * (y - mu))
        sds.append(np.sqrt(b * se ** 2 + (1 - b) ** 2 * v_mu))
        mus.append(mu)
    mean, sd, tau, tau_ci, wt = _mixture(grid, np.array(logl), np.array(means), np.array(sds), level)
    return GroupEffects(effect=mean, sd=sd, tau=tau, tau_ci=tau_ci, mu=float(wt @ np.array(mus)),
                        n=np.ones(len(y), int), method="normal random effects, uniform prior on the between-group "
                                                       "sd, flat prior on the mean")


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


#: Most values of the joint code of a group of blocks (:meth:`CellDesign._tables_plan`).
_GROUP_CODES = 1 << 10


def _row_codes(A: np.ndarray) -> np.ndarray:
    """Codes ``0 .. k-1`` of the distinct rows of the 2-D array ``A`` (exact equality).

    The rows are hashed column by column and the hashes factorised; the grouping is then checked against the
    values themselves, and only a hash collision (never seen) falls back to combining the columns' codes.
    """
    n, q = A.shape
    if q == 1:
        return pd.factorize(A[:, 0])[0]
    h = np.zeros(n, dtype=np.uint64)
    for j in range(q):
        h = (h * np.uint64(0x100000001B3)) ^ pd.util.hash_array(np.ascontiguousarray(A[:, j]))
    code = pd.factorize(h)[0]
    if np.array_equal(A[_first_of(code, int(code.max()) + 1)][code], A):
        return code
    code = np.zeros(n, dtype=np.int64)                                  # pragma: no cover - a collision
    for j in range(q):
        cj, levels = pd.factorize(A[:, j])
        code = pd.factorize(code * len(levels) + cj)[0]     # both below the number of rows: no overflow
    return code


def _first_of(code: np.ndarray, k: int) -> np.ndarray:
    """Index of the first row with each code ``0 .. k-1``."""
    first = np.empty(k, dtype=np.intp)
    first[code[::-1]] = np.arange(len(code) - 1, -1, -1)
    return first


class CellDesign:
    """The design ``[X, Z]`` of a random-intercept model, its rows grouped two ways.

    The columns of ``X`` that take only the values 0 and 1 (the constant, dummies) and the group indicators
    ``Z`` form ``D``; the other columns form ``F``.  A *cell* is one pattern of ``D`` (a pattern of the 0/1
    columns and a group), a *profile* one pattern of ``F`` (the case mix at opening is shared by a case's
    attempts); a row is a pair (cell, profile).  Every product of the model is a sum over the rows, taken
    over cells and profiles instead: the linear predictor is a cell's part plus a profile's part, ``D'r``
    and ``F'r`` are sums of ``r`` by cell and by profile, ``D'WD`` is a set of weighted cross-tabulations of
    the cells' codes (``D``'s columns fall into blocks with at most one 1 in a row, such as a factor's dummies),
    ``F'WF`` a weighted sum over profiles, and ``D'WF`` runs once over the rows (a sparse product).  The
    cross-tabulations of ``D'WD`` are margins of a few tables of the cells' weights by the joint codes of
    groups of blocks, and the sums of ``D'WF`` by block are taken by group too (:meth:`_tables_plan`).  So a Newton
    step costs a few passes over the ``n`` rows rather than O(n p^2).  The same sums as over the rows of
    ``[X, Z]``, in another order.  Rows are kept sorted by cell.
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, g: np.ndarray, J: int) -> None:
        import scipy.sparse as sp

        n, p = X.shape
        self.n, self.p, self.J = n, p, J
        # which columns take only 0 and 1, and their bits packed by row: in chunks of rows, so that the passes
        # over X stay in cache
        chunks = [slice(s, s + (1 << 15)) for s in range(0, n, 1 << 15)]
        binary = np.ones(p, dtype=bool)
        for c in chunks:
            binary &= ((X[c] == 0.0) | (X[c] == 1.0)).all(axis=0)
        ib, self.ic = np.flatnonzero(binary), np.flatnonzero(~binary)
        nbytes = -(-len(ib) // 8)
        bits = np.zeros((n, -(-nbytes // 8) * 8), dtype=np.uint8)
        F = np.empty((n, len(self.ic)))        # the other columns, read in the same pass
        for c in chunks:
            bits[c, :nbytes] = np.packbits(X[c][:, ib] != 0.0, axis=1)
            F[c] = X[c][:, self.ic]
        words = bits.view(np.uint64)            # the 0/1 pattern of a row in 64-bit words
        cell = _row_codes(np.column_stack([words, g.astype(np.uint64)]))
        self.m = m = int(cell.max()) + 1
        order = np.argsort(cell, kind="stable")
        self.rows = order                       # the rows in the order kept here
        self.cell = cell[order]
        self.y = y[order]
        first = order[_first_of(self.cell, m)]
        # profiles: distinct rows of F (each row its own when few repeat)
        F = F[order]
        prof = _row_codes(F) if len(self.ic) else np.zeros(n, dtype=np.int64)
        K = int(prof.max()) + 1
        if K > 0.7 * n:
            prof, K = np.arange(n), n
        self.prof, self.K = prof, K
        self.Fk = np.ascontiguousarray(F[_first_of(prof, K)])
        self._FkT = np.ascontiguousarray(self.Fk.T)      # both layouts: products run along the profiles
        # the rows as a sparse cell x profile matrix whose entries are replaced by each weight vector
        self._counts = np.bincount(self.cell, minlength=m)
        self._M = sp.csr_matrix((np.ones(n), prof, np.r_[0, np.cumsum(self._counts)]),
                                shape=(m, K))
        # D at the cells: 0/1 columns and group indicators, their places in theta = (beta, u)
        gc = g[first]
        Dc = np.hstack([X[np.ix_(first, ib)], (gc[:, None] == np.arange(J)).astype(float)])
        iD = np.r_[ib, p + np.arange(J)]
        self.iD = iD
        # blocks of D's columns never 1 together in a cell, each cell coded by its 1 in the block (0: none)
        co = Dc.T @ Dc
        blocks: list[list[int]] = []
        for j in range(Dc.shape[1]):
            for blk in blocks:
                if not co[j, blk].any():
                    blk.append(j)
                    break
            else:
                blocks.append([j])
        codes = [(Dc[:, blk] @ np.arange(1, len(blk) + 1)).astype(np.intp) for blk in blocks]
        self._blocks = [(iD[blk], code) for blk, code in zip(blocks, codes)]
        # D as a sparse matrix, from the codes: each cell's 1 in each block
        rows = np.concatenate([np.flatnonzero(code) for code in codes])
        cols = np.concatenate([np.asarray(blk)[code[code > 0] - 1] for blk, code in zip(blocks, codes)])
        self._D = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=Dc.shape)
        self._Dt = self._D.T.tocsr()            # (b + J) x m
        self._tables_plan(codes, m)
        self.gc = gc
        self.yc = np.bincount(self.cell, weights=self.y, minlength=m)
        self.yk = np.bincount(prof, weights=self.y, minlength=K)

    def _tables_plan(self, codes: list[np.ndarray], m: int) -> None:
        """How :meth:`hessian` cross-tabulates the cells: the blocks in groups, the groups' joint codes.

        Consecutive blocks form a group while the group's joint code (mixed radix, the block codes as digits)
        takes at most ``_GROUP_CODES`` values.  A table is the sum of the cells' weights by the joint code of one
        group or of two (when that table is small against the cells): every product of two blocks covered by a
        table is one of its margins, so the cells are passed a few times rather than once per pair of blocks.
        Pairs of blocks in two groups without a table are cross-tabulated on their own.
        """
        import scipy.sparse as sp

        sizes = [len(self._blocks[b][0]) + 1 for b in range(len(codes))]
        groups: list[list[int]] = []
        for b in range(len(codes)):
            if groups and int(np.prod([sizes[c] for c in groups[-1]])) * sizes[b] <= _GROUP_CODES:
                groups[-1].append(b)
            else:
                groups.append([b])
        joint = []
        for grp in groups:
            code = np.zeros(m, dtype=np.intp)
            for b in grp:
                code = code * sizes[b] + codes[b]
            joint.append(code)
        size = [int(np.prod([sizes[b] for b in grp])) for grp in groups]
        tables: list[tuple[np.ndarray, list[int], tuple]] = []       # (code, blocks as axes, shape)
        cross = set()
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                n_pairs = len(groups[i]) * len(groups[j])
                if size[i] * size[j] <= (1 << 22) and size[i] * size[j] * (len(groups[i]) + 1) <= 2 * n_pairs * m:
                    tables.append((joint[i] * size[j] + joint[j], groups[i] + groups[j],
                                   tuple(sizes[b] for b in groups[i] + groups[j])))
                    cross.add((i, j))
        for i, grp in enumerate(groups):
            if not any(i in c for c in cross):
                tables.append((joint[i], list(grp), tuple(sizes[b] for b in grp)))
        of_block = {b: i for i, grp in enumerate(groups) for b in grp}
        self._groups, self._tables = groups, tables
        # pairs of blocks that no table covers: their own cross-tabulation
        self._pairs = [(a, b, codes[a] * sizes[b] + codes[b]) for a in range(len(codes))
                       for b in range(a + 1, len(codes))
                       if of_block[a] != of_block[b] and (of_block[a], of_block[b]) not in cross]
        # the cells' sums by each group's joint code (for D'WF): one sparse matrix, the groups stacked
        offsets = np.r_[0, np.cumsum(size)]
        self._group_rows = offsets
        self._G = sp.csr_matrix((np.ones(m * len(groups)), (np.concatenate([off + jc for off, jc in
                                                                             zip(offsets, joint)]),
                                                             np.tile(np.arange(m), len(groups)))),
                                shape=(int(offsets[-1]), m))
        self._sizes = sizes

    def eta(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """Linear predictor of the (sorted) rows and ``sum(y * eta)``."""
        a, e = self._D @ theta[self.iD], theta[self.ic] @ self._FkT
        return np.take(a, self.cell) + np.take(e, self.prof), float(self.yc @ a + self.yk @ e)

    def loglik(self, eta: np.ndarray, yeta: float) -> tuple[float, np.ndarray]:
        """Log-likelihood at the linear predictor ``eta`` (with ``yeta = sum(y * eta)``) and ``exp(-|eta|)``."""
        t = np.exp(-np.abs(eta))
        return yeta - float(np.sum(np.maximum(eta, 0.0)) + np.sum(np.log1p(t))), t

    @staticmethod
    def mean(eta: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``expit(eta)`` from ``t = exp(-|eta|)``."""
        return np.where(eta >= 0, 1.0, t) / (1.0 + t)

    def gradient(self, r: np.ndarray) -> np.ndarray:
        """``[X, Z]' r``."""
        out = np.empty(self.p + self.J)
        out[self.iD] = self._Dt @ np.bincount(self.cell, weights=r, minlength=self.m)
        out[self.ic] = self._FkT @ np.bincount(self.prof, weights=r, minlength=self.K)
        return out

    def hessian(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[X, Z]' diag(w) [X, Z]`` and the groups' sums of ``w``."""
        wc = np.bincount(self.cell, weights=w, minlength=self.m)
        H = np.zeros((self.p + self.J, self.p + self.J))
        blocks, sizes = self._blocks, self._sizes
        done: set = set()                       # blocks (a,) and pairs (a, b) whose products are in H
        for code, axes, shape in self._tables:
            T = np.bincount(code, weights=wc, minlength=int(np.prod(shape))).reshape(shape)
            margins: dict = {}

            def margin(keep: tuple, T=T, axes=axes, margins=margins) -> np.ndarray:
                """``T`` summed over the blocks not in ``keep`` (from the smallest margin already taken)."""
                if keep not in margins:
                    src, have = T, tuple(axes)
                    for k, arr in margins.items():
                        if set(keep) <= set(k) and arr.size < src.size:
                            src, have = arr, k
                    drop = tuple(i for i, b in enumerate(have) if b not in keep)
                    margins[keep] = src.sum(axis=drop) if drop else src
                return margins[keep]

            in_table = [grp for grp in self._groups if grp[0] in axes]
            for grp in in_table:                # each group's own table first, then its blocks' cross margins
                margin(tuple(grp))
            if len(in_table) == 2:
                for a in in_table[0]:
                    margin((a, *in_table[1]))
            for i, a in enumerate(axes):
                if (a,) not in done:
                    idx = blocks[a][0]
                    H[idx, idx] = margin((a,))[1:]
                    done.add((a,))
                for b in axes[i + 1:]:
                    if (a, b) not in done:
                        ia, ib = blocks[a][0], blocks[b][0]
                        M = margin((a, b))[1:, 1:]
                        H[np.ix_(ia, ib)] = M
                        H[np.ix_(ib, ia)] = M.T
                        done.add((a, b))
        for a, b, code in self._pairs:
            ia, ib = blocks[a][0], blocks[b][0]
            T = np.bincount(code, weights=wc, minlength=sizes[a] * sizes[b]).reshape(sizes[a], sizes[b])[1:, 1:]
            H[np.ix_(ia, ib)] = T
            H[np.ix_(ib, ia)] = T.T
        ic = self.ic
        if len(ic):
            self._M.data = w
            S = self._G @ (self._M @ self.Fk)       # the cells' sums of w F by each group's joint code
            for grp, lo, hi in zip(self._groups, self._group_rows[:-1], self._group_rows[1:]):
                Sg = S[lo:hi].reshape(*(sizes[b] for b in grp), len(ic))
                for i, a in enumerate(grp):
                    drop = tuple(k for k in range(len(grp)) if k != i)
                    DF = (Sg.sum(axis=drop) if drop else Sg)[1:]
                    H[np.ix_(blocks[a][0], ic)] = DF
                    H[np.ix_(ic, blocks[a][0])] = DF.T
            wk = np.bincount(self.prof, weights=w, minlength=self.K)
            H[np.ix_(ic, ic)] = (self._FkT * wk) @ self.Fk
        return H, np.bincount(self.gc, weights=wc, minlength=self.J)


@dataclass
class _Point:
    """The data's part of the objective at ``theta``: linear predictor, log-likelihood, gradient, Hessian."""

    theta: np.ndarray
    eta: np.ndarray
    ll: float
    grad: np.ndarray
    w: np.ndarray                   # p (1 - p)
    H: np.ndarray | None = None     # computed when first needed
    d: np.ndarray | None = None     # the groups' sums of p (1 - p)

    @classmethod
    def at(cls, cells: CellDesign, theta: np.ndarray, eta: np.ndarray | None = None,
           loglik: tuple[float, np.ndarray] | None = None) -> "_Point":
        if eta is None or loglik is None:
            eta, yeta = cells.eta(theta)
            loglik = cells.loglik(eta, yeta)
        ll, t = loglik
        mu = cells.mean(eta, t)
        return cls(theta, eta, ll, cells.gradient(cells.y - mu), mu * (1 - mu))

    def hessian(self, cells: CellDesign) -> np.ndarray:
        if self.H is None:
            self.H, self.d = cells.hessian(self.w)
        return self.H


#: Largest move of the linear predictor over which a point's Hessian serves the Newton steps (see
#: :func:`_penalized_mode`).
_REUSE_ETA = 1e-4


def _penalized_mode(cells: CellDesign, tau2: float, start: _Point) -> _Point:
    """Newton-Raphson (with step halving) for the mode of (beta, u) given tau2, from ``start``.

    The objective is the log-likelihood minus ``u'u / (2 tau2)``.  A ridge of 1e-8 on the fixed effects keeps
    the Hessian invertible when a factor level separates (every call of one trigger answered, say); it moves no
    estimate that is identified.  ``start`` keeps its Hessian (the data's part, without the penalty), so the
    first step from the previous grid point's mode costs no new pass over the rows; and a point's Hessian serves
    the following steps while the linear predictor stays within ``_REUSE_ETA`` of it (each weight within a
    factor ``exp(delta)`` of its own: the iteration contracts at least at the rate ``exp(delta) - 1``), a
    step on it being taken as converged when it is below 1e-8 and leaves an error (rate x step) below 1e-14.
    The grid points' modes are a few 1e-7 apart, so a mode mostly costs one Hessian, its own.  Returns the
    mode with its Hessian computed.
    """
    p, J = cells.p, cells.J
    pen = np.r_[np.full(p, 1e-8), np.full(J, 1.0 / tau2)]
    pt = start
    theta = pt.theta
    f = pt.ll - 0.5 * float(np.sum(pen * theta ** 2))
    at_H = start                # the point whose Hessian the steps use
    for _ in range(100):
        grad = pt.grad - pen * theta
        if pt is not at_H:
            # Another point's Hessian serves while the linear predictor has moved by at most ``delta`` from
            # it: each weight p (1 - p) is then within a factor exp(+-delta) of its own, so the step is the
            # Newton step up to a relative error below exp(delta) - 1 (the iteration contracts at that rate).
            delta = float(np.max(np.abs(pt.eta - at_H.eta)))
            if pt.H is not None or delta > _REUSE_ETA:
                at_H = pt
        step = np.linalg.solve(at_H.hessian(cells) + np.diag(pen), grad)
        t = 1.0
        while t > 1e-4:
            trial = theta + t * step
            eta, yeta = cells.eta(trial)
            ll = cells.loglik(eta, yeta)
            f_new = ll[0] - 0.5 * float(np.sum(pen * trial ** 2))
            if f_new >= f - 1e-12:
                break
            t /= 2
        else:                   # no step up: the smallest one is taken, as it stands
            trial = theta + t * step
            eta, yeta = cells.eta(trial)
            ll = cells.loglik(eta, yeta)
        theta = trial
        f = f_new
        rate = 0.0 if at_H is pt else float(np.expm1(delta))     # 0: the step's own Hessian (Newton)
        pt = _Point.at(cells, theta, eta, ll)
        moved = float(np.max(np.abs(t * step)))
        # converged when the step is below 1e-8 (Newton's error after it is of the order of its square); after
        # a step on another point's Hessian, also when the error it leaves, about rate x step, is below 1e-14
        if moved < 1e-8 and rate * moved < 1e-14:
            break
    pt.hessian(cells)
    return pt


def glmm_logit(y, X, groups, *, n_groups: int | None = None, level: float = 0.95, tau_max: float = 3.0,
               grid_size: int = 31, cells: CellDesign | None = None) -> GroupEffects:
    """Random-intercept logistic regression, the group effects averaged over the between-group sd.

    Parameters
    ----------
    y : array-like of 0/1
    X : array-like
        Fixed-effect design with a constant column and linearly independent columns.
    groups : array-like of int
        Group codes ``0 .. J-1`` of the rows.
    level : float
        Level of the credible interval of ``tau``.
    tau_max, grid_size : float, int
        Grid of the between-group sd (log-odds), uniform prior over it.
    cells : CellDesign, optional
        ``CellDesign(y, X, groups, n_groups)`` when already built.

    Notes
    -----
    At each ``tau`` the mode of ``(beta, u)`` maximises ``loglik - |u|^2 / (2 tau^2)``; the Laplace
    approximation of the marginal log-likelihood is that maximum minus ``sum_j log(1 + tau^2 d_j) / 2``,
    ``d_j`` the group's sum of ``p (1 - p)`` at the mode; each ``u_j``'s conditional sd comes from the
    inverse penalised Hessian (the fixed effects' uncertainty included).  The per-``tau`` results are
    averaged with weights proportional to the approximate marginal likelihood.  A group with few rows
    is pulled towards 0 (the average group) in proportion to its imprecision.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    g = np.asarray(groups, dtype=int)
    J = int(n_groups if n_groups is not None else g.max() + 1)
    n, p = X.shape
    grid = np.linspace(tau_max / (grid_size - 1) / 10, tau_max, grid_size)
    logl, means, sds, betas = [], [], [], []
    # one BLAS thread: small dense products are faster so, and the sums do not depend on the thread count
    with threadpool_limits(limits=1, user_api="blas"):
        if cells is None:
            cells = CellDesign(y, X, g, J)
        pt = _Point.at(cells, np.zeros(p + J))
        for tau in grid:
            pt = _penalized_mode(cells, tau ** 2, pt)     # from the previous grid point's mode
            assert pt.H is not None and pt.d is not None
            u = pt.theta[p:]
            logl.append(pt.ll - 0.5 * np.sum(u ** 2) / tau ** 2 - 0.5 * np.sum(np.log1p(tau ** 2 * pt.d)))
            cov = np.linalg.inv(pt.H + np.diag(np.r_[np.full(p, 1e-8), np.full(J, 1.0 / tau ** 2)]))
            means.append(u.copy())
            sds.append(np.sqrt(np.diag(cov)[p:]))
            betas.append(pt.theta[:p].copy())
    ll_grid = np.array(logl)
    mean, sd, tau, tau_ci, _ = _mixture(grid, ll_grid, np.array(means), np.array(sds), level)
    return GroupEffects(effect=mean, sd=sd, tau=tau, tau_ci=tau_ci, mu=0.0, n=np.bincount(g, minlength=J),
                        method="random-intercept logit (Laplace approximation), uniform prior on the "
                               "between-caller sd", beta=betas[int(np.argmax(ll_grid))])


def _reml_ratio(y: np.ndarray, X: np.ndarray, g: np.ndarray, J: int,
                at: float | None = None) -> tuple[float, np.ndarray, float, float]:
    """REML fit of the random-intercept model ``y = X beta + u_g + e`` from the groups' sufficient statistics.

    With ``gamma = var(u) / var(e)`` each group's covariance is ``var(e) (I + gamma 11')``, whose inverse is
    ``I - c 11'`` with ``c = gamma / (1 + n_j gamma)``; so ``X'V^-1 X``, ``X'V^-1 y`` and ``y'V^-1 y`` are
    ``X'X``, ``X'y`` and ``y'y`` less ``c`` times the groups' sums of ``X`` and ``y``, and the REML criterion
    profiled over ``beta`` and ``var(e)``, ``(n - p) log RSS + sum_j log(1 + n_j gamma) + log det X'V^-1 X``,
    costs O(J p^2) at any ``gamma`` (the same criterion as statsmodels ``MixedLM(reml=True)``'s profile
    likelihood, to a constant).  It is minimised over ``gamma >= 0``: on a grid, then to machine precision at
    the zero of its analytic derivative (``gamma = 0``, no variation between groups, when the derivative there is
    not negative).  Returns ``(gamma, beta, scale, criterion)`` with ``scale = RSS / (n - p)``, REML's residual
    variance; ``at``: the same at that ratio instead of the fitted one.
    """
    from scipy import optimize

    n, p = X.shape
    nj = np.bincount(g, minlength=J).astype(float)
    S = np.stack([np.bincount(g, weights=X[:, k], minlength=J) for k in range(p)], axis=1)    # J x p
    T = np.bincount(g, weights=y, minlength=J)
    XX, Xy, yy = X.T @ X, X.T @ y, float(y @ y)

    def fit(gam: float):
        c = gam / (1.0 + nj * gam)
        A = XX - (S * c[:, None]).T @ S
        b = Xy - S.T @ (c * T)
        beta = np.linalg.solve(A, b)
        return A, beta, yy - float(np.sum(c * T * T)) - float(beta @ b)

    def crit(gam: float) -> float:
        A, _, rss = fit(gam)
        return float((n - p) * np.log(rss) + np.sum(np.log1p(nj * gam)) + np.linalg.slogdet(A)[1])

    def slope(gam: float) -> float:
        A, beta, rss = fit(gam)
        c1 = 1.0 / (1.0 + nj * gam) ** 2
        e = T - S @ beta
        lev = np.einsum("jk,jk->j", S, np.linalg.solve(A, S.T).T)
        return float(-(n - p) * np.sum(c1 * e * e) / rss + np.sum(nj / (1.0 + nj * gam)) - np.sum(c1 * lev))

    if at is not None:
        _, beta, rss = fit(at)
        return at, beta, rss / (n - p), crit(at)
    scale0 = 1.0 / float(np.mean(nj[nj > 0]))
    grid = np.r_[0.0, scale0 * 10.0 ** np.arange(-8.0, 6.25, 0.25)]
    vals = np.array([crit(x) for x in grid])
    while np.argmin(vals) == len(grid) - 1 and grid[-1] < 1e12 * scale0:      # groups far apart: look further
        more = grid[-1] * 10.0 ** np.arange(0.25, 4.25, 0.25)
        grid, vals = np.r_[grid, more], np.r_[vals, [crit(x) for x in more]]
    k = int(np.argmin(vals))
    if k == 0 and slope(0.0) >= 0:
        gam = 0.0
    else:
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        if slope(lo) < 0 < slope(hi):
            gam = float(optimize.brentq(slope, lo, hi, xtol=1e-300, maxiter=200))
        else:                                   # the slope does not change sign across the bracket: its minimum
            gam = float(optimize.minimize_scalar(crit, bounds=(lo, hi), method="bounded",
                                                 options={"xatol": 1e-15 * max(hi, 1e-300)}).x)
    _, beta, rss = fit(gam)
    return gam, beta, rss / (n - p), crit(gam)


def lmm(y, X, groups, *, n_groups: int | None = None, level: float = 0.95) -> GroupEffects:
    """Random-intercept linear model: fixed effects by REML, group effects pooled.

    The fixed effects and the residual variance come from the REML fit (:func:`_reml_ratio`, from the groups'
    sufficient statistics; the same criterion as statsmodels ``MixedLM(reml=True)``, minimised to machine
    precision, the boundary of no variation between groups included).  The groups' mean residuals ``r_j``
    (se ``sigma / sqrt(n_j)``) are pooled by :func:`normal_pooling`, so the effects are deviations from the
    average group in the outcome's units.
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    g = np.asarray(groups, dtype=int)
    J = int(n_groups if n_groups is not None else g.max() + 1)
    _, beta, scale, _ = _reml_ratio(y, X, g, J)
    r = y - X @ beta
    n = np.bincount(g, minlength=J)
    have = n > 0
    rj = np.bincount(g, weights=r, minlength=J)[have] / n[have]
    sigma = float(np.sqrt(scale))
    pooled = normal_pooling(rj, sigma / np.sqrt(n[have]), level=level)
    eff, sd = np.zeros(J), np.full(J, np.nan)
    eff[have], sd[have] = pooled.effect - pooled.mu, pooled.sd
    return GroupEffects(effect=eff, sd=sd, tau=pooled.tau, tau_ci=pooled.tau_ci, mu=0.0, n=n, beta=beta,
                        method="random-intercept linear model (fixed effects by REML), group means pooled with a "
                               "uniform prior on the between-caller sd")
