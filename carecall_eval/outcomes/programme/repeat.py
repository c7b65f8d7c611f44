"""Repeat contact: customers with another case within 12 months, and what a second call adds.

Two questions, as far as the data allow:

* **Another case.**  Of the customers with a phone case, how many had another
  case opened within the horizon (among those followed that long), and, on the
  matched sample, whether reached customers had new cases less often than
  comparable customers who were not reached (weighted shares, and a risk
  difference clustered by the sample's one rule, as for actions).
* **A second call.**  Later cases of customers reached on a case within the
  horizon before: reached again vs not reached again, indexed at the later case's
  opening and matched with the design's settings; the spending module's matched
  PPML is the estimate.  Operators often may not open a new case within a year of
  the last one, and then there is nothing to estimate; the result says so.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..._validation import check_choice, check_horizon, check_level, horizon_id
from ...cohorts.build import Cohort, build_cohort
from ...cohorts.sample import as_sample
from ...contract.base import open_data
from ...errors import FollowupWarning, NotAvailableError
from ...narrative import programme as narrative
from ...results import Result, not_available, tidy
from ..actions import _weighted_share
from ..intervals import wilson_interval
from ..spending import OUTCOMES, spending_effect
from .pooling import one_blas_thread

__all__ = ["repeat_contact", "DEFAULT_HORIZON"]

#: Default horizon in days; its ids (``repeat.new_case_12m``) are the stable ones.
DEFAULT_HORIZON = 365
#: Fewest reached (and not reached) later cases for the second-call estimate.
MIN_N = 20


def _customer_codes(*ids) -> list[np.ndarray]:
    """Integer codes of customer ids, shared between arrays (``merge_asof``'s ``by`` runs on integers faster)."""
    codes = pd.factorize(np.concatenate([np.asarray(x, dtype=object) for x in ids]))[0]
    return np.split(codes, np.cumsum([len(x) for x in ids])[:-1])


def _next_case_days(cases: pd.DataFrame, keys: pd.DataFrame) -> np.ndarray:
    """Days from each key's index to the customer's next case opened after it (NaN: none)."""
    kc, cc = _customer_codes(keys["customer_id"], cases["customer_id"])
    c = pd.DataFrame({"cust": cc, "next_on": pd.to_datetime(cases["opened_on"]).astype("datetime64[ns]").to_numpy()})
    index_date = pd.to_datetime(keys["index_date"]).astype("datetime64[ns]").to_numpy()
    k = pd.DataFrame({"_row": np.arange(len(keys)), "cust": kc, "index_date": index_date,
                      "probe": index_date + np.timedelta64(1, "D")})
    nxt = pd.merge_asof(k.sort_values("probe"), c.sort_values("next_on"), left_on="probe", right_on="next_on",
                        by="cust", direction="forward").sort_values("_row")
    return (nxt["next_on"] - nxt["index_date"]).dt.days.to_numpy(float)


class _CasesOf:
    """The dataset with only some customers' cases: ``call_cases`` and ``call_attempts`` hold their cases, every
    other table, the data's dates, fingerprint and connection are the dataset's own.

    :func:`~carecall_eval.cohorts.build.build_cohort` decides each row from the row's own customer (their cases,
    account, events and activity), so the cohort built on it has exactly the rows the whole data gives those
    customers, and its pass over activity covers only their index dates.
    """

    def __init__(self, ds, customers) -> None:
        self._ds = ds
        self._customers = pd.Index(customers)
        self._tables: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pd.DataFrame:
        if name not in ("call_cases", "call_attempts"):
            return self._ds.table(name)
        if name not in self._tables:
            cases = self._ds.table("call_cases")
            cases = cases[cases["customer_id"].isin(self._customers).to_numpy()]
            self._tables["call_cases"] = cases
            att = self._ds.table("call_attempts")
            self._tables["call_attempts"] = att[att["case_id"].isin(cases["case_id"]).to_numpy()]
        return self._tables[name]

    def __getattr__(self, name: str):
        return getattr(self._ds, name)


@one_blas_thread
def repeat_contact(data, sample=None, /, *, level: float = 0.95, horizon: int = DEFAULT_HORIZON, window: int = 84,
                   outcome: str = "tl", previous: str = "reached") -> Result:
    """Another case within ``horizon`` days, and what a second call adds, as far as the data allow.

    Parameters
    ----------
    data : Dataset, IbisDataset or path
    sample : MatchedSample or Cohort, optional
        ``cohort.sample()`` (default: the default cohort, matched): its rows for the new-case shares,
        its design for the cohort of later cases.
    level : float
        Confidence level of every interval.
    horizon : int
        Days after the index within which another case counts (default 365: 12 months), and how far
        back an earlier case makes a later one a "second" case.
    window : int
        Post window of the second call's spending effect (days from the later case's opening).
    outcome : str
        Spending measure (as :func:`carecall_eval.spending_effect`).
    previous : {"reached", "any"}
        Whether the earlier case must have been reached (a second *call*) or only opened.

    Returns
    -------
    Result
        ``repeat.any_new_case_12m`` / ``all_cases`` (share of customers whose first phone case was
        followed by another within the horizon, Wilson; ``_<h>d`` at another horizon);
        ``repeat.new_case_12m`` / ``contact``, ``comparison`` (weighted shares on the matched sample,
        Wilson on the effective size) and ``difference`` (risk difference, WLS clustered by the
        sample's rule); ``repeat.second_call_change`` / ``difference`` (matched PPML on later cases,
        reached again vs not; ``se`` of the log ratio) or a not-available row saying why.
    """
    ds = open_data(data, "repeat_contact")
    level = check_level(level)
    horizon = check_horizon("horizon", horizon)
    window = check_horizon("window", window)
    check_choice("outcome", outcome, OUTCOMES)
    check_choice("previous", previous, ("reached", "any"))
    sample = as_sample(sample if sample is not None else build_cohort(ds), "repeat_contact", randomized=False)
    design = sample.design
    hid = horizon_id(horizon, DEFAULT_HORIZON, "12m")
    end = pd.Timestamp(ds.data_end)
    cases = ds.table("call_cases")
    cases = cases.assign(opened_on=pd.to_datetime(cases["opened_on"]).astype("datetime64[ns]"))
    rows = []

    # every customer's first phone case: another case within the horizon?
    phone = cases[cases["channel"] == design.channel]
    first = phone.sort_values(["opened_on", "case_id"]).drop_duplicates("customer_id")
    first = first[first["opened_on"] + pd.Timedelta(days=horizon - 1) <= end]
    base = {"metric": f"repeat.any_new_case_{hid}", "group": "all_cases", "n": len(first),
            "method": f"share of customers whose first {design.channel} case was followed by another case within "
                      f"{horizon} days (customers followed that long), Wilson interval"}
    if len(first):
        dd = _next_case_days(cases, first.rename(columns={"opened_on": "index_date"}))
        k = int(np.sum(dd <= horizon))
        lo, hi = wilson_interval(k, len(first), level)
        rows.append({**base, "estimate": k / len(first), "ci_low": lo, "ci_high": hi, "n_with_new_case": k})
    else:
        rows.append(not_available(base, f"no first case is followed for {horizon} days before the data end"))

    # on the matched sample: reached vs comparable not reached
    t = sample.table
    t = t[t["weights"] > 0]
    complete = pd.to_datetime(t["index_date"]) + pd.Timedelta(days=horizon - 1) <= end
    if not complete.all():
        import warnings

        warnings.warn(f"{int((~complete).sum())} matched rows have less than {horizon} days of follow-up before the "
                      f"data end ({end.date()}) and are left out of repeat.new_case_{hid}", FollowupWarning,
                      stacklevel=2)
    t = t[complete.to_numpy()]
    dd = _next_case_days(cases, t)
    y = (dd <= horizon).astype(float)
    w = t["weights"].to_numpy(float)
    cvec = t["contact"].to_numpy(int)
    metric = f"repeat.new_case_{hid}"
    shares = {}
    for grp, lab in ((1, "contact"), (0, "comparison")):
        msk = cvec == grp
        p, lo, hi, n_eff = _weighted_share(y[msk], w[msk], level)
        row = {"metric": metric, "group": lab, "estimate": p, "ci_low": lo, "ci_high": hi, "n": int(msk.sum()),
               "n_effective": n_eff, "method": "weighted share with another case within the horizon, Wilson "
                                               "interval on the effective sample size"}
        shares[lab] = p
        rows.append(row if msk.any() else not_available(row, f"no {lab} row has {horizon} days of follow-up"))
    drow = {"metric": metric, "group": "difference", "n": len(t)}
    cl = "matched set" if sample.cluster == "subclass" else "customer"
    if (cvec == 1).any() and (cvec == 0).any() and np.ptp(y) > 0:
        import statsmodels.api as sm

        groups = pd.factorize(pd.Series(sample.cluster_ids(t)).astype("string"))[0]
        fit = sm.WLS(y, sm.add_constant(cvec.astype(float)), weights=w).fit(cov_type="cluster",
                                                                            cov_kwds={"groups": groups})
        lo, hi = fit.conf_int(alpha=1 - level)[1]
        rows.append({**drow, "estimate": float(fit.params[1]), "se": float(fit.bse[1]), "ci_low": float(lo),
                     "ci_high": float(hi), "method": f"risk difference, weighted least squares, clustered by {cl}"})
    elif (cvec == 1).any() and (cvec == 0).any():
        rows.append({**drow, "estimate": 0.0, "method": "risk difference: no row in either group had another case, "
                                                         "so no interval"})
    else:
        rows.append(not_available({**drow, "method": "risk difference"}, "needs both groups' shares"))

    # the second call: later cases of customers reached (or with a case) within the horizon before
    later_design = design.replace(prior_contact_days=1, one_index_per_customer=False, study_start=None,
                                  study_end=None)
    sc = {"metric": "repeat.second_call_change", "group": "difference", "window": window, "outcome": outcome,
          "method": "matched PPML on later cases (reached again vs not reached again), baseline covariates, "
                    "cluster-robust (se of the log ratio)"}
    prev = phone[["customer_id", "case_id", "opened_on"]].copy()
    if previous == "reached":
        from ..reach.cases import case_reach

        cr = case_reach(ds)
        prev = prev[prev["case_id"].isin(cr.loc[cr["reached"], "case_id"])]
    pr = prev.rename(columns={"opened_on": "prev_on"})[["customer_id", "prev_on"]]
    pr["prev_on"] = pr["prev_on"].astype("datetime64[ns]")
    pr = pr.sort_values("prev_on")

    def after_previous(keys: pd.DataFrame) -> pd.Series:
        """Whether each key's customer had a previous (reached) phone case 1..horizon days before its date."""
        kc, pc = _customer_codes(keys["customer_id"], pr["customer_id"])
        probe = pd.DataFrame({"_row": np.arange(len(keys)), "cust": kc,
                              "index_date": pd.to_datetime(keys["index_date"]).to_numpy()})
        probe["probe"] = probe["index_date"] - pd.Timedelta(days=1)
        hit = pd.merge_asof(probe.sort_values("probe"), pd.DataFrame({"cust": pc, "prev_on": pr["prev_on"].to_numpy()}),
                            left_on="probe", right_on="prev_on", by="cust", direction="backward").sort_values("_row")
        return pd.Series((hit["index_date"] - hit["prev_on"]).dt.days.between(1, horizon).to_numpy(),
                         index=keys.index)

    # a later case exists at all? (building the cohort of later cases scans activity; skip it when none does)
    later_phone = phone.rename(columns={"opened_on": "index_date"})
    second_case = after_previous(later_phone).to_numpy()
    if second_case.any():
        # only the customers with such a case can give a row below: the cohort is built on their cases alone
        later = build_cohort(_CasesOf(ds, later_phone.loc[second_case, "customer_id"].unique()), later_design)
        lt = later.table
        sub = lt[after_previous(lt).to_numpy()]
        sub = sub[sub[f"followup_{window}"]] if f"followup_{window}" in sub.columns else sub
    else:
        later, sub = None, cases.iloc[:0]
    second = {"contact": int((sub["contact"] == 1).sum()), "comparison": int((sub["contact"] == 0).sum())} \
        if later is not None else {"contact": 0, "comparison": 0}
    sc["n"] = second["contact"] + second["comparison"]
    if min(second.values()) < MIN_N:
        what = "reached before" if previous == "reached" else "with a case"
        if sum(second.values()) == 0:
            why = f"no customer {what} had a later case within {horizon} days (with {window} days of follow-up)"
        else:
            why = (f"only {second['contact']} customers {what} were reached again on a later case within {horizon} "
                   f"days and {second['comparison']} were not (with {window} days of follow-up); at least {MIN_N} "
                   "of each are needed")
        rows.append(not_available(sc, why))
    else:
        assert later is not None
        try:
            sub_cohort = Cohort(table=sub, flow=later.flow, design=later_design, data_end=later.data_end)
            r = spending_effect(ds, sub_cohort.sample(), level=level, window=window, windows=(window,),
                                outcome=outcome, placebo=False, subgroups=False, event_weeks=None)
            e = r.metric("spending.matched_change", "difference")
            rows.append({**sc, "estimate": e["estimate"], "se": e["se"], "ci_low": e["ci_low"],
                         "ci_high": e["ci_high"], "n": int(e["n"])})
        except (NotAvailableError, ValueError) as exc:
            rows.append(not_available(sc, f"the later cases could not be matched ({exc})"))
    summary = tidy(rows)
    settings = {"level": level, "horizon": horizon, "horizon_id": hid, "window": window, "outcome": outcome,
                "outcome_label": OUTCOMES[outcome], "previous": previous, "cluster": sample.cluster,
                "second_cases": second}
    return Result("repeat", summary, narrative.repeat_text(summary, settings), settings, {},
                  {"later_cases": sub})
