"""Random-effects meta-analysis of operators' effect estimates.

:func:`meta_analysis` pools one effect across operators with statsmodels'
:func:`statsmodels.stats.meta_analysis.combine_effects` (DerSimonian-Laird
``"dl"`` or the iterated Paule-Mandel ``"iterated"`` between-operator
variance), on the scale where the estimate is approximately normal: the log
ratio for ratio effects (spending change, hazard ratio), the natural scale for
differences of proportions.

:data:`EFFECTS` lists the effects the comparison pools and how each is stored.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from .._validation import check_level, z_quantile
from ..narrative import ci
from ..results import Result, tidy

__all__ = ["Effect", "EFFECTS", "SE_SCALES", "to_analysis_scale", "from_analysis_scale", "se_from_ci",
           "meta_analysis", "METHODS"]

#: Between-operator variance estimators offered (statsmodels names).
METHODS = ("dl", "iterated")
_METHOD_LABEL = {"dl": "DerSimonian-Laird", "iterated": "Paule-Mandel (iterated)"}


@dataclass(frozen=True)
class Effect:
    """An effect pooled across operators.

    Attributes
    ----------
    key : str
        Short name (``"spending"``).
    metric, group : str
        Rows of ``metrics.csv``.
    scale : {"log1p", "log", "identity"}
        How the estimate maps to the analysis scale: ``"log1p"`` for a percent
        change stored as ratio - 1, ``"log"`` for a ratio, ``"identity"`` for a
        difference.
    label : str
        For people.
    headline_window : bool
        Row selected at the design's headline ``window``.
    """

    key: str
    metric: str
    group: str
    scale: str
    label: str
    headline_window: bool = False


EFFECTS = (
    Effect("spending", "spending.matched_change", "difference", "log1p",
           "Change in theoretical loss, reached vs matched unreached", headline_window=True),
    Effect("retention", "retention.hazard_ratio", "difference", "log",
           "Hazard ratio of leaving (account closed or self-excluded for good)"),
    Effect("retention_active", "retention.active_12m", "difference", "identity",
           "Difference in share still playing at 12 months"),
    Effect("reach_sms", "reach.sms_effect", "difference", "identity",
           "Change in case reach from the missed-call SMS"),
)

#: Metric ids whose estimate is a ratio (or ratio - 1), and the scale their ``se`` is on.
SE_SCALES = {
    "spending.naive_change": "log1p", "spending.matched_change": "log1p", "spending.post_only_change": "log1p",
    "spending.did_change": "log1p", "spending.subgroup_change": "log1p", "spending.rct_itt_change": "log1p",
    "spending.rct_pp_change": "log1p", "spending.placebo_change": "log1p",
    "retention.hazard_ratio": "log", "reach.sms_odds_ratio": "log",
    "retention.active_12m": "identity", "reach.sms_effect": "identity", "reach.sms_difference": "identity",
    "spending.matched_diff": "identity",
}


def to_analysis_scale(x, scale: str):
    x = np.asarray(x, dtype=float)
    if scale == "log1p":
        return np.log1p(x)
    if scale == "log":
        return np.log(x)
    if scale == "identity":
        return x
    raise ValueError(f"scale must be one of {{'log1p', 'log', 'identity'}}, got {scale!r}")


def from_analysis_scale(x, scale: str):
    x = np.asarray(x, dtype=float)
    if scale == "log1p":
        return np.expm1(x)
    if scale == "log":
        return np.exp(x)
    if scale == "identity":
        return x
    raise ValueError(f"scale must be one of {{'log1p', 'log', 'identity'}}, got {scale!r}")


def se_from_ci(ci_low, ci_high, scale: str, level: float = 0.95):
    """Standard error on the analysis scale from a Wald interval symmetric on that scale.

    Exact for the package's ratio estimates (``exp(b +- z se) - 1``) and Wald differences.
    """
    z = z_quantile(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (to_analysis_scale(ci_high, scale) - to_analysis_scale(ci_low, scale)) / (2 * z)


def meta_analysis(estimates, ses, labels, *, scale: str = "identity", method: str = "dl",
                  level: float = 0.95, metric: str = "effect") -> Result:
    """Random-effects meta-analysis of one effect across operators.

    Parameters
    ----------
    estimates : array-like
        Each operator's estimate on its natural scale (a change of -0.12 for
        -12%, a hazard ratio, a difference of proportions).
    ses : array-like
        Standard errors on the analysis scale (see ``scale``).
    labels : sequence of str
        Operator names.
    scale : {"log1p", "log", "identity"}
        Analysis scale: ``"log1p"`` pools ``log(1 + estimate)`` (percent
        changes), ``"log"`` pools ``log(estimate)`` (ratios).
    method : {"dl", "iterated"}
        Between-operator variance: DerSimonian-Laird or iterated Paule-Mandel
        (statsmodels ``method_re``).
    level : float
        Confidence level.
    metric : str
        Metric id the rows are labelled with.

    Returns
    -------
    Result
        ``summary`` rows: one per operator (``group`` = operator, with
        ``weight``) and ``group="pooled"`` (random effects) and
        ``group="pooled_fixed"`` (inverse-variance fixed effect), on the
        natural scale, with ``estimate_scaled`` and ``se`` on the analysis
        scale; ``params`` has ``tau2``, ``i2``, ``q``, ``q_pvalue``, ``k``.

    Notes
    -----
    statsmodels 0.15 leaves the DerSimonian-Laird moment estimate of tau^2
    negative when Q < k - 1 and then weights with it; the textbook estimator
    (and R metafor) truncates at zero, in which case the random-effects result
    equals the fixed-effect one.  We truncate: tau^2 = max(0, tau^2_DL), I^2 =
    max(0, (Q - df) / Q).  Intervals use the normal distribution (no
    Hartung-Knapp adjustment).  With two or three operators tau^2 is very
    imprecise; the pooled interval then understates the uncertainty about
    a new operator's effect.

    Examples
    --------
    >>> r = meta_analysis([-0.2, -0.1], [0.08, 0.05], ["A", "B"], scale="log1p")
    >>> round(float(r.metric("effect", "pooled")["estimate"]), 4)
    -0.1373
    """
    from statsmodels.stats.meta_analysis import combine_effects

    if method not in METHODS:
        raise ValueError(f"method must be one of {{'dl', 'iterated'}}, got {method!r}")
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(ses, dtype=float)
    labels = [str(x) for x in labels]
    if not (len(est) == len(se) == len(labels)):
        raise ValueError(f"estimates, ses and labels differ in length: {len(est)}, {len(se)}, {len(labels)}")
    y = to_analysis_scale(est, scale)
    bad = [labels[i] for i in range(len(y)) if not (np.isfinite(y[i]) and np.isfinite(se[i]) and se[i] > 0)]
    if bad:
        raise ValueError(f"meta_analysis: missing or non-positive estimate/SE for {bad}; leave those operators out")
    if len(y) < 2:
        raise ValueError(f"meta_analysis needs at least two operators, got {len(y)}")
    level = check_level(level)
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        # statsmodels takes the sqrt of a negative untruncated DL tau^2 (see Notes)
        warnings.filterwarnings("ignore", message="invalid value encountered in sqrt", category=RuntimeWarning)
        res = combine_effects(y, se ** 2, method_re=method, row_names=labels, alpha=1 - level)
    z = z_quantile(level)
    k = len(y)
    q = float(res.q)
    tau2_raw = float(res.tau2)
    tau2 = max(0.0, tau2_raw)
    if tau2_raw < 0:  # statsmodels does not truncate DL; use the fixed-effect weights (tau^2 = 0)
        w = 1 / se ** 2
        mu, mu_se = float(np.sum(w * y) / w.sum()), float(np.sqrt(1 / w.sum()))
        w_re = w / w.sum()
    else:
        mu, mu_se = float(res.mean_effect_re), float(res.sd_eff_w_re)
        w_re = np.asarray(res.weights_rel_re, dtype=float)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    q_p = float(stats.chi2.sf(q, k - 1))
    rows = []
    for i, lab in enumerate(labels):
        rows.append({"metric": metric, "group": lab, "estimate": est[i],
                     "ci_low": float(from_analysis_scale(y[i] - z * se[i], scale)),
                     "ci_high": float(from_analysis_scale(y[i] + z * se[i], scale)),
                     "method": "operator's estimate", "estimate_scaled": y[i], "se": se[i], "weight": w_re[i]})
    rows.append({"metric": metric, "group": "pooled", "estimate": float(from_analysis_scale(mu, scale)),
                 "ci_low": float(from_analysis_scale(mu - z * mu_se, scale)),
                 "ci_high": float(from_analysis_scale(mu + z * mu_se, scale)),
                 "method": f"random effects, {_METHOD_LABEL[method]} tau^2, {scale} scale",
                 "estimate_scaled": mu, "se": mu_se, "weight": 1.0})
    mu_fe, se_fe = float(res.mean_effect_fe), float(res.sd_eff_w_fe)
    rows.append({"metric": metric, "group": "pooled_fixed", "estimate": float(from_analysis_scale(mu_fe, scale)),
                 "ci_low": float(from_analysis_scale(mu_fe - z * se_fe, scale)),
                 "ci_high": float(from_analysis_scale(mu_fe + z * se_fe, scale)),
                 "method": f"fixed effect (inverse variance), {scale} scale",
                 "estimate_scaled": mu_fe, "se": se_fe, "weight": np.nan})
    summary = tidy(rows)
    pooled = summary.iloc[k]
    fmt = {"log1p": lambda v: f"{v:+.1%}", "log": lambda v: f"{v:.2f}",
           "identity": lambda v: f"{100 * v:+.1f} pts"}[scale]
    text = (f"Pooled over {k} operators ({_METHOD_LABEL[method]} random effects): {fmt(pooled['estimate'])} "
            f"({ci(pooled['ci_low'], pooled['ci_high'], level, fmt=fmt)}); "
            f"heterogeneity tau^2 = {tau2:.4f}, I^2 = {i2:.0%} (Q = {q:.2f}, p = {q_p:.2f}).")
    if k < 5:
        text += f" With only {k} operators the between-operator variance is poorly estimated."
    settings = {"method": method, "scale": scale, "level": level, "k": k, "tau2": tau2,
                "tau2_untruncated": tau2_raw, "i2": i2, "q": q, "q_pvalue": q_p,
                "engine": "statsmodels.stats.meta_analysis.combine_effects"}
    return Result(f"meta:{metric}", summary, text, settings, {"forest": summary}, {"combine_results": res})
