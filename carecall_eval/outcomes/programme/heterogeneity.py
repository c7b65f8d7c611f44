"""Who benefits most: the matched spending effect by subgroup, a heterogeneity test, and a many-comparisons warning.

The subgroup estimates are the spending module's (matched PPML within the
subgroup, errors clustered by the sample's one rule), over baseline-spending
tertiles (of theoretical loss in the pre window, cut among the reached
customers; each customer in their own tertile), main product, age band, gender
and trigger (comparisons following their reached customer's matched set).  For each dimension, Cochran's Q asks
whether the subgroups' log ratios differ by more than chance.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..._validation import check_choice, check_horizon, check_level
from ...cohorts.build import build_cohort
from ...cohorts.sample import as_sample
from ...contract.base import open_data
from ...errors import InputError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from ..spending import (
    OUTCOMES,
    _followup,
    _kept,
    _subgroups,
    add_outcomes,
    analysis_columns,
    analysis_sets,
    matched_ppml,
    subgroup_frame,
)
from .pooling import one_blas_thread, random_effects

__all__ = ["effect_heterogeneity", "DIMENSIONS", "SPEND_LEVELS"]

#: Subgroup dimensions offered, in the order shown.
DIMENSIONS = ("baseline_spend", "main_product", "age_band", "gender", "trigger")
#: Labels of the baseline-spending tertiles.
SPEND_LEVELS = ("low", "middle", "high")
#: Fewest reached (and comparison) rows in a subgroup for an estimate (the spending module's rule).
MIN_N = 20


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN kept)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    order = ok[np.argsort(p[ok])]
    m, run = len(order), 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * p[i]))
        out[i] = run
    return out


@one_blas_thread
def effect_heterogeneity(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl",
                         by: Sequence[str] = DIMENSIONS, spend_cuts: Sequence[float] | None = None) -> Result:
    """The matched effect by subgroup, with Cochran's Q for each dimension and a many-comparisons warning.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (default: the default cohort, matched).
    level : float
        Confidence level of every interval.
    window : int
        Post window in days (one of the design's post windows).
    outcome : str
        Spending measure (as :func:`carecall_eval.spending_effect`).
    by : sequence of {"baseline_spend", "main_product", "age_band", "gender", "trigger"}
        Dimensions, in the order shown.
    spend_cuts : (float, float), optional
        Theoretical-loss cut points of the pre window between low / middle and middle / high
        (default: the tertiles among the reached customers with complete follow-up).

    Returns
    -------
    Result
        Rows ``heterogeneity.change`` / ``"<dimension>=<level>"`` (columns ``by``, ``level``, ``window``;
        ``se`` of the log ratio; a subgroup with fewer than 20 reached or comparison rows is not
        available, with a note), ``heterogeneity.overall_change`` / ``all`` (the headline matched
        estimate, as ``spending.matched_change``), ``heterogeneity.q_test`` / dimension (estimate = the
        p-value of Cochran's Q; columns ``q``, ``df``, ``i2``, ``tau2``, ``p_holm``: Holm-adjusted over
        the dimensions).  Plot data ``"forest"`` (one row per subgroup, dimension order) and
        ``"overall"``.

    Notes
    -----
    Cochran's Q compares the subgroups' log ratios weighted by their inverse variances, as if they were
    independent; with matching with replacement a comparison customer can serve several subgroups,
    which makes the subgroups' estimates positively correlated and the test somewhat conservative.
    With ``k`` subgroup estimates at level ``L`` about ``k (1 - L)`` intervals would exclude the overall
    effect by chance alone: treat a single striking subgroup as a lead to check on new data.
    """
    ds = open_data(data, "effect_heterogeneity")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, OUTCOMES)
    by = tuple(by)
    for b in by:
        check_choice("by", b, DIMENSIONS)
    if spend_cuts is not None:
        spend_cuts = tuple(float(c) for c in spend_cuts)
        if len(spend_cuts) != 2 or not spend_cuts[0] < spend_cuts[1]:
            raise InputError(f"effect_heterogeneity: spend_cuts must be two increasing numbers, got {spend_cuts!r}")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "effect_heterogeneity", randomized=False)
    design = sample.design
    covariates = list(sample.cohort.covariates)
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    units = add_outcomes(ds, analysis_columns(sample.table, (window,), covariates, by), (window,), design.pre_window,
                         copy=False)
    units = _kept(units, _followup(units, window, ds.data_end))     # both are this function's own frames
    sets = None
    if sample.has_sets:
        sets = add_outcomes(ds, analysis_sets(sample, (window,), covariates, by), (window,), design.pre_window,
                            copy=False)
        sets = _kept(sets, _followup(sets, window, ds.data_end))
    frame = sets if sets is not None else units
    # only the columns read below: each is a new frame of a few columns, never a copy of the whole table
    reached = frame.loc[(frame["contact"] == 1).to_numpy(), ["subclass", "tl_pre"] if sets is not None else ["tl_pre"]]
    if sets is not None:
        reached = reached.drop_duplicates("subclass")
    if spend_cuts is None:
        spend_cuts = tuple(float(x) for x in np.quantile(reached["tl_pre"].to_numpy(float), [1 / 3, 2 / 3]))

    def add_spend(t: pd.DataFrame) -> pd.DataFrame:
        t = t.copy(deep=False)        # a new frame sharing the columns: only the new column is its own
        t["baseline_spend"] = np.asarray(SPEND_LEVELS, dtype=object)[
            np.searchsorted(np.asarray(spend_cuts), t["tl_pre"].to_numpy(float), side="right")]
        return t

    units, frame = add_spend(units), add_spend(frame)
    # baseline spending is the outcome's own pre-window level: a subgroup defined by the reached customer's
    # level alone would take customers whose pre window was unusually low (high) by chance, whose spending
    # then regresses up (down) more than their matched comparisons'; each row's own level is used instead,
    # so both groups are selected the same way.  The other dimensions follow the spending module's rule
    # (comparisons follow their matched set's reached customer).
    own_by = tuple(b for b in by if b == "baseline_spend")
    set_by = tuple(b for b in by if b != "baseline_spend")
    sub = pd.concat([_subgroups(units, outcome, window, covariates, level, sample.cluster_ids, None, by=own_by),
                     _subgroups(units, outcome, window, covariates, level, sample.cluster_ids,
                                frame if sets is not None else None, by=set_by)], ignore_index=True)
    est = {(r["by"], str(r["level"])): r for _, r in sub.iterrows()}
    # every level the reached customers have, in a stable order
    # the columns the levels and counts below read, with the derived subgroups
    d = subgroup_frame(frame, {"contact", "subclass", "customer_id", "age", *by})
    if sets is not None:
        lead = d[d["contact"] == 1].drop_duplicates("subclass").set_index("subclass")[list(set_by)]
        for b in set_by:
            d[b] = d["subclass"].map(lead[b]).to_numpy()
    own_d = subgroup_frame(units, {"contact", "subclass", "customer_id", "age", *by})
    rows, forest = [], []
    meth = f"matched PPML within the subgroup, cluster-robust by {cl} (se of the log ratio)"
    spend_words = {"low": f"pre-window theoretical loss below {spend_cuts[0]:,.0f}",
                   "middle": f"{spend_cuts[0]:,.0f} to {spend_cuts[1]:,.0f}",
                   "high": f"{spend_cuts[1]:,.0f} or more"}
    for b in by:
        db = own_d if b == "baseline_spend" else d
        present = db.loc[db["contact"] == 1, b].dropna().astype(str).unique().tolist()
        levels = [v for v in SPEND_LEVELS if v in present] if b == "baseline_spend" else sorted(present)
        for v in levels:
            base = {"metric": "heterogeneity.change", "group": f"{b}={v}", "by": b, "level": v, "window": window,
                    "outcome": outcome, "method": meth}
            if b == "baseline_spend":
                base["range"] = spend_words[v]
            if (b, v) in est:
                r = est[(b, v)]
                row = {**base, "estimate": r["estimate"], "se": r["se"], "ci_low": r["ci_low"],
                       "ci_high": r["ci_high"], "n": int(r["n"])}
            else:
                g = db[db[b].astype(str) == v]
                nc, nk = int((g["contact"] == 1).sum()), int((g["contact"] == 0).sum())
                row = not_available({**base, "n": int(g["customer_id"].nunique())},
                                    f"{nc} reached and {nk} comparison rows; at least {MIN_N} of each are needed"
                                    if min(nc, nk) < MIN_N else "the PPML fit gave no finite estimate")
            rows.append(row)
            forest.append(row)
    ov = matched_ppml(units, outcome, window, covariates, groups=sample.cluster_ids(units), level=level)
    overall = {"metric": "heterogeneity.overall_change", "group": "all", "window": window, "outcome": outcome,
               "estimate": ov.estimate, "se": ov.se, "ci_low": ov.ci_low, "ci_high": ov.ci_high, "n": len(units),
               "method": f"matched PPML with baseline covariates, cluster-robust by {cl} (se of the log ratio); "
                         "the headline spending.matched_change"}
    rows.append(overall if ov.converged else not_available(overall, "the PPML fit did not converge"))
    q_rows = []
    for b in by:
        s = [r for r in forest if r["by"] == b and np.isfinite(r.get("estimate", np.nan))]
        base = {"metric": "heterogeneity.q_test", "group": b, "by": b, "window": window, "outcome": outcome,
                "n": int(sum(r["n"] for r in s)),
                "method": "p-value of Cochran's Q across the subgroups' log ratios (inverse-variance weights); "
                          "small = the effect differs between subgroups"}
        if len(s) < 2:
            q_rows.append(not_available(base, "fewer than two subgroups have an estimate"))
            continue
        re = random_effects(np.log1p([r["estimate"] for r in s]), [r["se"] for r in s])
        q_rows.append({**base, "estimate": re.q_p, "q": re.q, "df": re.df, "i2": re.i2, "tau2": re.tau2})
    holm = _holm(np.array([r.get("estimate", np.nan) for r in q_rows], dtype=float))
    for r, ph in zip(q_rows, holm):
        r["p_holm"] = ph
    rows += q_rows
    summary = tidy(rows)
    n_cmp = int(sum(1 for r in forest if np.isfinite(r.get("estimate", np.nan))))
    settings = {"level": level, "window": window, "outcome": outcome, "outcome_label": OUTCOMES[outcome],
                "by": list(by), "spend_cuts": list(spend_cuts), "cluster": sample.cluster, "min_n": MIN_N,
                "n_comparisons": n_cmp, "expected_false_exclusions": n_cmp * (1 - level)}
    fp = pd.DataFrame(forest)
    plot = {"forest": fp[["by", "level", "group", "estimate", "ci_low", "ci_high", "n"]] if len(fp) else fp,
            "overall": pd.DataFrame([overall])[["estimate", "ci_low", "ci_high"]]}
    return Result("heterogeneity", summary, narrative.heterogeneity_text(summary, settings), settings, plot,
                  {"subgroups": sub})
