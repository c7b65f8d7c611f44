"""The missed-call SMS estimator: reach before and after the policy, and the policy's effect on reach.

Three views of the SMS policy are computed from the same case table, and shown
side by side because they answer the question with very different honesty:

``reach.sms_effect`` (primary)
    An attempt-level difference-in-differences (:mod:`.answer_model`).  The SMS
    is sent only after ``sms_after_attempts`` unanswered attempts, so it can
    only change later attempts; the early attempts of the same periods carry
    the secular trend, the season and the drift in who is being called, but
    not the policy.
``reach.sms_difference``
    The raw after-minus-before difference in case-level reach.
``reach.its_level_change``
    An interrupted time series on weekly case-level reach (:mod:`.its`).

The last two also move with the case mix and the secular trend in answering;
``benchmarks/reach_bias.py`` measures on simulated data which of the three
recovers the simulator's true effect.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

from ..._validation import check_choice, check_int, check_level, check_no_sample
from ...contract.base import open_data
from ...errors import DataWarning, NotAvailableError, SmallSampleWarning
from ...narrative import reach as narrative
from ...results import Result, tidy
from ..intervals import wilson_interval
from .answer_model import fit_sms_model, protocol
from .answer_rates import answer_rows, answer_table
from .cases import PHONE_ARMS, reach_tables, resolve_policy, sms_rule
from .its import fit_its, weekly_reach

__all__ = ["sms_effect"]

_REACH_METHOD = "share of phone cases reached, Wilson interval"


def _quarter_rows(cr: pd.DataFrame, level: float) -> list[dict]:
    q = cr.groupby("quarter").agg(n=("reached", "size"), reached=("reached", "sum")).reset_index()
    lo, hi = wilson_interval(q["reached"].to_numpy(float), q["n"].to_numpy(float), level)
    return [{"metric": "reach.quarter", "group": r.quarter, "estimate": r.reached / r.n, "ci_low": lo[i],
             "ci_high": hi[i], "n": r.n, "method": _REACH_METHOD}
            for i, r in enumerate(q.itertuples(index=False))]


def sms_effect(data, sample=None, /, *, level: float = 0.95, sms_after_attempts: int | None = None,
               policy_start=None, arms: Sequence = PHONE_ARMS, interval: str = "delta", n_boot: int = 200, seed=0,
               period: str = "quarter", hac_lags: int = 4) -> Result:
    """Reach before and after the missed-call SMS policy, and the policy's effect on reach.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
        The data (tables ``call_cases``, ``call_attempts``, ``sms``, and
        ``activity`` and ``customers`` for the case mix).
    sample : None
        The SMS estimator reads the call tables directly and takes no sample.
    level : float
        Confidence level of every interval.
    sms_after_attempts : int, optional
        The SMS is sent after this many unanswered attempts, so attempts
        ``sms_after_attempts + 1`` and later are the ones it can change.
        Default: the operator's rule, ``config.sms_after_attempts`` in
        operator.toml (2, Norsk Tipping's and Svenska Spel's rule, when absent).
    policy_start : date, optional
        Start of the policy; default ``config.sms_policy_start``.  Without a
        policy date only reach over time is reported.
    arms : sequence
        Arms whose phone cases count; default ``(None, "call")``.
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
          attempt-level difference-in-differences (``se``: delta method, or
          the bootstrap draws' standard deviation);
        * ``reach.after_sms_without_policy`` / ``after_sms``: observed reach
          after the policy minus the effect;
        * ``reach.sms_odds_ratio`` / ``difference``: odds ratio of answering a
          late attempt, after vs before (``se`` on the log scale);
        * ``reach.sms_difference`` / ``difference``: raw after - before
          (Newcombe hybrid score interval);
        * ``reach.its_level_change`` and ``reach.its_slope_change`` (per year) /
          ``difference``: interrupted time series (Newey-West ``se``);
        * ``reach.overall`` / ``all`` and ``reach.quarter`` / quarter label;
        * ``attempt.answer_rate`` as in :func:`answer_rates`.

        Without a policy date, only ``reach.overall``, ``reach.quarter`` and
        ``attempt.answer_rate``.  Plot data: ``"weekly"`` (weekly reach with
        the ITS fit and its counterfactual), ``"answer_by_attempt"``,
        ``"policy_start"``.  ``details`` holds the case table, the fitted
        answer model and the ITS fit.  The text is written by
        :func:`carecall_eval.narrative.reach.text` from the summary and settings.

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
    ds = open_data(data, "sms_effect")
    check_no_sample(sample, "sms_effect")
    level = check_level(level)
    sms_after_attempts, window_hours = sms_rule(ds, sms_after_attempts, None)
    s = check_int("sms_after_attempts", sms_after_attempts, 1)
    hac_lags = check_int("hac_lags", hac_lags, 0)
    check_choice("interval", interval, ("delta", "bootstrap"))
    check_choice("period", period, ("quarter", "month"))
    if interval == "bootstrap":
        n_boot = check_int("n_boot", n_boot, 20)
    policy = resolve_policy(ds, policy_start)
    cr, att = reach_tables(ds, arms=arms, policy_start=policy, sms_window_hours=window_hours)
    if cr.empty:
        raise NotAvailableError("no phone cases with attempts in call_cases/call_attempts "
                                f"(arms={list(arms)!r}); nothing to estimate")
    data_end = pd.Timestamp(ds.data_end)
    K = int(att["attempt_no"].max())
    offset, cont = protocol(att, cr, data_end, K)
    complete_before = data_end - pd.Timedelta(days=float(offset[-1]))
    post = cr["post_policy"].astype("boolean")
    n_post = int(post.sum()) if policy is not None else 0
    settings = {"estimand": "change in case-level reach for phone cases opened after the policy",
                "level": level, "sms_after_attempts": s, "sms_window_hours": float(window_hours),
                "arms": list(arms), "interval": interval,
                "n_boot": n_boot if interval == "bootstrap" else None,
                "seed": seed if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) else None,
                "period": period, "hac_lags": hac_lags, "max_attempts": K,
                "protocol_offsets_days": [float(x) for x in offset],
                "data_end": str(data_end.date()),
                "policy_start": None if policy is None else str(policy.date()),
                "policy_cases": None if policy is None else [len(cr) - n_post, n_post]}

    n_all, r_all = len(cr), int(cr["reached"].sum())
    lo, hi = wilson_interval(r_all, n_all, level)
    rows = [{"metric": "reach.overall", "group": "all", "estimate": r_all / n_all, "ci_low": lo, "ci_high": hi,
             "n": n_all, "method": _REACH_METHOD}]
    rows += _quarter_rows(cr, level)

    have_policy = policy is not None and bool(post.any()) and bool((~post).any())
    if policy is not None and not have_policy:
        warnings.warn(f"sms_policy_start {policy.date()} leaves no phone cases on one side "
                      f"({n_post} after, {len(cr) - n_post} before); reporting reach over time only",
                      DataWarning, stacklevel=2)
    tab = answer_table(att, cr.set_index("case_id")["post_policy"] if have_policy else None, level)
    weekly = weekly_reach(cr, complete_before, policy if have_policy else None)
    details: dict = {"cases": cr}
    plot_data = {"answer_by_attempt": tab, "policy_start": policy if have_policy else None,
                 "sms_after_attempts": s}

    def result(rows) -> Result:
        summary = tidy(rows)
        plot_data["weekly"] = weekly
        return Result(name="reach", summary=summary, text=narrative.text(summary, settings), settings=settings,
                      plot_data=plot_data, details=details)

    if not have_policy:
        weekly["fitted"] = np.nan
        weekly["counterfactual"] = np.nan
        return result(rows + answer_rows(tab))

    # --- before / after and the raw difference ----------------------------------------------------
    from statsmodels.stats.proportion import confint_proportions_2indep

    pre, postc = cr[~post.to_numpy(bool)], cr[post.to_numpy(bool)]
    n0, x0 = len(pre), int(pre["reached"].sum())
    n1, x1 = len(postc), int(postc["reached"].sum())
    for metric, group, x, n in (("reach.before_sms", "before_sms", x0, n0), ("reach.after_sms", "after_sms", x1, n1)):
        lo_, hi_ = wilson_interval(x, n, level)
        rows.append({"metric": metric, "group": group, "estimate": x / n, "ci_low": lo_, "ci_high": hi_, "n": n,
                     "method": _REACH_METHOD})
    dl, dh = confint_proportions_2indep(x1, n1, x0, n0, method="newcomb", compare="diff", alpha=1 - level)
    raw = x1 / n1 - x0 / n0
    rows.append({"metric": "reach.sms_difference", "group": "difference", "estimate": raw, "ci_low": dl,
                 "ci_high": dh, "n": n0 + n1, "method": "raw after - before, Newcombe hybrid score interval"})

    # --- primary: attempt-level difference-in-differences -------------------------------------------
    m = fit_sms_model(ds, cr, att, postc, s=s, period=period, policy=policy, offset=offset, cont=cont,
                      data_end=data_end, level=level, interval=interval, n_boot=n_boot, seed=seed)
    e_lo, e_hi = m.ci
    rows.append({"metric": "reach.sms_effect", "group": "difference", "estimate": m.effect, "se": m.se,
                 "ci_low": e_lo, "ci_high": e_hi, "n": n1, "method": m.method})
    obs_after = x1 / n1
    rows.append({"metric": "reach.after_sms_without_policy", "group": "after_sms", "estimate": obs_after - m.effect,
                 "se": m.se, "ci_low": obs_after - e_hi, "ci_high": obs_after - e_lo, "n": n1,
                 "method": "observed reach after the policy minus reach.sms_effect (its interval and se)"})
    rows.append({"metric": "reach.sms_odds_ratio", "group": "difference", "estimate": m.odds_ratio,
                 "se": m.log_or_se, "ci_low": m.odds_ratio_ci[0], "ci_high": m.odds_ratio_ci[1],
                 "n": m.n_attempts,
                 "method": f"odds ratio of answering attempts > {s}, after vs before, case-clustered "
                           "Wald interval (se on the log scale)"})

    # --- secondary: interrupted time series -------------------------------------------------------
    n_pre_w = int((~weekly["post_policy"]).sum())
    n_post_w = int(weekly["post_policy"].sum())
    if n_pre_w >= 8 and n_post_w >= 8:
        its_fit, its_ci, fitted, counterfactual, season = fit_its(weekly, policy, level, hac_lags)
        weekly["fitted"], weekly["counterfactual"] = fitted, counterfactual
        n_its = int(weekly["n"].sum())
        for term, metric in (("level_change", "reach.its_level_change"), ("slope_change", "reach.its_slope_change")):
            rows.append({"metric": metric, "group": "difference", "estimate": float(its_fit.params[term]),
                         "se": float(its_fit.bse[term]),
                         "ci_low": float(its_ci.loc[term, 0]), "ci_high": float(its_ci.loc[term, 1]), "n": n_its,
                         "method": "segmented WLS on weekly reach" + (" with season terms" if season else "")
                                   + f", Newey-West ({hac_lags} lags)"
                                   + (", per year" if term == "slope_change" else "")})
        details["its"] = its_fit
        settings["its_weeks"] = [n_pre_w, n_post_w]
        settings["its_season_terms"] = bool(season)
    else:
        weekly["fitted"] = np.nan
        weekly["counterfactual"] = np.nan
        warnings.warn(f"too few weeks for an interrupted time series ({n_pre_w} before, {n_post_w} after; need 8 "
                      "each); reach.its_level_change is not reported", SmallSampleWarning, stacklevel=2)
    details.update({"answer_model": m.fit, "answer_model_terms": m.names, "attempts": m.attempts,
                    "predicted_reach_with": m.reach_with, "predicted_reach_without": m.reach_without,
                    "protocol_continuation": cont.tolist(), "bootstrap": m.boot})
    return result(rows + answer_rows(tab))
