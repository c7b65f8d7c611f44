"""How fast cases are worked: days from trigger to opening, first attempt and reach, and the effect by time to contact.

:func:`case_timeline` gives one row per phone case with its trigger date (the
latest trigger of the case's type on or before the opening, within the
design's ``not_selected_gap``), opening, first attempt and answered call
(:func:`~carecall_eval.outcomes.reach.case_reach`).  :func:`case_speed`
summarises the steps by quarter of opening and estimates the matched spending
effect by band of days from the trigger to reaching the customer, with the
spending module's matched PPML, its subgroup rule and the sample's cluster rule.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..._validation import check_choice, check_horizon, check_level
from ...cohorts.build import build_cohort
from ...cohorts.sample import as_sample
from ...contract.base import open_data
from ...errors import InputError, NotAvailableError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from .._dates import as_datetime_ns
from ..calls import _mean_interval, quantile_interval
from ..reach.cases import PHONE_ARMS, case_reach
from ..spending import (
    OUTCOMES,
    _cluster_codes,
    _Design,
    _followup,
    _outcome,
    _ppml_covariates,
    _ppml_fit,
    _subgroups,
    add_outcomes,
    analysis_columns,
    analysis_sets,
    ppml,
)
from .pooling import one_blas_thread

__all__ = ["case_speed", "case_timeline", "STEPS", "DEFAULT_BANDS"]

#: The steps of a case, as (metric stem, start column, end column, words).
STEPS = (("trigger_to_opening", "triggered_on", "opened_on", "trigger to opening"),
         ("opening_to_first_attempt", "opened_on", "first_attempt_at", "opening to first attempt"),
         ("first_attempt_to_reach", "first_attempt_at", "reached_at", "first attempt to reach"),
         ("trigger_to_reach", "triggered_on", "reached_at", "trigger to reach"))
#: Default band edges (days from trigger to reach): 0-2, 3-6, 7-13, 14 or more.
DEFAULT_BANDS = (3, 7, 14)
#: Day bins of the distribution plots (left edges; the last is open).
DAY_BINS = (0, 1, 2, 3, 4, 7, 14)


def _distribution(tl: pd.DataFrame) -> pd.DataFrame:
    """Share of cases by bin of days, per step and quarter of opening (the plots' data)."""
    labels = [f"{lo}" if hi - lo == 1 else f"{lo}-{hi - 1}" for lo, hi in zip(DAY_BINS[:-1], DAY_BINS[1:])]
    labels.append(f"{DAY_BINS[-1]}+")
    rows = []
    for stem, _, _, words in STEPS:
        col = f"days_{stem}"
        d = tl[tl[col].notna()]
        b = pd.cut(d[col], [*DAY_BINS, np.inf], right=False, labels=labels)
        for (q, lab), n in d.groupby([d["quarter"], b], observed=False).size().items():
            rows.append({"step": stem, "step_label": words, "quarter": q, "days": lab, "count": int(n)})
    out = pd.DataFrame(rows, columns=["step", "step_label", "quarter", "days", "count"])
    tot = out.groupby(["step", "quarter"])["count"].transform("sum")
    out["share"] = np.where(tot > 0, out["count"] / tot.where(tot > 0, 1), np.nan)
    return out


def case_timeline(data, *, arms: Sequence = PHONE_ARMS, gap_days: int = 30) -> pd.DataFrame:
    """One row per phone case (with attempts): trigger, opening, first attempt, reach, and the days between.

    Columns of :func:`~carecall_eval.outcomes.reach.case_reach` plus ``triggered_on`` (NaT when no
    trigger of the case's type precedes the opening within ``gap_days``) and ``days_<step>`` for each
    of :data:`STEPS` (calendar days between the dates; NaN where an end is missing).
    """
    ds = open_data(data, "case_timeline")
    cr = case_reach(ds, arms=arms)
    trig = ds.table("triggers")[["customer_id", "trigger", "triggered_on"]]
    c = cr.sort_values("opened_on", ignore_index=True)       # ignore_index: no second copy of the table
    # the (customer, trigger) pair as one integer key: merge_asof's "by" on two text columns is slow
    cust, _ = pd.factorize(np.concatenate([c["customer_id"].to_numpy(), trig["customer_id"].to_numpy()]))
    kind, kinds = pd.factorize(np.concatenate([c["trigger"].to_numpy(), trig["trigger"].to_numpy()]))
    key = cust.astype(np.int64) * (len(kinds) + 1) + kind + 1          # missing values (-1) stay their own key
    c["_by"] = key[:len(c)]
    right = pd.DataFrame({"_by": key[len(c):], "triggered_on": as_datetime_ns(trig["triggered_on"]).to_numpy()})
    c = pd.merge_asof(c, right.sort_values("triggered_on", kind="mergesort"), left_on="opened_on",
                      right_on="triggered_on", by="_by", direction="backward",
                      tolerance=pd.Timedelta(days=gap_days))
    del c["_by"]                                  # merge_asof's new frame: no copy to drop a column
    for stem, start, end, _ in STEPS:
        d0 = as_datetime_ns(c[start]).dt.normalize()
        d1 = as_datetime_ns(c[end]).dt.normalize()
        c[f"days_{stem}"] = (d1 - d0).dt.days.astype(float)
    return c.sort_values(["opened_on", "case_id"], ignore_index=True)


def _band_labels(edges: tuple) -> list[str]:
    lab, lo = [], 0
    for e in edges:
        lab.append(f"{lo}-{e - 1} days" if e - 1 > lo else f"{lo} days")
        lo = e
    return lab + [f"{lo}+ days"]


def _step_rows(tl: pd.DataFrame, level: float) -> list[dict]:
    rows = []
    for stem, _, _, words in STEPS:
        col = f"days_{stem}"
        for grp, g in [("all", tl)] + list(tl.groupby("quarter", sort=True)):
            x = g[col].dropna().to_numpy(float)
            m, se, lo, hi = _mean_interval(x, level)
            base = {"group": grp, "n": len(x), "step": stem}
            mean_row = {**base, "metric": f"speed.{stem}_mean_days",
                        "method": f"mean days from {words}, t interval from its standard error"}
            med_row = {**base, "metric": f"speed.{stem}_median_days",
                       "method": f"median days from {words}, exact order-statistic interval"}
            if len(x) == 0:
                why = f"no case in {grp} has both dates" if grp != "all" else "no case has both dates"
                rows += [not_available(mean_row, why), not_available(med_row, why)]
                continue
            est, qlo, qhi = quantile_interval(x, 0.5, level)
            rows.append({**mean_row, "estimate": m, "se": se, "ci_low": lo, "ci_high": hi})
            rows.append({**med_row, "estimate": est, "ci_low": qlo, "ci_high": qhi})
    return rows


@one_blas_thread
def case_speed(data, sample=None, /, *, level: float = 0.95, window: int = 84, outcome: str = "tl",
               bands: Sequence[int] = DEFAULT_BANDS, arms: Sequence = PHONE_ARMS) -> Result:
    """Days from trigger to opening, first attempt and reach, by quarter; the spending effect by time to contact.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` of the reached-vs-unreached design (default: the default cohort, matched);
        its matched sets and cluster rule are used for the effect by time to contact.
    level : float
        Confidence level of every interval.
    window : int
        Post window of the spending effect (days from opening; one of the design's post windows).
    outcome : str
        Spending measure (as :func:`carecall_eval.spending_effect`).
    bands : sequence of int
        Increasing band edges in days from trigger to reach (default 0-2, 3-6, 7-13, 14+).
    arms : sequence
        Arms whose phone cases count for the timeline.

    Returns
    -------
    Result
        Rows ``speed.<step>_mean_days`` and ``speed.<step>_median_days`` (steps: ``trigger_to_opening``,
        ``opening_to_first_attempt``, ``first_attempt_to_reach``, ``trigger_to_reach``) with ``group``
        ``all`` or the quarter of opening; ``speed.effect_by_days_to_contact`` / band label (matched
        PPML within the band, ``se`` of the log ratio, column ``window``); ``speed.effect_per_day_of_delay``
        / ``difference`` (exp of the contact x days interaction of a matched PPML, minus 1: the change in
        the spending ratio per extra day, ``se`` on the log scale).  Plot data ``"distribution"`` (cases
        by bin of days, per step and quarter: ``step, step_label, quarter, days, count, share``) and
        ``"bands"``.

    Notes
    -----
    Time to contact is known only for reached customers.  Each band is defined by its reached
    customers, and their matched comparisons follow them (the spending module's subgroup rule), so a
    band compares like with like; bands are not compared with each other directly, because fast and
    slow cases differ in who they are, and because the window starts at the opening, a late call
    leaves fewer days of the window to act on.  The models add each row's own days from trigger to
    opening as a covariate: a case opened three days after its trigger starts its window further down
    the decaying peak of play than its comparisons (opened after their own delays), which would
    otherwise pass for a larger effect of slow contact.
    """
    ds = open_data(data, "case_speed")
    level = check_level(level)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, OUTCOMES)
    bands = tuple(int(b) for b in bands)
    if not bands or any(b <= 0 for b in bands) or list(bands) != sorted(set(bands)):
        raise InputError(f"case_speed: bands must be increasing positive day counts, got {bands!r}")
    sample = as_sample(sample if sample is not None else build_cohort(ds), "case_speed", randomized=False)
    design = sample.design
    tl = case_timeline(ds, arms=arms, gap_days=design.not_selected_gap)
    if tl.empty:
        raise NotAvailableError("no phone cases with attempts; nothing to describe")
    rows = _step_rows(tl, level)

    # the effect by time to contact
    labels = _band_labels(bands)
    by_case = tl.set_index("case_id")
    days = by_case["days_trigger_to_reach"]
    covariates = list(sample.cohort.covariates) + ["own_days_trigger_to_opening"]
    # only the columns the fits read (the spending module's analysis columns): copying the whole matched
    # table costs seconds at operator scale, every step below is a row subset, and the table of sets is
    # never built whole
    sets = analysis_sets(sample, (window,), covariates)        # None without nearest-neighbour sets
    frame = sets if sets is not None else analysis_columns(sample.table, (window,), covariates)
    fu = np.flatnonzero(_followup(frame, window, ds.data_end).to_numpy())
    # the derived columns from the few columns they read, then the kept rows taken once (by position: a
    # table of sets repeats index labels); the wide table is neither copied whole nor consolidated again
    case = pd.Series(frame["case_id"].to_numpy()[fu])
    contact = frame["contact"].to_numpy()[fu]
    # each row's own days from trigger to opening: where in the decay of the peak its window starts
    own = case.map(by_case["days_trigger_to_opening"])
    own = own.fillna(own.median() if own.notna().any() else 0.0).to_numpy(float)
    to_contact = case.map(days).where(pd.Series(contact == 1)).to_numpy()
    if sample.has_sets:      # controls follow their set's contact
        subclass = pd.Series(frame["subclass"].to_numpy()[fu])
        lead = pd.DataFrame({"subclass": subclass[contact == 1].to_numpy(), "days_to_contact": to_contact[contact == 1]})
        per_set = lead.drop_duplicates("subclass").set_index("subclass")["days_to_contact"]
        to_contact = subclass.map(per_set).to_numpy()
    keep = pd.notna(to_contact)
    # `frame` is this function's own (a new frame of the analysis columns): the columns below are set on it,
    # or on the kept rows taken from it (a new frame, not a view)
    rows_kept = fu[keep]
    m = frame if len(rows_kept) == len(frame) else frame.take(rows_kept)
    m = add_outcomes(ds, m, (window,), design.pre_window, copy=False)
    m["own_days_trigger_to_opening"] = own[keep]
    m["days_to_contact"] = to_contact[keep].astype(float)
    m["band"] = pd.cut(m["days_to_contact"], [-np.inf, *bands, np.inf], right=False, labels=labels).astype(str)
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    sub = _subgroups(m, outcome, window, covariates, level, sample.cluster_ids,
                     m if sample.has_sets else None, by=("band",)) if len(m) else pd.DataFrame()
    got = sub.set_index("level") if len(sub) else pd.DataFrame()
    for lab in labels:
        g = m.loc[(m["band"] == lab).to_numpy(), ["contact", "customer_id"]]
        base = {"metric": "speed.effect_by_days_to_contact", "group": lab, "window": window, "outcome": outcome,
                "method": f"matched PPML within the band, cluster-robust by {cl} (se of the log ratio)"}
        if lab in got.index:
            r = got.loc[lab]
            rows.append({**base, "estimate": r["estimate"], "se": r["se"], "ci_low": r["ci_low"],
                         "ci_high": r["ci_high"], "n": int(r["n"])})
        else:
            nc, nk = int((g["contact"] == 1).sum()), int((g["contact"] == 0).sum())
            rows.append(not_available({**base, "n": int(g["customer_id"].nunique())},
                                      f"{nc} reached and {nk} matched rows in the band; at least 20 of each are "
                                      "needed for an estimate" if min(nc, nk) < 20 else "no finite estimate"))
    # one slope: contact x days in a matched PPML (controls carry their set's days)
    slope = {"metric": "speed.effect_per_day_of_delay", "group": "difference", "window": window, "outcome": outcome,
             "n": int(m["customer_id"].nunique()) if len(m) else 0,
             "method": f"matched PPML with a contact x days-to-contact term, cluster-robust by {cl} "
                       "(se of the log ratio per day)"}
    if len(m) and m["contact"].sum() >= 20 and (m["contact"] == 0).sum() >= 20 and m["days_to_contact"].nunique() > 1:
        y, w, groups = m[f"{outcome}_post{window}"].to_numpy(float), m["weights"].to_numpy(float), sample.cluster_ids(m)
        lead = [("contact", m["contact"].to_numpy(float), False),
                ("contact_x_days", (m["contact"] * m["days_to_contact"]).to_numpy(float), True),
                ("days", m["days_to_contact"].to_numpy(float), False)]
        # the design from arrays (the spending module's _Design: the same matrix as below, without get_dummies)
        got = _Design(m, covariates).take(None, covariates, lead=lead)
        if got is not None:
            e = _ppml_fit(_outcome(y), *got, term="contact_x_days", weights=w, codes=_cluster_codes(groups),
                          exposure=None, level=level, start=None)
        else:
            X = _ppml_covariates(m, covariates)
            X.insert(0, "days", lead[2][1])
            X.insert(0, "contact_x_days", lead[1][1])
            X.insert(0, "contact", lead[0][1])
            e = ppml(y, X, term="contact_x_days", weights=w, groups=groups, level=level)
        rows.append({**slope, "estimate": e.estimate, "se": e.se, "ci_low": e.ci_low, "ci_high": e.ci_high}
                    if e.converged else not_available(slope, "the PPML fit did not converge"))
    else:
        rows.append(not_available(slope, "too few reached customers with a known time to contact"))
    summary = tidy(rows)
    plot_tl = _distribution(tl)
    bands_pd = summary[summary["metric"] == "speed.effect_by_days_to_contact"][
        ["group", "estimate", "ci_low", "ci_high", "n"]].reset_index(drop=True)
    settings = {"level": level, "window": window, "outcome": outcome, "outcome_label": OUTCOMES[outcome],
                "bands": list(bands), "band_labels": labels, "arms": list(arms), "cluster": sample.cluster,
                "trigger_link": f"latest trigger of the case's type within {design.not_selected_gap} days before "
                                "the opening", "n_cases": int(len(tl))}
    return Result("speed", summary, narrative.speed_text(summary, settings), settings,
                  {"distribution": plot_tl, "bands": bands_pd}, {"timeline": tl, "matched_sets": m})
