"""The attempt-level answer model behind ``reach.sms_effect``: design, fit, prediction, intervals.

Attempts up to a case's first answered one are the rows of a discrete-time
(attempt-by-attempt) logistic model of answering, with attempt-number effects,
calendar-period fixed effects, case-mix covariates and one *late attempt x after
policy* term (:class:`Design`, :func:`fit_logit`).  :class:`Predictor` turns the
fitted model into each post-policy case's chance of being reached with and
without that term, over the attempt sequence the protocol gives it
(:func:`protocol`, :func:`build_predictor`); the interval comes from the delta
method (:func:`delta_se`) or a case bootstrap (:func:`bootstrap`).
:func:`fit_sms_model` runs the whole chain.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._validation import z_quantile
from ...calendar import quarter_of
from ...errors import ConvergenceWarning, DataWarning, InputError, NotAvailableError
from .._dates import as_datetime

__all__ = ["SmsModel", "fit_sms_model", "case_covariates", "Design", "Predictor", "attempt_frame", "protocol",
           "build_predictor", "fit_logit", "bootstrap", "delta_se", "hour_band"]

#: Pre-index windows (inclusive day offsets from the case's opening) of the
#: case-mix covariates of the answer model.
PRE_WINDOWS = {"pre28": (-28, -1), "pre84": (-84, -1)}
#: Bands of the hour of day of an attempt (left-closed).
HOUR_BANDS = ([0, 12, 17, 20, 24], ["00-11", "12-16", "17-19", "20-23"])


def hour_band(hour: pd.Series) -> pd.Series:
    edges, labels = HOUR_BANDS
    return pd.cut(hour, edges, right=False, labels=labels).astype(str)


def case_covariates(ds, cases: pd.DataFrame) -> pd.DataFrame:
    """Case-mix covariates at the case's opening: pre-window spending, product mix, age, trigger."""
    from ...cohorts.windows import window_aggregates

    keys = pd.DataFrame({"row_id": np.arange(len(cases)), "customer_id": cases["customer_id"].to_numpy(),
                         "index_date": cases["opened_on"].to_numpy()})
    tot = window_aggregates(ds, keys, PRE_WINDOWS, share_window=PRE_WINDOWS["pre84"])
    shares = tot[[c for c in tot.columns if c.startswith("share_")]]
    cov = pd.DataFrame(index=np.arange(len(cases)))
    cov["log_tl_pre28"] = np.log1p(tot["tl_pre28"].clip(lower=0).to_numpy())
    cov["log_tl_pre84"] = np.log1p(tot["tl_pre84"].clip(lower=0).to_numpy())
    days = tot["active_days_pre84"].to_numpy()
    cov["log_stake_per_day_pre84"] = np.log1p(tot["wagered_pre84"].to_numpy() / np.maximum(days, 1))
    cov["active_share_pre84"] = days / 84.0
    for col in list(shares.columns)[1:]:                 # the first product is the reference
        cov[col] = shares[col].to_numpy()
    cust = ds.table("customers")[["customer_id", "birth_year"]]
    # looked up by customer (a left merge on the customers' unique key, without joining frames)
    by = cust.set_index("customer_id")["birth_year"].reindex(cases["customer_id"].to_numpy()).astype(float)
    age = as_datetime(cases["opened_on"]).dt.year.to_numpy() - by.to_numpy()
    if np.isnan(age).any():
        warnings.warn(f"{int(np.isnan(age).sum())} cases have no birth_year; their age is set to the median "
                      "and flagged with age_missing", DataWarning, stacklevel=4)
        cov["age_missing"] = np.isnan(age).astype(float)
        age = np.where(np.isnan(age), np.nanmedian(age), age)
    cov["age_10y"] = (age - 40) / 10
    return cov


@dataclass
class Design:
    """Column layout of the answer model, fixed on the fitting data."""

    categorical: dict          # column -> list of levels (first is the reference)
    continuous: list
    treat: str = "late_after"

    @classmethod
    def from_frame(cls, df: pd.DataFrame, categorical: list[str], continuous: list[str]) -> "Design":
        levels = {}
        for c in categorical:
            counts = df[c].value_counts()
            lv = sorted(counts.index.tolist(), key=lambda v: (-counts[v], str(v)))   # reference: most common
            levels[c] = lv
        return cls(levels, list(continuous))

    @property
    def names(self) -> list[str]:
        out = ["const", self.treat]
        for c, lv in self.categorical.items():
            out += [f"{c}[{v}]" for v in lv[1:]]
        return out + list(self.continuous)

    @property
    def columns(self) -> list[tuple]:
        """What each column of :meth:`matrix` is: ``(kind, source column, level)``, kind one of
        ``"const"``, ``"treat"``, ``"cat"`` (indicator of ``level``), ``"num"``."""
        out: list[tuple] = [("const", None, None), ("treat", self.treat, None)]
        for c, lv in self.categorical.items():
            out += [("cat", c, x) for x in lv[1:]]
        return out + [("num", c, None) for c in self.continuous]

    def matrix(self, df: pd.DataFrame, cols: np.ndarray | None = None, order: str = "C") -> np.ndarray:
        """The design matrix of ``df``, all columns or only ``cols`` (indices into :attr:`names`).

        Columns are filled in place (Fortran order, one contiguous write each; ``order="C"`` then copies to
        C order): the values are those of stacking the columns, without a list of full-length temporaries.
        """
        spec = self.columns
        take = range(len(spec)) if cols is None else [int(j) for j in cols]
        X = np.empty((len(df), len(take)), order="F")
        codes: dict = {}
        for out, j in enumerate(take):
            kind, c, x = spec[j]
            if kind == "const":
                X[:, out] = 1.0
            elif kind == "cat":
                if c not in codes:        # position of each row's level among the levels (-1: none of them)
                    codes[c] = pd.Index(self.categorical[c]).get_indexer(df[c].to_numpy())
                X[:, out] = codes[c] == self.categorical[c].index(x)
            else:
                X[:, out] = df[c].to_numpy(float)
        return X if order == "F" else np.ascontiguousarray(X)


def weighted_gram(X: np.ndarray, w: np.ndarray | None = None, chunk: int = 8192) -> np.ndarray:
    """``X' diag(w) X`` (``X' X`` without ``w``; ``w >= 0``), summed over blocks of rows.

    One product over all rows would first build the ``n x p`` array ``w * X`` (hundreds of megabytes at a
    million attempts, paged in afresh at every Newton step); blocks of rows stay in the cache, and each
    block's ``B' B`` with ``B = sqrt(w) X`` is one symmetric rank-k update (half the multiplications).
    """
    from ...matching.propensity import single_threaded_blas

    n, p = X.shape
    out = np.zeros((p, p))
    sw = None if w is None else np.sqrt(w)
    with single_threaded_blas():      # small products: BLAS threads spinning on a busy machine cost 50x
        for i in range(0, n, chunk):
            B = X[i:i + chunk] if sw is None else X[i:i + chunk] * sw[i:i + chunk, None]
            out += B.T @ B
    return out


def independent_columns(X: np.ndarray, protect: int = 2) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns, keeping the first ``protect``."""
    return independent_of_gram(weighted_gram(X), len(X), protect)


def independent_of_gram(G: np.ndarray, n: int, protect: int = 2) -> np.ndarray:
    """:func:`independent_columns` from the design's ``X'X`` (``n`` rows), without another pass over ``X``."""
    scale = np.maximum(np.sqrt(np.diag(G) / n), 1e-12)   # root mean square of each column
    G = G / np.outer(scale, scale) / n     # Gram matrix of the scaled columns: p x p
    keep: list[int] = []
    for j in range(len(G)):
        trial = keep + [j]
        if np.linalg.eigvalsh(G[np.ix_(trial, trial)])[0] > 1e-10:
            keep.append(j)
        elif j < protect:
            raise NotAvailableError("the late-attempt x after-policy term cannot be separated from the other terms "
                                    "(are there late attempts both before and after the policy?)")
    return np.array(keep)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Predictor:
    """Everything needed to predict post-policy cases' reach with and without the policy term."""

    X_with: np.ndarray        # (n_rows, p): one row per (case, attempt, hour band)
    X_without: np.ndarray | None   # X_with with the policy term off; None: column ``treat`` of X_with set to 0
    weight: np.ndarray        # probability of the row's hour band (1 for observed attempts)
    cell: np.ndarray          # flat index case * K + (attempt - 1) of the row
    q: np.ndarray             # (n_cases, K): probability the attempt is made given the previous unanswered
    n_cases: int
    K: int
    treat: int | None = None  # column of the policy term (when X_without is None)

    def _eta_without(self, beta: np.ndarray, eta_with: np.ndarray) -> np.ndarray:
        if self.X_without is not None:
            return self.X_without @ beta
        return eta_with - beta[self.treat] * self.X_with[:, self.treat]

    def prob(self, beta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(n_cases, K) chance of answering attempt k if it is made and all before it went unanswered."""
        p_rows = self.weight * _expit(X @ beta)
        return np.bincount(self.cell, weights=p_rows, minlength=self.n_cases * self.K).reshape(self.n_cases, self.K)

    def reach(self, beta: np.ndarray, X: np.ndarray) -> np.ndarray:
        return self._reach(X @ beta)

    def effects(self, beta: np.ndarray, case_weight: np.ndarray | None = None) -> tuple[float, float, float]:
        eta_with = self.X_with @ beta
        return self._effects(eta_with, self._eta_without(beta, eta_with), case_weight)

    def _effects(self, eta_with: np.ndarray, eta_without: np.ndarray,
                 case_weight: np.ndarray | None = None) -> tuple[float, float, float]:
        """:meth:`effects` from the linear predictors of the two designs."""
        rw, ro = self._reach(eta_with), self._reach(eta_without)
        w = np.ones(self.n_cases) if case_weight is None else case_weight
        mw, mo = float(np.average(rw, weights=w)), float(np.average(ro, weights=w))
        return mw - mo, mw, mo

    def _by_attempt(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows' cells numbered attempt-major, and ``q`` transposed: each attempt's cases contiguous."""
        got = self.__dict__.get("_attempt_major")
        if got is None:
            cell = (self.cell % self.K) * self.n_cases + self.cell // self.K
            got = self.__dict__["_attempt_major"] = (cell, np.ascontiguousarray(self.q.T))
        return got

    def _p_rows(self, eta: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """``weight * expit(eta)`` of the rows (all, or ``rows`` with ``eta`` theirs), computed in place."""
        p_rows = np.negative(eta)
        np.exp(p_rows, out=p_rows)
        p_rows += 1.0
        np.divide(1.0, p_rows, out=p_rows)
        p_rows *= self.weight if rows is None else self.weight[rows]
        return p_rows

    def _reach_of(self, p: np.ndarray) -> np.ndarray:
        """Each case's chance of being reached from its cells' answer chances (attempt-major, flat)."""
        _, qT = self._by_attempt()
        p = p.reshape(self.K, self.n_cases)
        alive = np.ones(self.n_cases)            # P(attempt k is made and all before unanswered)
        total = np.zeros(self.n_cases)
        for k in range(self.K):
            alive = alive * qT[k]
            total += alive * p[k]
            alive = alive * (1 - p[k])
        return total

    def _reach(self, eta: np.ndarray) -> np.ndarray:
        """Each case's chance of being reached, from the linear predictor of its rows."""
        cell, _ = self._by_attempt()
        return self._reach_of(np.bincount(cell, weights=self._p_rows(eta), minlength=self.n_cases * self.K))

    def effect_se(self, beta: np.ndarray, cov: np.ndarray) -> float:
        """Delta-method SE of the effect, as :func:`delta_se` (same steps), without a matrix product per step.

        Moving coefficient j by h moves the linear predictors by h times column j, so each of the 2p
        evaluations costs O(rows) instead of O(rows x p) (column j gathered once, buffers reused).  A column
        that is zero in every row moves nothing (its derivative is 0, as the two evaluations are the same);
        a column that is non-zero in fewer than half the rows (a dummy) moves only those rows' answer
        chances, which are added to the cells' unmoved sums.
        """
        eta_w = self.X_with @ beta
        eta_o = self._eta_without(beta, eta_w)
        eps = _delta_steps(beta)
        grad = np.empty(len(beta))
        step = np.empty_like(eta_w)
        ew, eo = np.empty_like(eta_w), np.empty_like(eta_w)
        cell, _ = self._by_attempt()
        n_cells, n_rows = self.n_cases * self.K, len(eta_w)
        base = {"w": self._p_rows(eta_w), "o": self._p_rows(eta_o)}
        cells = {k: np.bincount(cell, weights=v, minlength=n_cells) for k, v in base.items()}
        reach_o = self._reach_of(cells["o"])
        ones = np.ones(self.n_cases)

        def moved(eta, x, sign):                 # eta + sign * h * x, in a reused buffer
            out = ew if eta is eta_w else eo
            np.multiply(x, h, out=step)
            return np.add(eta, step, out=out) if sign > 0 else np.subtract(eta, step, out=out)

        def moved_cells(which, eta, x, sign):    # the cells' chances with the rows nz moved
            e = eta[nz] + h * x[nz] if sign > 0 else eta[nz] - h * x[nz]
            return cells[which] + np.bincount(cell[nz], weights=self._p_rows(e, nz) - base[which][nz],
                                              minlength=n_cells)

        def effect(rw, ro):
            return float(np.average(rw, weights=ones)) - float(np.average(ro, weights=ones))

        for j in range(len(beta)):
            h = eps[j]
            xw = np.ascontiguousarray(self.X_with[:, j])
            if self.X_without is None:              # the design without the policy term: its column j is 0
                xo = None if j == self.treat else xw
            else:
                xo = np.ascontiguousarray(self.X_without[:, j])
            nz = np.flatnonzero(xw if xo is None or xo is xw else (xw != 0) | (xo != 0))
            if nz.size == 0:
                grad[j] = 0.0
            elif 2 * nz.size > n_rows:
                up = self._effects(moved(eta_w, xw, 1), eta_o if xo is None else moved(eta_o, xo, 1))[0]
                down = self._effects(moved(eta_w, xw, -1), eta_o if xo is None else moved(eta_o, xo, -1))[0]
                grad[j] = (up - down) / (2 * h)
            else:
                up = effect(self._reach_of(moved_cells("w", eta_w, xw, 1)),
                            reach_o if xo is None else self._reach_of(moved_cells("o", eta_o, xo, 1)))
                down = effect(self._reach_of(moved_cells("w", eta_w, xw, -1)),
                              reach_o if xo is None else self._reach_of(moved_cells("o", eta_o, xo, -1)))
                grad[j] = (up - down) / (2 * h)
        return float(np.sqrt(grad @ cov @ grad))


def attempt_frame(cr: pd.DataFrame, att: pd.DataFrame, cov: pd.DataFrame, s: int, period: str,
                   min_period_cases: int = 30) -> pd.DataFrame:
    """Attempt-level modelling frame: one row per attempt up to the first answered one."""
    c = pd.concat([cr, cov.set_axis(cr.index)], axis=1)     # cov is row for row with cr
    c.index = pd.RangeIndex(len(c))
    c["period_fe"] = (quarter_of(c["opened_on"]) if period == "quarter"
                      else c["opened_on"].dt.strftime("%Y-%m")) + np.where(c["post_policy"].astype(bool),
                                                                           "|after", "|before")
    c["trigger"] = c["trigger"].fillna("(none)").astype(str) if "trigger" in c else "(none)"
    # an inner merge on case_id (the attempts' order, each with its case's columns), by position
    pos = pd.Index(c["case_id"]).get_indexer(att["case_id"])
    keep = pos >= 0
    # calendar periods with too few cases folded into a neighbour, counted over the cases with attempts
    used = np.zeros(len(c), bool)
    used[pos[keep]] = True
    of_case = pd.Series(c["period_fe"].to_numpy()[used])
    c["period_fe"] = c["period_fe"].map(_merged_periods(of_case.groupby(of_case).size(), min_period_cases))
    a = c.take(pos[keep])                                      # a new frame: relabelled and extended in place
    a.index = pd.RangeIndex(len(a))
    a.insert(0, "case_id", a.pop("case_id"))
    for i, col in enumerate(("attempted_at", "answered", "attempt_no"), start=1):
        a.insert(i, col, att[col].to_numpy()[keep])
    # text labels looked up from the few distinct values (as .astype(str) and hour_band() give them)
    when = a["attempted_at"].dt
    a["weekday"] = np.array([str(d) for d in range(7)], dtype=object)[when.weekday.to_numpy()]
    a["hour_band"] = hour_band(pd.Series(np.arange(24))).to_numpy(dtype=object)[when.hour.to_numpy()]
    number, inv = np.unique(a["attempt_no"].to_numpy(), return_inverse=True)
    a["attempt"] = np.array([str(k) for k in number], dtype=object)[inv.reshape(-1)]
    a["late_after"] = ((a["attempt_no"] > s) & a["post_policy"].astype(bool)).astype(float)
    return a


def merge_small_periods(a: pd.DataFrame, min_cases: int) -> pd.Series:
    """Fold calendar periods with fewer than ``min_cases`` cases into their neighbour on the same side of the
    policy date (a period with a handful of cases would otherwise have its own, unidentified, intercept)."""
    per = a.drop_duplicates("case_id").groupby("period_fe").size()
    return a["period_fe"].map(_merged_periods(per, min_cases))


def _merged_periods(per: pd.Series, min_cases: int) -> dict:
    """:func:`merge_small_periods`'s relabelling, from the number of cases of each period."""
    mapping = {p: p for p in per.index}
    for side in ("|before", "|after"):
        levels = sorted(p for p in per.index if p.endswith(side))
        groups = [[p] for p in levels]
        size = lambda g: int(per[g].sum())  # noqa: E731
        while len(groups) > 1 and min(size(g) for g in groups) < min_cases:
            i = min(range(len(groups)), key=lambda j: size(groups[j]))
            j = i + 1 if i + 1 < len(groups) else i - 1
            if j < i:
                i, j = j, i
            groups[i:j + 1] = [groups[i] + groups[j]]
        for g in groups:
            label = g[0].split("|")[0] + (f"..{g[-1].split('|')[0]}" if len(g) > 1 else "") + side
            for p in g:
                mapping[p] = label
    return mapping


def protocol(att: pd.DataFrame, cr: pd.DataFrame, data_end: pd.Timestamp, K: int):
    """Typical day offset of attempt k from attempt 1, and the chance attempt k is made after k-1 unanswered."""
    # cases as integers: the day of each case's first attempt, its number of attempts, whether it was reached
    code, ids = pd.factorize(att["case_id"])
    n_att = att["attempt_no"].to_numpy()
    day = att["attempted_at"].dt.normalize().to_numpy()
    first = np.full(len(ids), np.datetime64("NaT"), dtype=day.dtype)
    one = n_att == 1
    first[code[one]] = day[one]
    days = pd.Series(day - first[code]).dt.days          # from the case's first attempt
    offset = days.groupby(n_att).median().reindex(range(1, K + 1)).ffill().to_numpy()
    cont = np.ones(K)
    n_by = np.zeros(len(ids), dtype=n_att.dtype)
    np.maximum.at(n_by, code, n_att)
    reached = cr.set_index("case_id")["reached"].reindex(ids, fill_value=False).to_numpy(bool)
    end = pd.Timestamp(data_end).to_datetime64()
    for k in range(2, K + 1):
        # cases unanswered after k-1 attempts whose attempt k would still fall inside the data
        at_risk = (n_by >= k - 1) & ~((n_by == k - 1) & reached)
        at_risk &= first + pd.to_timedelta(offset[k - 1], unit="D").to_timedelta64() <= end
        if at_risk.any():
            cont[k - 1] = float((n_by[at_risk] >= k).mean())
    return offset, cont


def build_predictor(a: pd.DataFrame, cr_post: pd.DataFrame, design: Design, cols: np.ndarray,
                     offset: np.ndarray, cont: np.ndarray, data_end: pd.Timestamp, s: int,
                     X: np.ndarray | None = None) -> Predictor:
    """Rows for every (post-policy case, attempt 1..K): observed attempts as they were made, the others at the
    protocol's typical day with the hour band marginalised over its observed distribution.

    ``X`` is ``design.matrix(a, cols)`` when already built (the fit's matrix).  A row's case-level columns are
    those of its case's first attempt in ``a``; its attempt-level ones (attempt number, weekday, hour band,
    policy term) are set for the attempt it stands for.  The design without the policy term is this one with
    that column off (``Predictor.treat``).
    """
    K = len(offset)
    if X is None:
        X = design.matrix(a, cols, order="F")
    spec = [design.columns[int(j)] for j in cols]
    treat = next(i for i, (kind, _, _) in enumerate(spec) if kind == "treat")
    cases = cr_post.reset_index(drop=True)
    # each attempt's case as its position among the post cases (-1 for the others), and each post case's
    # first attempt row (where its case-level columns are read)
    code, ids = pd.factorize(a["case_id"])
    post_of_code = pd.Index(cases["case_id"]).get_indexer(ids)
    case_i = post_of_code[code]
    obs_rows = np.flatnonzero(case_i >= 0)
    first_of_code = np.unique(code, return_index=True)[1]           # the first row of each case
    first_row = np.full(len(cases), -1)
    first_row[post_of_code[post_of_code >= 0]] = first_of_code[post_of_code >= 0]
    if (first_row < 0).any():
        raise ValueError("build_predictor: post-policy cases without attempts in the attempt frame")
    attempt_no = a["attempt_no"].to_numpy(int)
    # rows of X the predictor's rows copy (observed attempts, then each hypothetical block), and the blocks
    sources, weights, cells = [obs_rows], [np.ones(len(obs_rows))], [case_i[obs_rows] * K + attempt_no[obs_rows] - 1]
    blocks: list[tuple] = []          # (k, hour band, weekday labels) of each hypothetical block, in order
    # hour-band distribution per attempt number, from all attempts
    band = a.groupby(["attempt_no", "hour_band"]).size()
    band = band / band.groupby(level=0).transform("sum")
    first_day = cases["first_attempt_at"].dt.normalize().to_numpy()
    n_obs = cases["n_attempts"].to_numpy()
    reached = cases["reached"].to_numpy(bool)
    q = np.zeros((len(cases), K))
    for k in range(1, K + 1):
        observed = n_obs >= k
        date_k = first_day + np.timedelta64(int(offset[k - 1]), "D")
        # an attempt beyond the observed ones is possible only if the case was answered (so the protocol stopped
        # early) and the attempt would fall inside the data
        possible = ~observed & reached & (date_k <= np.datetime64(data_end))
        q[:, k - 1] = np.where(observed, 1.0, np.where(possible, cont[k - 1], 0.0))
        idx = np.flatnonzero(possible)
        if idx.size == 0:
            continue
        kb = band.loc[k] if k in band.index.get_level_values(0) else band.groupby(level=1).mean()
        weekday = pd.DatetimeIndex(date_k[idx]).weekday.astype(str).to_numpy()
        for hb, w in kb.items():
            sources.append(first_row[idx])
            weights.append(np.full(idx.size, float(w)))
            cells.append(idx * K + k - 1)
            blocks.append((k, hb, weekday))
    # Fortran order (the delta method moves the linear predictor along one column at a time), filled by
    # gathering each column of X, then the attempt-level columns set block by block
    src = np.concatenate(sources)
    X_with = np.empty((len(src), X.shape[1]), order="F")
    for j in range(X.shape[1]):
        X_with[:, j] = X[:, j].take(src)
    X_with[:len(obs_rows), treat] = attempt_no[obs_rows] > s
    start = len(obs_rows)
    for k, hb, weekday in blocks:
        rows = slice(start, start + len(weekday))
        for i, (kind, c, x) in enumerate(spec):
            if kind == "treat":
                X_with[rows, i] = float(k > s)
            elif kind == "cat" and c == "attempt":
                X_with[rows, i] = float(x == str(k))
            elif kind == "cat" and c == "weekday":
                X_with[rows, i] = weekday == x
            elif kind == "cat" and c == "hour_band":
                X_with[rows, i] = float(x == hb)
        start += len(weekday)
    return Predictor(X_with, None, np.concatenate(weights), np.concatenate(cells), q, len(cases), K, treat)


_BLOCK_LOGIT: list = []


def _logit_class():
    """The class ``BlockLogit`` (made on first use: importing statsmodels costs half a second)."""
    if not _BLOCK_LOGIT:
        import statsmodels.api as sm

        class BlockLogit(sm.Logit):
            """statsmodels' Logit with its Hessian summed over blocks of rows (:func:`weighted_gram`) and its
            per-row scores built column-wise."""

            def predict(self, params, exog=None, which="mean", offset=None):
                # Newton asks for the score, the Hessian and a separation check at the same coefficients:
                # the linear predictor over the design is computed once for them
                if exog is not None or offset is not None or hasattr(self, "offset") \
                        or which not in ("mean", "linear"):
                    return super().predict(params, exog=exog, which=which, offset=offset)
                b = np.asarray(params, dtype=float)
                last = self.__dict__.get("_linear")
                if last is None or not np.array_equal(last[0], b):
                    last = self.__dict__["_linear"] = (b.copy(), np.dot(self.exog, b) + 0.0)
                return self.cdf(last[1]) if which == "mean" else last[1].copy()

            def hessian(self, params):
                L = self.predict(params)
                return -weighted_gram(self.exog, L * (1 - L))

            def score_obs(self, params):
                # statsmodels' (y - p)[:, None] * X, operands swapped: the same products, and numpy runs
                # this order along the Fortran-ordered design's columns (several times faster)
                return self.exog * (self.endog - self.predict(params))[:, None]

        BlockLogit.__module__, BlockLogit.__qualname__ = __name__, "BlockLogit"   # picklable by name
        _BLOCK_LOGIT.append(BlockLogit)
    return _BLOCK_LOGIT[0]


def __getattr__(name: str):
    """``BlockLogit`` on demand, so a pickled fit (a cached result) finds its model's class."""
    if name == "BlockLogit":
        return _logit_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fit_logit(y, X, groups, names):
    from statsmodels.tools.sm_exceptions import ConvergenceWarning as SmConvergenceWarning
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    _Logit = _logit_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        warnings.simplefilter("ignore", SmConvergenceWarning)    # said below, as the project's own warning
        # the Hessian is summed over blocks of rows (Logit above), as fast on a Fortran-ordered design, whose
        # columns (the score's cluster sums, the delta method) are then contiguous.  No rank check:
        # independent_columns() already kept a full-rank set (the check is a QR of the whole design, seconds
        # at 100k customers, and changes no estimate)
        model = _Logit(np.asarray(y, float), np.asarray(X, dtype=float), check_rank=False)
        model.data.xnames = list(names)
        model.data.ynames = "answered"
        fit = model.fit(disp=0, maxiter=200, cov_type="cluster", cov_kwds={"groups": groups})
        model.__dict__.pop("_linear", None)       # the last linear predictor: not kept with the fit
    if not fit.mle_retvals.get("converged", True):
        warnings.warn("the attempt-level answer model did not converge; treat reach.sms_effect with caution",
                      ConvergenceWarning, stacklevel=4)
    return fit


def bootstrap(a: pd.DataFrame, X: np.ndarray, y: np.ndarray, pred: Predictor, post_ids: np.ndarray,
               beta0: np.ndarray, n_boot: int, seed, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Cluster (case) bootstrap of the effect: cases resampled with replacement, model refitted."""
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning as SmConvergenceWarning
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    rng = np.random.default_rng(seed)
    case_codes, uniq = pd.factorize(a["case_id"])
    post_pos = pd.Series(np.arange(len(post_ids)), index=post_ids)
    post_in_uniq = post_pos.reindex(uniq).to_numpy()           # position among post cases, NaN if pre
    draws = np.full(n_boot, np.nan)
    fam = sm.families.Binomial()
    for b in range(n_boot):
        counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq))).astype(float)
        fw = counts[case_codes]
        keep = fw > 0
        try:
            with warnings.catch_warnings():
                # a replicate that separates or stops early is still a draw; overflow in exp() at extreme
                # coefficients is harmless (statsmodels clips the fitted probabilities)
                warnings.simplefilter("ignore", PerfectSeparationWarning)
                warnings.simplefilter("ignore", SmConvergenceWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                res = sm.GLM(y[keep], X[keep], family=fam, freq_weights=fw[keep]).fit(start_params=beta0,
                                                                                       maxiter=50)
        except Exception:  # noqa: BLE001 - a failed replicate is dropped and counted
            continue
        cw = np.zeros(len(post_ids))
        ok = ~np.isnan(post_in_uniq)
        np.add.at(cw, post_in_uniq[ok].astype(int), counts[ok])
        if cw.sum() == 0:
            continue
        draws[b] = pred.effects(np.asarray(res.params), cw)[0]
    good = draws[~np.isnan(draws)]
    if len(good) < 0.9 * n_boot:
        warnings.warn(f"{n_boot - len(good)} of {n_boot} bootstrap refits failed", ConvergenceWarning, stacklevel=4)
    alpha = 1 - level
    return np.quantile(good, [alpha / 2, 1 - alpha / 2]), good


def _delta_steps(beta: np.ndarray) -> np.ndarray:
    return 1e-5 * np.maximum(1.0, np.abs(beta))


def delta_se(f, beta: np.ndarray, cov: np.ndarray) -> float:
    """Delta-method standard error of the scalar ``f(beta)`` (central-difference gradient)."""
    eps = _delta_steps(beta)
    grad = np.empty(len(beta))
    for j in range(len(beta)):
        bp, bm = beta.copy(), beta.copy()
        bp[j] += eps[j]
        bm[j] -= eps[j]
        grad[j] = (f(bp) - f(bm)) / (2 * eps[j])
    return float(np.sqrt(grad @ cov @ grad))


@dataclass
class SmsModel:
    """The answer model's estimate of the SMS effect on the reach of post-policy cases."""

    effect: float              # predicted reach with minus without the policy term, averaged over post cases
    se: float                  # delta-method SE, or the bootstrap draws' standard deviation
    ci: tuple                  # (low, high) at the requested level
    method: str
    odds_ratio: float          # exp(beta) of the late-attempt x after-policy term
    log_or_se: float           # its case-clustered SE on the log scale
    odds_ratio_ci: tuple
    n_attempts: int            # attempts in the model
    fit: object                # the statsmodels fit
    names: list                # its terms
    attempts: pd.DataFrame     # the modelling frame
    reach_with: float
    reach_without: float
    boot: np.ndarray | None


def fit_sms_model(ds, cr: pd.DataFrame, att: pd.DataFrame, post_cases: pd.DataFrame, *, s: int, period: str,
                  policy: pd.Timestamp, offset: np.ndarray, cont: np.ndarray, data_end: pd.Timestamp, level: float,
                  interval: str, n_boot: int, seed, cov: pd.DataFrame | None = None) -> SmsModel:
    """Fit the attempt-level difference-in-differences logit and turn it into the change in case-level reach.

    Parameters are the case table ``cr`` (:func:`~.cases.case_reach`), its attempts ``att``, the post-policy
    cases, the SMS rule ``s`` (attempts after the ``s``-th can be changed), the calendar ``period`` of the fixed
    effects, the protocol (``offset``, ``cont`` from :func:`protocol`), the data end and the interval options.
    ``cov`` is the case covariates of ``cr`` (:func:`case_covariates`, row for row) when already computed, for
    example by the self-check, which refits the model many times on the same cases.
    """
    K = int(att["attempt_no"].max())
    if K <= s:
        raise InputError(f"sms_after_attempts={s} but no case has more than {K} attempts: there are no attempts "
                         "the SMS could change; check the operator's SMS rule (sms_after_attempts in operator.toml)")
    cov = case_covariates(ds, cr) if cov is None else cov
    a = attempt_frame(cr, att, cov, s, period)
    if not ((a["late_after"] == 1).any() and ((a["attempt_no"] > s) & ~a["post_policy"].astype(bool)).any()):
        raise NotAvailableError(f"need attempts after attempt {s} both before and after {policy.date()} to "
                                "estimate the SMS effect")
    categorical = ["attempt", "period_fe", "weekday", "hour_band", "trigger"]
    design = Design.from_frame(a, categorical, list(cov.columns))
    X_full = design.matrix(a, order="F")
    cols = independent_columns(X_full)
    X = X_full if len(cols) == X_full.shape[1] else np.asfortranarray(X_full[:, cols])
    del X_full
    names = [design.names[j] for j in cols]
    y = a["answered"].to_numpy(float)
    groups = pd.factorize(a["case_id"])[0]
    fit = fit_logit(y, X, groups, names)
    beta = np.asarray(fit.params)
    covb = np.asarray(fit.cov_params())
    pred = build_predictor(a, post_cases, design, cols, offset, cont, data_end, s, X=X)
    eff, r_with, r_without = pred.effects(beta)
    z = z_quantile(level)
    what = "attempt-level DiD logit (late vs early attempts, after vs before)"
    if interval == "delta":
        se = pred.effect_se(beta, covb)           # delta_se(lambda b: pred.effects(b)[0], beta, covb), faster
        ci = (eff - z * se, eff + z * se)
        method = f"{what}, delta method, case-clustered"
        boot = None
    else:
        (lo, hi), boot = bootstrap(a, X, y, pred, post_cases["case_id"].to_numpy(), beta, n_boot, seed, level)
        ci = (float(lo), float(hi))
        se = float(np.std(boot, ddof=1))
        method = f"{what}, case bootstrap ({n_boot}), percentile interval"
    j = names.index(design.treat)
    b, sb = float(beta[j]), float(np.sqrt(covb[j, j]))
    return SmsModel(effect=eff, se=se, ci=ci, method=method, odds_ratio=float(np.exp(b)), log_or_se=sb,
                    odds_ratio_ci=(float(np.exp(b - z * sb)), float(np.exp(b + z * sb))), n_attempts=len(a),
                    fit=fit, names=names, attempts=a, reach_with=r_with, reach_without=r_without, boot=boot)
