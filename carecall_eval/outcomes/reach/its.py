"""Interrupted time series of weekly case-level reach around the SMS policy date (a secondary view).

Segmented weighted least squares of the weekly share of phone cases reached,
with a level and a slope change at the policy date, one annual harmonic when
the series spans a year, and Newey-West (HAC) standard errors.  It absorbs the
secular trend in answering and the drift in who is called along with the
policy, so ``reach.sms_effect`` (the attempt-level comparison) is the primary
figure and this one is shown beside it.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["weekly_reach", "fit_its", "WEEKS_PER_YEAR"]

WEEKS_PER_YEAR = 365.25 / 7


def weekly_reach(cr: pd.DataFrame, complete_before: pd.Timestamp, policy: pd.Timestamp | None) -> pd.DataFrame:
    """Weekly reach (cases opened that week, and reached) of the cases whose whole attempt sequence is in the data.

    With a policy date a week that straddles it is split into its before and after cases.
    """
    c = cr[cr["opened_on"] <= complete_before]
    keys = ["week"] + (["post_policy"] if policy is not None else [])
    w = c.groupby(keys, sort=True).agg(n=("reached", "size"), reached=("reached", "sum")).reset_index()
    w["reached"] = w["reached"].astype(int)
    w["reach"] = w["reached"] / w["n"]
    if policy is None:
        w["post_policy"] = False
    w["post_policy"] = w["post_policy"].astype(bool)
    return w.sort_values(["week", "post_policy"]).reset_index(drop=True)


def fit_its(weekly: pd.DataFrame, policy: pd.Timestamp, level: float, hac_lags: int):
    """Segmented WLS regression of weekly reach with level and slope change, season terms, HAC errors."""
    import statsmodels.api as sm

    t = ((weekly["week"] - policy).dt.days / 7.0).to_numpy()          # weeks since the policy
    post = weekly["post_policy"].to_numpy(float)
    span = t.max() - t.min()
    X = {"const": np.ones(len(t)), "time": t / WEEKS_PER_YEAR, "level_change": post,
         "slope_change": post * t / WEEKS_PER_YEAR}
    season = span >= WEEKS_PER_YEAR
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
