"""Small-cell suppression for shared aggregates.

Rules (``t`` is the operator's ``small_cell_threshold``, default 10):

1. **Primary.** A count of people, cases or calls with ``0 < count < t`` is not
   published.  When it is the denominator ``n`` of a statistic, the statistic
   (estimate, interval, standard error) goes with it: it describes fewer than
   ``t`` people.
2. **Implied counts.** A share of people with a published ``n`` gives away its
   numerator ``p * n`` and the complement ``(1 - p) * n``; when either is in
   ``0 < k < t`` the share and its interval are withheld (``n`` stays).
3. **Secondary.** Where cells add up to a published total (the quarters of the
   reach table, the outcomes of a call, the steps of the cohort flow ...), one
   withheld cell could be recovered by subtraction; complementary cells are
   withheld until at least two cells are withheld and their sum is 0 or at
   least ``t`` (:func:`protect_partition`).  A difference of two shares whose
   group rows are withheld is withheld too.
4. **Curves.** A Kaplan-Meier point is published only when at least ``t``
   customers are at risk, and only if the number of exits since the last
   published point is 0 or at least ``t`` (:func:`km_points`); so no step of the
   curve shows an individual's exit.
5. **Quantiles** (call length) are published only when ``n >= t`` (rule 1).

Every function returns new frames; inputs are never modified.
"""
from __future__ import annotations

import functools
import re
import warnings
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError

__all__ = ["is_small", "protect_partition", "suppress_counts", "sanitize_text", "km_points",
           "STAT_COLUMNS", "SHARE_METRICS", "suppress_metrics", "suppress_flow", "suppress_kpis",
           "withheld_tokens", "redact_text", "check_threshold", "suppress_trial", "consort_counts"]

#: Columns of a metric row that carry the statistic itself.
STAT_COLUMNS = ("estimate", "ci_low", "ci_high", "se")


def check_threshold(threshold) -> int:
    """Validate a small-cell threshold (a whole number >= 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 1:
        raise InputError(f"small-cell threshold must be a whole number >= 1 (default 10), got {threshold!r}")
    return int(threshold)


def is_small(values, threshold: int) -> np.ndarray:
    """True where a count is disclosive: ``0 < value < threshold`` (NaN is not small).

    Examples
    --------
    >>> is_small([0, 1, 9, 10, None], 10).tolist()
    [False, True, True, False, False]
    """
    v = pd.to_numeric(pd.Series(values, dtype="object"), errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        return np.nan_to_num((v > 0) & (v < threshold - 1e-9), nan=False).astype(bool)


def protect_partition(counts: Sequence[float], suppressed: Sequence[bool], threshold: int) -> np.ndarray:
    """Secondary suppression for cells that add up to a published total.

    Parameters
    ----------
    counts : sequence of float
        The cells' counts (true values, before suppression).
    suppressed : sequence of bool
        Cells already withheld (primary suppression).
    threshold : int
        Small-cell threshold.

    Returns
    -------
    numpy.ndarray of bool
        Cells to withhold.  If any cell is withheld, the smallest further
        non-zero cells are added until at least two are withheld and the
        withheld cells sum to at least ``threshold``, so subtraction from the
        total recovers neither a single cell nor a small sum.  When no cell is
        left to add the total must be withheld by the caller (check
        ``counts[mask].sum() < threshold`` or ``mask.sum() == 1``).

    Examples
    --------
    >>> protect_partition([3, 40, 25, 0], [True, False, False, False], 10).tolist()
    [True, False, True, False]
    """
    c = np.asarray(counts, dtype=float)
    c = np.where(np.isfinite(c), c, 0.0)
    mask = np.asarray(suppressed, dtype=bool).copy()
    if not mask.any():
        return mask
    while mask.sum() < 2 or 0 < c[mask].sum() < threshold:
        free = np.flatnonzero(~mask & (c > 0))
        if free.size == 0:
            break
        mask[free[np.argmin(c[free])]] = True
    return mask


_COUNT_TEXT = re.compile(r"\b(\d+)(\s+)(contacts?|comparisons?|customers?|cases?|calls?|rows?|people|events?|"
                         r"units?|controls?|treated|members?|phone cases|answered calls|distinct controls|"
                         r"contacted|reached|left|persons?|individuals?|players?)\b")


def sanitize_text(text, threshold: int):
    """Replace small counts quoted in free text (``"7 contacts"``) by ``"fewer than 10 contacts"``.

    Examples
    --------
    >>> sanitize_text("in one quarter (51 contacts, 7 comparisons)", 10)
    'in one quarter (51 contacts, fewer than 10 comparisons)'
    """
    if not isinstance(text, str):
        return text

    def repl(m):
        k = int(m.group(1))
        return f"fewer than {threshold}{m.group(2)}{m.group(3)}" if 0 < k < threshold else m.group(0)

    return _COUNT_TEXT.sub(repl, text)


def suppress_counts(df: pd.DataFrame, count_cols: Iterable[str], threshold: int, *,
                    stat_cols: Iterable[str] = (), reason_col: str = "suppressed") -> pd.DataFrame:
    """Primary suppression on a table: blank small counts (and, for listed rows, their statistics).

    Parameters
    ----------
    df : pandas.DataFrame
    count_cols : iterable of str
        Count columns; a value with ``0 < v < threshold`` becomes missing.  The
        first one is the row's denominator: when it is small, ``stat_cols`` are
        blanked too.
    threshold : int
    stat_cols : iterable of str
        Statistics that describe the row's denominator.
    reason_col : str
        Column that records why something in the row was withheld ('' if nothing).
    """
    out = df.copy()
    count_cols = [c for c in count_cols if c in out.columns]
    stat_cols = [c for c in stat_cols if c in out.columns]
    if reason_col not in out.columns:
        out[reason_col] = ""
    for i, col in enumerate(count_cols):
        small = is_small(out[col], threshold)
        if not small.any():
            continue
        out[col] = out[col].astype("float64").where(~small)
        out.loc[small, reason_col] = _add_reason(out.loc[small, reason_col], f"{col}<{threshold}")
        if i == 0 and stat_cols:
            out.loc[small, stat_cols] = np.nan
    return out


def _add_reason(current: pd.Series, reason: str) -> pd.Series:
    return current.fillna("").map(lambda s: reason if not s else (s if reason in s.split(";") else f"{s};{reason}"))


def km_points(table: pd.DataFrame, threshold: int, *, horizon: int, step: int = 14,
              level: float = 0.95) -> pd.DataFrame:
    """Kaplan-Meier curves on a coarse grid, safe to share.

    Parameters
    ----------
    table : pandas.DataFrame
        One row per cohort member: ``duration`` (days), ``event`` (1 = left),
        ``contact`` (1/0), optionally ``weights``.
    threshold : int
        Small-cell threshold.
    horizon : int
        Last day reported.
    step : int
        Grid spacing in days (the curve is reported at 0, step, 2*step, ..., horizon).
    level : float
        Confidence level of the pointwise bands.

    Returns
    -------
    pandas.DataFrame
        ``group, day, survival, ci_low, ci_high, at_risk``: a grid day is kept
        only when at least ``threshold`` customers are at risk on it and the
        (unweighted) exits since the previous kept day are 0 or at least
        ``threshold``; other days are dropped, so the published curve steps
        only at coarse, non-disclosive intervals.
    """
    import warnings

    from lifelines import KaplanMeierFitter
    from lifelines.exceptions import StatisticalWarning

    grid = np.unique(np.r_[np.arange(0, horizon, step), horizon]).astype(float)
    frames = []
    for grp, lab in ((1, "contact"), (0, "comparison")):
        g = table[table["contact"] == grp]
        if len(g) == 0:
            continue
        w = g["weights"] if "weights" in g.columns else None
        km = KaplanMeierFitter(alpha=1 - level)
        with warnings.catch_warnings():
            # the KM is weighted by design (matching weights), as in outcomes/retention.py
            warnings.filterwarnings("ignore", message="It looks like your weights are not integers",
                                    category=StatisticalWarning)
            km.fit(g["duration"], g["event"], weights=w)
        surv = km.survival_function_at_times(grid).to_numpy(float)
        ci = km.confidence_interval_survival_function_
        idx = np.searchsorted(ci.index.to_numpy(float), grid, side="right") - 1
        lo = np.where(idx >= 0, ci.iloc[np.clip(idx, 0, None), 0].to_numpy(float), 1.0)
        hi = np.where(idx >= 0, ci.iloc[np.clip(idx, 0, None), 1].to_numpy(float), 1.0)
        dur = g["duration"].to_numpy(float)
        ev = g["event"].to_numpy(int) == 1
        at_risk = np.array([(dur >= d).sum() for d in grid])
        keep, last = [], -np.inf
        for j, d in enumerate(grid):
            exits = int((ev & (dur > last) & (dur <= d)).sum()) if np.isfinite(last) else int((ev & (dur <= d)).sum())
            ok = at_risk[j] >= threshold and (exits == 0 or exits >= threshold)
            keep.append(ok)
            if ok:
                last = d
        keep = np.array(keep)
        frames.append(pd.DataFrame({"group": lab, "day": grid[keep].astype(int), "survival": surv[keep],
                                    "ci_low": lo[keep], "ci_high": hi[keep],
                                    "at_risk": at_risk[keep].astype(int)}))
    if not frames:
        return pd.DataFrame(columns=["group", "day", "survival", "ci_low", "ci_high", "at_risk"])
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- metric rows (bundle and report)
#: Metrics whose estimate is a share of people (the numerator is an implied count).
SHARE_METRICS = re.compile(r"^(reach\.(overall|quarter|before_sms|after_sms)|attempt\.answer_rate|reception\.\w+|"
                           r"call_outcome\.\w+|actions\.\w+|retention\.(account|active)_\w+|spending\.share_reduced)$")

_METRIC_COUNTS = ("n", "window", "at_risk", "events", "n_effective")


def suppress_metrics(rows: pd.DataFrame, threshold: int) -> tuple[pd.DataFrame, dict]:
    """Rules 1 to 3 on tidy metric rows: the one implementation behind the bundle's ``metrics.csv`` and every
    table and sentence of the quarterly report.

    Parameters
    ----------
    rows : pandas.DataFrame
        Tidy rows (``metric, group, estimate, se, ci_low, ci_high, n``; optionally ``window``, ``at_risk``,
        ``events``, ``n_effective`` and ``suppressed``), for example an evaluation's ``summary``.  The rows
        of a randomized study (``trial.*``, ``*.rct_*``) follow :func:`suppress_trial` (arm by arm), the
        others the rules below.
    threshold : int
        Small-cell threshold.

    Returns
    -------
    rows : pandas.DataFrame
        A copy, in the same order: withheld statistics (and counts) are missing; ``suppressed`` says why
        ('' where nothing was withheld).  ``n``, ``at_risk`` and ``events`` are whole numbers (``Int64``).
    log : dict
        ``rows`` and ``rows_with_withheld_values``.
    """
    threshold = check_threshold(threshold)
    s = rows.copy().reset_index(drop=True)
    trial = s["metric"].astype(str).str.match(_TRIAL_METRICS).to_numpy() if len(s) else np.zeros(0, bool)
    if not trial.any():
        return _suppress_observational(s, threshold)
    rest, _ = _suppress_observational(s[~trial], threshold, keep_index=True)
    t = suppress_trial(_with_columns(s[trial].copy()), threshold)
    with warnings.catch_warnings():   # all-missing columns in one part (e.g. no trial row has an `at_risk`)
        warnings.filterwarnings("ignore", message="The behavior of DataFrame concatenation with empty or all-NA",
                                category=FutureWarning)
        out = pd.concat([rest, t]).sort_index()
    for col in ("n", "at_risk", "events"):
        out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
    log = {"rows": int(len(out)), "rows_with_withheld_values": int((out["suppressed"] != "").sum())}
    return out.reset_index(drop=True), log


def _with_columns(s: pd.DataFrame) -> pd.DataFrame:
    for col in (*STAT_COLUMNS, *_METRIC_COUNTS):
        if col not in s.columns:
            s[col] = np.nan
    if "suppressed" not in s.columns:
        s["suppressed"] = ""
    s["suppressed"] = s["suppressed"].fillna("").astype(object)
    return s


def _suppress_observational(rows: pd.DataFrame, threshold: int, *, keep_index: bool = False
                            ) -> tuple[pd.DataFrame, dict]:
    """Rules 1 to 3 on rows outside a randomized study (see :func:`suppress_metrics`)."""
    labels = rows.index
    s = _with_columns(rows.copy().reset_index(drop=True))   # positions: the families index arrays by them
    for col in STAT_COLUMNS:
        s[col] = pd.to_numeric(s[col], errors="coerce").astype(float)
    true_n = pd.to_numeric(s["n"], errors="coerce").astype(float).to_numpy()
    stats = list(STAT_COLUMNS)

    # rule 1: denominators; further counts blank their own field (and the statistic for events / n_effective)
    s = suppress_counts(s, ["n"], threshold, stat_cols=stats)
    for col in ("events", "n_effective"):
        small = is_small(s[col], threshold)
        s.loc[small, stats] = np.nan
        s = suppress_counts(s, [col], threshold)
    s = suppress_counts(s, ["at_risk"], threshold)

    # rule 2: implied numerators of shares of people
    share = s["metric"].astype(str).str.match(SHARE_METRICS) & ~s["group"].isin(["difference"])
    p = s["estimate"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        k = np.where(s["metric"].astype(str).str.startswith("retention.account_"), 1 - p, p) * true_n
    implied = np.where(share, k, np.nan)
    small = share.to_numpy() & (is_small(np.round(implied), threshold)
                                | is_small(np.round(true_n - implied), threshold))
    _blank(s, small, stats, f"implied count<{threshold}")

    # rule 3: secondary suppression in families that add up to a published total
    for fam in _families(s):
        _protect(s, fam, true_n, implied, threshold, stats)
    # a difference whose group rows are withheld is withheld too
    withheld = s[s["estimate"].isna() & s["group"].isin(["contact", "comparison", "before_sms", "after_sms"])
                 & s["suppressed"].ne("")]
    for _, r in withheld.iterrows():
        m = (s["metric"] == r["metric"]) & (s["window"].fillna(-1) == (r["window"] if pd.notna(r["window"]) else -1)) \
            & (s["group"] == "difference")
        if r["metric"] in ("reach.before_sms", "reach.after_sms"):
            m = s["metric"].isin(["reach.sms_difference"])
        _blank(s, m.to_numpy(), stats, "secondary (difference of withheld shares)")
    for col in ("n", "at_risk", "events"):
        s[col] = pd.to_numeric(s[col], errors="coerce").round().astype("Int64")
    log = {"rows": int(len(s)), "rows_with_withheld_values": int((s["suppressed"] != "").sum())}
    if keep_index:
        s.index = labels
    return s, log


def _blank(s: pd.DataFrame, mask, cols, reason: str) -> None:
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return
    s.loc[mask, list(cols)] = np.nan
    s.loc[mask, "suppressed"] = _add_reason(s.loc[mask, "suppressed"], reason)


def _families(s: pd.DataFrame):
    """Sets of rows whose cells add up to a published total: (row index, cell key, kind)."""
    fams = []
    metric = s["metric"].astype(str)
    g = s["group"].astype(str)
    fams.append((s.index[metric == "reach.quarter"], "denominator"))
    fams.append((s.index[metric.isin(["reach.before_sms", "reach.after_sms"])], "denominator"))
    att = g.str.extract(r"^attempt_(\d+)\.(?:before_sms|after_sms)$")[0]
    for a in sorted(att.dropna().unique()):
        fams.append((s.index[(metric == "attempt.answer_rate") & (att == a)], "denominator"))
    for prefix in ("quarter", "outcome"):
        fams.append((s.index[metric.str.startswith("call_length.") & g.str.startswith(prefix + "=")],
                     "denominator"))
    dims = g.str.extract(r"^([a-z_]+)=")[0]
    for w in s.loc[metric == "spending.subgroup_change", "window"].dropna().unique():
        for d in sorted(dims[metric == "spending.subgroup_change"].dropna().unique()):
            fams.append((s.index[(metric == "spending.subgroup_change") & (dims == d) & (s["window"] == w)],
                         "denominator"))
    fams.append((s.index[metric.isin(["reception.positive", "reception.neutral", "reception.negative"])],
                 "numerator"))
    fams.append((s.index[metric.str.startswith("call_outcome.")], "numerator"))
    fams.append((s.index[(metric == "reach.quarter")], "numerator"))
    return [f for f in fams if len(f[0]) > 1]


def _protect(s, fam, true_n, implied, threshold, stats) -> None:
    rows, kind = fam
    sub = s.loc[rows]
    # a cell is a group label (call length has several metric rows per group)
    cells = sub["group"].astype(str)
    order = list(dict.fromkeys(cells))
    if kind == "denominator":
        count = pd.Series(true_n[rows], index=rows).groupby(cells).first().reindex(order)
        withheld = sub["n"].isna().groupby(cells).any().reindex(order) & count.gt(0)
    else:
        count = pd.Series(implied[rows], index=rows).groupby(cells).first().reindex(order)
        withheld = (sub["estimate"].isna().groupby(cells).any().reindex(order)
                    & sub["suppressed"].ne("").groupby(cells).any().reindex(order))
    mask = protect_partition(count.to_numpy(float), withheld.to_numpy(bool), threshold)
    new = [c for c, m, w in zip(order, mask, withheld) if m and not w]
    if not new:
        return
    hit = s.index.isin(rows) & s["group"].astype(str).isin(new).to_numpy()
    cols = stats + ["n"] if kind == "denominator" else stats
    _blank(s, hit, cols, "secondary (recoverable from total)")


# ----------------------------------------------------------------------------- randomized studies
#: Rows of a randomized study (their groups are arms and arm-vs-control differences).
_TRIAL_METRICS = r"^(spending\.rct_\w+|trial\.\w+|retention\.rct_\w+|actions\.rct_\w+)$"
#: Trial metrics whose arm rows are shares of people (an implied count each).
_TRIAL_SHARES = r"^(trial\.reach|retention\.rct_\w+|actions\.rct_\w+)$"


def suppress_trial(t: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """The bundle's small-cell rules on a randomized study's rows, arm by arm.

    Rule 1 (small denominators) as everywhere; rule 2 on the shares by arm (the implied number of customers
    with and without the outcome); a difference against control is withheld with either of its arms; the
    customers analysed at a window are withheld when fewer than the threshold of the allocated are missing
    (the difference would publish that small count); per protocol's and the effect of being reached's ``n``
    are withheld with the share reached (``n`` minus control's would give the reached).
    """
    stats = list(STAT_COLUMNS)
    true_n = pd.to_numeric(t["n"], errors="coerce").astype(float)
    t = suppress_counts(t, ["n"], threshold, stat_cols=stats)
    g = t["group"].astype(str)
    diff = g.str.endswith("-control")
    share = t["metric"].astype(str).str.match(_TRIAL_SHARES) & ~diff
    k = t["estimate"].astype(float) * true_n
    small = share & (pd.Series(is_small(np.round(k), threshold), index=t.index)
                     | pd.Series(is_small(np.round(true_n - k), threshold), index=t.index))
    _blank(t, small.to_numpy(), stats, f"implied count<{threshold}")
    withheld = t[share & t["estimate"].isna() & t["suppressed"].ne("")]
    for _, r in withheld.iterrows():
        arms = [f"{r['group']}-control"] if r["group"] != "control" else list(g[diff & (t["metric"] == r["metric"])])
        m = (t["metric"] == r["metric"]) & g.isin(arms)
        _blank(t, m.to_numpy(), stats, "secondary (difference of withheld shares)")
    alloc = t[t["metric"] == "trial.n_allocated"].set_index("group")["n"]
    true_alloc = true_n[t["metric"] == "trial.n_allocated"].set_axis(alloc.index)
    for i in t.index[t["metric"] == "trial.n_analysed"]:
        gap = true_alloc.get(t.at[i, "group"], np.nan) - true_n[i]
        if 0 < gap < threshold:
            _blank(t, t.index == i, stats + ["n"], "secondary (allocated minus analysed below the threshold)")
    if t.loc[t["metric"] == "trial.reach", "suppressed"].ne("").any():
        m = t["metric"].isin(["spending.rct_pp_change", "spending.rct_cace_change"])
        _blank(t, m.to_numpy(), ["n"], "secondary (the reached count)")
    return t


def consort_counts(consort: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """A randomized study's CONSORT counts for people to read: counts ``0 < n < threshold`` as ``"<threshold"``,
    and the other parts of a partition with them (reached and not reached add up to the analysed arm)."""
    threshold = check_threshold(threshold)
    c = consort.copy()
    c["n"] = c["n"].astype(object)
    small = np.asarray(is_small(pd.to_numeric(c["n"], errors="coerce"), threshold), bool)
    parts = c["stage"].isin(["reached", "not reached"]).to_numpy()
    secondary = np.zeros(len(c), bool)
    for arm in c.loc[parts & small, "arm"].unique():
        secondary |= parts & (c["arm"] == arm).to_numpy() & ~small
    c.loc[small, "n"] = f"<{threshold}"
    c.loc[secondary, "n"] = "withheld"
    return c


# ----------------------------------------------------------------------------- cohort flow
def suppress_flow(flow: pd.DataFrame | None, threshold: int) -> pd.DataFrame:
    """The cohort flow safe to show: candidates (total), customers excluded at each step, eligible.

    ``flow`` is a cohort's flow (``step``, ``excluded_<group>``, ``remaining_<group>`` for ``contact`` and
    ``comparison``).  The running "remaining" counts are not shown: with them every exclusion is a
    subtraction away.  The exclusions and the eligible add up to the total, so a withheld cell gets
    complementary cells withheld (:func:`protect_partition`), and the total too when what is withheld could
    still be recovered from it.

    Returns
    -------
    pandas.DataFrame
        ``step, kind, contact, comparison, suppressed`` (``kind``: total, excluded, remaining); withheld
        counts are missing (``Int64``).
    """
    threshold = check_threshold(threshold)
    cols = ["step", "kind", "contact", "comparison", "suppressed"]
    f = flow
    if f is None or len(f) == 0:
        return pd.DataFrame(columns=cols)
    n = len(f)
    out = pd.DataFrame({"step": f["step"].astype(str).to_numpy(),
                        "kind": ["total"] + ["excluded"] * (n - 2) + ["remaining"]})
    out["suppressed"] = ""
    for grp in ("contact", "comparison"):
        exc = f[f"excluded_{grp}"].to_numpy(float)
        rem = f[f"remaining_{grp}"].to_numpy(float)
        total = rem[0] + exc[0]
        parts = np.r_[exc[1:-1], rem[-1]]          # the exclusions and the eligible add up to the total
        mask = protect_partition(parts, is_small(parts, threshold), threshold)
        col = np.r_[total, parts].astype(float)
        col[1:][mask] = np.nan
        if is_small([total], threshold)[0] or (mask.any() and (mask.sum() < 2 or 0 < parts[mask].sum() < threshold)):
            col[0] = np.nan
            mask0 = True
        else:
            mask0 = False
        out[grp] = pd.array(np.round(col), dtype="Float64").astype("Int64")
        hit = np.r_[mask0, mask]
        out.loc[hit, "suppressed"] = _add_reason(out.loc[hit, "suppressed"], f"{grp}<{threshold} or secondary")
    return out[cols]


# ----------------------------------------------------------------------------- headline KPIs (report)
#: KPI count rows and the share rows whose denominator they are (same quarter).
_KPI_DENOMINATORS = {"kpi.phone_cases": ("kpi.reach_rate",), "kpi.sms_sent": ("kpi.reach_after_sms",),
                     "kpi.answered_calls": ("kpi.call_length_median_s", "kpi.call_length_mean_s",
                                            "kpi.reception.recorded", "kpi.outcome.")}
#: (total, part) KPI counts of one quarter: their difference is a count too.
_KPI_NESTED = (("kpi.cases_opened", "kpi.phone_cases"), ("kpi.phone_cases", "kpi.sms_sent"),
               ("kpi.attempts", "kpi.answered_calls"))


def suppress_kpis(kpis: pd.DataFrame, threshold: int) -> pd.DataFrame:
    """The quarterly headline figures safe to show: the same rules as the bundle, quarter by quarter.

    Parameters
    ----------
    kpis : pandas.DataFrame
        From :func:`carecall_eval.report.quarters.quarter_kpis` (``metric``, ``quarter``, ``estimate``,
        intervals, ``n`` and, for shares, the numerator ``count``).
    threshold : int

    Returns
    -------
    pandas.DataFrame
        A copy with withheld figures missing (``n`` as float, NaN where withheld) and ``suppressed`` saying
        why: counts ``0 < n < threshold``
        (rule 1); shares whose denominator, numerator or complement is such a count (rule 2); outcome and
        reception shares of a quarter as partitions (rule 3, :func:`protect_partition`); and a count whose
        difference from the count it is part of is small (cases opened vs phone cases, phone cases vs cases
        sent an SMS, attempts vs answered calls), with the ``n`` of the shares it is the denominator of.
    """
    threshold = check_threshold(threshold)
    k = kpis.copy().reset_index(drop=True)
    k["suppressed"] = k["suppressed"].fillna("") if "suppressed" in k.columns else ""
    stats = [c for c in ("estimate", "se", "ci_low", "ci_high") if c in k.columns]
    n = pd.to_numeric(k["n"], errors="coerce").astype(float).to_numpy()
    cnt = pd.to_numeric(k["count"], errors="coerce").astype(float).to_numpy() if "count" in k.columns \
        else np.full(len(k), np.nan)
    metric = k["metric"].astype(str)
    is_share = ~np.isnan(cnt)
    counts = metric.isin(["kpi.cases_opened", "kpi.phone_cases", "kpi.attempts", "kpi.sms_sent",
                          "kpi.answered_calls"]).to_numpy()
    withhold_stat = is_small(n, threshold)                         # rule 1 (denominators, counts, quantiles)
    withhold_n = counts & is_small(n, threshold)
    reason = np.where(withhold_stat, f"n<{threshold}", "").astype(object)
    implied = is_share & ~withhold_stat & (is_small(cnt, threshold) | is_small(n - cnt, threshold))
    withhold_stat |= implied
    reason[implied] = f"implied count<{threshold}"
    for q in k["quarter"].dropna().unique():                        # rule 3 inside each quarter
        inq = (k["quarter"] == q).to_numpy()
        for fam in (metric.str.startswith("kpi.outcome."),
                    metric.isin([m for m in metric.unique() if m.startswith("kpi.reception.")
                                 and m != "kpi.reception.recorded"])):
            rows = np.flatnonzero(inq & fam.to_numpy())
            if len(rows) > 1:
                mask = protect_partition(cnt[rows], withhold_stat[rows], threshold)
                new = rows[mask & ~withhold_stat[rows]]
                withhold_stat[new] = True
                reason[new] = "secondary (recoverable from total)"
        for total, part in _KPI_NESTED:
            t_rows = np.flatnonzero(inq & (metric == total).to_numpy())
            p_rows = np.flatnonzero(inq & (metric == part).to_numpy())
            if len(t_rows) == 1 and len(p_rows) == 1 and is_small([n[t_rows[0]] - n[p_rows[0]]], threshold)[0] \
                    and not withhold_n[t_rows[0]]:
                withhold_n[p_rows] = withhold_stat[p_rows] = True
                reason[p_rows] = f"secondary ({total} minus it <{threshold})"
        for count_metric, shares in _KPI_DENOMINATORS.items():
            c_rows = np.flatnonzero(inq & (metric == count_metric).to_numpy())
            if len(c_rows) == 1 and withhold_n[c_rows[0]]:
                dep = inq & metric.str.startswith(shares).to_numpy()
                k.loc[dep, "n"] = pd.NA
    hit = withhold_stat | withhold_n
    k.loc[withhold_stat, stats] = np.nan
    if "count" in k.columns:
        k.loc[withhold_stat, "count"] = pd.NA
    nn = pd.to_numeric(k["n"], errors="coerce").astype(float).to_numpy()
    nn[withhold_n | (withhold_stat & is_small(n, threshold))] = np.nan   # a small denominator is a count too
    k["n"] = np.round(nn)          # float: a withheld count is NaN (comparisons with it are simply False)
    k.loc[hit, "suppressed"] = [r or f"n<{threshold}" for r in reason[hit]]
    return k


# ----------------------------------------------------------------------------- sentences for people
_FORMATS = (lambda x: f"{100 * x:.0f}%", lambda x: f"{100 * x:.1f}%", lambda x: f"{100 * x:+.0f}%",
            lambda x: f"{100 * x:+.1f}%", lambda x: f"{100 * x:+.1f} points", lambda x: f"{100 * x:+.0f} points",
            lambda x: f"{abs(100 * x):.1f} percentage points", lambda x: f"{abs(100 * x):.0f} percentage points",
            lambda x: f"{100 * x:+.1f} pp", lambda x: f"{100 * x:+.0f} to", lambda x: f"{100 * x:+.1f} to",
            lambda x: f"to {100 * x:+.0f}", lambda x: f"to {100 * x:+.1f}")
_NOT_A_COUNT = r"(?!\s*(?:-\s*)?(?:days?|weeks?|months?|years?|hours?|h\b|min|s\b|%|SD|times|points|percent))"


def withheld_tokens(before: pd.DataFrame, after: pd.DataFrame, *, ratio_metrics: Iterable[str] = ()) -> list[str]:
    """Regular expressions matching how a sentence would quote a figure that suppression withheld.

    ``before`` and ``after`` are the same rows before and after suppression (:func:`suppress_metrics`,
    :func:`suppress_kpis`, :func:`suppress_flow`): every statistic that was a number and is now missing
    yields its percent, signed-percent and percentage-point spellings (and, for ratios, two decimals),
    every withheld count its whole-number spellings.  :func:`redact_text` withholds each sentence that
    contains one.
    """
    pats: set[str] = set()
    b, a = before.reset_index(drop=True), after.reset_index(drop=True)
    ratio = set(ratio_metrics)
    for col in ("estimate", "ci_low", "ci_high"):
        if col not in b.columns or col not in a.columns:
            continue
        was = pd.to_numeric(b[col], errors="coerce").to_numpy(float)
        now = pd.to_numeric(a[col], errors="coerce").to_numpy(float)
        gone = np.isfinite(was) & ~np.isfinite(now)
        for i in np.flatnonzero(gone):
            x = was[i]
            for f in _FORMATS:
                pats.add(r"(?<![\d.])" + re.escape(f(x)))
            if "metric" in b.columns and (str(b["metric"].iloc[i]) in ratio or "hazard" in str(b["metric"].iloc[i])):
                pats.add(r"(?<![\d.])" + re.escape(f"{x:.2f}") + r"(?![\d])")
    for col in ("n", "contact", "comparison", "count", "at_risk", "events"):
        if col not in b.columns or col not in a.columns:
            continue
        was = pd.to_numeric(b[col], errors="coerce").to_numpy(float)
        now = pd.to_numeric(a[col], errors="coerce").to_numpy(float)
        for x in was[np.isfinite(was) & ~np.isfinite(now)]:
            v = int(round(x))
            for s in {f"{v:,}", str(v)}:
                pats.add(r"(?<![\d.,])" + re.escape(s) + r"(?![\d]|[.,]\d)" + _NOT_A_COUNT)
    return sorted(pats)


_SENTENCE = re.compile(r"(?<=[.;!?])\s+(?=[A-Z(*])")


@functools.lru_cache(maxsize=16)
def _alternation(tokens: tuple[str, ...]) -> re.Pattern | None:
    """The tokens as one compiled alternation (None without tokens).

    One pattern instead of one per token: a report has hundreds of tokens, more than ``re``'s cache holds;
    and kept here, since a report redacts each of its notes with the same tokens (compiling the
    alternation took ~30 ms a time).
    """
    return re.compile("|".join(f"(?:{t})" for t in tokens)) if tokens else None


def redact_text(text, tokens: Iterable[str], threshold: int, *, what: str = "customers"):
    """A sentence for people with nothing a suppression rule withheld.

    Each sentence containing a withheld figure (``tokens`` from :func:`withheld_tokens`) is replaced by one
    saying so; then small counts quoted in the rest (``"7 contacts"``) become ``"fewer than 10 contacts"``
    (:func:`sanitize_text`).  Non-strings are returned unchanged.

    Examples
    --------
    >>> redact_text("Of 84 customers 99% stayed. The effect is 2%.", [r"99%"], 10)
    '[One figure withheld here: it describes fewer than 10 customers.] The effect is 2%.'
    """
    if not isinstance(text, str):
        return text
    hit = _alternation(tuple(tokens))
    out: list[str] = []
    note = f"[One figure withheld here: it describes fewer than {threshold} {what}.]"
    for paragraph in text.split("\n"):
        parts = []
        for sentence in _SENTENCE.split(paragraph):
            if hit is not None and hit.search(sentence):
                if not parts or parts[-1] != note:
                    parts.append(note)
            else:
                parts.append(sentence)
        out.append(" ".join(parts))
    return sanitize_text("\n".join(out), threshold)
