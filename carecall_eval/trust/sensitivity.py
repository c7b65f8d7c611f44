"""Sensitivity to what the data do not record: Rosenbaum bounds, tipping points, robustness value.

:func:`sensitivity_analysis` is one estimator on the matched sample:

* **Rosenbaum bounds** on the matched sets (:mod:`.rosenbaum`): the upper
  bound on the one-sided p-value of the m-test of no effect at several Γ, the
  largest Γ at which the effect stays significant, and the m-estimate of the
  daily shift with its randomization interval (Γ = 1);
* **tipping points** of the primary PPML ratio (:mod:`.tipping`): how strongly
  a hidden trait would have to go with being reached and with spending to
  carry the interval (and the estimate) to no change;
* the **robustness value** of the matched currency difference.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import check_choice, check_horizon, check_level
from ..cohorts.build import build_cohort
from ..cohorts.sample import as_sample
from ..contract.base import open_data
from ..errors import InputError, NotAvailableError
from ..results import Result, not_available, tidy
from .rosenbaum import gamma_star, m_estimate, m_scores, separable_bound, sets_matrix
from .tipping import STRENGTHS, ratio_tipping_table, robustness_value

__all__ = ["sensitivity_analysis", "GAMMAS"]

#: Values of Γ the p-value bound is shown at by default.
GAMMAS = (1.0, 1.25, 1.5, 2.0, 3.0)


def _responses(sets: pd.DataFrame, outcome: str, window: int, pre_window: int, response: str) -> np.ndarray:
    post = sets[f"{outcome}_post{window}"].to_numpy(float) / window
    if response == "post":
        return post
    return post - sets[f"{outcome}_pre"].to_numpy(float) / pre_window


def sensitivity_analysis(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl",
                         response: str = "change", gammas=GAMMAS, trim: float = 2.5,
                         strengths=STRENGTHS, alternative: str = "auto") -> Result:
    """How strong would an unrecorded difference between reached and unreached customers have to be?

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The operator data.
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` of an observational design; None builds the default cohort.
    level : float
        Confidence level: intervals at ``level``; the Rosenbaum test is one-sided at
        ``(1 - level) / 2``, so "significant" means the same as an interval excluding no effect.
    window : int
        Post window in days.
    outcome : {"tl", "wagered", "deposits", "active_days"}
        Measure (theoretical loss by default).
    response : {"change", "post"}
        Response of each customer in the Rosenbaum test: daily post-window level minus daily
        pre-window level (``"change"``), or the daily post-window level.
    gammas : sequence of float
        Values of Γ (>= 1) at which the p-value bound is reported.
    trim : float
        Huber's ψ trims at ``trim`` times the median absolute pair difference (``inf``: a mean).
    strengths : sequence of float
        Strengths of a hidden trait's link with being reached in the tipping-point table.
    alternative : {"auto", "less", "greater"}
        Direction of the one-sided test; "auto" follows the sign of the m-statistic at Γ = 1.

    Returns
    -------
    Result
        ``sensitivity.rosenbaum_gamma`` (the largest Γ at which the effect stays significant),
        ``sensitivity.rosenbaum_pvalue`` (group ``gamma=<Γ>``: upper bound on the one-sided p-value),
        ``sensitivity.m_estimate`` (daily shift with its randomization interval at Γ = 1),
        ``sensitivity.tipping_spending_interval`` and ``sensitivity.tipping_spending_point``
        (group ``reached x<a>``: the strength with spending a trait ``a`` times as common among the
        reached would need), ``sensitivity.robustness_value`` and
        ``sensitivity.robustness_value_interval`` (the matched currency difference).  A ``window``
        column gives the post window.

    Notes
    -----
    With matching with replacement (the cohort default) a comparison customer can sit in several
    matched sets; Rosenbaum's bounds treat the sets as independent, so they are then approximate
    (said in the method).  The tipping points use the PPML ratio and its interval as estimated
    (:func:`~carecall_eval.outcomes.spending.matched_ppml`); the robustness value uses the
    cluster-robust t statistic of the matched difference with ``n - 2`` degrees of freedom.
    """
    ds = open_data(data, "sensitivity_analysis")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, ("tl", "wagered", "deposits", "active_days"))
    check_choice("response", response, ("change", "post"))
    check_choice("alternative", alternative, ("auto", "less", "greater"))
    gammas = tuple(float(g) for g in gammas)
    if any(not np.isfinite(g) or g < 1 for g in gammas):
        raise InputError(f"sensitivity_analysis: every gamma must be a number >= 1, got {gammas!r}")
    if any(not np.isfinite(a) or a <= 1 for a in strengths):
        raise InputError(f"sensitivity_analysis: strengths must be ratios above 1, got {tuple(strengths)!r}")
    if outcome == "deposits" and not ds.has("deposits"):
        raise NotAvailableError("sensitivity_analysis: outcome='deposits' needs the optional deposits table")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "sensitivity_analysis",
                       randomized=False)
    from ..narrative.trust import sensitivity_text
    from ..outcomes.spending import _followup, add_outcomes, analysis_columns, analysis_sets, matched_estimates

    design = sample.design
    alpha = (1 - level) / 2
    base = {"window": window, "outcome": outcome}
    rows: list[dict] = []
    settings = {"level": level, "window": window, "outcome": outcome, "response": response, "gammas": list(gammas),
                "trim": trim, "strengths": list(strengths), "alpha_one_sided": alpha, "replace": sample.replace,
                "cluster": sample.cluster, "currency": getattr(ds.config, "currency", "") or "",
                "pre_window": design.pre_window}

    # --- Rosenbaum bounds on the matched sets --------------------------------------------------------------
    rb_method = (f"Huber-Maritz m-test (trim {trim:g} x median pair difference) of the daily "
                 f"{'change' if response == 'change' else 'post-window level'}, one treated customer per matched "
                 f"set, separable approximation (Rosenbaum 2007)"
                 + ("; comparison customers reused across sets (matching with replacement), so the bound is "
                    "approximate" if sample.replace else ""))
    gamma_row = {**base, "metric": "sensitivity.rosenbaum_gamma", "group": "difference", "method": rb_method}
    sets = analysis_sets(sample, (window,), sample.cohort.covariates)
    y = None
    if sets is None:
        reason = "Rosenbaum bounds need matched sets (nearest-neighbour matching); this sample has none"
        rows.append(not_available({**gamma_row, "n": 0}, reason))
        settings["direction"] = None
    else:
        sets = add_outcomes(ds, sets, (window,), design.pre_window, copy=False)
        sets = sets[_followup(sets, window, ds.data_end).to_numpy()]
        y = sets_matrix(_responses(sets, outcome, window, design.pre_window, response), sets["subclass"].to_numpy(),
                        sets["contact"].to_numpy() == 1)
        n_sets = int(y.shape[0])
        if n_sets < 2:
            rows.append(not_available({**gamma_row, "n": n_sets}, f"only {n_sets} matched set(s) with complete "
                                      f"{window}-day follow-up"))
            settings["direction"] = None
        else:
            sc = m_scores(y, trim=trim)
            b1 = separable_bound(sc, 1.0)
            direction = alternative if alternative != "auto" else ("less" if b1.deviate < 0 else "greater")
            settings["direction"] = direction
            sgn = -1.0 if direction == "less" else 1.0
            sc_dir = m_scores(sgn * y, trim=trim)
            g_star = gamma_star(sc_dir, alpha)
            settings["n_sets"] = n_sets
            if g_star is None:
                p1 = separable_bound(sc_dir, 1.0).pvalue
                rows.append(not_available({**gamma_row, "n": n_sets},
                                          f"the effect is not significant even with no hidden difference "
                                          f"(one-sided p = {p1:.3f} at gamma 1)"))
            else:
                rows.append({**gamma_row, "estimate": min(g_star, 1000.0), "n": n_sets,
                             **({"note": "at least 1000"} if not np.isfinite(g_star) else {})})
            for g in gammas:
                b = separable_bound(sc_dir, g)
                rows.append({**base, "metric": "sensitivity.rosenbaum_pvalue", "group": f"gamma={g:g}",
                             "estimate": b.pvalue, "n": n_sets, "gamma": g, "method": rb_method})
            est, lo, hi = m_estimate(y, level=level, trim=trim)
            unit = "days" if outcome == "active_days" else settings["currency"] or "currency"
            row = {**base, "metric": "sensitivity.m_estimate", "group": "difference", "estimate": est, "ci_low": lo,
                   "ci_high": hi, "n": n_sets,
                   "method": f"Huber-Maritz m-estimate of the daily shift ({unit} per day) at gamma 1, interval "
                             "from inverting the randomization test"}
            rows.append(row if np.isfinite(est) else not_available(row, "the m-estimate could not be found"))

    # --- tipping points of the primary ratio; robustness value of the currency difference -------------------
    m = add_outcomes(ds, analysis_columns(sample.table, (window,), sample.cohort.covariates), (window,),
                     design.pre_window, copy=False)
    m = m[_followup(m, window, ds.data_end).to_numpy()]
    n = len(m)
    est = None
    if (m["contact"] == 1).any() and (m["contact"] == 0).any():
        est = matched_estimates(m, outcome, window, list(sample.cohort.covariates),
                                groups=sample.cluster_ids(m), pre_window=design.pre_window, level=level)
    tip_method = ("strength with spending (risk ratio) a hidden trait would need, given its strength with being "
                  "reached, to carry the matched PPML {what} to no change (Ding-VanderWeele bounding factor)")
    ppml = est["matched"] if est is not None else None
    if ppml is None or not ppml.converged:
        reason = ("the matched PPML estimate is not available" if ppml is None
                  else "the matched PPML fit did not converge")
        for a in strengths:
            for what, metric in (("interval", "sensitivity.tipping_spending_interval"),
                                 ("estimate", "sensitivity.tipping_spending_point")):
                rows.append(not_available({**base, "metric": metric, "group": f"reached x{a:g}", "n": n,
                                           "method": tip_method.format(what=what)}, reason))
        tip = pd.DataFrame()
    else:
        tip = ratio_tipping_table(ppml.estimate, ppml.ci_low, ppml.ci_high, strengths)
        settings["ppml"] = {"estimate": ppml.estimate, "ci_low": ppml.ci_low, "ci_high": ppml.ci_high}
        for _, t in tip.iterrows():
            for what, metric, col in (("interval", "sensitivity.tipping_spending_interval", "rr_spending_interval"),
                                      ("estimate", "sensitivity.tipping_spending_point", "rr_spending_point")):
                v = float(t[col])
                row = {**base, "metric": metric, "group": f"reached x{t['rr_reached']:g}", "n": n,
                       "rr_reached": float(t["rr_reached"]), "method": tip_method.format(what=what)}
                rows.append({**row, "estimate": v} if np.isfinite(v) else
                            {**row, "estimate": np.nan, "note": "no association with spending is strong enough"})
    rv_method = ("robustness value (Cinelli-Hazlett): partial R-squared a hidden trait would need with both being "
                 "reached and spending to carry the matched difference in {unit} {what} to zero")
    unit = "days" if outcome == "active_days" else settings["currency"] or "currency"
    if est is not None:
        b, lo_d, hi_d, se = est["diff"]
        t_stat = b / se if se > 0 else np.nan
        dof = max(n - 2, 2)
        settings["matched_diff"] = {"estimate": b, "se": se, "t": t_stat, "dof": dof}
        for metric, alpha_rv, what in (("sensitivity.robustness_value", None, "(its estimate)"),
                                       ("sensitivity.robustness_value_interval", 1 - level, "(its interval)")):
            row = {**base, "metric": metric, "group": "difference", "n": n,
                   "method": rv_method.format(unit=unit, what=what)}
            rows.append({**row, "estimate": robustness_value(t_stat, dof, alpha=alpha_rv)} if np.isfinite(t_stat)
                        else not_available(row, "the matched difference has no standard error"))
    summary = tidy(rows)
    text = sensitivity_text(summary, settings)
    return Result("sensitivity", summary, text, settings, plot_data={"tipping": tip},
                  details={"set_responses": y})
