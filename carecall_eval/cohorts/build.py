"""Build a cohort: contact and comparison groups indexed at the same point, eligibility, covariates.

Everything here is vectorised (pandas merges on the small tables, DuckDB for
activity); nothing loops over customers.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..calendar import quarter_of
from ..results import Reporting, tidy
from .cache import caching
from .design import StudyDesign
from .windows import prior_rg_flags, window_aggregates

#: Pre-index windows of the baseline covariates (inclusive day offsets).
COVARIATE_WINDOWS = {"7": (-7, -1), "28": (-28, -1), "28_8": (-28, -8), "84_29": (-84, -29),
                     "365_85": (-365, -85)}

#: The window of the product shares (covariates ``share_{product}``).
SHARE_WINDOW = (-84, -1)


def shifted(windows: dict[str, tuple[int, int]], days: int) -> dict[str, tuple[int, int]]:
    """The windows moved by ``days`` (negative: earlier)."""
    return {n: (int(a) + days, int(b) + days) for n, (a, b) in windows.items()}


#: Play in the last 90 days of the first year (retention's "still active" definition).
ACTIVE_END_WINDOW = {"last90_365": (275, 364)}


def post_windows(windows) -> dict[str, tuple[int, int]]:
    """``{"post28": (0, 27), ...}`` for window lengths in days."""
    return {f"post{w}": (0, int(w) - 1) for w in windows}


def outcome_windows(design: StudyDesign) -> dict[str, tuple[int, int]]:
    """Every window a cohort row carries besides the covariate windows: pre, post and active-at-a-year.

    They are summed in the same pass over activity as the covariates (one scan
    of days -365..+364), so estimators find their outcomes on the cohort (and
    matched) tables instead of scanning activity again.  Matching never uses them.
    """
    return {"pre": (-design.pre_window, -1), **post_windows(design.post_windows), **ACTIVE_END_WINDOW}


@dataclass(frozen=True, repr=False)
class Cohort(Reporting):
    """One row per (customer, index) with group, index date, covariates and follow-up.

    Attributes
    ----------
    table : pandas.DataFrame
        Columns ``customer_id``, ``case_id``, ``group`` (``"contact"`` /
        ``"comparison"``, or the arm for randomized designs), ``contact``
        (1/0), ``reached``, ``index_date``, ``trigger``, baseline covariates,
        and ``followup_{w}`` (True when the ``w``-day window is complete; False
        means censored by the data end).  Indexed by ``row_id``.
    flow : pandas.DataFrame
        CONSORT-style counts: for each step, rows excluded and remaining by group.
    design : StudyDesign
    data_end : pandas.Timestamp
    """

    table: pd.DataFrame
    flow: pd.DataFrame
    design: StudyDesign
    data_end: pd.Timestamp
    settings: dict = field(default_factory=dict)
    name = "cohort"

    @property
    def covariates(self) -> list[str]:
        return [c for c in self.design.covariates if c in self.table.columns]

    def counts(self) -> pd.Series:
        return self.table["group"].value_counts().sort_index()

    @property
    def text(self) -> str:
        c = self.counts()
        parts = ", ".join(f"{int(v):,} {k}" for k, v in c.items())
        return f"{self.design.describe()} Eligible: {parts}."

    @property
    def summary(self) -> pd.DataFrame:
        """Tidy rows: eligible rows by group, and rows excluded by each step of the flow."""
        rows = [{"metric": "cohort.n_eligible", "group": g, "estimate": float(v), "n": int(v),
                 "method": self.design.describe()} for g, v in self.counts().items()]
        for _, r in self.flow.iterrows():
            for col in [c for c in self.flow.columns if c.startswith("excluded_")]:
                rows.append({"metric": "cohort.n_excluded", "group": col[len("excluded_"):], "step": r["step"],
                             "estimate": float(r[col]), "n": int(r[col]), "method": "CONSORT-style flow"})
        return tidy(rows)

    def _plot_data(self) -> dict:
        return {"flow": self.flow.copy()}

    def sample(self, **overrides):
        """The :class:`~carecall_eval.cohorts.sample.MatchedSample` every cohort estimator takes.

        Matched with the design's matching settings (keyword arguments override
        :class:`~carecall_eval.cohorts.design.MatchingSpec` fields); randomized
        designs are taken as allocated, without matching.
        """
        from .sample import MatchedSample

        if self.design.comparison == "arms":
            if overrides:
                raise ValueError("randomized designs are analysed by arm, without matching: no matching options")
            return MatchedSample(self, None)
        return MatchedSample(self, self.match(**overrides))

    def match(self, **overrides):
        """Match contacts to comparisons with the design's matching settings.

        Keyword arguments override :class:`~carecall_eval.cohorts.design.MatchingSpec` fields.
        Returns the :func:`carecall_eval.matching.match` result.
        """
        from ..matching import match

        if self.design.comparison == "arms":
            raise ValueError("randomized designs are analysed by arm, without matching")
        spec = self.design.replace(matching=overrides).matching if overrides else self.design.matching
        data = self.table
        exact = [e for e in spec.exact if data[e].nunique() > 1] if spec.exact else None
        return match(
            data, "contact", self.covariates, method=spec.method, distance=spec.distance, ratio=spec.ratio,
            replace=spec.replace, caliper=spec.caliper, std_caliper=spec.std_caliper, order=spec.order,
            exact=exact or None, discard=spec.discard, seed=spec.seed,
        )


class _Flow:
    """Accumulates exclusion counts by group."""

    def __init__(self, groups: list[str]):
        self.groups = groups
        self.rows: list[dict] = []

    def add(self, step: str, excluded: pd.Series | None, remaining: pd.Series) -> None:
        row = {"step": step}
        for g in self.groups:
            row[f"excluded_{g}"] = int(excluded.get(g, 0)) if excluded is not None else 0
            row[f"remaining_{g}"] = int(remaining.get(g, 0))
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def _attempt_summary(cases: pd.DataFrame, attempts: pd.DataFrame, window: int) -> pd.DataFrame:
    """The cases with ``first_attempt``, ``first_answer`` (the first answered attempt within `window` days of
    the opening) and ``reached``."""
    ids = pd.Index(cases["case_id"])
    at = attempts["attempted_at"]
    if not (ids.is_unique and at.dtype == "datetime64[ns]" and cases["opened_on"].dtype == "datetime64[ns]"):
        return _attempt_summary_merged(cases, attempts, window)
    # each attempt's case by position (the case ids are the table's key), minima by case in numpy
    pos = ids.get_indexer(attempts["case_id"])
    t = at.to_numpy().view(np.int64)
    keep = (pos >= 0) & (t != np.iinfo(np.int64).min)             # attempts of these cases, with a time
    pos, t = pos[keep], t[keep]
    opened = cases["opened_on"].to_numpy().view(np.int64)[pos]
    answered = attempts["answered"].to_numpy()[keep].astype(bool)
    window_ns = pd.Timedelta(days=window).value
    # an opening day of NaT (the minimum int64) never has an attempt in its window, as the merge had it
    in_window = (opened != np.iinfo(np.int64).min) & (t < opened + window_ns)

    def first(mask) -> np.ndarray:
        out = np.full(len(cases), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(out, pos[mask], t[mask])
        out[out == np.iinfo(np.int64).max] = np.iinfo(np.int64).min          # no attempt: NaT
        return out.view("datetime64[ns]")

    out = cases.set_index("case_id")
    out = out.assign(first_attempt=first(np.ones(len(pos), dtype=bool)), first_answer=first(answered & in_window))
    out["reached"] = out["first_answer"].notna()
    return out.reset_index()


def _attempt_summary_merged(cases: pd.DataFrame, attempts: pd.DataFrame, window: int) -> pd.DataFrame:
    a = attempts.merge(cases[["case_id", "opened_on"]], on="case_id", how="inner")
    in_window = a["attempted_at"] < a["opened_on"] + pd.Timedelta(days=window)
    first_attempt = a.groupby("case_id")["attempted_at"].min()
    ans = a[a["answered"].astype(bool) & in_window]
    first_answer = ans.groupby("case_id")["attempted_at"].min()
    out = cases.set_index("case_id")
    out = out.assign(first_attempt=first_attempt.reindex(out.index), first_answer=first_answer.reindex(out.index))
    out["reached"] = out["first_answer"].notna()
    return out.reset_index()


def _with_customers(cand: pd.DataFrame, cust: pd.DataFrame) -> pd.DataFrame:
    """``cand.merge(cust, on="customer_id", how="left", validate="many_to_one")``, by a lookup on the
    customers' key (the merge's factorising and checks took seconds at a million customers)."""
    ids = pd.Index(cust["customer_id"])
    if not ids.is_unique or cand["customer_id"].dtype != cust["customer_id"].dtype:
        return cand.merge(cust, on="customer_id", how="left", validate="many_to_one")   # its own checks and errors
    by = cust.set_index("customer_id").reindex(cand["customer_id"].to_numpy())
    out = cand.reset_index(drop=True)
    for col in by.columns:
        out[col] = by[col].to_numpy()
    return out


def _require_some(rows: pd.DataFrame, seen: pd.Series, table: str, column: str, wanted, fix: str) -> None:
    """Refuse a cohort step that keeps nothing, naming the table, the column and the values it saw."""
    if len(rows) or not len(seen):
        return
    from ..errors import InputError

    counts = seen.astype(object).where(seen.notna(), None).value_counts(dropna=False)
    shown = ", ".join(f"{v!r} ({n:,})" for v, n in counts.head(8).items()) + (" ..." if len(counts) > 8 else "")
    want = ", ".join(repr(w) for w in wanted) if isinstance(wanted, (list, tuple)) else repr(wanted)
    raise InputError(f"no {table} with {column} {want}: {table}.{column} holds {shown}; {fix}")


def _candidates(ds, design: StudyDesign) -> pd.DataFrame:
    cases = ds.table("call_cases")
    attempts = ds.table("call_attempts")
    cases = _attempt_summary(cases, attempts, design.attempt_window)
    trig_types = design.triggers
    if trig_types is not None:
        cases_t = cases[cases["trigger"].isin(trig_types)]
        _require_some(cases_t, cases["trigger"], "call_cases", "trigger", list(trig_types),
                      "map the export's codes in mapping.toml or choose StudyDesign(triggers=...)")
    else:
        cases_t = cases

    if design.contact == "randomized":
        r = cases_t[cases_t["arm"].notna()].copy()
        r["group"] = r["arm"]
        r["contact"] = (r["arm"] == "call").astype(int)
        r["index_date"] = r["opened_on"]
        return r

    obs = cases_t if design.include_randomized else cases_t[cases_t["arm"].isna()]
    _require_some(obs[obs["channel"] == design.channel], obs["channel"], "call_cases", "channel",
                  design.channel, "map the export's codes in mapping.toml ([tables.call_cases.values.channel]) "
                  "or choose StudyDesign(channel=...)")
    if design.comparison == "unreached":
        c = obs[obs["channel"] == design.channel].copy()
        c["contact"] = c["reached"].astype(int)
        c["group"] = np.where(c["reached"], "contact", "comparison")
        if design.index_rule == "answered":
            c["index_date"] = np.where(c["reached"], c["first_answer"].dt.normalize(),
                                       c["first_attempt"].fillna(c["opened_on"]).dt.normalize())
            c["index_date"] = pd.to_datetime(c["index_date"])
        else:
            c["index_date"] = c["opened_on"]
        return c

    # not_selected comparison: triggers with no case within +-gap days; contacts at their case's trigger
    trig = ds.table("triggers")
    if trig_types is not None:
        trig = trig[trig["trigger"].isin(trig_types)]
    gap = pd.Timedelta(days=design.not_selected_gap)
    all_cases = cases[["customer_id", "opened_on"]].sort_values("opened_on")
    t = trig.sort_values("triggered_on").reset_index(drop=True)
    fwd = pd.merge_asof(t, all_cases.rename(columns={"opened_on": "next_case"}), left_on="triggered_on",
                        right_on="next_case", by="customer_id", direction="forward")
    bwd = pd.merge_asof(t, all_cases.rename(columns={"opened_on": "prev_case"}), left_on="triggered_on",
                        right_on="prev_case", by="customer_id", direction="backward")
    near = ((fwd["next_case"] - t["triggered_on"]) <= gap) | ((t["triggered_on"] - bwd["prev_case"]) <= gap)
    comp = t[~near.fillna(False).to_numpy()].copy()
    comp["case_id"] = None
    comp["reached"] = False
    comp["group"] = "comparison"
    comp["contact"] = 0
    comp["index_date"] = comp["triggered_on"]

    if design.contact == "selected":
        con = obs[obs["channel"] == design.channel].copy()
    else:
        con = obs[(obs["channel"] == design.channel) & obs["reached"]].copy()
    # index contacts at the trigger (of the case's type) that opened the case
    con = con.sort_values("opened_on")
    tt = trig.sort_values("triggered_on")[["customer_id", "trigger", "triggered_on"]]
    con = pd.merge_asof(con, tt, left_on="opened_on", right_on="triggered_on", by=["customer_id", "trigger"],
                        direction="backward", tolerance=gap)
    con["group"] = "contact"
    con["contact"] = 1
    con["index_date"] = con["triggered_on"]  # NaT when no trigger found: excluded in the flow
    cols = ["customer_id", "case_id", "trigger", "reached", "group", "contact", "index_date"]
    return pd.concat([con[cols], comp[cols]], ignore_index=True)


def build_cohort(dataset, design: StudyDesign | None = None, *, cache: bool | None = None) -> Cohort:
    """Build the cohort of a study design.

    Parameters
    ----------
    dataset : carecall_eval.contract.Dataset
        Loaded, validated data.
    design : StudyDesign, optional
        Default: :class:`StudyDesign` () - reached vs unreached phone cases,
        both indexed at the case's opening.
    cache : bool, optional
        Reuse (and store) the aggregates of the pass over activity in the
        on-disk cache of :mod:`carecall_eval.cohorts.cache`, keyed by the data's
        fingerprint, the query and its keys: a second build on unchanged data
        runs no query over activity.  ``False`` neither reads nor writes it;
        default: on unless ``CARECALL_CACHE=0``.  The cache holds customer ids
        (as sensitive as the data; see that module).

    Returns
    -------
    Cohort
        Table (one row per customer and index), flow counts and the design.

    Examples
    --------
    >>> ds = carecall_eval.load("data/sample")            # doctest: +SKIP
    >>> cohort = carecall_eval.build_cohort(ds)            # doctest: +SKIP
    >>> cohort.flow                                        # doctest: +SKIP
    """
    design = design or StudyDesign()
    ds = dataset
    data_start = pd.Timestamp(ds.data_start)
    data_end = pd.Timestamp(ds.data_end)
    cand = _candidates(ds, design)
    cand = cand[["customer_id", "case_id", "trigger", "reached", "group", "contact", "index_date"]
                + (["opened_on"] if "opened_on" in cand.columns else [])].copy()
    if "opened_on" not in cand.columns:
        cand["opened_on"] = pd.NaT
    cand["index_date"] = pd.to_datetime(cand["index_date"]).astype("datetime64[ns]")
    cand["opened_on"] = pd.to_datetime(cand["opened_on"]).astype("datetime64[ns]")
    groups = (["call", "letter", "control"] if design.contact == "randomized" else ["contact", "comparison"])
    flow = _Flow(groups)
    flow.add("candidates", None, cand["group"].value_counts())

    def drop(mask: pd.Series, step: str) -> None:
        nonlocal cand
        mask = mask.fillna(False).astype(bool)
        flow.add(step, cand.loc[mask, "group"].value_counts(), cand.loc[~mask, "group"].value_counts())
        cand = cand[~mask.to_numpy()]

    drop(cand["index_date"].isna(), "no index date (no qualifying trigger found)")
    if design.study_start is not None or design.study_end is not None:
        lo = pd.Timestamp(design.study_start) if design.study_start else pd.Timestamp.min
        hi = pd.Timestamp(design.study_end) if design.study_end else pd.Timestamp.max
        drop(~cand["index_date"].between(lo, hi), "index outside the study period")
    drop(cand["index_date"] - pd.Timedelta(days=design.pre_window) < data_start,
         f"pre window ({design.pre_window} days) starts before the data")
    drop(cand["index_date"] > data_end, "index after the data end")

    cust = ds.table("customers")[["customer_id", "birth_year", "gender", "registered_on", "closed_on"]]
    cand = _with_customers(cand, cust)
    drop((cand["registered_on"] > cand["index_date"]) |
         (cand["closed_on"].notna() & (cand["closed_on"] <= cand["index_date"])), "account not open at index")
    drop(cand["index_date"] - cand["registered_on"] < pd.Timedelta(days=design.tenure_days),
         f"tenure under {design.tenure_days} days")

    rg = ds.table("rg_events")
    cand = cand.reset_index(drop=True)
    cand["row_id"] = np.arange(len(cand))
    selfex = rg[rg["event"] == "self_exclusion"][["customer_id", "occurred_on"]].sort_values("occurred_on")
    selfex = selfex.assign(occurred_on=selfex["occurred_on"].astype("datetime64[ns]"))
    prev_se = pd.merge_asof(cand.sort_values("index_date")[["row_id", "customer_id", "index_date"]], selfex,
                            left_on="index_date", right_on="occurred_on", by="customer_id",
                            direction="backward", allow_exact_matches=False).set_index("row_id")["occurred_on"]
    prev_se = prev_se.reindex(cand["row_id"]).to_numpy()
    drop(pd.Series((cand["index_date"].to_numpy() - prev_se) <= np.timedelta64(design.self_exclusion_days, "D"),
                   index=cand.index),
         f"self-excluded in the {design.self_exclusion_days} days before index")

    # an earlier case for the customer within prior_contact_days (not the row's own case)
    all_cases = ds.table("call_cases")[["customer_id", "opened_on"]].rename(columns={"opened_on": "prev_case"})
    all_cases["prev_case"] = all_cases["prev_case"].astype("datetime64[ns]")
    ref = cand["opened_on"].where(cand["case_id"].notna() & cand["opened_on"].notna(), cand["index_date"])
    ref = ref.where(ref <= cand["index_date"], cand["index_date"])
    probe = pd.DataFrame({"row_id": cand["row_id"], "customer_id": cand["customer_id"], "ref": ref})
    prev = pd.merge_asof(probe.sort_values("ref"), all_cases.sort_values("prev_case"), left_on="ref",
                         right_on="prev_case", by="customer_id", direction="backward",
                         allow_exact_matches=False).set_index("row_id")["prev_case"].reindex(cand["row_id"])
    drop(pd.Series((cand["index_date"].to_numpy() - prev.to_numpy())
                   <= np.timedelta64(design.prior_contact_days, "D"), index=cand.index),
         f"contacted in the {design.prior_contact_days} days before index")

    if design.one_index_per_customer:
        order = cand.sort_values(["index_date", "contact"], ascending=[True, False], kind="mergesort")
        dup = order.duplicated("customer_id", keep="first")
        drop(dup.reindex(cand.index), "later index of the same customer")

    with caching(cache):
        table = _covariates(ds, cand.reset_index(drop=True), design, data_end)
    flow.add("eligible", None, table["group"].value_counts())
    params = {"design": design.to_dict(), "index_rule": design.index_rule,
              "data_start": str(data_start.date()), "data_end": str(data_end.date())}
    return Cohort(table=table, flow=flow.frame(), design=design, data_end=data_end, settings=params)


#: Columns a cohort row has before covariates are computed.
BASE_COLUMNS = ("customer_id", "case_id", "trigger", "reached", "group", "contact", "index_date", "opened_on",
                "birth_year", "gender", "registered_on", "closed_on")


def recompute_covariates(dataset, table: pd.DataFrame, design: StudyDesign,
                         post: tuple[int, ...] | None = None, moved: int = 0) -> pd.DataFrame:
    """Recompute every baseline covariate of a cohort table at its (possibly moved) ``index_date``.

    Used for placebo analyses at a pseudo-index.  The index of ``table`` is kept.  ``post`` limits the
    outcome windows summed with them to the pre window and these post windows (default: every window of
    the design, as :func:`build_cohort`); the covariates are the same either way, and a shorter span
    makes the pass over activity cheaper.  ``moved``: the index was moved this many days back from the
    cohort's own; the pass over activity is then asked for the same days relative to the cohort's index
    (the same sums, exactly), so that it can be answered from a pass that already covered them
    (:func:`carecall_eval.cohorts.windows.shared_pass`).
    """
    base = table[[c for c in BASE_COLUMNS if c in table.columns]]
    out = _covariates(dataset, base.reset_index(drop=True), design, pd.Timestamp(dataset.data_end), post,
                      moved=moved)
    out.index = table.index
    return out


def cohort_windows(design: StudyDesign, post: tuple[int, ...] | None = None) -> dict[str, tuple[int, int]]:
    """Every window of a cohort's pass over activity: the covariate windows and :func:`outcome_windows`
    (only the pre window and the ``post`` windows when given)."""
    outcomes = outcome_windows(design) if post is None else \
        {"pre": (-design.pre_window, -1), **post_windows(post)}
    return {**COVARIATE_WINDOWS, **outcomes}


def _joined(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    """``left.join(right)``; side by side without copying when both have the same rows in the same order
    (the aggregates come back in the keys' order)."""
    if left.index.equals(right.index) and not left.columns.intersection(right.columns).size:
        return pd.concat([left, right], axis=1, copy=False)
    return left.join(right)


def _covariates(ds, cand: pd.DataFrame, design: StudyDesign, data_end: pd.Timestamp,
                post: tuple[int, ...] | None = None, moved: int = 0) -> pd.DataFrame:
    cand = cand.copy()
    cand["row_id"] = np.arange(len(cand))
    keys = cand[["row_id", "customer_id", "index_date"]]
    windows = cohort_windows(design, post)
    if moved:      # the same days, counted from the index the rows were moved from
        tot = window_aggregates(ds, keys.assign(index_date=keys["index_date"] + pd.Timedelta(days=moved)),
                                shifted(windows, -moved), share_window=shifted({"s": SHARE_WINDOW}, -moved)["s"])
    else:
        tot = window_aggregates(ds, keys, windows, share_window=SHARE_WINDOW)   # one pass over activity
    idx = cand["index_date"]
    out = cand.set_index("row_id")
    out["age"] = (idx.dt.year - out["birth_year"]).to_numpy().astype(float)
    out["tenure_years"] = ((idx - out["registered_on"]).dt.days / 365.25).to_numpy()
    out["index_quarter"] = quarter_of(idx).to_numpy()
    # calendar time as a number (years since 2000): a trend term that cannot separate groups like quarter dummies
    out["index_time"] = ((idx - pd.Timestamp("2000-01-01")).dt.days / 365.25).to_numpy()
    out = _joined(out, tot)
    for w in COVARIATE_WINDOWS:
        out[f"log_tl_{w}"] = np.log1p(out[f"tl_{w}"].clip(lower=0))
        out[f"log_wagered_{w}"] = np.log1p(out[f"wagered_{w}"])
        out[f"asinh_net_loss_{w}"] = np.arcsinh(out[f"net_loss_{w}"] / 100.0)
    out["log_deposits_84"] = np.log1p(out["deposits_28"].fillna(0) + out["deposits_84_29"].fillna(0))
    # prior responsible-gambling events in the year before the index
    out = _joined(out, prior_rg_flags(ds, keys, 365))
    for w in design.post_windows:
        out[f"followup_{w}"] = (out["index_date"] + pd.Timedelta(days=w - 1)) <= data_end
    missing = [c for c in design.covariates if c not in out.columns and not c.startswith("share_")]
    if missing:
        raise ValueError(f"StudyDesign.covariates: unknown covariate(s) {missing}; available: "
                         f"{sorted(c for c in out.columns if c not in ('customer_id', 'case_id'))}")
    out["reached"] = out["reached"].astype(bool)
    return out
