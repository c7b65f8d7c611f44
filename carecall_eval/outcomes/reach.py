"""Reach: who is reached, answer rates by attempt, and what the missed-call SMS changed.

Three views of the SMS policy are computed from the same case table, and shown
side by side because they answer the question with very different honesty:

``reach.sms_effect`` (primary)
    An attempt-level difference-in-differences.  The SMS is sent only after
    ``sms_after_attempts`` unanswered attempts, so it can only change later
    attempts; the early attempts of the same periods carry the secular trend,
    the season and the drift in who is being called, but not the policy.  A
    discrete-time (attempt-by-attempt) logistic model of answering, with
    attempt-number effects, calendar-period fixed effects, case-mix covariates
    and one *late attempt x after policy* term, is turned into the change in
    case-level reach for the cases opened after the policy by predicting each
    such case's reach with and without that term over the attempt sequence the
    protocol gives it.
``reach.sms_difference``
    The raw after-minus-before difference in case-level reach.
``reach.its_level_change``
    An interrupted time series on weekly case-level reach (segmented regression
    with level and slope change, season terms, Newey-West errors).

The last two also move with the case mix and the secular trend in answering;
``benchmarks/reach_bias.py`` measures on simulated data which of the three
recovers the simulator's true effect.
"""
from __future__ import annotations

import datetime as _dt
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..results import Result, tidy

__all__ = ["wilson_interval", "case_reach", "answer_rates", "sms_effect", "PHONE_ARMS"]

#: Arms whose phone cases count for reach by default: ordinary cases (arm null)
#: and the call arm of a randomized study.
PHONE_ARMS: tuple = (None, "call")

#: Pre-index windows (inclusive day offsets from the case's opening) of the
#: case-mix covariates of the answer model.
_PRE_WINDOWS = {"pre28": (-28, -1), "pre84": (-84, -1)}
#: Bands of the hour of day of an attempt (left-closed).
_HOUR_BANDS = ([0, 12, 17, 20, 24], ["00-11", "12-16", "17-19", "20-23"])
_WEEKS_PER_YEAR = 365.25 / 7


# -----------------------------------------------------------------------------
# small validated helpers
# -----------------------------------------------------------------------------

def _check_level(level: float) -> float:
    if not isinstance(level, (int, float)) or isinstance(level, bool) or not 0 < float(level) < 1:
        raise ValueError(f"level must be a number strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


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

    level = _check_level(level)
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


def _resolve_policy(ds, policy_start) -> pd.Timestamp | None:
    if policy_start is None:
        cfg = getattr(ds, "config", None)
        policy_start = getattr(cfg, "sms_policy_start", None) if cfg is not None else None
    if policy_start is None:
        return None
    if isinstance(policy_start, (str, _dt.date, pd.Timestamp, np.datetime64)):
        return pd.Timestamp(policy_start).normalize()
    raise ValueError(f"policy_start must be a date (or None to read operator.toml), got {policy_start!r}")


def _arm_mask(arm: pd.Series, arms: Iterable) -> pd.Series:
    arms = tuple(arms)
    named = [a for a in arms if a is not None]
    mask = arm.isin(named)
    if any(a is None for a in arms):
        mask |= arm.isna()
    return mask


def _quarter(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s)
    return s.dt.year.astype(str) + "Q" + s.dt.quarter.astype(str)


def _week_start(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s).dt.normalize()
    return s - pd.to_timedelta(s.dt.weekday, unit="D")


def _hour_band(hour: pd.Series) -> pd.Series:
    edges, labels = _HOUR_BANDS
    return pd.cut(hour, edges, right=False, labels=labels).astype(str)


# -----------------------------------------------------------------------------
# the case and attempt tables
# -----------------------------------------------------------------------------

def _phone_tables(ds, arms) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Phone cases (of the chosen arms) with at least one attempt, and their attempts.

    Attempts are numbered 1, 2, ... by time within the case; attempts after the
    first answered one are dropped (a case is reached once).
    """
    cases = ds.table("call_cases")
    att = ds.table("call_attempts")
    for name, df, cols in (("call_cases", cases, ("case_id", "customer_id", "opened_on", "channel", "arm")),
                           ("call_attempts", att, ("case_id", "attempted_at", "answered"))):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"table {name} lacks columns {missing}; see carecall_eval.contract for the contract")
    if att["answered"].isna().any():
        bad = att.loc[att["answered"].isna(), "case_id"].head(5).tolist()
        raise ValueError(f"call_attempts.answered has {int(att['answered'].isna().sum())} missing values "
                         f"(cases {bad} ...); every attempt must be recorded as answered or not")
    if att["attempted_at"].isna().any():
        raise ValueError("call_attempts.attempted_at has missing values; every attempt needs its time")
    sel = cases[(cases["channel"] == "phone") & _arm_mask(cases["arm"], arms)].copy()
    att = att[att["case_id"].isin(sel["case_id"])].copy()
    att["answered"] = att["answered"].astype(bool)
    att = att.sort_values(["case_id", "attempted_at"], kind="mergesort").reset_index(drop=True)
    att["attempt_no"] = att.groupby("case_id", sort=False).cumcount() + 1
    first_ans = att[att["answered"]].groupby("case_id")["attempt_no"].min()
    stop = att["case_id"].map(first_ans)
    att = att[stop.isna() | (att["attempt_no"] <= stop)].reset_index(drop=True)
    sel = sel[sel["case_id"].isin(att["case_id"])].reset_index(drop=True)
    return sel, att


def case_reach(ds, *, arms: Sequence = PHONE_ARMS, policy_start=None, sms_window_hours: float = 48,
               sms_kind: str = "missed_call_followup") -> pd.DataFrame:
    """One row per phone case: was the customer reached, after how many attempts, after an SMS?

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
        Loaded data (tables ``call_cases``, ``call_attempts``, ``sms``).
    arms : sequence
        Arms whose phone cases count; ``None`` stands for ordinary (non-study)
        cases.  Default ``(None, "call")``.  Control-arm and letter cases have no
        attempts and are never included.
    policy_start : date, optional
        Start of the missed-call SMS policy; default ``ds.config.sms_policy_start``.
    sms_window_hours : float
        A case counts as ``reached_after_sms`` when it was answered within this
        many hours after its first follow-up SMS.
    sms_kind : str
        The ``sms.kind`` of the missed-call follow-up (other kinds are ignored).

    Returns
    -------
    pandas.DataFrame
        Columns ``case_id, customer_id, opened_on, trigger, arm, quarter``
        (of opening, e.g. ``"2025Q1"``), ``week`` (Monday of the opening
        week), ``post_policy`` (nullable boolean, NA without a policy date),
        ``n_attempts`` (up to the answered one), ``reached``,
        ``attempts_to_reach`` (nullable integer), ``first_attempt_at``,
        ``reached_at``, ``sms_at``, ``sms_sent``, ``reached_after_sms``.

    Notes
    -----
    A case belongs to the policy period when it was *opened* on or after the
    policy start.  Only phone cases with at least one attempt are rows.
    """
    if not sms_window_hours > 0:
        raise ValueError(f"sms_window_hours must be > 0, got {sms_window_hours!r}")
    policy = _resolve_policy(ds, policy_start)
    sel, att = _phone_tables(ds, arms)
    g = att.groupby("case_id", sort=False)
    per = pd.DataFrame({
        "n_attempts": g.size(),
        "first_attempt_at": g["attempted_at"].min(),
    })
    ans = att[att["answered"]].set_index("case_id")
    per["reached_at"] = ans["attempted_at"].reindex(per.index)
    per["attempts_to_reach"] = ans["attempt_no"].reindex(per.index).astype("Int64")
    out = sel[["case_id", "customer_id", "opened_on"]
              + [c for c in ("trigger", "arm") if c in sel.columns]].copy()
    out["opened_on"] = pd.to_datetime(out["opened_on"]).astype("datetime64[ns]")
    out["quarter"] = _quarter(out["opened_on"])
    out["week"] = _week_start(out["opened_on"])
    if policy is None:
        out["post_policy"] = pd.array([pd.NA] * len(out), dtype="boolean")
    else:
        out["post_policy"] = pd.array(out["opened_on"] >= policy, dtype="boolean")
    out = out.join(per, on="case_id")
    out["reached"] = out["reached_at"].notna()
    sms = ds.table("sms") if (not hasattr(ds, "has") or ds.has("sms")) else \
        pd.DataFrame(columns=["case_id", "sent_at", "kind"])
    sms = sms[sms["kind"] == sms_kind]
    first_sms = sms.groupby("case_id")["sent_at"].min()
    out["sms_at"] = pd.to_datetime(out["case_id"].map(first_sms)).astype("datetime64[ns]")
    out["sms_sent"] = out["sms_at"].notna()
    lag = out["reached_at"] - out["sms_at"]
    out["reached_after_sms"] = (lag > pd.Timedelta(0)) & (lag <= pd.Timedelta(hours=sms_window_hours))
    cols = ["case_id", "customer_id", "opened_on", "trigger", "arm", "quarter", "week", "post_policy",
            "n_attempts", "reached", "attempts_to_reach", "first_attempt_at", "reached_at", "sms_at",
            "sms_sent", "reached_after_sms"]
    return out[[c for c in cols if c in out.columns]].reset_index(drop=True)


# -----------------------------------------------------------------------------
# answer rates by attempt number
# -----------------------------------------------------------------------------

def _answer_table(att: pd.DataFrame, post: pd.Series | None, level: float) -> pd.DataFrame:
    parts = [att.assign(period="all")]
    if post is not None:
        p = att["case_id"].map(post).astype(bool)
        parts += [att[~p].assign(period="before_sms"), att[p].assign(period="after_sms")]
    a = pd.concat(parts, ignore_index=True)
    t = a.groupby(["period", "attempt_no"], sort=False)["answered"].agg(n="size", answered="sum").reset_index()
    t["answered"] = t["answered"].astype(int)
    t["rate"] = t["answered"] / t["n"]
    t["ci_low"], t["ci_high"] = wilson_interval(t["answered"].to_numpy(), t["n"].to_numpy(), level)
    order = {"all": 0, "before_sms": 1, "after_sms": 2}
    t = t.sort_values(["period", "attempt_no"], key=lambda s: s.map(order) if s.name == "period" else s)
    return t.rename(columns={"attempt_no": "attempt"}).reset_index(drop=True)


def _answer_rows(tab: pd.DataFrame) -> list[dict]:
    rows = []
    for r in tab.itertuples(index=False):
        group = f"attempt_{r.attempt}" + ("" if r.period == "all" else f".{r.period}")
        rows.append({"metric": "attempt.answer_rate", "group": group, "estimate": r.rate, "ci_low": r.ci_low,
                     "ci_high": r.ci_high, "n": r.n, "method": "share answered, Wilson interval",
                     "attempt": int(r.attempt), "period": r.period})
    return rows


def answer_rates(ds, *, arms: Sequence = PHONE_ARMS, policy_start=None, level: float = 0.95) -> Result:
    """Answer rate by attempt number (attempt 1, 2, ... of a case), before and after the SMS policy.

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
    arms : sequence
        As in :func:`case_reach`.
    policy_start : date, optional
        Default ``ds.config.sms_policy_start``; without one, only overall rates.
    level : float
        Confidence level of the Wilson intervals.

    Returns
    -------
    Result
        Rows ``attempt.answer_rate`` with ``group`` ``"attempt_k"`` (all cases)
        and ``"attempt_k.before_sms"`` / ``"attempt_k.after_sms"`` (by the
        case's opening date), extra columns ``attempt`` and ``period``; plot
        data ``"answer_by_attempt"``.

    Notes
    -----
    The denominator of attempt ``k`` is the attempts made, i.e. the cases still
    unanswered after ``k - 1`` attempts; these are increasingly the customers
    who answer least, so the rates fall with ``k`` even without any fatigue.
    """
    level = _check_level(level)
    policy = _resolve_policy(ds, policy_start)
    cr = case_reach(ds, arms=arms, policy_start=policy)
    _, att = _phone_tables(ds, arms)
    post = cr.set_index("case_id")["post_policy"] if policy is not None else None
    if post is not None and (post.all() or not post.any()):
        post = None
    tab = _answer_table(att, post, level)
    rows = _answer_rows(tab)
    overall = tab[tab["period"] == "all"]
    text = ("Answer rate by attempt: " + ", ".join(f"attempt {int(r.attempt)} {r.rate:.0%} (n={int(r.n):,})"
                                                  for r in overall.itertuples()) + ".")
    return Result(name="answer_rates", summary=tidy(rows), text=text,
                  settings={"arms": [a for a in arms], "level": level,
                          "policy_start": None if policy is None else str(policy.date())},
                  plot_data={"answer_by_attempt": tab})


# -----------------------------------------------------------------------------
# case-mix covariates and the attempt-level design
# -----------------------------------------------------------------------------

def _case_covariates(ds, cases: pd.DataFrame) -> pd.DataFrame:
    """Case-mix covariates at the case's opening: pre-window spending, product mix, age, trigger."""
    from ..cohorts.windows import window_aggregates

    keys = pd.DataFrame({"row_id": np.arange(len(cases)), "customer_id": cases["customer_id"].to_numpy(),
                         "index_date": cases["opened_on"].to_numpy()})
    tot = window_aggregates(ds, keys, _PRE_WINDOWS, share_window=_PRE_WINDOWS["pre84"])
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
    by = cases[["customer_id"]].merge(cust, on="customer_id", how="left")["birth_year"].astype(float)
    age = pd.to_datetime(cases["opened_on"]).dt.year.to_numpy() - by.to_numpy()
    if np.isnan(age).any():
        warnings.warn(f"{int(np.isnan(age).sum())} cases have no birth_year; their age is set to the median "
                      "and flagged with age_missing", stacklevel=3)
        cov["age_missing"] = np.isnan(age).astype(float)
        age = np.where(np.isnan(age), np.nanmedian(age), age)
    cov["age_10y"] = (age - 40) / 10
    return cov


@dataclass
class _Design:
    """Column layout of the answer model, fixed on the fitting data."""

    categorical: dict          # column -> list of levels (first is the reference)
    continuous: list
    treat: str = "late_after"

    @classmethod
    def from_frame(cls, df: pd.DataFrame, categorical: list[str], continuous: list[str]) -> "_Design":
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

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        cols = [np.ones(len(df)), df[self.treat].to_numpy(float)]
        for c, lv in self.categorical.items():
            v = df[c].to_numpy()
            cols += [(v == x).astype(float) for x in lv[1:]]
        cols += [df[c].to_numpy(float) for c in self.continuous]
        return np.column_stack(cols)


def _independent_columns(X: np.ndarray, protect: int = 2) -> np.ndarray:
    """Indices of a maximal set of linearly independent columns, keeping the first ``protect``."""
    Xs = X / np.maximum(np.sqrt((X ** 2).mean(axis=0)), 1e-12)
    G = Xs.T @ Xs / len(Xs)                      # scaled Gram matrix: p x p, cheap for any number of rows
    keep: list[int] = []
    for j in range(X.shape[1]):
        trial = keep + [j]
        if np.linalg.eigvalsh(G[np.ix_(trial, trial)])[0] > 1e-10:
            keep.append(j)
        elif j < protect:
            raise ValueError("the late-attempt x after-policy term cannot be separated from the other terms "
                             "(are there late attempts both before and after the policy?)")
    return np.array(keep)


def _expit(x):
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class _Predictor:
    """Everything needed to predict post-policy cases' reach with and without the policy term."""

    X_with: np.ndarray        # (n_rows, p): one row per (case, attempt, hour band)
    X_without: np.ndarray
    weight: np.ndarray        # probability of the row's hour band (1 for observed attempts)
    cell: np.ndarray          # flat index case * K + (attempt - 1) of the row
    q: np.ndarray             # (n_cases, K): probability the attempt is made given the previous unanswered
    n_cases: int
    K: int

    def prob(self, beta: np.ndarray, X: np.ndarray) -> np.ndarray:
        """(n_cases, K) chance of answering attempt k if it is made and all before it went unanswered."""
        p_rows = self.weight * _expit(X @ beta)
        return np.bincount(self.cell, weights=p_rows, minlength=self.n_cases * self.K).reshape(self.n_cases, self.K)

    def reach(self, beta: np.ndarray, X: np.ndarray) -> np.ndarray:
        p = self.prob(beta, X)
        alive = np.ones(self.n_cases)            # P(attempt k is made and all before unanswered)
        total = np.zeros(self.n_cases)
        for k in range(self.K):
            alive = alive * self.q[:, k]
            total += alive * p[:, k]
            alive = alive * (1 - p[:, k])
        return total

    def effects(self, beta: np.ndarray, case_weight: np.ndarray | None = None) -> tuple[float, float, float]:
        rw, ro = self.reach(beta, self.X_with), self.reach(beta, self.X_without)
        w = np.ones(self.n_cases) if case_weight is None else case_weight
        mw, mo = float(np.average(rw, weights=w)), float(np.average(ro, weights=w))
        return mw - mo, mw, mo


def _attempt_frame(cr: pd.DataFrame, att: pd.DataFrame, cov: pd.DataFrame, s: int, period: str,
                   min_period_cases: int = 30) -> pd.DataFrame:
    """Attempt-level modelling frame: one row per attempt up to the first answered one."""
    c = cr.reset_index(drop=True).join(cov)
    c["period_fe"] = (_quarter(c["opened_on"]) if period == "quarter"
                      else c["opened_on"].dt.strftime("%Y-%m")) + np.where(c["post_policy"].astype(bool),
                                                                           "|after", "|before")
    c["trigger"] = c["trigger"].fillna("(none)").astype(str) if "trigger" in c else "(none)"
    a = att[["case_id", "attempted_at", "answered", "attempt_no"]].merge(c, on="case_id", how="inner")
    a["weekday"] = a["attempted_at"].dt.weekday.astype(str)
    a["hour_band"] = _hour_band(a["attempted_at"].dt.hour)
    a["attempt"] = a["attempt_no"].astype(str)
    a["late_after"] = ((a["attempt_no"] > s) & a["post_policy"].astype(bool)).astype(float)
    a["period_fe"] = _merge_small_periods(a, min_cases=min_period_cases)
    return a


def _merge_small_periods(a: pd.DataFrame, min_cases: int) -> pd.Series:
    """Fold calendar periods with fewer than ``min_cases`` cases into their neighbour on the same side of the
    policy date (a period with a handful of cases would otherwise have its own, unidentified, intercept)."""
    per = a.drop_duplicates("case_id").groupby("period_fe").size()
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
    return a["period_fe"].map(mapping)


def _protocol(att: pd.DataFrame, cr: pd.DataFrame, data_end: pd.Timestamp, K: int):
    """Typical day offset of attempt k from attempt 1, and the chance attempt k is made after k-1 unanswered."""
    first = att[att["attempt_no"] == 1].set_index("case_id")["attempted_at"].dt.normalize()
    a = att.assign(day=(att["attempted_at"].dt.normalize() - att["case_id"].map(first)).dt.days)
    offset = a.groupby("attempt_no")["day"].median().reindex(range(1, K + 1)).ffill().to_numpy()
    cont = np.ones(K)
    n_by = att.groupby("case_id")["attempt_no"].max()
    reached = cr.set_index("case_id")["reached"]
    for k in range(2, K + 1):
        # cases unanswered after k-1 attempts whose attempt k would still fall inside the data
        at_risk = n_by[(n_by >= k - 1) & ~((n_by == k - 1) & reached.reindex(n_by.index))].index
        due = first.reindex(at_risk) + pd.to_timedelta(offset[k - 1], unit="D") <= data_end
        at_risk = at_risk[due.to_numpy()]
        if len(at_risk):
            cont[k - 1] = float((n_by.reindex(at_risk) >= k).mean())
    return offset, cont


def _build_predictor(a: pd.DataFrame, cr_post: pd.DataFrame, design: _Design, cols: np.ndarray,
                     offset: np.ndarray, cont: np.ndarray, data_end: pd.Timestamp, s: int) -> _Predictor:
    """Rows for every (post-policy case, attempt 1..K): observed attempts as they were made, the others at the
    protocol's typical day with the hour band marginalised over its observed distribution."""
    K = len(offset)
    cases = cr_post.reset_index(drop=True)
    pos = pd.Series(np.arange(len(cases)), index=cases["case_id"])
    obs = a[a["case_id"].isin(pos.index)].copy()
    obs["i"] = obs["case_id"].map(pos).to_numpy()
    obs["w"] = 1.0
    # hour-band distribution per attempt number, from all attempts
    band = a.groupby(["attempt_no", "hour_band"]).size()
    band = band / band.groupby(level=0).transform("sum")
    # case-level columns to copy onto hypothetical attempts
    case_cols = [c for c in a.columns if c not in
                 ("attempted_at", "answered", "attempt_no", "weekday", "hour_band", "attempt", "late_after")]
    case_level = a.drop_duplicates("case_id").set_index("case_id")[[c for c in case_cols if c != "case_id"]]
    first_day = cases["first_attempt_at"].dt.normalize().to_numpy()
    n_obs = cases["n_attempts"].to_numpy()
    reached = cases["reached"].to_numpy(bool)
    q = np.zeros((len(cases), K))
    hyp = []
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
        base = case_level.loc[cases["case_id"].to_numpy()[idx]].reset_index()
        base["i"] = idx
        base["attempt_no"] = k
        base["weekday"] = pd.DatetimeIndex(date_k[idx]).weekday.astype(str)
        for hb, w in kb.items():
            hyp.append(base.assign(hour_band=hb, w=float(w)))
    rows = pd.concat([obs] + hyp, ignore_index=True)
    rows["attempt"] = rows["attempt_no"].astype(int).astype(str)
    rows["late_after"] = (rows["attempt_no"] > s).astype(float)
    X_with = design.matrix(rows)[:, cols]
    X_without = design.matrix(rows.assign(late_after=0.0))[:, cols]
    cell = rows["i"].to_numpy(int) * K + rows["attempt_no"].to_numpy(int) - 1
    return _Predictor(X_with, X_without, rows["w"].to_numpy(float), cell, q, len(cases), K)


def _fit_logit(y, X, groups, names):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PerfectSeparationWarning)
        # a C-contiguous exog keeps statsmodels' Hessian fast (a DataFrame's Fortran-ordered values are ~20x slower)
        model = sm.Logit(np.asarray(y, float), np.ascontiguousarray(X, dtype=float))
        model.data.xnames = list(names)
        model.data.ynames = "answered"
        fit = model.fit(disp=0, maxiter=200, cov_type="cluster", cov_kwds={"groups": groups})
    if not fit.mle_retvals.get("converged", True):
        warnings.warn("the attempt-level answer model did not converge; treat reach.sms_effect with caution",
                      stacklevel=3)
    return fit


def _bootstrap(a: pd.DataFrame, X: np.ndarray, y: np.ndarray, pred: _Predictor, post_ids: np.ndarray,
               beta0: np.ndarray, n_boot: int, seed, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Cluster (case) bootstrap of the effect: cases resampled with replacement, model refitted."""
    import statsmodels.api as sm

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
                warnings.simplefilter("ignore")
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
        warnings.warn(f"{n_boot - len(good)} of {n_boot} bootstrap refits failed", stacklevel=3)
    alpha = 1 - level
    return np.quantile(good, [alpha / 2, 1 - alpha / 2]), good


def _delta_se(f, beta: np.ndarray, cov: np.ndarray) -> float:
    """Delta-method standard error of the scalar ``f(beta)`` (central-difference gradient)."""
    eps = 1e-5 * np.maximum(1.0, np.abs(beta))
    grad = np.empty(len(beta))
    for j in range(len(beta)):
        bp, bm = beta.copy(), beta.copy()
        bp[j] += eps[j]
        bm[j] -= eps[j]
        grad[j] = (f(bp) - f(bm)) / (2 * eps[j])
    return float(np.sqrt(grad @ cov @ grad))


# -----------------------------------------------------------------------------
# interrupted time series
# -----------------------------------------------------------------------------

def _weekly(cr: pd.DataFrame, complete_before: pd.Timestamp, policy: pd.Timestamp | None) -> pd.DataFrame:
    c = cr[cr["opened_on"] <= complete_before]
    keys = ["week"] + (["post_policy"] if policy is not None else [])
    w = c.groupby(keys, sort=True).agg(n=("reached", "size"), reached=("reached", "sum")).reset_index()
    w["reached"] = w["reached"].astype(int)
    w["reach"] = w["reached"] / w["n"]
    if policy is None:
        w["post_policy"] = False
    w["post_policy"] = w["post_policy"].astype(bool)
    return w.sort_values(["week", "post_policy"]).reset_index(drop=True)


def _its(weekly: pd.DataFrame, policy: pd.Timestamp, level: float, hac_lags: int):
    """Segmented WLS regression of weekly reach with level and slope change, season terms, HAC errors."""
    import statsmodels.api as sm

    t = ((weekly["week"] - policy).dt.days / 7.0).to_numpy()          # weeks since the policy
    post = weekly["post_policy"].to_numpy(float)
    span = t.max() - t.min()
    X = {"const": np.ones(len(t)), "time": t / _WEEKS_PER_YEAR, "level_change": post,
         "slope_change": post * t / _WEEKS_PER_YEAR}
    season = span >= _WEEKS_PER_YEAR
    if season:
        doy = weekly["week"].dt.dayofyear.to_numpy() / 365.25
        X["season_sin"] = np.sin(2 * np.pi * doy)
        X["season_cos"] = np.cos(2 * np.pi * doy)
    Xdf = pd.DataFrame(X)
    fit = sm.WLS(weekly["reach"].to_numpy(float), Xdf, weights=weekly["n"].to_numpy(float)).fit(
        cov_type="HAC", cov_kwds={"maxlags": hac_lags})
    ci = fit.conf_int(alpha=1 - level)
    fitted = fit.predict(Xdf)
    cf = Xdf.copy()
    cf["level_change"] = 0.0
    cf["slope_change"] = 0.0
    counterfactual = fit.predict(cf)
    return fit, ci, np.asarray(fitted), np.asarray(counterfactual), season


# -----------------------------------------------------------------------------
# the estimator
# -----------------------------------------------------------------------------

def _quarter_rows(cr: pd.DataFrame, level: float) -> list[dict]:
    q = cr.groupby("quarter").agg(n=("reached", "size"), reached=("reached", "sum")).reset_index()
    lo, hi = wilson_interval(q["reached"].to_numpy(float), q["n"].to_numpy(float), level)
    return [{"metric": "reach.quarter", "group": r.quarter, "estimate": r.reached / r.n, "ci_low": lo[i],
             "ci_high": hi[i], "n": r.n, "method": "share of phone cases reached, Wilson interval"}
            for i, r in enumerate(q.itertuples(index=False))]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f} percentage points"


def sms_effect(ds, *, sms_after_attempts: int = 2, policy_start=None, arms: Sequence = PHONE_ARMS,
               level: float = 0.95, interval: str = "delta", n_boot: int = 200, seed=0,
               period: str = "quarter", hac_lags: int = 4) -> Result:
    """Reach before and after the missed-call SMS policy, and the policy's effect on reach.

    Parameters
    ----------
    ds : carecall_eval.contract.Dataset
        Loaded data.
    sms_after_attempts : int
        The SMS is sent after this many unanswered attempts (Norsk Tipping and
        Svenska Spel: 2), so attempts ``sms_after_attempts + 1`` and later are
        the ones it can change.
    policy_start : date, optional
        Start of the policy; default ``ds.config.sms_policy_start``.  Without a
        policy date only reach over time is reported.
    arms : sequence
        Arms whose phone cases count; default ``(None, "call")``.
    level : float
        Confidence level of every interval.
    interval : {"delta", "bootstrap"}
        Interval of ``reach.sms_effect``: delta method with case-clustered
        covariance of the answer model, or a case (cluster) bootstrap that
        refits the model ``n_boot`` times (percentile interval).
    n_boot : int
        Bootstrap replicates (``interval="bootstrap"`` only).
    seed : int or numpy.random.Generator
        Seed of the bootstrap.
    period : {"quarter", "month"}
        Calendar-period fixed effects of the answer model (split at the policy
        date); they absorb the secular trend and the season.
    hac_lags : int
        Newey-West lags of the interrupted time series.

    Returns
    -------
    Result
        Summary rows (``metric``, ``group``):

        * ``reach.before_sms`` / ``before_sms`` and ``reach.after_sms`` /
          ``after_sms``: share of phone cases reached, Wilson interval;
        * ``reach.sms_effect`` / ``difference`` (primary): change in case-level
          reach of the post-policy cases caused by the policy, from the
          attempt-level difference-in-differences;
        * ``reach.after_sms_without_policy`` / ``after_sms``: observed reach
          after the policy minus the effect;
        * ``reach.sms_odds_ratio`` / ``difference``: odds ratio of answering a
          late attempt, after vs before;
        * ``reach.sms_difference`` / ``difference``: raw after - before
          (Newcombe hybrid score interval);
        * ``reach.its_level_change`` and ``reach.its_slope_change`` (per year) /
          ``difference``: interrupted time series;
        * ``reach.overall`` / ``all`` and ``reach.quarter`` / quarter label;
        * ``attempt.answer_rate`` as in :func:`answer_rates`.

        Without a policy date, only ``reach.overall``, ``reach.quarter`` and
        ``attempt.answer_rate``.  Plot data: ``"weekly"`` (weekly reach with
        the ITS fit and its counterfactual), ``"answer_by_attempt"``,
        ``"policy_start"``.  ``details`` holds the case table, the fitted
        answer model and the ITS fit.

    Notes
    -----
    *Answer model.*  Attempts up to a case's first answered one are the rows
    (a discrete-time hazard model: ``P(answer at attempt k | unanswered
    before)``).  Terms: attempt number, calendar period of opening x
    before/after, weekday, band of hour, trigger, log(1 + theoretical loss)
    in the 28 and 84 days before opening, log(1 + stake per active day),
    share of active days, product shares, age, and the policy term ``attempt >
    sms_after_attempts and case opened after the policy``.  The policy's
    effect is identified by comparing late with early attempts within a period:
    it assumes the late-vs-early log-odds gap would have stayed the same
    without the policy (parallel trends on the logit scale, given the
    covariates).

    *From attempts to cases.*  For each post-policy case, the chance of being
    reached is ``sum_k A_k p_k`` over attempts ``k = 1..K`` (``K`` the most
    attempts observed), with ``A_k`` the chance attempt ``k`` is made and all
    before it went unanswered.  Attempts the case actually received enter with
    their observed day and hour; attempts it never received because it was
    answered earlier enter at the protocol's typical day (median offset from
    attempt 1) with the hour band averaged over its observed distribution, and
    with the observed chance that the protocol goes on to attempt ``k``;
    attempts that would fall after the data end are not counted (as the
    observed reach does not count them).  Predicted reach with minus without
    the policy term, averaged over the post-policy cases, is the effect.

    The raw difference and the interrupted time series also absorb the
    secular trend in answering and the drift in who is called (for example a
    risk model starting to open cases for different customers), so they are
    reported as secondary figures only.  The ITS uses cases whose whole
    attempt sequence falls inside the data, weights weeks by their number of
    cases and, when the series spans at least a year, one annual harmonic.
    """
    level = _check_level(level)
    s = _check_int("sms_after_attempts", sms_after_attempts, 1)
    hac_lags = _check_int("hac_lags", hac_lags, 0)
    if interval not in ("delta", "bootstrap"):
        raise ValueError(f"interval must be one of {{'delta', 'bootstrap'}}, got {interval!r}")
    if period not in ("quarter", "month"):
        raise ValueError(f"period must be one of {{'quarter', 'month'}}, got {period!r}")
    if interval == "bootstrap":
        n_boot = _check_int("n_boot", n_boot, 20)
    policy = _resolve_policy(ds, policy_start)
    cr = case_reach(ds, arms=arms, policy_start=policy)
    if cr.empty:
        raise ValueError("no phone cases with attempts in call_cases/call_attempts "
                         f"(arms={list(arms)!r}); nothing to estimate")
    _, att = _phone_tables(ds, arms)
    data_end = pd.Timestamp(ds.data_end)
    K = int(att["attempt_no"].max())
    offset, cont = _protocol(att, cr, data_end, K)
    complete_before = data_end - pd.Timedelta(days=float(offset[-1]))
    params = {"estimand": "change in case-level reach for phone cases opened after the policy",
              "sms_after_attempts": s, "arms": list(arms), "level": level, "interval": interval,
              "n_boot": n_boot if interval == "bootstrap" else None,
              "seed": seed if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else None,
              "period": period, "hac_lags": hac_lags, "max_attempts": K,
              "protocol_offsets_days": [float(x) for x in offset],
              "data_end": str(data_end.date()),
              "policy_start": None if policy is None else str(policy.date())}

    n_all, r_all = len(cr), int(cr["reached"].sum())
    lo, hi = wilson_interval(r_all, n_all, level)
    rows = [{"metric": "reach.overall", "group": "all", "estimate": r_all / n_all, "ci_low": lo, "ci_high": hi,
             "n": n_all, "method": "share of phone cases reached, Wilson interval"}]
    rows += _quarter_rows(cr, level)

    post = cr["post_policy"].astype("boolean")
    have_policy = policy is not None and bool(post.any()) and bool((~post).any())
    if policy is not None and not have_policy:
        warnings.warn(f"sms_policy_start {policy.date()} leaves no phone cases on one side "
                      f"({int(post.sum())} after, {int((~post).sum())} before); reporting reach over time only",
                      stacklevel=2)
    tab = _answer_table(att, cr.set_index("case_id")["post_policy"] if have_policy else None, level)
    weekly = _weekly(cr, complete_before, policy if have_policy else None)
    details = {"cases": cr}
    plot_data = {"answer_by_attempt": tab, "policy_start": policy if have_policy else None,
                 "sms_after_attempts": s}

    if not have_policy:
        weekly["fitted"] = np.nan
        weekly["counterfactual"] = np.nan
        plot_data["weekly"] = weekly
        rows += _answer_rows(tab)
        why = ("no SMS policy date is set (sms_policy_start in operator.toml)" if policy is None else
               f"the policy date {policy.date()} has cases on one side only")
        q = [r for r in rows if r["metric"] == "reach.quarter"]
        trend = (f" By quarter it ranged from {_pct(min(r['estimate'] for r in q))} to "
                 f"{_pct(max(r['estimate'] for r in q))}." if len(q) > 1 else "")
        text = (f"{_pct(r_all / n_all)} of {n_all:,} phone cases were reached (95% CI "
                f"{_pct(lo)} to {_pct(hi)}).{trend} No effect of a missed-call SMS is estimated because {why}; "
                "reach is reported over time only.")
        text = text.replace("95% CI", f"{level:.0%} CI")
        return Result(name="reach", summary=tidy(rows), text=text, settings=params, plot_data=plot_data,
                      details=details)

    # --- before / after and the raw difference ----------------------------------------------------
    pre, postc = cr[~post.to_numpy(bool)], cr[post.to_numpy(bool)]
    n0, x0 = len(pre), int(pre["reached"].sum())
    n1, x1 = len(postc), int(postc["reached"].sum())
    for metric, group, x, n in (("reach.before_sms", "before_sms", x0, n0), ("reach.after_sms", "after_sms", x1, n1)):
        l, h = wilson_interval(x, n, level)
        rows.append({"metric": metric, "group": group, "estimate": x / n, "ci_low": l, "ci_high": h, "n": n,
                     "method": "share of phone cases reached, Wilson interval"})
    from statsmodels.stats.proportion import confint_proportions_2indep

    dl, dh = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=1 - level)
    raw = x1 / n1 - x0 / n0
    rows.append({"metric": "reach.sms_difference", "group": "difference", "estimate": raw, "ci_low": dl,
                 "ci_high": dh, "n": n0 + n1, "method": "raw after - before, Newcombe hybrid score interval"})

    # --- primary: attempt-level difference-in-differences -------------------------------------------
    if K <= s:
        raise ValueError(f"sms_after_attempts={s} but no case has more than {K} attempts: there are no attempts "
                         "the SMS could change; check the operator's SMS rule")
    cov = _case_covariates(ds, cr)
    a = _attempt_frame(cr, att, cov, s, period)
    if not ((a["late_after"] == 1).any() and ((a["attempt_no"] > s) & ~a["post_policy"].astype(bool)).any()):
        raise ValueError(f"need attempts after attempt {s} both before and after {policy.date()} to estimate the "
                         "SMS effect")
    categorical = ["attempt", "period_fe", "weekday", "hour_band", "trigger"]
    continuous = list(cov.columns)
    design = _Design.from_frame(a, categorical, continuous)
    X_full = design.matrix(a)
    cols = _independent_columns(X_full)
    X = X_full[:, cols]
    names = [design.names[j] for j in cols]
    y = a["answered"].to_numpy(float)
    groups = pd.factorize(a["case_id"])[0]
    fit = _fit_logit(y, X, groups, names)
    beta = np.asarray(fit.params)
    covb = np.asarray(fit.cov_params())
    pred = _build_predictor(a, postc, design, cols, offset, cont, data_end, s)
    eff, r_with, r_without = pred.effects(beta)
    z = stats.norm.ppf(0.5 + level / 2)
    if interval == "delta":
        se = _delta_se(lambda b: pred.effects(b)[0], beta, covb)
        e_lo, e_hi = eff - z * se, eff + z * se
        method = "attempt-level DiD logit (late vs early attempts, after vs before), delta method, case-clustered"
        boot = None
    else:
        (e_lo, e_hi), boot = _bootstrap(a, X, y, pred, postc["case_id"].to_numpy(), beta, n_boot, seed, level)
        se = float(np.std(boot, ddof=1))
        method = f"attempt-level DiD logit (late vs early attempts, after vs before), case bootstrap ({n_boot})"
    rows.append({"metric": "reach.sms_effect", "group": "difference", "estimate": eff, "ci_low": e_lo,
                 "ci_high": e_hi, "n": n1, "method": method, "se": se})
    obs_after = x1 / n1
    rows.append({"metric": "reach.after_sms_without_policy", "group": "after_sms", "estimate": obs_after - eff,
                 "ci_low": obs_after - e_hi, "ci_high": obs_after - e_lo, "n": n1,
                 "method": "observed reach after the policy minus reach.sms_effect"})
    j = names.index(design.treat)
    b, sb = beta[j], float(np.sqrt(covb[j, j]))
    rows.append({"metric": "reach.sms_odds_ratio", "group": "difference", "estimate": np.exp(b),
                 "ci_low": np.exp(b - z * sb), "ci_high": np.exp(b + z * sb), "n": len(a),
                 "method": f"odds ratio of answering attempts > {s}, after vs before, case-clustered"})

    # --- secondary: interrupted time series -------------------------------------------------------
    n_pre_w = int((~weekly["post_policy"]).sum())
    n_post_w = int(weekly["post_policy"].sum())
    its_ok = n_pre_w >= 8 and n_post_w >= 8
    if its_ok:
        its_fit, its_ci, fitted, counterfactual, season = _its(weekly, policy, level, hac_lags)
        weekly["fitted"], weekly["counterfactual"] = fitted, counterfactual
        n_its = int(weekly["n"].sum())
        for term, metric in (("level_change", "reach.its_level_change"), ("slope_change", "reach.its_slope_change")):
            rows.append({"metric": metric, "group": "difference", "estimate": float(its_fit.params[term]),
                         "ci_low": float(its_ci.loc[term, 0]), "ci_high": float(its_ci.loc[term, 1]), "n": n_its,
                         "method": "segmented WLS on weekly reach" + (" with season terms" if season else "")
                                   + f", Newey-West ({hac_lags} lags)"
                                   + (", per year" if term == "slope_change" else "")})
        details["its"] = its_fit
        params["its_weeks"] = [n_pre_w, n_post_w]
        params["its_season_terms"] = bool(season)
    else:
        weekly["fitted"] = np.nan
        weekly["counterfactual"] = np.nan
        warnings.warn(f"too few weeks for an interrupted time series ({n_pre_w} before, {n_post_w} after; need 8 "
                      "each); reach.its_level_change is not reported", stacklevel=2)
    rows += _answer_rows(tab)
    plot_data["weekly"] = weekly
    details.update({"answer_model": fit, "answer_model_terms": names, "attempts": a,
                    "predicted_reach_with": r_with, "predicted_reach_without": r_without,
                    "protocol_continuation": cont.tolist(), "bootstrap": boot})

    cl = f"{level:.0%} CI"
    text = (f"Before the missed-call SMS (from {policy.date()}), {_pct(x0 / n0)} of {n0:,} phone cases were "
            f"reached; after it, {_pct(x1 / n1)} of {n1:,}. Comparing the attempts the SMS can change (attempt "
            f"{s + 1} on) with the earlier attempts of the same periods, and adjusting for who was called, the SMS "
            f"{'raised' if eff >= 0 else 'lowered'} reach by {abs(100 * eff):.1f} percentage points ({cl} "
            f"{100 * e_lo:+.1f} to {100 * e_hi:+.1f}) for the cases called after "
            f"it: without it, about {_pct(obs_after - eff)} would have been reached. The raw before/after "
            f"difference ({_pts(raw)})")
    if its_ok:
        text += (f" and the interrupted time series ({_pts(float(its_fit.params['level_change']))} at the policy "
                 f"date)")
        text += (" also move with the trend in answering and with changes in who is called, so they are shown "
                 "only for comparison.")
    else:
        text += " also moves with the trend in answering and with changes in who is called, so it is shown only " \
                "for comparison."
    return Result(name="reach", summary=tidy(rows), text=text, settings=params, plot_data=plot_data, details=details)
