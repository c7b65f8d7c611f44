"""Plan a randomized care-call study: the effect it can detect, or the months it needs, from the operator's data.

Inputs, each measured on the operator's own data (or given):

``eligible_per_month``
    Cases a month that would enter the study: every phone case meeting the
    cohort rules of the default design (reached or not), over the months the
    data cover.
``reach``
    Share of those cases reached within the attempt window.
``spread``
    Residual coefficient of variation ``r`` of the post-window outcome after
    the analysis's working model (Poisson on pre-window spending):
    ``sqrt(mean((y - yhat)^2)) / mean(y)``.  The ITT estimator of
    :func:`carecall_eval.randomized_effects` has ``se(log ratio) ~ r sqrt(1 /
    n_arm + 1 / n_control)``.
``complier_ratio``
    ``kappa``: the reached customers' spending relative to everyone's (from
    pre-window spending), since the ITT change is ``reach * kappa`` times the
    effect of being reached on the ratio scale.

For a design allocating shares ``q_arm`` and ``q_control`` of ``N = flow x months``
customers, with ``z = z_{1 - alpha/2} + z_{power}``:

* minimum detectable ITT change: ``expm1(-z * r * sqrt(1 / (q_arm N) + 1 / (q_control N)))``;
* minimum detectable effect of being reached: that divided by ``reach * kappa``
  (the test of "no effect of being reached" is the ITT test, so its power is
  the same);
* months for an ITT change ``d``: ``r^2 (1 / q_arm + 1 / q_control) z^2 / (flow log1p(d)^2)``,
  and for an effect of being reached ``d``, the same with ``reach * kappa * d``.

Designs: ``1:1`` (call, control), ``1.5:1`` (call 60%, control 40%, as in the
Norsk Rikstoto trial) and ``triplet`` (call, letter, control a third each, as
in the Norsk Tipping trial; letter vs control has the same ITT figures as call
vs control).  Matched sets usually make the estimate more precise than this
(the gain is not counted: the plan is conservative there).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .._validation import check_horizon, check_level, z_quantile
from ..errors import InputError, NotAvailableError
from ..results import Result, not_available, tidy

__all__ = ["plan_trial", "plan_inputs", "DESIGNS"]

#: Allocation shares of the compared arms (call, control) of each design.
DESIGNS: dict[str, tuple[float, float]] = {"1:1": (0.5, 0.5), "1.5:1": (0.6, 0.4), "triplet": (1 / 3, 1 / 3)}


def plan_inputs(data, *, window: int = 84, triggers=None, covariates=None) -> dict:
    """Eligible flow per month, reach, outcome spread and complier spending ratio measured on the data."""
    from ..cohorts.build import build_cohort
    from ..cohorts.design import StudyDesign
    from ..contract.base import open_data
    from ..outcomes.randomized import PRECISION_COVARIATES
    from ..outcomes.spending import add_outcomes
    from .estimators import poisson_fit

    ds = open_data(data, "plan_trial")
    design = StudyDesign(triggers=tuple(triggers) if triggers else None)
    cohort = build_cohort(ds, design)
    t = cohort.table
    if t.empty:
        raise NotAvailableError("plan_trial: no phone cases meet the cohort rules in these data")
    months = pd.to_datetime(t["index_date"]).dt.to_period("M")
    n_months = (months.max() - months.min()).n + 1
    t = add_outcomes(ds, t, (window,), design.pre_window)
    done = (pd.to_datetime(t["index_date"]) + pd.Timedelta(days=window - 1)) <= pd.Timestamp(ds.data_end)
    f = t[done.to_numpy()]
    if len(f) < 20:
        raise NotAvailableError(f"plan_trial: fewer than 20 cases have {window} days of follow-up")
    y = f[f"tl_post{window}"].to_numpy(float)
    cols = [c for c in (covariates or PRECISION_COVARIATES) if c in f.columns]
    Xc = np.column_stack([np.ones(len(f)), f[cols].to_numpy(float)])
    beta, kept = poisson_fit(y, Xc)
    yhat = np.exp(Xc[:, kept] @ beta)
    pre = t["tl_pre"].to_numpy(float)
    reached = t["reached"].to_numpy(bool)
    return {"eligible_per_month": len(t) / n_months, "reach": float(reached.mean()),
            "spread": float(np.sqrt(np.mean((y - yhat) ** 2)) / y.mean()),
            "spread_unadjusted": float(y.std(ddof=1) / y.mean()),
            "complier_ratio": float(pre[reached].mean() / pre.mean()) if reached.any() and pre.mean() > 0 else 1.0,
            "n_cases": int(len(t)), "n_months": int(n_months), "n_followed": int(len(f)),
            "window": window, "covariates": cols}


def _mde(r: float, q1: float, q0: float, n: float, z: float) -> float:
    return math.expm1(-z * r * math.sqrt(1 / (q1 * n) + 1 / (q0 * n)))


def _months(r: float, q1: float, q0: float, flow: float, z: float, d: float) -> float:
    return r * r * (1 / q1 + 1 / q0) * z * z / (flow * math.log1p(d) ** 2)


def plan_trial(data=None, /, *, level: float = 0.95, power: float = 0.8, window: int = 84,
               months: float | None = None, effect: float | None = None,
               eligible_per_month: float | None = None, reach: float | None = None,
               spread: float | None = None, complier_ratio: float | None = None, designs=tuple(DESIGNS),
               triggers=None) -> Result:
    """Minimum detectable effect for a recruitment period, or months needed for an effect, per design.

    Parameters
    ----------
    data : path or Dataset, optional
        The operator's data, from which the inputs are measured; inputs given
        as arguments override the measured ones (all four are needed without data).
    level : float
        The test is two-sided at ``1 - level``.
    power : float
        Power of the test (strictly between 0 and 1).
    window : int
        Post window of the outcome (days).
    months : float, optional
        Recruitment period; default 12 (when no ``effect`` is given).
    effect : float, optional
        A change to detect (e.g. ``-0.10``): gives the months needed instead.
    eligible_per_month, reach, spread, complier_ratio : float, optional
        See the module docstring.
    designs : sequence of {"1:1", "1.5:1", "triplet"}
    triggers : sequence of str, optional
        Restrict the measured flow to these trigger types.

    Returns
    -------
    Result
        ``trial.eligible_per_month``, ``trial.reach_rate``, ``trial.spending_spread``,
        ``trial.complier_spending_ratio`` (group ``all``); per design (``group``):
        ``trial.mde_itt`` and ``trial.mde_reached`` (with ``months``, ``n_call``,
        ``n_control``), or ``trial.months_itt`` and ``trial.months_reached``.

    Examples
    --------
    >>> r = plan_trial(eligible_per_month=300, reach=0.5, spread=2.0, complier_ratio=1.0, months=12)
    >>> round(float(r.metric("trial.mde_itt", "1:1")["estimate"]), 4)
    -0.1704
    >>> r = plan_trial(eligible_per_month=300, reach=0.5, spread=2.0, complier_ratio=1.0, effect=-0.17037)
    >>> round(float(r.metric("trial.months_itt", "1:1")["estimate"]), 2)
    12.0
    """
    level = check_level(level)
    power = check_level(power, "power")
    if power <= 0.5:
        raise InputError(f"plan_trial: power must be above 0.5 (for example 0.8), got {power!r}")
    window = check_horizon("window", window)
    if effect is not None and months is not None:
        raise InputError("plan_trial: give months= (for the detectable effect) or effect= (for the months "
                         "needed), not both")
    if effect is not None and not (-1 < float(effect) < 0 or float(effect) > 0):
        raise InputError(f"plan_trial: effect must be a change such as -0.10 (above -1, not 0), got {effect!r}")
    if months is None and effect is None:
        months = 12
    if months is not None and not float(months) > 0:
        raise InputError(f"plan_trial: months must be positive, got {months!r}")
    bad = [d for d in designs if d not in DESIGNS]
    if bad:
        raise InputError(f"plan_trial: designs must be among {list(DESIGNS)}, got {bad}")
    given = {"eligible_per_month": eligible_per_month, "reach": reach, "spread": spread,
             "complier_ratio": complier_ratio}
    measured: dict = {}
    if data is not None:
        measured = plan_inputs(data, window=window, triggers=triggers)
    elif any(v is None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        raise InputError(f"plan_trial: without data, give {', '.join(missing)}")
    inp = {k: float(v) if v is not None else float(measured[k]) for k, v in given.items()}
    if not (inp["eligible_per_month"] > 0 and 0 < inp["reach"] <= 1 and inp["spread"] > 0
            and inp["complier_ratio"] > 0):
        raise InputError(f"plan_trial: inputs out of range: {inp} (flow > 0, 0 < reach <= 1, spread > 0, "
                         "complier_ratio > 0)")
    z = z_quantile(level) + z_quantile(2 * power - 1)
    flow, pi, r, kappa = inp["eligible_per_month"], inp["reach"], inp["spread"], inp["complier_ratio"]
    src = "measured on the data" if data is not None else "given"
    srcs = {k: ("given" if given[k] is not None else src) for k in given}
    rows = [
        {"metric": "trial.eligible_per_month", "group": "all", "estimate": flow,
         "n": measured.get("n_cases"),
         "method": f"phone cases meeting the cohort rules per month ({srcs['eligible_per_month']})"},
        {"metric": "trial.reach_rate", "group": "all", "estimate": pi, "n": measured.get("n_cases"),
         "method": f"share reached within the attempt window ({srcs['reach']})"},
        {"metric": "trial.spending_spread", "group": "all", "estimate": r, "n": measured.get("n_followed"),
         "method": f"residual coefficient of variation of the {window}-day outcome after the working model "
                   f"({srcs['spread']})"},
        {"metric": "trial.complier_spending_ratio", "group": "all", "estimate": kappa, "n": measured.get("n_cases"),
         "method": f"reached customers' pre-window spending relative to everyone's ({srcs['complier_ratio']})"},
    ]
    how = (f"two-sided at {1 - level:.3g}, power {power:.3g}; r sqrt(1/n_call + 1/n_control) on the log scale; "
           "matched-set gains not counted")
    for d in designs:
        q1, q0 = DESIGNS[d]
        base = {"group": d, "window": window}
        if effect is None:
            m_rec = float(months or 12)
            n = flow * m_rec
            mde = _mde(r, q1, q0, n, z)
            extra = {"months": m_rec, "n_call": int(round(q1 * n)), "n_control": int(round(q0 * n))}
            rows.append({**base, **extra, "metric": "trial.mde_itt", "estimate": mde, "n": int(round((q1 + q0) * n)),
                         "method": f"smallest ITT change detectable ({how})"})
            row = {**base, **extra, "metric": "trial.mde_reached", "n": int(round((q1 + q0) * n)),
                   "method": f"smallest effect of being reached detectable: ITT / (reach x complier ratio) ({how})"}
            reached = mde / (pi * kappa)
            rows.append({**row, "estimate": reached} if reached > -1 else
                        not_available(row, "even a 100% reduction among the reached would not be detectable"))
        else:
            e = float(effect)
            m_itt = _months(r, q1, q0, flow, z, e)
            rows.append({**base, "metric": "trial.months_itt", "estimate": m_itt, "effect": e,
                         "n": int(round((q1 + q0) * flow * m_itt)),
                         "method": f"months of recruitment for an ITT change ({how})"})
            e_itt = pi * kappa * e
            row = {**base, "metric": "trial.months_reached", "effect": e,
                   "method": "months of recruitment for an effect of being reached "
                             f"(ITT = reach x complier ratio x effect; {how})"}
            if e_itt <= -1:
                rows.append(not_available(row, "the implied ITT change is below -100%"))
            else:
                m = _months(r, q1, q0, flow, z, e_itt)
                rows.append({**row, "estimate": m, "n": int(round((q1 + q0) * flow * m))})
    summary = tidy(rows)
    settings = {"level": level, "power": power, "window": window,
                "months": float(months) if months is not None else None,
                "effect": float(effect) if effect is not None else None, "designs": list(designs), "inputs": inp,
                "sources": srcs, "measured": measured}
    from ..narrative.randomized import plan_text

    return Result("plan_trial", summary, plan_text(summary, settings), settings)
