"""Randomized arms (call / letter / control): effects by assigned arm (ITT) and per protocol.

No matching: randomization balances the arms.  Pre-window spending enters the
PPML only to gain precision.
"""
from __future__ import annotations

from ..cohorts.build import Cohort
from ..results import Result, tidy
from .spending import OUTCOMES, add_outcomes, ppml

_PRECISION_COVARIATES = ("log_tl_28", "log_tl_84_29", "log_tl_365_85")


def randomized_effects(dataset, cohort: Cohort, *, outcome: str = "tl", window: int = 84,
                       level: float = 0.95) -> Result:
    """Spending effect of each arm against control, by assignment and per protocol.

    Parameters
    ----------
    dataset : carecall_eval.contract.Dataset
    cohort : Cohort
        Built with ``StudyDesign(contact="randomized", comparison="arms")``.
    outcome, window, level
        As in :func:`carecall_eval.outcomes.spending.spending_effect`.

    Returns
    -------
    Result
        ``spending.rct_itt_change`` (groups ``call``, ``letter``: assigned arm vs
        control) and ``spending.rct_pp_change`` (group ``call``: reached
        members of the call arm vs control).  Per protocol is not randomized:
        who answers differs from who does not, so read it with care.
    """
    if cohort.design.comparison != "arms":
        raise ValueError("randomized_effects needs a cohort built with contact='randomized', comparison='arms'")
    if outcome not in OUTCOMES:
        raise ValueError(f"randomized_effects: outcome={outcome!r} is not one of {sorted(OUTCOMES)}")
    t = add_outcomes(dataset, cohort.table, (window,), cohort.design.pre_window)
    t = t[t[f"followup_{window}"]]
    arms = sorted(set(t["group"]) - {"control"})
    if "control" not in set(t["group"]) or not arms:
        raise ValueError("randomized_effects: the data have no control arm and active arm with complete follow-up")
    y = f"{outcome}_post{window}"
    cov = [c for c in _PRECISION_COVARIATES if c in t.columns]
    rows = []
    for arm in arms:
        d = t[t["group"].isin([arm, "control"])]
        X = d[cov].copy()
        X.insert(0, "arm", (d["group"] == arm).astype(float))
        e = ppml(d[y], X, term="arm", level=level)
        rows.append({"metric": "spending.rct_itt_change", "group": arm, "estimate": e.estimate, "ci_low": e.ci_low,
                     "ci_high": e.ci_high, "n": len(d), "window": window, "outcome": outcome,
                     "method": "ITT: assigned arm vs control, PPML with pre-window spending, HC0"})
    if "call" in arms:
        d = t[(t["group"] == "control") | ((t["group"] == "call") & t["reached"])]
        X = d[cov].copy()
        X.insert(0, "arm", (d["group"] == "call").astype(float))
        e = ppml(d[y], X, term="arm", level=level)
        rows.append({"metric": "spending.rct_pp_change", "group": "call", "estimate": e.estimate,
                     "ci_low": e.ci_low, "ci_high": e.ci_high, "n": len(d), "window": window, "outcome": outcome,
                     "method": "per protocol: reached members of the call arm vs control (not randomized)"})
    s = tidy(rows)
    parts = [f"{r.group} arm {r.estimate:+.1%} (95% CI {r.ci_low:+.1%} to {r.ci_high:+.1%})"
             for r in s[s["metric"] == "spending.rct_itt_change"].itertuples()]
    text = (f"In the randomized study, by assigned arm against control over {window} days: "
            + "; ".join(parts) + ".")
    counts = t["group"].value_counts().to_dict()
    return Result("randomized", s, text, {"outcome": outcome, "window": window, "level": level,
                                           "arm_sizes": {k: int(v) for k, v in counts.items()}},
                  {"estimates": s}, {"table": t})
