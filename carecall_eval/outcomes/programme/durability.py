"""Does it last: the matched effect at 28 days, 12 weeks and 12 months side by side.

Each window's estimate is the spending module's matched PPML on the matched
customers whose own window is complete by the data end (so each window has its
own complete-follow-up comparison, and equals ``spending.matched_change`` at that
window).  Because fewer customers are followed for 12 months than for 28 days,
the windows also describe different people; the same estimates restricted to the
customers followed for the longest window (``durability.matched_change_common``)
separate a fading effect from a changing population.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from ..._validation import check_choice, check_horizon, check_level, horizon_phrase
from ...cohorts.build import build_cohort
from ...cohorts.sample import as_sample
from ...contract.base import open_data
from ...errors import InputError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from ..spending import OUTCOMES, _followup, add_outcomes, matched_ppml, naive_change
from .pooling import one_blas_thread

__all__ = ["effect_durability"]


@one_blas_thread
def effect_durability(data, sample=None, /, *, level: float = 0.95, windows: Sequence[int] | None = None,
                      outcome: str = "tl") -> Result:
    """The matched effect at several windows side by side, each against its own complete-follow-up comparison.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (default: the default cohort, matched).
    level : float
        Confidence level of every interval.
    windows : sequence of int, optional
        Post windows in days from the index, increasing (default: the design's, 28, 84 and 365).
    outcome : str
        Spending measure (as :func:`carecall_eval.spending_effect`).

    Returns
    -------
    Result
        Per window (column ``window``): ``durability.matched_change`` / ``difference`` (the customers with
        that window complete; equals ``spending.matched_change``), ``durability.matched_change_common`` /
        ``difference`` (only the customers followed for the longest window), ``durability.naive_change``
        / ``contact`` (reached customers' before/after change, for reference).  ``se`` of the log ratio.
        A window nobody was followed for is not available, with a note.  Plot data ``"durability"``.
    """
    ds = open_data(data, "effect_durability")
    level = check_level(level)
    check_choice("outcome", outcome, OUTCOMES)
    sample = as_sample(sample if sample is not None else build_cohort(ds), "effect_durability", randomized=False)
    design = sample.design
    windows = tuple(check_horizon("windows", w) for w in (windows or design.post_windows))
    if list(windows) != sorted(set(windows)):
        raise InputError(f"effect_durability: windows must increase, got {windows!r}")
    covariates = list(sample.cohort.covariates)
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    m_all = add_outcomes(ds, sample.table, windows, design.pre_window)
    full = add_outcomes(ds, sample.cohort.table, windows, design.pre_window)
    longest = windows[-1]
    common = m_all[_followup(m_all, longest, ds.data_end)]
    rows = []
    end = pd.Timestamp(ds.data_end).date()
    for w in windows:
        base = {"window": w, "outcome": outcome}
        for metric, m, who in (("durability.matched_change", m_all[_followup(m_all, w, ds.data_end)],
                                f"matched customers with complete {w}-day follow-up"),
                               ("durability.matched_change_common", common,
                                f"matched customers followed for the full {horizon_phrase(longest)}")):
            row = {**base, "metric": metric, "group": "difference", "n": len(m),
                   "method": f"matched PPML with baseline covariates on the {who}, cluster-robust by {cl} "
                             "(se of the log ratio)"}
            nc, nk = int((m["contact"] == 1).sum()), int((m["contact"] == 0).sum())
            if nc == 0 or nk == 0:
                span = f"{w}-day" if metric == "durability.matched_change" else f"{horizon_phrase(longest)} of"
                rows.append(not_available(row, f"no matched {'reached' if nc == 0 else 'comparison'} customer has "
                                               f"complete {span} follow-up before the data end ({end})"))
                continue
            e = matched_ppml(m, outcome, w, covariates, groups=sample.cluster_ids(m), level=level)
            rows.append({**row, "estimate": e.estimate, "se": e.se, "ci_low": e.ci_low, "ci_high": e.ci_high}
                        if e.converged else not_available(row, "the PPML fit did not converge"))
        fw = full[_followup(full, w, ds.data_end)]
        nrow = {**base, "metric": "durability.naive_change", "group": "contact",
                "n": int((fw["contact"] == 1).sum()),
                "method": "post/pre ratio of daily means among reached customers (PPML, clustered by customer; "
                          "se of the log ratio)"}
        if nrow["n"] == 0:
            rows.append(not_available(nrow, f"no reached customer has complete {w}-day follow-up"))
        else:
            nv = naive_change(fw, outcome, w, design.pre_window, level)
            rows.append({**nrow, "estimate": nv.estimate, "se": nv.se, "ci_low": nv.ci_low, "ci_high": nv.ci_high})
    summary = tidy(rows)
    settings = {"level": level, "windows": list(windows), "outcome": outcome, "outcome_label": OUTCOMES[outcome],
                "cluster": sample.cluster, "longest": longest,
                "n_common": [int((common["contact"] == 1).sum()), int((common["contact"] == 0).sum())]}
    plot = summary[summary["metric"].isin(["durability.matched_change", "durability.matched_change_common"])][
        ["metric", "window", "estimate", "ci_low", "ci_high", "n"]].reset_index(drop=True)
    return Result("durability", summary, narrative.durability_text(summary, settings), settings,
                  {"durability": plot}, {"matched_table": m_all})
