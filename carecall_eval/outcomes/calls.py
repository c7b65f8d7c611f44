"""Call length of answered care calls: mean, median, quartiles, 90th percentile, by group and over time.

Call length is skewed (a few long conversations), so the median and the
quantiles are reported beside the mean, with distribution-free (exact
order-statistic) intervals; the mean gets a t interval, which is adequate for
the hundreds of calls a quarter has but not for a handful.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .._validation import check_choice, check_int, check_level, check_no_sample
from ..calendar import quarter_of
from ..contract.base import open_data
from ..errors import DataWarning, InputError, NotAvailableError
from ..narrative import calls as narrative
from ..results import Result, tidy

__all__ = ["call_length", "quantile_interval", "BY_OPTIONS"]

#: Breakdowns :func:`call_length` offers.
BY_OPTIONS = ("outcome", "quarter", "agent")
#: Quantiles reported, with their metric ids.
_QUANTILES = {0.25: "call_length.q25_s", 0.5: "call_length.median_s", 0.75: "call_length.q75_s",
              0.9: "call_length.p90_s"}


def quantile_interval(x, q: float, level: float = 0.95) -> tuple[float, float, float]:
    """Sample quantile with an exact (distribution-free) order-statistic confidence interval.

    Parameters
    ----------
    x : array_like
        Observations (NaN are dropped).
    q : float
        Quantile, strictly between 0 and 1.
    level : float
        Confidence level.

    Returns
    -------
    (estimate, ci_low, ci_high) : tuple of float
        The estimate is ``numpy.quantile(x, q)`` (linear interpolation; for
        ``q = 0.5`` the usual median).  The interval is ``[x_(l), x_(u)]``
        with order statistics chosen from the Binomial(n, q) distribution of
        the number of observations below the true quantile, so that its
        coverage is at least ``level`` for any continuous distribution.  NaN
        ends mean there are too few observations for that level.

    Notes
    -----
    ``l`` is the smallest ``k`` with ``F(k) >= (1 - level)/2`` and ``u - 1`` the
    smallest ``k`` with ``F(k) >= 1 - (1 - level)/2``, where ``F`` is the
    Binomial(n, q) distribution function; the coverage is ``F(u - 1) - F(l -
    1)``.  Ties (durations rounded to seconds) make the interval slightly
    conservative.

    References
    ----------
    Conover, W. J. (1999). Practical Nonparametric Statistics, 3rd ed., section 3.2.

    Examples
    --------
    >>> est, lo, hi = quantile_interval(np.arange(1.0, 101.0), 0.5)
    >>> est, lo, hi
    (50.5, 40.0, 61.0)
    """
    level = check_level(level)
    if not 0 < q < 1:
        raise ValueError(f"q must be strictly between 0 and 1, got {q!r}")
    x = np.sort(np.asarray(x, dtype=float))
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return np.nan, np.nan, np.nan
    est = float(np.quantile(x, q))
    alpha = 1 - level
    lo_rank = int(stats.binom.ppf(alpha / 2, n, q))            # 1-based rank of the lower end
    hi_rank = int(stats.binom.ppf(1 - alpha / 2, n, q)) + 1    # 1-based rank of the upper end
    lo = float(x[lo_rank - 1]) if lo_rank >= 1 else np.nan
    hi = float(x[hi_rank - 1]) if hi_rank <= n else np.nan
    return est, lo, hi


def _mean_interval(x: np.ndarray, level: float) -> tuple[float, float, float, float]:
    """Mean, its standard error and the t interval (NaN where too few observations)."""
    n = x.size
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan
    m = float(x.mean())
    if n < 2:
        return m, np.nan, np.nan, np.nan
    sd = x.std(ddof=1)
    se = float(sd / np.sqrt(n))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n)
    return m, se, m - half, m + half


def _rows(x: np.ndarray, group: str, level: float) -> list[dict]:
    n = int(x.size)
    m, se, lo, hi = _mean_interval(x, level)
    rows = [{"metric": "call_length.mean_s", "group": group, "estimate": m, "se": se, "ci_low": lo, "ci_high": hi,
             "n": n, "method": "mean of answered calls, t interval from its standard error"}]
    qs = {}
    for q, metric in _QUANTILES.items():
        est, lo, hi = quantile_interval(x, q, level)
        qs[q] = est
        rows.append({"metric": metric, "group": group, "estimate": est, "ci_low": lo, "ci_high": hi, "n": n,
                     "method": f"{q:.0%} quantile, exact order-statistic interval"})
    rows.append({"metric": "call_length.iqr_s", "group": group, "estimate": qs[0.75] - qs[0.25], "ci_low": np.nan,
                 "ci_high": np.nan, "n": n, "method": "interquartile range (75% - 25% quantile), no interval"})
    return rows


def _pseudonyms(agent: pd.Series) -> tuple[pd.Series, dict]:
    ids = sorted(agent.dropna().astype(str).unique())
    width = max(2, len(str(len(ids))))
    mapping = {a: f"agent_{k + 1:0{width}d}" for k, a in enumerate(ids)}
    return agent.map(mapping).fillna("agent_unrecorded"), mapping


def call_length(data, sample=None, /, *, level: float = 0.95, by: Sequence[str] | str | None = None,
                include_agents: bool = False, n_bins: int = 30) -> Result:
    """Length of answered calls: n, mean, median, quartiles, IQR and 90th percentile, overall and by group.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The data (table ``call_attempts``; ``call_cases`` is not needed).
    sample : None
        Call length reads the call attempts directly and takes no sample.
    level : float
        Confidence level of every interval.
    by : {"outcome", "quarter", "agent"} or a sequence of them, optional
        Breakdowns besides the overall rows.  Default ``("outcome", "quarter")``
        plus ``"agent"`` when ``include_agents`` is true.
    include_agents : bool, default False
        Allow rows by agent.  Agents appear under stable pseudonyms
        (``agent_01`` ... in the sorted order of ``agent_id``; the mapping is
        in ``details["agent_pseudonyms"]``, never in the summary).  Keep the
        default for anything shared outside the operator.
    n_bins : int
        Number of log-spaced histogram bins in the plot data.

    Returns
    -------
    Result
        Rows ``call_length.mean_s``, ``call_length.median_s``,
        ``call_length.q25_s``, ``call_length.q75_s``, ``call_length.iqr_s``,
        ``call_length.p90_s`` with ``group`` ``"all"`` or ``"{by}={value}"``
        (e.g. ``"quarter=2025Q1"``, ``"outcome=limit_set"``), and
        ``call_length.trend_s_per_year`` / ``all`` (OLS slope of call length
        on calendar time, HC3 interval).  ``se`` is filled for the mean (its
        t interval) and the trend (HC3); quantile intervals are exact order
        statistics and have none.  The text is written by
        :func:`carecall_eval.narrative.calls.text`.  Plot data: ``"distribution"``
        (sorted durations with their ECDF), ``"histogram"`` (log-spaced bins),
        ``"quarters"`` (mean and median by quarter with intervals).

    Notes
    -----
    Every answered attempt counts (ordinary cases and study arms alike), with
    the quarter of the call itself.  Answered attempts without a duration are
    dropped with a warning (the contract requires one).
    """
    ds = open_data(data, "call_length")
    check_no_sample(sample, "call_length")
    level = check_level(level)
    if by is None:
        by = ("outcome", "quarter") + (("agent",) if include_agents else ())
    elif isinstance(by, str):
        by = (by,)
    by = tuple(by)
    for b in by:
        check_choice("by", b, BY_OPTIONS)
    if "agent" in by and not include_agents:
        raise InputError("call length by agent carries staff identifiers and belongs only in the operator's own "
                         "report; pass include_agents=True to allow it")
    n_bins = check_int("n_bins", n_bins, 2)
    att = ds.table("call_attempts")
    ans = att[att["answered"].astype(bool)].copy()
    missing = ans["duration_s"].isna() | ~(ans["duration_s"] > 0)
    if missing.any():
        warnings.warn(f"{int(missing.sum())} answered attempts have no positive duration_s and are left out",
                      DataWarning, stacklevel=2)
        ans = ans[~missing]
    if ans.empty:
        raise NotAvailableError("call_attempts has no answered attempts with a duration; nothing to summarise")
    ans["quarter"] = quarter_of(ans["attempted_at"])
    ans["outcome"] = ans["outcome"].fillna("(none)") if "outcome" in ans else "(none)"
    details: dict = {}
    if "agent" in by:
        ans["agent"], details["agent_pseudonyms"] = _pseudonyms(ans["agent_id"])
    x = ans["duration_s"].to_numpy(float)
    rows = _rows(x, "all", level)
    for dim in by:
        for value, g in ans.groupby(dim, sort=True):
            rows += _rows(g["duration_s"].to_numpy(float), f"{dim}={value}", level)

    # trend over calendar time (seconds per year), robust to unequal variance
    import statsmodels.api as sm

    years = ((ans["attempted_at"] - ans["attempted_at"].min()).dt.total_seconds() / (365.25 * 86400)).to_numpy()
    trend = None
    if np.ptp(years) > 0.25 and len(x) >= 10:
        trend = sm.OLS(x, sm.add_constant(years)).fit(cov_type="HC3")
        lo, hi = trend.conf_int(alpha=1 - level)[1]
        rows.append({"metric": "call_length.trend_s_per_year", "group": "all", "estimate": float(trend.params[1]),
                     "se": float(trend.bse[1]), "ci_low": float(lo), "ci_high": float(hi), "n": len(x),
                     "method": "OLS slope of call length on calendar time, HC3 robust interval"})
        details["trend_model"] = trend

    summary = tidy(rows)
    # plot data
    xs = np.sort(x)
    dist = pd.DataFrame({"duration_s": xs, "ecdf": np.arange(1, xs.size + 1) / xs.size})
    edges = np.geomspace(xs[0], xs[-1], n_bins + 1) if xs[-1] > xs[0] else np.array([xs[0] * 0.9, xs[0] * 1.1])
    counts, edges = np.histogram(xs, bins=edges)
    hist = pd.DataFrame({"bin_left": edges[:-1], "bin_right": edges[1:], "count": counts,
                         "share": counts / counts.sum()})
    qrows = summary[summary["group"].str.startswith("quarter=")]
    quarters = pd.DataFrame()
    if not qrows.empty:
        wide = qrows.pivot(index="group", columns="metric", values=["estimate", "ci_low", "ci_high", "n"])
        quarters = pd.DataFrame({
            "quarter": [g.split("=", 1)[1] for g in wide.index],
            "n": wide[("n", "call_length.mean_s")].to_numpy(),
            "mean_s": wide[("estimate", "call_length.mean_s")].to_numpy(),
            "mean_ci_low": wide[("ci_low", "call_length.mean_s")].to_numpy(),
            "mean_ci_high": wide[("ci_high", "call_length.mean_s")].to_numpy(),
            "median_s": wide[("estimate", "call_length.median_s")].to_numpy(),
            "median_ci_low": wide[("ci_low", "call_length.median_s")].to_numpy(),
            "median_ci_high": wide[("ci_high", "call_length.median_s")].to_numpy(),
        }).sort_values("quarter").reset_index(drop=True)
    overall = summary[summary["group"] == "all"].set_index("metric")
    plot_data = {"distribution": dist, "histogram": hist, "quarters": quarters,
                 "reference": overall.loc[["call_length.mean_s", "call_length.median_s", "call_length.p90_s"],
                                          "estimate"].to_dict()}

    settings = {"level": level, "by": list(by), "include_agents": bool(include_agents), "n_bins": n_bins,
                "population": "answered attempts (all cases)", "n_calls": int(len(x))}
    return Result(name="call_length", summary=summary, text=narrative.text(summary, settings), settings=settings,
                  plot_data=plot_data, details=details)
