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

import re
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["is_small", "protect_partition", "suppress_counts", "sanitize_text", "km_points",
           "STAT_COLUMNS"]

#: Columns of a metric row that carry the statistic itself.
STAT_COLUMNS = ("estimate", "ci_low", "ci_high", "se")


def check_threshold(threshold) -> int:
    """Validate a small-cell threshold (a whole number >= 1)."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 1:
        raise ValueError(f"small-cell threshold must be a whole number >= 1 (default 10), got {threshold!r}")
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


_COUNT_TEXT = re.compile(r"\b(\d+)(\s+)(contacts?|comparisons?|customers?|cases?|calls?|rows?|people|events?)\b")


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
