"""When to call: answer rates by hour of day and weekday, for the same attempts, and the SMS's timing.

The raw answer rate of a slot mixes the slot with who was dialled in it (first
attempts of fresh cases in the morning, fourth attempts of hard cases in the
evening, the season, the SMS policy).  :func:`answer_timing` fits one
attempt-level logistic model of answering (attempt number, hour, weekday,
calendar month, the missed-call SMS term and the case mix at opening) and
predicts, for every hour x weekday slot, the answer rate had *every* attempt in
the data been made in that slot (standardisation), so slots are compared for
the same kind of customers.  :func:`attempt_table` (the model's rows) is shared
with the callers' analysis.
"""
from __future__ import annotations

import warnings
import weakref
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..._validation import check_int, check_level, check_no_sample, z_quantile
from ...contract.base import open_data
from ...errors import ConvergenceWarning, NotAvailableError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from ..calls import quantile_interval
from ..intervals import wilson_interval
from ..reach.answer_model import case_covariates, independent_of_gram
from ..reach.cases import PHONE_ARMS, case_reach, phone_tables, resolve_policy, sms_rule
from .pooling import CellDesign, one_blas_thread

__all__ = ["answer_timing", "attempt_table", "design_matrix", "fit_attempt_logit", "AttemptLogit", "WEEKDAYS"]

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: Label of hours with too few attempts to be shown (their attempts still inform the model).
OTHER_HOURS = "other"
#: Bins of the SMS timing plots (left edges; the last is open): minutes to the SMS, hours to the answer.
SMS_DELAY_BINS = (0, 2, 5, 10, 15, 30, 60, 120)
SMS_ANSWER_BINS = (0, 12, 24, 36, 48, 60, 72, 96, 120, 168)


def _histogram(x: np.ndarray, edges: tuple, unit: str) -> pd.DataFrame:
    """Counts and shares of ``x`` in the bins ``[edges[k], edges[k+1])`` and ``[edges[-1], inf)``."""
    counts, _ = np.histogram(x, bins=[*edges, np.inf])
    labels = [f"{lo}-{hi}" for lo, hi in zip(edges[:-1], edges[1:])] + [f"{edges[-1]}+"]
    return pd.DataFrame({"bin": labels, f"{unit}_from": list(edges), "count": counts,
                         "share": counts / max(counts.sum(), 1)})


def _merge_small(labels: pd.Series, min_n: int) -> pd.Series:
    """Fold ordered categories (months, attempt numbers) with fewer than ``min_n`` rows into a neighbour."""
    counts = labels.value_counts().sort_index()
    groups = [[k] for k in counts.index]
    size = lambda grp: int(counts[grp].sum())  # noqa: E731
    while len(groups) > 1 and min(size(grp) for grp in groups) < min_n:
        i = min(range(len(groups)), key=lambda j: size(groups[j]))
        j = i + 1 if i + 1 < len(groups) else i - 1
        lo, hi = min(i, j), max(i, j)
        groups[lo:hi + 1] = [groups[lo] + groups[hi]]
    mapping = {k: (str(grp[0]) if len(grp) == 1 else f"{grp[0]}..{grp[-1]}") for grp in groups for k in grp}
    return labels.map(mapping)


#: attempt tables already built, per open dataset (the activity pass of the case mix is the slow part, and
#: the timing and callers analyses, and their runs at several levels, share it)
_TABLES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def attempt_table(data, *, arms: Sequence = PHONE_ARMS, sms_after_attempts: int | None = None, policy_start=None,
                  min_attempts: int = 20) -> pd.DataFrame:
    """One row per attempt up to a case's first answered one, with what the answer models need.

    Columns: the attempt's own (``case_id, attempted_at, answered, attempt_no, duration_s, agent_id,
    outcome, reception``), ``hour`` (0-23), ``weekday`` (``"Mon"`` ...), ``hour_cat`` (the hour as
    ``"09"``, or ``"other"`` for hours with fewer than ``min_attempts`` attempts), ``month_cat``
    (calendar month of the attempt, small months folded into a neighbour), ``attempt_cat``,
    ``trigger``, ``post_policy``, ``late_after`` (an attempt the missed-call SMS can change: after
    attempt ``sms_after_attempts`` of a case opened after the policy start) and the case mix at
    opening (:func:`~carecall_eval.outcomes.reach.answer_model.case_covariates`).  A copy is returned;
    the table is built once per open dataset and arguments.
    """
    table = _cached_attempt_table(data, arms, sms_after_attempts, policy_start, min_attempts)
    out = table.copy()
    out.attrs = dict(table.attrs)
    return out


def _cached_attempt_table(data, arms: Sequence = PHONE_ARMS, sms_after_attempts: int | None = None,
                          policy_start=None, min_attempts: int = 20) -> pd.DataFrame:
    """The attempt table as cached (no copy: never written into; :func:`shared_attempt_table` for readers)."""
    ds = open_data(data, "attempt_table")
    s, _ = sms_rule(ds, sms_after_attempts, None)
    policy = resolve_policy(ds, policy_start)
    key = (tuple(arms), int(s), None if policy is None else str(policy), int(min_attempts))
    try:
        cache = _TABLES.setdefault(ds, {})
    except TypeError:                       # an object that cannot be weakly referenced: no cache
        cache = {}
    if key not in cache:
        cache[key] = _attempt_table(ds, arms, int(s), policy, int(min_attempts))
    return cache[key]


def shared_attempt_table(data, *, arms: Sequence = PHONE_ARMS, sms_after_attempts: int | None = None,
                         policy_start=None, min_attempts: int = 20) -> pd.DataFrame:
    """:func:`attempt_table` as a shallow copy of the cached table, for readers that may add columns but never
    write into the existing ones (the timing and callers analyses): no copy of a million rows per call."""
    table = _cached_attempt_table(data, arms, sms_after_attempts, policy_start, min_attempts)
    out = table.copy(deep=False)
    out.attrs = dict(table.attrs)
    return out


def _attach_cases(att: pd.DataFrame, cases: pd.DataFrame) -> pd.DataFrame:
    """``att.merge(cases, on="case_id", how="inner", validate="many_to_one")`` by one lookup of the cases' index:
    the attempts of known cases in their order, the case's columns beside them."""
    from pandas.errors import MergeError

    index = pd.Index(cases["case_id"])
    if not index.is_unique:
        raise MergeError("Merge keys are not unique in right dataset; not a many-to-one merge")
    pos = index.get_indexer(att["case_id"])
    known = pos >= 0
    left = att[known].reset_index(drop=True) if not known.all() else att.reset_index(drop=True)
    right = cases.drop(columns="case_id").iloc[pos[known]].reset_index(drop=True)
    return pd.concat([left, right], axis=1)


def _attempt_table(ds, arms, s: int, policy, min_attempts: int) -> pd.DataFrame:
    cr = case_reach(ds, arms=arms, policy_start=policy)
    if cr.empty:
        raise NotAvailableError(f"no phone cases with attempts (arms={list(arms)!r}); nothing to model")
    _, att = phone_tables(ds, arms)
    cov = case_covariates(ds, cr)
    cases = cr[["case_id", "customer_id", "opened_on", "trigger", "post_policy"]].reset_index(drop=True).join(cov)
    a = _attach_cases(att, cases)
    a["hour"] = a["attempted_at"].dt.hour.astype(int)
    a["weekday"] = pd.Categorical.from_codes(a["attempted_at"].dt.weekday.to_numpy(), WEEKDAYS).astype(str)
    hour = a["hour"].to_numpy()
    per_hour = np.bincount(hour, minlength=24)
    label = np.array([f"{h:02d}" if per_hour[h] >= min_attempts else OTHER_HOURS for h in range(24)], dtype=object)
    a["hour_cat"] = label[hour]
    ym = a["attempted_at"].dt.year.to_numpy() * 12 + a["attempted_at"].dt.month.to_numpy() - 1
    codes, months = pd.factorize(ym)               # "YYYY-MM" formatted once per month, not per attempt
    labels = np.array([f"{m // 12:04d}-{m % 12 + 1:02d}" for m in months], dtype=object)
    a["month_cat"] = _merge_small(pd.Series(labels[codes], index=a.index), min_attempts)
    a["attempt_cat"] = _merge_small(a["attempt_no"].astype(int), min_attempts)
    a["trigger"] = a["trigger"].fillna("(none)").astype(str)
    post = a["post_policy"].astype("boolean").fillna(False).to_numpy(bool)
    a["late_after"] = ((a["attempt_no"] > s) & post).astype(float)
    a.attrs["covariates"] = list(cov.columns)
    a.attrs["sms_after_attempts"] = int(s)
    return a


def design_matrix(df: pd.DataFrame, categorical: Sequence[str], continuous: Sequence[str],
                  levels: dict | None = None) -> tuple[np.ndarray, list[str], dict]:
    """Dummy-coded design with a constant; each factor's reference is its most common level.

    Returns ``(X, names, levels)``; pass ``levels`` back to code other rows the same way.  Each factor is
    coded once (``pd.factorize``) and its dummies written in one scatter, not compared level by level.
    """
    coded = {c: pd.factorize(df[c], use_na_sentinel=True) for c in categorical}     # one hash pass per factor
    if levels is None:
        levels = {}
        for c in categorical:
            codes, uniques = coded[c]
            count = dict(zip(list(uniques), np.bincount(codes[codes >= 0], minlength=len(uniques)).tolist()))
            levels[c] = sorted(count, key=lambda v: (-count[v], str(v)))
    names = ["const"] + [f"{c}[{lv}]" for c in categorical for lv in levels[c][1:]] + list(continuous)
    n_rows = len(df)
    X = np.zeros((n_rows, len(names)))
    X[:, 0] = 1.0
    j = 1
    for c in categorical:
        codes, uniques = coded[c]
        position = {v: k for k, v in enumerate(uniques)}
        column = np.full(len(uniques) + 1, -1)                  # code -> column of X (-1: reference, missing)
        for k, lv in enumerate(levels[c][1:]):
            if lv in position:
                column[position[lv]] = j + k
        col = column[codes]                                     # code -1 (missing) reads the last entry: -1
        hit = np.flatnonzero(col >= 0)
        X[hit, col[hit]] = 1.0
        j += len(levels[c]) - 1
    for c in continuous:
        X[:, j] = df[c].to_numpy(float)
        j += 1
    return X, names, levels


@dataclass
class AttemptLogit:
    """Maximum-likelihood logit with case-clustered errors (statsmodels ``Logit(...).fit(cov_type="cluster")``'s
    CRV1 sandwich with its small-sample factor ``G / (G - 1) (n - 1) / (n - k)``)."""

    params: np.ndarray
    cov: np.ndarray
    names: list[str]
    converged: bool
    iterations: int
    cells: CellDesign                      # the design of the fit, rows sorted by cell

    def cov_params(self) -> np.ndarray:
        return self.cov

    @property
    def bse(self) -> np.ndarray:
        return np.sqrt(np.diag(self.cov))


def _logit_newton(cells: CellDesign, maxiter: int = 200, tol: float = 1e-8):
    """Newton-Raphson for the logit MLE (statsmodels' ``newton``: full steps until every coefficient moves less
    than ``tol``; a step that lowers the likelihood is halved), on the cells' products."""
    p = cells.p
    theta = np.zeros(p)
    eta, yeta = cells.eta(np.r_[theta, np.zeros(cells.J)])
    ll, t = cells.loglik(eta, yeta)
    converged, iterations = False, 0
    while iterations < maxiter:
        iterations += 1
        mu = cells.mean(eta, t)
        H = cells.hessian(mu * (1 - mu))[0][:p, :p]
        step = np.linalg.solve(H, cells.gradient(cells.y - mu)[:p])
        s = 1.0
        while True:
            trial = theta + s * step
            eta_t, yeta_t = cells.eta(np.r_[trial, np.zeros(cells.J)])
            ll_t, t_t = cells.loglik(eta_t, yeta_t)
            if ll_t >= ll - 1e-12 or s < 1e-4:
                break
            s /= 2
        theta, eta, ll, t = trial, eta_t, ll_t, t_t
        if np.max(np.abs(s * step)) < tol:
            converged = True
            break
    mu = cells.mean(eta, t)
    return theta, mu, cells.hessian(mu * (1 - mu))[0][:p, :p], converged, iterations


def fit_attempt_logit(y, X: np.ndarray, names: list[str], groups, who: str):
    """Logit of answering with case-clustered errors, on linearly independent columns.

    The fit runs over cells and profiles (:class:`~.pooling.CellDesign`: products of the dummies are
    cross-tabulations, of the case mix sums over cases) rather than row by row; the estimates and the
    cluster-robust covariance are statsmodels' (``Logit``, Newton, ``cov_type="cluster"``, CRV1 with its
    small-sample factor).  Returns ``(fit, keep)`` where ``keep`` indexes the columns of ``X`` used.
    """
    import scipy.sparse as sp

    y = np.asarray(y, float)
    n = len(y)
    no_groups = np.zeros(n, dtype=np.int64)
    cells = CellDesign(y, X, no_groups, 0)
    gram = cells.hessian(np.ones(n))[0]
    keep = independent_of_gram(gram, n, protect=1)
    if len(keep) < X.shape[1]:
        cells = CellDesign(y, np.ascontiguousarray(X[:, keep]), no_groups, 0)
    beta, mu, H, converged, iterations = _logit_newton(cells)
    # CRV1: the bread inv(X'WX), the meat the cases' sums of the scores x_i (y_i - p_i)
    r = np.empty(n)
    r[cells.rows] = cells.y - mu
    codes = pd.factorize(np.asarray(groups))[0]
    G = int(codes.max()) + 1
    sums = sp.csr_matrix((r, (codes, np.arange(n))), shape=(G, n)) @ (X if len(keep) == X.shape[1] else X[:, keep])
    bread = np.linalg.inv(H)
    k = len(keep)
    cov = bread @ (sums.T @ sums) @ bread.T * (G / (G - 1.0) * ((n - 1.0) / (n - k)))
    if not converged:
        warnings.warn(f"{who}: the attempt-level answer model did not converge; treat its figures with caution",
                      ConvergenceWarning, stacklevel=3)
    return AttemptLogit(beta, cov, [names[j] for j in keep], converged, iterations, cells), keep


class _Standardiser:
    """Mean predicted answer probability of every modelled attempt with some factors set to one level.

    Works on the fit's cells (rows sorted by cell): a factor's part of the linear predictor is one pass, the
    gradient ``X'w / n`` two sums (by cell and by profile).
    """

    def __init__(self, cells: CellDesign, kept: list[str], beta: np.ndarray) -> None:
        self.cells, self.kept, self.beta = cells, kept, beta
        self.eta = cells.eta(beta)[0]
        self._factor: dict[str, tuple[list[int], np.ndarray | None]] = {}   # factor -> its columns and their part of eta
        self._bases: dict[tuple[str, ...], np.ndarray] = {}

    def _part(self, factor: str) -> tuple[list[int], np.ndarray | None]:
        if factor not in self._factor:
            idx = [j for j, nm in enumerate(self.kept) if nm.startswith(factor + "[")]
            only = np.zeros(len(self.beta))
            only[idx] = self.beta[idx]
            self._factor[factor] = (idx, self.cells.eta(only)[0] if idx else None)
        return self._factor[factor]

    def _base(self, factors: tuple[str, ...]) -> np.ndarray:
        """The linear predictor without the parts of ``factors`` (kept for the slots that set the same ones)."""
        if factors not in self._bases:
            eta = self.eta.copy()
            for factor in factors:
                part = self._part(factor)[1]
                if part is not None:
                    eta -= part
            self._bases[factors] = eta
        return self._bases[factors]

    def __call__(self, set_cols: dict[str, str]) -> tuple[float, np.ndarray]:
        """``set_cols``: factor -> the column name of its level (a name not among the columns: the reference).

        Returns the mean probability and its gradient with respect to the coefficients.
        """
        cols = {}
        shift = 0.0
        for factor, target in set_cols.items():
            for j in self._part(factor)[0]:
                cols[j] = 1.0 if self.kept[j] == target else 0.0
            if target in self.kept:
                shift += self.beta[self.kept.index(target)]
        p = self._base(tuple(set_cols)) + shift
        np.negative(p, out=p)
        np.exp(p, out=p)
        p += 1.0
        np.reciprocal(p, out=p)                   # 1 / (1 + exp(-eta))
        w = p * (1 - p)
        grad = self.cells.gradient(w) / len(p)
        w_mean = w.mean()
        for j, v in cols.items():
            grad[j] = v * w_mean
        return float(p.mean()), grad


def _wald_p(fit, names_kept: list[str], prefix: str) -> float:
    idx = [j for j, nm in enumerate(names_kept) if nm.startswith(prefix + "[")]
    if not idx:
        return np.nan
    b = np.asarray(fit.params)[idx]
    V = np.asarray(fit.cov_params())[np.ix_(idx, idx)]
    stat = float(b @ np.linalg.pinv(V) @ b)
    return float(stats.chi2.sf(stat, len(idx)))


def _sms_timing(ds, a: pd.DataFrame, cr: pd.DataFrame, level: float, window_hours: float):
    """Minutes from the missed attempt to the SMS and hours from the SMS to the answered call."""
    sent = cr[cr["sms_sent"]][["case_id", "sms_at", "reached_at", "reached_after_sms"]]
    if sent.empty:
        return None
    # the attempts of the SMS cases only, matched by integer case codes
    mine = a["case_id"].isin(sent["case_id"]).to_numpy()
    codes = pd.factorize(np.concatenate([sent["case_id"].to_numpy(object), a.loc[mine, "case_id"].to_numpy(object)]))[0]
    att = pd.DataFrame({"case": codes[len(sent):], "missed_at": a.loc[mine, "attempted_at"].to_numpy()})
    s = sent.assign(case=codes[:len(sent)]).sort_values("sms_at")
    last = pd.merge_asof(s, att.sort_values("missed_at"), left_on="sms_at", right_on="missed_at", by="case",
                         direction="backward")
    delay = ((last["sms_at"] - last["missed_at"]).dt.total_seconds() / 60).dropna().to_numpy()
    after = sent[sent["reached_at"] > sent["sms_at"]]
    to_answer = ((after["reached_at"] - after["sms_at"]).dt.total_seconds() / 3600).to_numpy()
    k, n = int(sent["reached_after_sms"].sum()), len(sent)
    return {"delay_min": np.sort(delay), "to_answer_h": np.sort(to_answer), "within": (k, n),
            "window_hours": window_hours}


@one_blas_thread
def answer_timing(data, sample=None, /, *, level: float = 0.95, arms: Sequence = PHONE_ARMS,
                  min_attempts: int = 20, by_caller: bool = True, sms_after_attempts: int | None = None,
                  policy_start=None) -> Result:
    """Answer rate by hour of day and weekday for the same attempts, the best and worst slots, the SMS's timing.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        Tables ``call_cases``, ``call_attempts``, ``sms`` (and ``activity``, ``customers`` for the case mix).
    sample : None
        The timing analysis reads the call tables directly and takes no sample.
    level : float
        Confidence level of every interval.
    arms : sequence
        Arms whose phone cases count (default ordinary cases and a study's call arm).
    min_attempts : int
        Hours with fewer attempts are not shown (their attempts are pooled as "other hours" in the
        model); months, attempt numbers and callers with fewer are folded into a neighbour.
    by_caller : bool
        Adjust for the caller of each attempt (``agent_id``; unrecorded callers form one group), so
        that an hour is not credited with the callers who happen to work it.
    sms_after_attempts, policy_start
        The SMS rule (default: operator.toml); attempts the SMS can change get their own term.

    Returns
    -------
    Result
        Rows (``metric`` / ``group``):

        * ``timing.answer_rate`` / ``"Tue 18h"`` (columns ``weekday``, ``hour``): standardised answer
          rate of every hour x weekday slot (delta-method interval, case-clustered; ``se`` on the
          probability scale);
        * ``timing.best_slot`` / ``best``, ``timing.worst_slot`` / ``worst`` and
          ``timing.best_vs_worst`` / ``difference``;
        * ``timing.hour_rate`` / ``"18h"`` and ``timing.weekday_rate`` / ``"Tue"``: standardised
          over the other factor as observed;
        * ``timing.hour_log_odds`` / ``"18h"`` and ``timing.weekday_log_odds`` / ``"Tue"``: model
          coefficients against the reference (most common) level, ``se`` on the log-odds scale;
        * ``timing.hour_test`` and ``timing.weekday_test`` / ``all``: p-value of the joint Wald test
          that the hour (weekday) makes no difference;
        * ``timing.sms_delay_median_min``, ``timing.sms_delay_p90_min`` / ``sms_cases``: minutes from
          the missed attempt to the SMS; ``timing.sms_to_answer_median_h``, ``timing.sms_to_answer_p90_h``
          / ``reached_after_sms``: hours from the SMS to the answered call (exact order-statistic
          intervals); ``timing.reached_within_window_after_sms`` / ``sms_cases``: share of SMS cases
          answered within the operator's SMS window (Wilson).

        Plot data ``"heatmap"`` (``weekday, hour, rate, se, ci_low, ci_high, attempts, raw_rate``:
        the standardised rate of every slot beside the attempts made and their raw answer rate),
        ``"sms_delay"`` and ``"sms_to_answer"`` (counts and shares by bin of minutes and of hours).

    Notes
    -----
    The standardised rate of a slot is the mean over every modelled attempt of its predicted chance
    of being answered with the hour and weekday set to the slot's: what the attempts of the period
    would have achieved had they all been made then.  The model is additive on the log-odds scale
    (hour + weekday), so a slot's rate borrows strength from every attempt at that hour and on that
    day.  The best slot is the highest of many estimates and tends to be a little too high (the
    winner's curse); its interval is the slot's own.  Customers choose neither the slot nor their
    answer, but operators may call some customers at their preferred times: a slot favoured for
    customers who answer anyway looks better than it is.
    """
    ds = open_data(data, "answer_timing")
    check_no_sample(sample, "answer_timing")
    level = check_level(level)
    min_attempts = check_int("min_attempts", min_attempts, 1)
    s, window_hours = sms_rule(ds, sms_after_attempts, None)
    a = shared_attempt_table(ds, arms=arms, sms_after_attempts=s, policy_start=policy_start,
                             min_attempts=min_attempts)
    covariates = a.attrs["covariates"]
    categorical = ["attempt_cat", "hour_cat", "weekday", "month_cat", "trigger"]
    caller_note = None
    if by_caller and "agent_id" in a.columns and a["agent_id"].nunique() > 1:
        unrecorded = a["agent_id"].isna()
        if unrecorded.any() and a.loc[unrecorded, "answered"].nunique() < 2:
            # e.g. a caller recorded for every answered call but not for some unanswered ones: an
            # "unrecorded" level would predict the answer perfectly
            caller_note = ("not adjusted for callers: attempts without a recorded caller were all "
                           + ("answered" if a.loc[unrecorded, "answered"].all() else "unanswered"))
        else:
            # who is on duty differs by hour and weekday: slots are compared for the same callers too
            a["caller_cat"] = _merge_small(a["agent_id"].fillna("(unrecorded)").astype(str), min_attempts)
            categorical.append("caller_cat")
    elif by_caller:
        caller_note = "not adjusted for callers: fewer than two are recorded"
    X, names, levels = design_matrix(a, categorical, ["late_after"] + covariates)
    y = a["answered"].to_numpy(float)
    groups = pd.factorize(a["case_id"])[0]
    fit, keep = fit_attempt_logit(y, X, names, groups, "answer_timing")
    beta, V = np.asarray(fit.params), np.asarray(fit.cov_params())
    kept = [names[j] for j in keep]
    standardise = _Standardiser(fit.cells, kept, beta)
    z = z_quantile(level)
    method = ("standardised prediction of the attempt-level logit (attempt, hour, weekday, month, SMS, case mix"
              + (", caller" if "caller_cat" in categorical else "") + "), delta method, case-clustered")

    hours = sorted(h for h in levels["hour_cat"] if h != OTHER_HOURS)
    counts = {f: a[f].value_counts() for f in ("hour_cat", "weekday")}     # attempts per level
    made = a.groupby(["weekday", "hour_cat"]).agg(n=("answered", "size"), answered=("answered", "sum"))
    rows, grid, grads = [], [], {}
    for d in WEEKDAYS:
        for h in hours:
            rate, g = standardise({"hour_cat": f"hour_cat[{h}]", "weekday": f"weekday[{d}]"})
            se = float(np.sqrt(g @ V @ g))
            n = int(made["n"].get((d, h), 0))
            grads[(d, h)] = (rate, g)
            grid.append({"weekday": d, "hour": int(h), "rate": rate, "se": se, "ci_low": max(0.0, rate - z * se),
                         "ci_high": min(1.0, rate + z * se), "attempts": n,
                         "raw_rate": float(made["answered"].get((d, h), np.nan) / n) if n else np.nan})
    heat = pd.DataFrame(grid)
    for r in heat.itertuples(index=False):
        rows.append({"metric": "timing.answer_rate", "group": f"{r.weekday} {r.hour:02d}h", "estimate": r.rate,
                     "se": r.se, "ci_low": r.ci_low, "ci_high": r.ci_high, "n": r.attempts, "method": method,
                     "weekday": r.weekday, "hour": r.hour})
    best, worst = heat.loc[heat["rate"].idxmax()], heat.loc[heat["rate"].idxmin()]
    for metric, group, r in (("timing.best_slot", "best", best), ("timing.worst_slot", "worst", worst)):
        rows.append({"metric": metric, "group": group, "estimate": r["rate"], "se": r["se"], "ci_low": r["ci_low"],
                     "ci_high": r["ci_high"], "n": int(r["attempts"]), "method": method + "; the highest (lowest) "
                     "of the slots, whose own interval this is", "weekday": r["weekday"], "hour": int(r["hour"])})
    def slot(r):
        return r["weekday"], f"{int(r['hour']):02d}"

    gd = grads[slot(best)][1] - grads[slot(worst)][1]
    dif, dse = float(best["rate"] - worst["rate"]), float(np.sqrt(gd @ V @ gd))
    rows.append({"metric": "timing.best_vs_worst", "group": "difference", "estimate": dif, "se": dse,
                 "ci_low": dif - z * dse, "ci_high": dif + z * dse, "n": len(a),
                 "method": "difference of the two standardised rates, delta method, case-clustered"})
    # marginal rates: one factor set, the other as observed
    for factor, values, label, metric in (("hour_cat", hours, lambda v: f"{int(v):02d}h", "timing.hour_rate"),
                                          ("weekday", list(WEEKDAYS), str, "timing.weekday_rate")):
        for v in values:
            rate, g = standardise({factor: f"{factor}[{v}]"})
            se = float(np.sqrt(g @ V @ g))
            rows.append({"metric": metric, "group": label(v), "estimate": rate, "se": se,
                         "ci_low": max(0.0, rate - z * se), "ci_high": min(1.0, rate + z * se),
                         "n": int(counts[factor].get(v, 0)), "method": method})
    # coefficients against the reference level
    for factor, values, label, metric in (("hour_cat", hours, lambda v: f"{int(v):02d}h", "timing.hour_log_odds"),
                                          ("weekday", list(WEEKDAYS), str, "timing.weekday_log_odds")):
        ref = levels[factor][0]
        for v in values:
            base = {"metric": metric, "group": label(v), "n": int(counts[factor].get(v, 0)),
                    "method": f"log-odds of answering against {label(ref)} (the most common), case-clustered Wald "
                              "interval (se on the log-odds scale)", "reference": label(ref)}
            nm = f"{factor}[{v}]"
            if v == ref:
                rows.append({**base, "estimate": 0.0, "method": "reference level"})
            elif nm in kept:
                j = kept.index(nm)
                b, sb = float(beta[j]), float(np.sqrt(V[j, j]))
                rows.append({**base, "estimate": b, "se": sb, "ci_low": b - z * sb, "ci_high": b + z * sb})
            elif counts[factor].get(v, 0) > 0:
                rows.append(not_available(base, "the level cannot be separated from the others"))
    for factor, metric, what in (("hour_cat", "timing.hour_test", "hour of day"),
                                 ("weekday", "timing.weekday_test", "weekday")):
        rows.append({"metric": metric, "group": "all", "estimate": _wald_p(fit, kept, factor), "n": len(a),
                     "method": f"p-value of the joint case-clustered Wald test that the {what} makes no difference"})

    # the SMS's timing
    cr = case_reach(ds, arms=arms, policy_start=policy_start, sms_window_hours=window_hours)
    sm_t = _sms_timing(ds, a, cr, level, window_hours)
    plot = {"heatmap": heat, "sms_delay": pd.DataFrame(), "sms_to_answer": pd.DataFrame()}
    qm = "{q:.0%} quantile, exact order-statistic interval"
    specs = (("timing.sms_delay_median_min", "sms_cases", "delay_min", 0.5),
             ("timing.sms_delay_p90_min", "sms_cases", "delay_min", 0.9),
             ("timing.sms_to_answer_median_h", "reached_after_sms", "to_answer_h", 0.5),
             ("timing.sms_to_answer_p90_h", "reached_after_sms", "to_answer_h", 0.9))
    for metric, group, key, q in specs:
        base = {"metric": metric, "group": group, "method": qm.format(q=q)}
        x = None if sm_t is None else sm_t[key]
        if x is None or len(x) == 0:
            rows.append(not_available({**base, "n": 0}, "no missed-call SMS was sent" if sm_t is None
                                      else "no customer answered after an SMS"))
            continue
        est, lo, hi = quantile_interval(x, q, level)
        rows.append({**base, "estimate": est, "ci_low": lo, "ci_high": hi, "n": len(x)})
    wbase = {"metric": "timing.reached_within_window_after_sms", "group": "sms_cases",
             "method": f"share of SMS cases answered within {window_hours:g} hours of the SMS, Wilson interval"}
    if sm_t is None:
        rows.append(not_available({**wbase, "n": 0}, "no missed-call SMS was sent"))
    else:
        k, n = sm_t["within"]
        lo, hi = wilson_interval(k, n, level)
        rows.append({**wbase, "estimate": k / n, "ci_low": lo, "ci_high": hi, "n": n})
        plot["sms_delay"] = _histogram(sm_t["delay_min"], SMS_DELAY_BINS, "minutes")
        plot["sms_to_answer"] = _histogram(sm_t["to_answer_h"], SMS_ANSWER_BINS, "hours")
    summary = tidy(rows)
    settings = {"level": level, "arms": list(arms), "min_attempts": min_attempts,
                "by_caller": "caller_cat" in categorical, "by_caller_note": caller_note,
                "sms_after_attempts": int(s),
                "sms_window_hours": float(window_hours), "n_attempts": int(len(a)),
                "n_cases": int(a["case_id"].nunique()), "hours": [int(h) for h in hours],
                "reference": {"hour": levels["hour_cat"][0], "weekday": levels["weekday"][0]},
                "model": "logit: answered ~ attempt + hour + weekday + month + trigger + late attempt x after SMS "
                         "policy + case mix at opening" + (" + caller" if "caller_cat" in categorical else "")
                         + "; errors clustered by case"}
    return Result("timing", summary, narrative.timing_text(summary, settings), settings, plot,
                  {"model": fit, "terms": kept, "attempts": a, "levels": levels, "categorical": categorical,
                   "continuous": ["late_after"] + covariates})
